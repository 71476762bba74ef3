"""`assign-types`: rule files and specs (`parse`), text patterns over decoded tokens (`text`), the
vectorised rule engine (`engine`), and the command's run over shards (`assign`)."""
