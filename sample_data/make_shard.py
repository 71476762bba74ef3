"""Build an input_ids-only shard from a JSONL file of token-id lists (one row per line).

The demo uses it to stand in for shards made by another tool; they are generated, not committed.
Usage: .venv/bin/python sample_data/make_shard.py IDS.jsonl OUT.h5
"""

import json
import sys

import numpy as np

from tokentype_cli.schema.names import INPUT_IDS, Provenance
from tokentype_cli.schema.write import ShardWriter


def main(ids_path: str, out_path: str) -> None:
    with open(ids_path, encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    array = np.asarray(rows, dtype=np.int32)
    provenance = Provenance("sample_data/make_shard.py", {"source": ids_path})
    with ShardWriter(out_path, array.shape[1], (INPUT_IDS,), provenance) as writer:
        writer.append(input_ids=array)


if __name__ == "__main__":
    main(*sys.argv[1:])
