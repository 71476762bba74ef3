"""Reports: `rows` (the row view and palette every report shares), `diff`, `html`
(`inspect --html`) with its per-row statistics (`profile`), and `ledger` (a tokenize ledger read
back)."""
