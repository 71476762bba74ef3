"""`tokenize --dataset`: training-ready dataset folders. `layout` names every file of the folder;
`plan` (split counts, the seeded shuffle), `route`, `balance`, `metadata` (metadata.yaml,
tokenizer/, manifest) and `build` (tasks, workers, the finish)."""
