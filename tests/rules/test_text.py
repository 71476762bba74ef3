"""Text rules: the engine against a plain-Python statement of the semantics, on random texts cut
into random tokens (split multi-byte characters and stray bytes included), and decoding against
the tokenizers' own decode."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from tests.helpers import CODON_VOCAB, CONFORMANCE
from tokentype_cli.rules.engine import apply_rules
from tokentype_cli.rules.parse import Rule, Structure, TextPattern
from tokentype_cli.rules.text import TokenTexts
from tokentype_cli.schema.names import TokenType
from tokentype_cli.tokenizer_loader import LoadedTokenizer, load_tokenizer

GPT2 = CONFORMANCE / "tokenizer-gpt2"
SEP, PAD = 0, 1  # ids 0 and 1; the random pieces take 2...

# --- the semantics, one article at a time, in plain Python -----------------------------------------


def token_chars(pieces: list[bytes]) -> tuple[str, list[set[int]]]:
    """An article's text and, per token, the characters it has bytes of."""
    data = b"".join(pieces)
    text = data.decode("utf-8", "surrogateescape")
    ranges, position = [], 0
    for char in text:
        width = len(char.encode("utf-8", "surrogateescape"))
        ranges.append((position, position + width))
        position += width
    chars, position = [], 0
    for piece in pieces:
        end = position + len(piece)
        chars.append({c for c, (a, b) in enumerate(ranges) if a < end and position < b})
        position = end
    return text, chars


def expression(patterns: tuple[TextPattern, ...]) -> re.Pattern[str]:
    parts = []
    for p in patterns:
        body = p.source if p.regex else re.escape(p.source)
        parts.append(f"(?i:{body})" if p.ignore_case else f"(?:{body})")
    return re.compile("|".join(parts), re.MULTILINE)


def spans(rule: Rule, text: str) -> tuple[list[tuple[int, int]], bool, bool]:
    """Selected character spans, whether the rule matched, and whether partial tokens count."""
    found = list(expression(rule.find).finditer(text))
    if rule.kind == "token":
        return [m.span() for m in found], bool(found), True
    if rule.kind == "until":
        return ([(0, found[0].start())] if found else []), bool(found), False
    if rule.kind == "through":
        return ([(0, found[0].end())] if found else []), bool(found), True
    ends = list(expression(rule.find_end).finditer(text))
    chosen, position = [], 0
    for begin in found:
        if begin.start() < position:
            continue
        end = next((e for e in ends if e.start() >= begin.end()), None)
        stop = len(text) if end is None else end.end()
        chosen.append((begin.start(), stop))
        position = max(stop, begin.start() + 1)
    return chosen, bool(found), True


def reference(articles: list[list[bytes]], ids: list[list[int]], rules: list[Rule]):
    """Per article: types of its tokens, per rule matched and seams."""
    types = [[int(TokenType.COMPLETION)] * len(a) for a in articles]
    matched = [0] * len(rules)
    seams = [0] * len(rules)
    for number, rule in enumerate(rules):
        for article, pieces in enumerate(articles):
            text, chars = token_chars(pieces)
            selected, hit, partial_inside = spans(rule, text)
            matched[number] += hit
            cut = set()
            for position, own in enumerate(chars):
                for a, b in selected:
                    span = set(range(a, b))
                    inside = own <= span if not partial_inside else bool(own & span)
                    if own & span and not own <= span:
                        cut.add(position)
                    if inside:
                        types[article][position] = int(rule.type)
            seams[number] += len(cut)
    return types, matched, seams


# --- strategies -----------------------------------------------------------------------------------

ALPHABET = "ab#: \nAé☃"
REGEXES = ["a+", "^#", "b$", "[é☃]+", "a|b:", "a*", r"\s", "^", "(?:ab)+"]


