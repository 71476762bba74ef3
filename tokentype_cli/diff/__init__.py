"""`diff`: what two builds teach, row by row (`compare`)."""
