#!/usr/bin/env bash
# The sample pipeline on the source document's genetic-code examples (`make demo`).
# Usage: sample_data/demo.sh OUTPUT_FOLDER   (tokentype on PATH; $PYTHON, else python3, has h5py)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-demo_out}"
rm -rf "$out"
mkdir -p "$out"
vocab="$here/codon_vocab.json"
py="${PYTHON:-python3}"  # never a bare `python`: a fresh machine may have only python3

show() {  # print a shard's arrays the way the document's h5py snippet reads them
    "$py" - "$1" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    for row in range(f["input_ids"].shape[0]):
        print("  input_ids      =", f["input_ids"][row].tolist())
        if "token_type_ids" in f:
            print("  token_type_ids =", f["token_type_ids"][row].tolist())
PY
}

step() { printf '\n== %s\n' "$*"; }

step "tokenize example 1: the pair {GAA GGC GCC -> ATG ATC GAC} gives [9, 5, 6, 10, 7, 8, 2] / [0, 0, 0, 1, 1, 1, 3]"
tokentype tokenize "$here/example1.jsonl" -o "$out/tokenized1.h5" --tokenizer "$vocab" --max-seq-length 7
tokentype validate "$out/tokenized1.h5" --tokenizer "$vocab" --require-types
show "$out/tokenized1.h5"

step "tokenize example 2: one article per row, padded with PAD (type 2), read from stdin, with a ledger"
cat "$here/example1.jsonl" | tokentype tokenize - -o "$out/tokenized2.h5" --tokenizer "$vocab" \
    --packing single::drop --max-seq-length 11 --ledger "$out/tokenized2.ledger.jsonl"
tokentype validate "$out/tokenized2.h5" --tokenizer "$vocab" --require-types
show "$out/tokenized2.h5"
echo "  ledger: $(cat "$out/tokenized2.ledger.jsonl")"

step "tokenize a Hugging Face-style folder of Parquet files (the tokentype[parquet] extra): the same arrays as example 1"
"$py" - "$here/example1.jsonl" "$out/hub/data/train-00000-of-00001.parquet" <<'PY'
import json, pathlib, sys
import pyarrow as pa, pyarrow.parquet as pq
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
target = pathlib.Path(sys.argv[2])
target.parent.mkdir(parents=True)
pq.write_table(pa.Table.from_pylist(rows), target)
PY
tokentype tokenize "$out/hub" -o "$out/tokenized_parquet.h5" --tokenizer "$vocab" --max-seq-length 7 \
    --ledger "$out/tokenized_parquet.ledger.jsonl" --quiet
show "$out/tokenized_parquet.h5"
echo "  ledger: $(cut -c1-80 "$out/tokenized_parquet.ledger.jsonl")..."

step "Example 1: input_ids from another tool, types added with add-types"
"$py" "$here/make_shard.py" "$here/example1_ids.jsonl" "$out/example1.h5"
tokentype add-types "$out/example1.h5" "$here/example1_types.jsonl"
tokentype validate "$out/example1.h5" --tokenizer "$vocab" --require-types --prompt-loss-weight 0
show "$out/example1.h5"
tokentype inspect "$out/example1.h5" --tokenizer "$vocab" --rows 0 --prompt-loss-weight 0

step "Example 1, second typing: [1, 1, 0, 0, 1, 1, 3] from stdin into a new file"
tokentype add-types "$out/example1.h5" - -o "$out/example1_alt.h5" --overwrite \
    < "$here/example1_alt_types.jsonl"
show "$out/example1_alt.h5"

step "Example 2: a padded row; PAD is never learned"
"$py" "$here/make_shard.py" "$here/example2_ids.jsonl" "$out/example2.h5"
tokentype add-types "$out/example2.h5" "$here/example2_types.jsonl"
tokentype validate "$out/example2.h5" --tokenizer "$vocab" --require-types
show "$out/example2.h5"
tokentype inspect "$out/example2.h5" --tokenizer "$vocab" --rows 0 --ids