@st.composite
def cut_texts(draw):
    """Articles: random texts cut into random byte pieces, sometimes with a stray byte."""
    articles = []
    for _ in range(draw(st.integers(1, 5))):
        data = draw(st.text(alphabet=ALPHABET, min_size=1, max_size=24)).encode()
        cuts = sorted(draw(st.sets(st.integers(1, max(1, len(data) - 1)), max_size=len(data))))
        cuts = [c for c in cuts if 0 < c < len(data)]
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        if draw(st.booleans()) and draw(st.booleans()):
            pieces.insert(draw(st.integers(0, len(pieces))), b"\xff")
        articles.append(pieces)
    return articles


@st.composite
def text_patterns(draw, texts: list[str]):
    case = draw(st.booleans())
    kind = draw(st.sampled_from(["substring", "random", "regex"]))
    if kind == "regex":
        return TextPattern(draw(st.sampled_from(REGEXES)), regex=True, ignore_case=case)
    if kind == "substring":
        text = draw(st.sampled_from(texts))
        a = draw(st.integers(0, len(text) - 1))
        b = draw(st.integers(a + 1, min(len(text), a + 6)))
        source = text[a:b]
    else:
        source = draw(st.text(alphabet=ALPHABET, min_size=1, max_size=3))
    return TextPattern(source, ignore_case=case)


@st.composite
def text_rules(draw, texts: list[str]):
    kind = draw(st.sampled_from(["token", "until", "through", "between"]))
    token_type = draw(st.sampled_from([TokenType.PROMPT, TokenType.PADDING]))
    find = (draw(text_patterns(texts)),)
    if kind == "token" and draw(st.booleans()):
        find += (draw(text_patterns(texts)),)
    end = (draw(text_patterns(texts)),) if kind == "between" else ()
    return Rule(kind, token_type, find=find, find_end=end)


def lay_out(articles: list[list[int]], per_row: list[int], seq_len: int) -> np.ndarray:
    """Rows of whole articles, each closed by SEP, the rest PAD."""
    rows, position = [], 0
    for count in per_row:
        row = []
        for article in articles[position : position + count]:
            row += [*article, SEP]
        position += count
        rows.append(row + [PAD] * (seq_len - len(row)))
    return np.array(rows, dtype=np.int32)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), articles=cut_texts())
def test_text_rules_type_the_tokens_of_the_matched_characters(data, articles):
    """Random texts, random tokenizations: each rule sets exactly the tokens whose characters
    fall in its spans (partly inside counts for token/through/between, not for until), and
    counts every partly-inside token as a seam."""
    pieces = sorted({p for article in articles for p in article})
    ids_of = {p: i + 2 for i, p in enumerate(pieces)}
    texts = TokenTexts.from_pieces([b"<sep>", b"<pad>", *pieces])
    article_ids = [[ids_of[p] for p in article] for article in articles]
    decoded_texts = [b"".join(a).decode("utf-8", "surrogateescape") for a in articles]
    rules = data.draw(st.lists(text_rules(decoded_texts), min_size=1, max_size=3))
    per_row = []
    left = len(articles)
    while left:
        take = data.draw(st.integers(1, left))
        per_row.append(take)
        left -= take
    seq_len = max(
        sum(len(a) + 1 for a in article_ids[sum(per_row[:r]) : sum(per_row[: r + 1])])
        for r in range(len(per_row))
    ) + data.draw(st.integers(0, 3))
    rows = lay_out(article_ids, per_row, seq_len)

    result = apply_rules(rows, Structure(sep=(SEP,), pad=PAD), rules, texts=texts)
    types, matched, seams = reference(articles, article_ids, rules)

    expected = lay_out(types, per_row, seq_len)  # the same layout, types in place of ids
    expected[rows == SEP] = TokenType.SEPARATOR
    expected[(rows == PAD) & (np.cumsum(rows[:, ::-1] != PAD, axis=1)[:, ::-1] == 0)] = (
        TokenType.PADDING
    )
    np.testing.assert_array_equal(result.types, expected)
    assert result.matched == matched
    assert result.seams == seams


