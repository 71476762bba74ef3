"""Property: `validate` accepts every well-formed file the schema layer writes."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import write_shard
from tokentype_cli.schema.names import TokenType
from tokentype_cli.validate.findings import ValidateOptions
from tokentype_cli.validate.shard import validate_file

EOS, PAD, VOCAB = 2, 69, 70


@st.composite
def packed_rows(draw):
    """Rows of articles (prompt, completion, EOS separator) packed and padded at the end."""
    seq_len = draw(st.integers(2, 48))
    n_rows = draw(st.integers(1, 12))
    ids = np.full((n_rows, seq_len), PAD, dtype=np.int32)
    types = np.full((n_rows, seq_len), TokenType.PADDING, dtype=np.int32)
    for row in range(n_rows):
        column = 0
        while True:
            prompt = draw(st.integers(0, 6))
            completion = draw(st.integers(0 if prompt else 1, 6))
            length = prompt + completion + 1
            if column + length > seq_len:
                break
            words = draw(st.lists(st.integers(3, 60), min_size=length - 1, max_size=length - 1))
            ids[row, column : column + length - 1] = words
            ids[row, column + length - 1] = EOS
            types[row, column : column + prompt] = TokenType.PROMPT
            types[row, column + prompt : column + length - 1] = TokenType.COMPLETION
            types[row, column + length - 1] = TokenType.SEPARATOR
            column += length
            if column >= seq_len or draw(st.booleans()):
                break
        if column == 0:  # too short for a drawn article: one completion token and its EOS
            ids[row, :2] = [7, EOS]
            types[row, :2] = [TokenType.COMPLETION, TokenType.SEPARATOR]
    return ids, types


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(packed_rows())
def test_validate_accepts_what_the_schema_layer_writes(tmp_path, arrays):
    ids, types = arrays
    path = write_shard(tmp_path / "prop.h5", ids, types)
    options = ValidateOptions(
        vocab_size=VOCAB,
        max_seq_length=ids.shape[1],
        require_types=True,
        prompt_loss_weight=0.0,
        strict=True,
    )
    report = validate_file(path, options)
    assert report.findings == []
    assert (report.rows, report.seq_len) == ids.shape
