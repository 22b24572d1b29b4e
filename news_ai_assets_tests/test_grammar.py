"""Every field against MIND's grammar (mind/grammar.py, docs/input-grammar.md), shown by fuzzing:
real and generated lines mutated every way a file goes wrong, read by the pipeline's readers, and
compared line by line with what the reference (compute/reference.py) says each line means."""

import json
import re
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from news_ai_assets.compute import reference
from news_ai_assets.mind import grammar
from news_ai_assets.mind.entities import VectorFile, read_vectors
from news_ai_assets.mind.reader import SplitDir, parse_behaviors, parse_news
from news_ai_assets.storage.duckdb_config import open_duckdb
from news_ai_assets_tests.compare import assert_rows_match
from news_ai_assets_tests.conftest import REAL_SUBSET
from news_ai_assets_tests.fuzz import examples

FIELDS = {
    "behaviors": {f.name for f in grammar.BEHAVIOR_FIELDS},
    "news": {f.name for f in grammar.NEWS_FIELDS},
    "entity": {"id", "values"},
    "relation": {"id", "values"},
}
ODD_BYTES = [b"\x00", b"\x01", b"\x1f", b"\x7f", b"\xc2\x85", b"\t", b"\r", b"\n", b" ", b"\xff", b"\xc0\x80",
             b"\xed\xa0\x80", b"\xe2\x80\x8b", b"-", b"\"", b"\\", b"[", b"{", b","]
ODD_FIELDS = [b"", b"\x01", b"0", b"-1", b"-0", b"+1", b"007", b"2147483648", b"99999999999999999999", b"1e400",
              b"nan", b"Infinity", b"1.5",
              b"U", b"N", b"Q", b"N1-2", b"N1 N1", b"N1-1 N2", b"13/1/2019 1:00:00 AM", b"2/30/2019 1:00:00 AM",
              b"11/11/1969 1:00:00 AM", b"11/11/2019 0:00:00 AM", b"http://", b"ftp://x", b"[]", b"[", b"null"]
# Values that break an entity object's shape: wrong types, out of range, the JSON RFC 8259 forbids.
ODD_JSON_VALUES = ['1', '-1', '-0', '1.5', '2', '1e400', '"x"', '"Q"', '""', '[]', '[1.0]', '[-1]', '[2147483648]',
                   '["a", 1]', '{}', 'null', 'true', 'NaN', '"\\ud800"']


def _fields(line: bytes) -> list[bytes]:
    return line.split(b"\t")


def _entity_mutation(line: bytes, data) -> bytes:
    """An entity list of the line made wrong-shaped: a value swapped, a key dropped, doubled or
    renamed, a trailing comma, or text that is not JSON."""
    fields = _fields(line)
    index = data.draw(st.sampled_from([6, 7])) if len(fields) == 8 else None
    if index is None:
        return line
    try:
        entities = json.loads(fields[index] or "[]")
    except ValueError:
        return line
    text = fields[index].decode("utf-8", "replace")
    how = data.draw(st.sampled_from(["value", "drop", "double", "rename", "trailing comma", "not json", "object"]))
    if entities and how in ("value", "drop", "double", "rename"):
        entity = entities[data.draw(st.integers(0, len(entities) - 1))]
        key = data.draw(st.sampled_from(grammar.ENTITY_KEYS))
        rendered = json.dumps(entity)
        if how == "value":
            new = rendered.replace(f'"{key}": {json.dumps(entity[key])}', f'"{key}": {data.draw(st.sampled_from(ODD_JSON_VALUES))}', 1)
        elif how == "drop":
            new = json.dumps({k: v for k, v in entity.items() if k != key})
        elif how == "double":
            new = rendered[:-1] + f', "{key}": {json.dumps(entity[key])}' + "}"
        else:
            new = rendered.replace(f'"{key}"', f'"{key.lower()}"', 1)
        text = json.dumps(entities).replace(rendered, new, 1)
    elif how == "trailing comma":
        text = text.rstrip("]") + ",]" if text.startswith("[") else text
    elif how == "not json":
        text = text[: data.draw(st.integers(0, max(0, len(text) - 1)))]
    elif how == "object":
        text = text.strip("[]") or "{}"
    fields[index] = text.encode("utf-8")
    return b"\t".join(fields)