@settings(max_examples=100, deadline=None)
@given(articles=cut_texts())
def test_decoding_gives_each_articles_text(articles):
    pieces = sorted({p for article in articles for p in article})
    ids_of = {p: i for i, p in enumerate(pieces)}
    flat = np.array([ids_of[p] for a in articles for p in a], dtype=np.int64)
    numbers = np.repeat(np.arange(len(articles)), [len(a) for a in articles])
    decoded = TokenTexts.from_pieces(pieces).decode(flat, numbers)
    for number, article in enumerate(articles):
        a, b = decoded.article_start[number], decoded.article_end[number]
        assert decoded.text[a:b] == b"".join(article).decode("utf-8", "surrogateescape")
        _, chars = token_chars(article)
        first = decoded.article_first[number]
        for position, own in enumerate(chars):
            start = decoded.start[first + position] - a
            end = decoded.end[first + position] - a
            assert set(range(start, end)) == own


# --- real tokenizers ------------------------------------------------------------------------------


def metaspace_tokenizer(tmp_path) -> LoadedTokenizer:
    """A SentencePiece-style tokenizer (▁ for a space, stripped before the first word)."""
    vocab = {"▁hello": 0, "▁world": 1, "!": 2, "▁": 3, "</s>": 4, "<unk>": 5}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    path = tmp_path / "metaspace.json"
    tokenizer.save(str(path))
    return load_tokenizer(path)


def loaded(name, tmp_path) -> LoadedTokenizer:
    if name == "codons":
        return load_tokenizer(CODON_VOCAB)
    if name == "metaspace":
        return metaspace_tokenizer(tmp_path)
    if not GPT2.is_dir():
        pytest.skip(f"GPT-2 tokenizer not present at {GPT2} (outside the workplace)")
    return load_tokenizer(GPT2)


@pytest.mark.parametrize(
    ("name", "articles"),
    [
        ("gpt2", [[21017, 18261, 25, 198, 15496], [10163, 995, 0]]),
        ("codons", [[9, 5, 6], [10, 7, 8]]),
        ("metaspace", [[0, 1, 2], [1, 0]]),
    ],
)
def test_decoded_text_is_the_tokenizers_decode(name, articles, tmp_path):
    """Byte-level vocabularies through the byte table, the others through the decode cache."""
    tokenizer = loaded(name, tmp_path)
    texts = TokenTexts.for_tokenizer(tokenizer)
    flat = np.array([t for a in articles for t in a])
    numbers = np.repeat(np.arange(len(articles)), [len(a) for a in articles])
    decoded = texts.decode(flat, numbers)
    for number, article in enumerate(articles):
        a, b = decoded.article_start[number], decoded.article_end[number]
        assert decoded.text[a:b] == tokenizer.tokenizer.decode(article)


def test_word_level_joiners_belong_to_no_token():
    """`GAA GGC`: the space between two codons is the decoder's, so "GGC" is exactly a token."""
    texts = TokenTexts.for_tokenizer(load_tokenizer(CODON_VOCAB))
    decoded = texts.decode(np.array([9, 5, 6]), np.zeros(3, dtype=np.int64))
    assert decoded.text == "GAA GGC GCC\x00"
    assert decoded.start.tolist() == [0, 4, 8]
    assert decoded.end.tolist() == [3, 7, 11]


def test_ids_outside_the_vocabulary_name_their_row():
    texts = TokenTexts.from_pieces([b"a", b"b"], describe="tok.json")
    rows = np.array([[0, 1], [0, 7]], dtype=np.int32)
    rule = Rule("until", TokenType.PROMPT, find=(TextPattern("b"),))
    with pytest.raises(Exception, match=r"row 12: id 7 is outside the vocabulary of tok.json"):
        apply_rules(rows, Structure(), [rule], texts=texts, first_row=11)