step "assign-types: example 1 by rule; 'until ATG -> prompt' gives [0, 0, 0, 1, 1, 1, 3]"
"$py" "$here/make_shard.py" "$here/example1_ids.jsonl" "$out/assign1.h5"
tokentype assign-types "$out/assign1.h5" --tokenizer "$vocab" --rule 'until:ATG=prompt'
show "$out/assign1.h5"

step "assign-types: 'span 2:4 -> prompt' gives [1, 1, 0, 0, 1, 1, 3] (dry run, then a new file)"
tokentype assign-types "$out/assign1.h5" --tokenizer "$vocab" --overwrite --rule 'span:2:4=prompt' --dry-run
tokentype assign-types "$out/assign1.h5" --tokenizer "$vocab" --overwrite --rule 'span:2:4=prompt' \
    -o "$out/assign1_alt.h5"
show "$out/assign1_alt.h5"

step "assign-types: example 2 from a rules file; the four PAD get type 2"
"$py" "$here/make_shard.py" "$here/example2_ids.jsonl" "$out/assign2.h5"
tokentype assign-types "$out/assign2.h5" --tokenizer "$vocab" --rules "$here/example2_rules.toml" --require-match
show "$out/assign2.h5"
if tokentype assign-types "$out/assign2.h5" --tokenizer "$vocab" --overwrite \
    --rule 'until:ATC GAA=prompt' --require-match; then
    echo "expected --require-match to refuse" >&2; exit 1
else
    echo "  (exit $?: no article holds ATC GAA, so --require-match wrote nothing)"
fi

step "dataset: the folder a trainer takes (2 train files, 1 dev file, shuffled with seed 0, balanced)"
tokentype tokenize "$here/codon_pairs.jsonl" --dataset "$out/dataset" --tokenizer "$vocab" \
    --model-config "$here/codon_model_config.json" --max-seq-length 16 --packing greedy::drop \
    --train-files 2 --dev-files 1 --shuffle --seed 0 --ledger "$out/dataset.ledger.jsonl"
tokentype validate "$out/dataset"
(cd "$out/dataset" && find . -type f | sort | sed 's/^/  /')
grep -E '^(max_seq_length|number_of_training_files|number_of_dev_files|max_batch_size_train|max_batch_size_dev|tokenizer_model_type):' \
    "$out/dataset/metadata.yaml" | sed 's/^/  /'

step "diff: the two typings of example 1 teach differently (exit 1), A above B with the changes marked"
if tokentype diff "$out/assign1.h5" "$out/assign1_alt.h5" --rows 1 --tokenizer "$vocab"; then
    echo "expected diff to find the retyped tokens" >&2; exit 1
else
    echo "  (exit $?: the builds differ)"
fi

step "inspect --html: one self-contained page for example 2 and its ledger"
tokentype inspect "$out/tokenized2.h5" --tokenizer "$vocab" --prompt-loss-weight 0 \
    --html "$out/report.html"

step "chat: multi-turn conversations through the tokenizer's ChatML template; each assistant turn"
echo "   learns its content and <|im_end|> (type 1), the last one ends in the separator (type 3);"
echo '   line 2: the first assistant turn has "weight": 0, so only the second one learns'
"$py" "$here/make_chat_tokenizer.py" "$here/chat.jsonl" "$out/chat_tokenizer"
tokentype tokenize "$here/chat.jsonl" -o "$out/chat.h5" --tokenizer "$out/chat_tokenizer" \
    --max-seq-length 64 --packing single::drop --ledger "$out/chat.ledger.jsonl"
tokentype validate "$out/chat.h5" --tokenizer "$out/chat_tokenizer" --require-types
tokentype inspect "$out/chat.h5" --tokenizer "$out/chat_tokenizer" --rows 0:2

printf '\n== Done: shards, ledgers, the dataset folder, the chat shard and report.html are in %s\n' "$out"