def _mutate(line: bytes, data) -> bytes:
    how = data.draw(st.sampled_from(["flip", "insert", "delete", "swap", "drop", "double", "truncate", "replace field",
                                     "json"]))
    at = data.draw(st.integers(0, max(0, len(line) - 1)))
    fields = _fields(line)
    field = data.draw(st.integers(0, len(fields) - 1))
    if how == "flip":
        return line[:at] + bytes([data.draw(st.integers(0, 255))]) + line[at + 1:]
    if how == "insert":
        return line[:at] + data.draw(st.sampled_from(ODD_BYTES)) + line[at:]
    if how == "delete":
        return line[:at] + line[at + data.draw(st.integers(1, 30)):]
    if how == "swap":
        other = data.draw(st.integers(0, len(fields) - 1))
        fields[field], fields[other] = fields[other], fields[field]
    elif how == "drop":
        del fields[field]
    elif how == "double":
        fields.insert(field, fields[field])
    elif how == "truncate":
        return line[:at]
    elif how == "replace field":
        fields[field] = data.draw(st.sampled_from(ODD_FIELDS))
    else:
        return _entity_mutation(line, data)
    return b"\t".join(fields)


def _source_lines(kind: str, tiny_mind: Path, rows: str) -> list[bytes]:
    if kind in ("entity", "relation"):
        lines = (tiny_mind / "MINDsample_train" / "entity_embedding.vec").read_bytes().splitlines()[:40]
        return [re.sub(rb"^Q", b"P", line) for line in lines] if kind == "relation" else lines
    folder = REAL_SUBSET / "MINDsmall_train" if rows == "real" else tiny_mind / "MINDsample_train"
    if not folder.exists():
        pytest.skip(f"real MIND rows not found at {REAL_SUBSET}")
    return (folder / f"{kind}.tsv").read_bytes().splitlines()[:150]


def _normalised(reason: str) -> str:
    """DuckDB's reader words invalid UTF-8 its own way; the grammar's reason is the same line fault."""
    return grammar.INVALID_UTF8 if reason.startswith(("line: invalid encoding", "line: invalid unicode")) else reason


def _expected_tsv(kind: str, data: bytes, split: str) -> tuple[list[dict], list[str], int]:
    """Rows, reject reasons and blank lines the grammar gives a TSV file, duplicates as reader.py
    words them: lines sharing a key that disagree are all rejected; an exact copy counts once."""
    lines, blank = reference.grammar_lines(data)
    decoded, reasons = [], []
    for line in lines:
        try:
            decoded.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            reasons.append(grammar.INVALID_UTF8)
    judged = [reference.behaviors_line(t, split) if kind == "behaviors" else reference.news_line(t) for t in decoded]
    keys = [reference.impression_key(t) if kind == "behaviors" else t.split("\t")[0] for t in decoded]
    key_name = "impression_id" if kind == "behaviors" else "news_id"
    texts: dict[object, set[str]] = {}
    for key, text in zip(keys, decoded):
        if key is not None:
            texts.setdefault(key, set()).add(text)
    rows, kept = [], set()
    for key, text, (reason, row) in zip(keys, decoded, judged):
        shared = key is not None and sum(k == key for k in keys) > 1
        if reason is None and shared:
            if len(texts[key]) > 1:
                reason = grammar.conflicting_lines(key_name)
            elif key in kept:
                reason = grammar.DUPLICATE_LINE
        if reason is None:
            rows.append(row)
            kept.add(key)
        else:
            reasons.append(reason)
    return rows, reasons, blank


def _read_tsv(kind: str, path: Path, split: str):
    with closing(open_duckdb()) as conn:
        parse = parse_behaviors if kind == "behaviors" else parse_news
        parsed = parse(conn, SplitDir(split, path.parent))
        return parsed, conn.sql("SELECT * FROM parsed_rows").pl(), conn.sql("SELECT * FROM parsed_rejects").pl()