def test_a_split_character_belongs_to_both_tokens():
    """☃ is three bytes; cut after the first, both tokens hold it, so both are seams of "☃"."""
    snowman = "☃".encode()
    texts = TokenTexts.from_pieces([b"a" + snowman[:1], snowman[1:] + b"b", b"c"])
    rule = Rule("token", TokenType.PROMPT, find=(TextPattern("☃"),))
    result = apply_rules(np.array([[0, 1, 2]]), Structure(), [rule], texts=texts)
    assert result.types.tolist() == [[0, 0, 1]]
    assert result.seams == [2]
    until = Rule("until", TokenType.PROMPT, find=(TextPattern("b"),))
    result = apply_rules(np.array([[0, 1, 2]]), Structure(), [until], texts=texts)
    assert result.types.tolist() == [[0, 1, 1]]
    assert (result.seams, result.first_seam) == ([1], [(0, 1, 1)])


def test_the_document_examples_by_text_and_by_token(tmp_path):
    """The codon vocabulary: text rules give what the token rules give."""
    from tokentype_cli.rules.parse import parse_rule_spec

    codons = load_tokenizer(CODON_VOCAB)
    texts = TokenTexts.for_tokenizer(codons)
    row = np.array([[9, 5, 6, 10, 7, 8, 2, 69, 69, 69, 69]])
    structure = Structure(sep=(2,), pad=69)
    for by_token, by_text in [
        ("until:ATG=prompt", 'until:"ATG"=prompt'),
        ("through:ATG ATC=prompt", 'through:"ATG ATC"=prompt'),
        ("token:GCC GGC=prompt", "token:'GCC' 'GGC'=prompt"),
        ("between:GAA .. GCC=prompt", 'between:"GAA" .. "GCC"=prompt'),
    ]:
        a = apply_rules(row, structure, [parse_rule_spec(by_token, "r", codons)], texts=texts)
        b = apply_rules(row, structure, [parse_rule_spec(by_text, "r", codons)], texts=texts)
        assert a.types.tolist() == b.types.tolist(), by_text
        assert b.seams == [0]
    assert json.dumps(a.types.tolist()) == "[[0, 0, 0, 1, 1, 1, 3, 2, 2, 2, 2]]"


def test_a_stray_continuation_byte_is_a_character_of_its_own():
    """b"\\x98" without its lead decodes as one escaped character; offsets stay exact after it."""
    texts = TokenTexts.from_pieces([b"\x98", b"a\xe2", b"\x98\x83b", b"\xff", b"c"])
    decoded = texts.decode(np.arange(5), np.zeros(5, dtype=np.int64))
    assert decoded.text == "\udc98a☃b\udcffc\x00"
    assert decoded.start.tolist() == [0, 1, 2, 4, 5]
    assert decoded.end.tolist() == [1, 3, 4, 5, 6]
    rule = Rule("until", TokenType.PROMPT, find=(TextPattern("c"),))
    result = apply_rules(np.array([[0, 1, 2, 3, 4]]), Structure(), [rule], texts=texts)
    assert result.types.tolist() == [[0, 0, 0, 0, 1]]


@settings(max_examples=100, deadline=None)
@given(articles=cut_texts())
def test_counting_per_token_agrees_with_the_per_byte_way(articles):
    """Valid UTF-8 takes the per-token shortcut; the per-byte way must place every token alike."""
    pieces = sorted({p for article in articles for p in article})
    ids_of = {p: i for i, p in enumerate(pieces)}
    flat = np.array([ids_of[p] for a in articles for p in a], dtype=np.int64)
    sizes = np.array([len(pieces[i]) for i in flat])
    last = np.append(np.repeat(np.arange(len(articles)), [len(a) for a in articles])[1:], -1)
    last = last != np.repeat(np.arange(len(articles)), [len(a) for a in articles])
    decoded = TokenTexts.from_pieces(pieces).decode(
        flat, np.repeat(np.arange(len(articles)), [len(a) for a in articles])
    )
    closed = np.cumsum(last) - last
    at = np.cumsum(sizes) - sizes + closed
    start, end, _, closers = TokenTexts._offsets_per_byte(
        decoded.text, int(sizes.sum()) + len(articles), at, np.zeros_like(at), sizes, last
    )
    assert decoded.start.tolist() == np.minimum.accumulate(start[::-1])[::-1].tolist()
    assert decoded.end.tolist() == np.maximum.accumulate(end).tolist()
    assert decoded.article_end.tolist() == closers.tolist()
