"""Option choices of the report commands, in a module light enough for `--help` to import."""

# How the loss averages over targets: every target alike, or each row first (see `loss`).
NORMALIZATIONS = ("token", "row")

# What `diff --ignore` accepts, with what each one accepts.
IGNORABLE = {
    "order": "rows in another order, or in other files, are not a difference",
    "padding": "padding ids do not matter and rows of only padding are left out on both sides",
}