def _check_tsv(kind: str, data: bytes, folder: Path, split: str) -> None:
    path = folder / f"{kind}.tsv"
    path.write_bytes(data)
    parsed, rows, rejects = _read_tsv(kind, path, split)
    reasons = rejects.get_column("reason").to_list()
    assert rows.height + rejects.height + parsed.blank_lines == parsed.lines  # every line accounted for
    assert all(r.split(":")[0] in FIELDS[kind] | {"line"} for r in reasons), reasons  # every reject names a field
    expected_rows, expected_reasons, blank = _expected_tsv(kind, data, split)
    assert parsed.blank_lines == blank
    assert sorted(map(_normalised, reasons)) == sorted(expected_reasons)
    assert_rows_match(rows, expected_rows, key=["impression_id"] if kind == "behaviors" else ["news_id"])


def _check_vectors(kind: str, data: bytes, path: Path) -> None:
    path.write_bytes(data)
    read = read_vectors([VectorFile("train", path, kind)])
    reasons = read.rejects.get_column("reason").to_list()
    non_blank = [line for line in data.split(b"\n") if line.strip(b" \t\r")]
    assert read.vectors.height + len(reasons) == read.lines == len(non_blank)
    assert all(r.split(":")[0] in FIELDS[kind] | {"line"} for r in reasons), reasons
    judged = [reference.vector_line(line, kind) for line in non_blank]
    good = [value for reason, value in judged if reason is None]
    versions: dict[str, set[tuple]] = {}
    for wikidata_id, vector in good:
        versions.setdefault(wikidata_id, set()).add(tuple(vector))
    expected_reasons, expected, seen = [reason for reason, _ in judged if reason is not None], {}, set()
    for wikidata_id, vector in good:
        if len(versions[wikidata_id]) > 1:
            expected_reasons.append(grammar.conflicting_lines("id"))
        elif wikidata_id in seen:
            expected_reasons.append(grammar.REPEATED_VECTOR)
        else:
            expected[wikidata_id] = vector
            seen.add(wikidata_id)
    assert sorted(reasons) == sorted(expected_reasons)
    got = {row["wikidata_id"]: row["vector"] for row in read.vectors.iter_rows(named=True)}
    assert got.keys() == expected.keys() and all(got[k] == pytest.approx(expected[k], rel=1e-6) for k in got)


@pytest.mark.parametrize(("kind", "rows", "split"), [
    ("behaviors", "real", "train"), ("behaviors", "generated", "train"), ("behaviors", "generated", "test"),
    ("news", "real", "train"), ("news", "generated", "train"), ("entity", "generated", "train"),
    ("relation", "generated", "train"),
])
def test_mutated_lines_read_as_the_grammar_says(tmp_path_factory, tiny_mind, kind, rows, split):
    source = _source_lines(kind, tiny_mind, rows)
    if split == "test":  # unlabelled impressions, as the test split has them
        source = [re.sub(rb"-[01](?=\s|$)", b"", line) for line in source]

    @settings(max_examples=examples(50), deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.data())
    def check(data):
        lines = list(source)
        for _ in range(data.draw(st.integers(1, 6))):
            index = data.draw(st.integers(0, len(lines) - 1))
            lines[index] = _mutate(lines[index], data)
        if data.draw(st.booleans()):
            lines.append(lines[data.draw(st.integers(0, len(lines) - 1))])  # a line twice
        ending = data.draw(st.sampled_from([b"\n", b"\r\n"]))
        content = ending.join(lines) + data.draw(st.sampled_from([ending, b""]))
        folder = tmp_path_factory.mktemp("grammar") / f"MINDfuzz_{split}"
        folder.mkdir()
        if kind in ("entity", "relation"):
            _check_vectors(kind, content, folder / f"{kind}_embedding.vec")
        else:
            _check_tsv(kind, content, folder, split)

    check()


@pytest.mark.parametrize(("kind", "split"), [("behaviors", "train"), ("behaviors", "test"), ("news", "train"),
                                           ("entity", "train"), ("relation", "train")])
def test_every_odd_value_in_every_field_reads_as_the_grammar_says(tmp_path, tiny_mind, kind, split):
    """The systematic half of the fuzzing: each odd value in each field of a generated line."""
    source = _source_lines(kind, tiny_mind, "generated")
    if split == "test":
        source = [re.sub(rb"-[01](?=\s|$)", b"", line) for line in source]
    lines = []
    for field in range(len(_fields(source[0]))):
        for value in ODD_FIELDS:
            fields = _fields(source[len(lines) % len(source)])
            fields[field] = value
            lines.append(b"\t".join(fields))
    folder = tmp_path / f"MINDodd_{split}"
    folder.mkdir()
    content = b"\n".join(lines) + b"\n"
    if kind in ("entity", "relation"):
        _check_vectors(kind, content, folder / f"{kind}_embedding.vec")
    else:
        _check_tsv(kind, content, folder, split)


