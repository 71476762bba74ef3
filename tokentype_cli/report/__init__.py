"""Reports: the row view and palette they share (`rows`)."""
