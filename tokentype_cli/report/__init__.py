"""What every report shares: `rows` (the row view and palette of `inspect --rows`, `--html` and
`diff`), `ledger` (a tokenize ledger read back) and `options`."""