def test_the_docs_state_the_grammar_the_code_uses():
    """docs/input-grammar.md quotes every field's pattern and reason as grammar.py has them."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "input-grammar.md").read_text()
    for field in (*grammar.BEHAVIOR_FIELDS, *grammar.NEWS_FIELDS):
        if field.name not in grammar.ENTITY_FIELDS:
            assert f"`{field.pattern}`" in doc and field.problem in doc, field.name
    for text in (*grammar.VECTOR_IDS.values(), grammar.VECTOR_VALUE, grammar.TIME_FORMAT, grammar.WIKIDATA_ID):
        assert f"`{text}`" in doc, text
    assert all(f"`{key}`" in doc for key in grammar.ENTITY_KEYS)


def test_a_control_character_in_an_identifier_is_a_reject_naming_it(tmp_path):
    folder = tmp_path / "MINDx_train"
    folder.mkdir()
    good = b"1\tU1\t11/11/2019 9:05:26 AM\tN1\tN3-1\n"
    data = (good + good.replace(b"1\tU1", b"2\tU\x012").replace(b"N3-1", b"N3-0")
            + b"3\tU3\t11/11/2019 9:05:26 AM\tN\x1f1\tN3-1\n" + b"4\tU4\t11/11/2019 9:05:26 AM\t\x01\tN3-1\n")
    (folder / "behaviors.tsv").write_bytes(data)
    _, rows, rejects = _read_tsv("behaviors", folder / "behaviors.tsv", "train")
    assert rows.get_column("impression_id").to_list() == [1]
    assert sorted(rejects.get_column("reason").to_list()) == [
        "history: not news ids separated by single spaces", "history: not news ids separated by single spaces",
        "user_id: not U followed by digits"]
    assert rejects.get_column("raw_line").str.contains("\x01", literal=True).any()


@settings(max_examples=examples(400), deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.from_regex(grammar.ENTITY_LIST_COMMON_FORM, fullmatch=True))
def test_every_text_in_the_common_entity_form_is_an_entity_list(text):
    """The readers skip the Python parse for texts in ENTITY_LIST_COMMON_FORM: it must only narrow the grammar."""
    assert grammar.entity_list_problem(text) is None


@pytest.mark.parametrize("text", [
    '[{"Label": "a", "Type": "P", "WikidataId": "Q1", "Confidence": 1.5, "OccurrenceOffsets": [0], "SurfaceForms": ["a"]}]',
    '[{"Label": "a", "Type": "P", "WikidataId": "Q1", "Confidence": 1, "OccurrenceOffsets": [2147483648], "SurfaceForms": []}]',
    '[{"Label": "\\ud800", "Type": "P", "WikidataId": "Q1", "Confidence": 0.5, "OccurrenceOffsets": [], "SurfaceForms": []}]',
    '[{"Label": "a", "Type": "P", "WikidataId": "Q1", "Confidence": 0.5, "OccurrenceOffsets": [], "SurfaceForms": [],}]',
    '[{"Label": "a", "Label": "b", "WikidataId": "Q1", "Confidence": 0.5, "OccurrenceOffsets": [], "SurfaceForms": []}]',
])
def test_texts_outside_the_common_entity_form_are_left_to_the_parse(text):
    assert grammar.entity_list_problem(text) is not None
    assert re.fullmatch(grammar.ENTITY_LIST_COMMON_FORM, text) is None


def test_mind_writes_its_entity_lists_in_the_common_form():
    """The real rows' lists all take the fast path (else the narrowing buys nothing)."""
    if not REAL_SUBSET.exists():
        pytest.skip(f"{REAL_SUBSET} is not here")
    lists = [field for line in (REAL_SUBSET / "MINDsmall_train" / "news.tsv").read_text().splitlines()
             for field in line.split("\t")[6:8] if field not in ("", "[]")]
    assert lists and all(re.fullmatch(grammar.ENTITY_LIST_COMMON_FORM, text) for text in lists)
