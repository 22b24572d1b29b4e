"""Reads MIND's knowledge-graph vectors: `entity_embedding.vec` and `relation_embedding.vec` of
each split, a WikidataId and its 100 TransE floats per line, tab separated (trailing whitespace
ignored). Not every split ships them (the real-row subset has none): a missing file is reported,
never filled in. Every line is a vector, a counted reject (with its reason and raw text) or blank.
The same id in several splits carries the same vector; where they disagree, the earliest split's
is kept and the id counted as conflicting. Plain Polars/NumPy; knows nothing of Dagster.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from news_ai_assets.mind import grammar
from news_ai_assets.mind.reader import REJECT_SCHEMA, SplitDir

DIMENSION = grammar.VECTOR_DIMENSION
VECTOR_FILES = {"entity": "entity_embedding.vec", "relation": "relation_embedding.vec"}


@dataclass(frozen=True)
class VectorFile:
    split: str
    path: Path
    kind: str  # entity or relation


@dataclass(frozen=True)
class Vectors:
    vectors: pl.DataFrame  # wikidata_id, vector (FLOAT[100]): each id once
    rejects: pl.DataFrame  # REJECT_SCHEMA, every rejected line of the files read
    lines: int  # non-blank lines read
    conflicting_ids: int  # ids whose vectors differ between splits (the earliest split's kept)
    source: str  # SHA-256 of the files read, in order: what features computed from them are keyed by


def vector_files(splits: list[SplitDir], kind: str) -> tuple[list[VectorFile], list[str]]:
    """The splits' files of `kind`, and the splits that have none. A file that is there but cannot
    be read (a dangling symbolic link, a folder, no permission) stops the read, naming it: taking
    it for absent would quietly leave every entity of the split without a vector."""
    found, missing = [], []
    for split in splits:
        path = split.path / VECTOR_FILES[kind]
        if path.exists() or path.is_symlink():
            found.append(VectorFile(split.split, split.file(VECTOR_FILES[kind]), kind))
        else:
            missing.append(f"{split.split} ({path})")
    return found, missing


def _decoded(line: bytes) -> str | None:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _parse_file(file: VectorFile, content: bytes) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Good rows (wikidata_id, vector, line) and rejects of one file (its `content`), and its non-blank lines."""
    raw = content.split(b"\n")
    lines = pl.DataFrame({"text": [_decoded(line) for line in raw], "raw": pl.Series(raw, dtype=pl.Binary)}) \
        .with_row_index("line", offset=1)
    text = pl.col("text")
    fields = text.str.strip_chars_end(" \t\r").str.split("\t")
    texts = fields.list.slice(1)
    values = texts.list.eval(pl.element().cast(pl.Float32, strict=False))
    well_formed = texts.list.eval(pl.element().str.contains(f"^{grammar.VECTOR_VALUE}$")).list.all()
    non_blank = lines.filter(pl.col("text").is_null() | (pl.col("text").str.strip_chars(" \t\r") != ""))
    checked = non_blank.with_columns(fields.list.first().alias("wikidata_id"), values.alias("vector"),
                                     well_formed.alias("well_formed")).with_columns(
        pl.when(pl.col("text").is_null()).then(pl.lit(grammar.INVALID_UTF8))
        .when(pl.col("vector").list.len() != DIMENSION).then(pl.lit(f"line: {grammar.VECTOR_FIELD_COUNT_PROBLEM}"))
        .when(~pl.col("wikidata_id").str.contains(f"^{grammar.VECTOR_IDS[file.kind]}$"))
        .then(pl.lit(grammar.vector_id_problem(file.kind)))
        .when(~pl.col("well_formed") | pl.col("vector").list.eval(pl.element().is_null() | ~pl.element().is_finite()).list.any())
        .then(pl.lit(f"values: {grammar.VECTOR_VALUE_PROBLEM}"))
        .alias("reason")
    )
    good = checked.filter(pl.col("reason").is_null())
    # An id listed twice in one file: every line of it rejected if they disagree; if they agree, the
    # first is the row and the others are counted as repeats.
    versions = good.group_by("wikidata_id").agg(pl.col("vector").n_unique().alias("versions"))
    conflicting = versions.filter(pl.col("versions") > 1).get_column("wikidata_id")
    repeats = good.filter(pl.col("line").rank("ordinal").over("wikidata_id") > 1).get_column("line")
    checked = checked.with_columns(
        pl.when(pl.col("reason").is_not_null()).then(pl.col("reason"))
        .when(pl.col("wikidata_id").is_in(conflicting.implode())).then(pl.lit(grammar.conflicting_lines("id")))
        .when(pl.col("line").is_in(repeats.implode())).then(pl.lit(grammar.REPEATED_VECTOR))
        .alias("reason")
    )
    rejects = checked.filter(pl.col("reason").is_not_null()).select(
        pl.lit(str(file.path)).alias("source_file"), pl.col("line").cast(pl.Int64), "reason",
        pl.col("raw").map_elements(lambda line: line.decode("utf-8", "backslashreplace"), return_dtype=pl.String)
        .str.strip_chars_end("\r").alias("raw_line"),
    ).cast(REJECT_SCHEMA)
    good = checked.filter(pl.col("reason").is_null()).unique("wikidata_id", keep="first", maintain_order=True)
    return good.select("wikidata_id", "vector", "line"), rejects, checked.height


def read_vectors(files: list[VectorFile]) -> Vectors:
    """The vectors of `files` (one kind, splits in train, dev, test order), each id once."""
    parsed, rejects, lines, digest = [], [], 0, hashlib.sha256()
    for order, file in enumerate(files):
        content = file.path.read_bytes()
        digest.update(f"{file.split}\0{file.kind}\0".encode())
        digest.update(content)
        good, bad, count = _parse_file(file, content)
        parsed.append(good.with_columns(pl.lit(order).alias("order")))
        rejects.append(bad)
        lines += count
    if not parsed:
        return Vectors(pl.DataFrame(schema={"wikidata_id": pl.String, "vector": pl.Array(pl.Float32, DIMENSION)}),
                       pl.DataFrame(schema=REJECT_SCHEMA), 0, 0, f"sha256:{digest.hexdigest()}")
    every = pl.concat(parsed).sort("order", "line")
    conflicting = every.group_by("wikidata_id").agg(pl.col("vector").n_unique().alias("versions")) \
        .filter(pl.col("versions") > 1).height
    vectors = every.unique("wikidata_id", keep="first", maintain_order=True).select(
        "wikidata_id", pl.col("vector").list.to_array(DIMENSION)
    )
    return Vectors(vectors, pl.concat(rejects), lines, conflicting, f"sha256:{digest.hexdigest()}")
