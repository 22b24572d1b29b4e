import datetime as dt
import re
import shutil
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from news_ai_assets.compute import reference
from news_ai_assets.compute.interactions import interactions_from_behaviors
from news_ai_assets.compute.user_features import user_features_for_day
from news_ai_assets.mind.entities import vector_files
from news_ai_assets.mind.reader import MindInputError, discover_splits, read_behaviors, read_news
from news_ai_assets_tests.compare import assert_rows_match
from news_ai_assets_tests.privileges import as_nobody, folder_nobody_can_enter

ALL_DAYS = (dt.date(2019, 11, 1), dt.date(2019, 12, 1))


def _split_dir(root: Path, name: str, behaviors: bytes | None = None, news: bytes | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    if behaviors is not None:
        (folder / "behaviors.tsv").write_bytes(behaviors)
    if news is not None:
        (folder / "news.tsv").write_bytes(news)
    return folder


def test_real_rows_match_reference_parse(real_mind):
    splits = discover_splits(real_mind)
    behaviors, rejects, _ = read_behaviors(splits, *ALL_DAYS)
    assert rejects.height == 0
    expected = reference.parse_behaviors_file(real_mind / "MINDsmall_train" / "behaviors.tsv", "train")
    assert len(expected) == 5000
    assert_rows_match(behaviors, expected, key=["split", "impression_id"])
    assert behaviors.filter(pl.col("history_length") == 0).height > 0  # real empty histories


def test_real_news_match_reference_parse(real_mind):
    news, rejects, _ = read_news(discover_splits(real_mind))
    assert rejects.height == 0
    expected = reference.parse_news_file(real_mind / "MINDsmall_train" / "news.tsv")
    assert_rows_match(news, list(expected.values()), key=["news_id"])
    assert news.filter(pl.col("title").str.starts_with('"')).height > 0  # quote-led titles kept verbatim
    assert news.filter(pl.col("abstract") == "").height > 0


def test_generated_rows_match_reference_parse(tiny_mind):
    splits = discover_splits(tiny_mind)
    assert [s.split for s in splits] == ["train", "dev", "test"]
    behaviors, rejects, _ = read_behaviors(splits, *ALL_DAYS)
    assert rejects.height == 0
    expected = [
        row for s in splits for row in reference.parse_behaviors_file(s.path / "behaviors.tsv", s.split)
    ]
    assert_rows_match(behaviors, expected, key=["split", "impression_id"])
    test_rows = behaviors.filter(pl.col("split") == "test")
    assert test_rows.height > 0 and test_rows.get_column("click_count").null_count() == test_rows.height


def test_day_window_is_start_inclusive_end_exclusive(tiny_mind):
    behaviors = read_behaviors(discover_splits(tiny_mind), dt.date(2019, 11, 12), dt.date(2019, 11, 14)).rows
    assert set(behaviors.get_column("date").unique()) == {dt.date(2019, 11, 12), dt.date(2019, 11, 13)}


GOOD = b"1\tU1\t11/11/2019 9:05:26 AM\tN1 N2\tN3-1 N4-0\n"
BAD_LINES = {
    b"2\tU2\tnot a time\t\tN3-0\n": "time: not a time M/D/YYYY h:mm:ss AM|PM",
    b"14\tU14\t11/10/201  1:25:21 AM\t\tN3-0\n": "time: not a time M/D/YYYY h:mm:ss AM|PM",  # strptime would say year 201
    b"15\tU15\t11/10/0019 1:25:21 AM\t\tN3-0\n": "time: year outside 1970-2099",
    b"3\tU3\t11/11/2019 9:05:26 AM\tN1\n": "line: too few fields (expected 5)",
    b"4\tU4\t11/11/2019 9:05:26 AM\t\tN3-0\textra\n": "line: too many fields (expected 5)",
    b"13\t\t11/11/2019 9:05:26 AM\t\tN3-0\n": "user_id: not U followed by digits",
    b"5\tU\xff5\t11/11/2019 9:05:26 AM\t\tN3-0\n": "line: invalid encoding",
    b'"6\tU6\t11/12/2019 12:05:26 PM\t\tN3-0\n': "impression_id: not a decimal integer from 1 to 2147483647",
    b"7\tU7\t11/12/2019 1:05:26 PM\t\tN3\n": "impressions: unlabelled in a labelled split (train, dev)",
    b"8\tU8\t11/12/2019 1:05:26 PM\t\tN3-1 N3-0\n": "impressions: a candidate repeated",
    b"9\tU9\t11/12/2019 1:05:26 PM\tN1 X2\tN3-1\n": "history: not news ids separated by single spaces",
    b"10\tU10\t11/12/2019 1:05:26 PM\t\tN3-2\n": "impressions: not news ids separated by single spaces, each with -1 or -0 (labelled) or none (unlabelled)",
    b"11\tU11\t11/12/2019 1:05:26 PM\t\t\n": "impressions: empty",
}


def test_malformed_lines_are_rejected_with_reasons_not_dropped(tmp_path):
    truncated = b"12\tU12\t11/12/2019 1:05:26 PM"  # last line cut off, no newline
    _split_dir(tmp_path, "MINDx_train", behaviors=GOOD + b"".join(BAD_LINES) + truncated)
    behaviors, rejects, _ = read_behaviors(discover_splits(tmp_path), *ALL_DAYS)
    assert behaviors.get_column("impression_id").to_list() == [1]
    assert rejects.height == len(BAD_LINES) + 1
    last = rejects.filter(pl.col("raw_line").str.starts_with("12\t"))
    others = rejects.filter(~pl.col("raw_line").str.starts_with("12\t"))
    for reason, lines in Counter(BAD_LINES.values()).items():
        assert others.filter(pl.col("reason").str.starts_with(reason)).height == lines, reason
    assert last.get_column("reason").item() == "line: too few fields (expected 5)"
    encoding = rejects.filter(pl.col("reason").str.starts_with("line: invalid encoding"))
    assert encoding.get_column("line").to_list() == [8]  # where DuckDB's reader refused it, the line number


def test_duplicate_impression_ids(tmp_path):
    lines = (
        GOOD + GOOD  # an exact copy: kept once
        + b"2\tU2\t11/11/2019 9:05:26 AM\t\tN3-1\n" + b"2\tU9\t11/11/2019 9:05:26 AM\t\tN3-1\n"  # disagree
    )
    _split_dir(tmp_path, "MINDx_train", behaviors=lines)
    behaviors, rejects, _ = read_behaviors(discover_splits(tmp_path), *ALL_DAYS)
    assert behaviors.get_column("impression_id").to_list() == [1]
    assert sorted(rejects.get_column("reason").to_list()) == [
        "impression_id: conflicting lines share one impression_id",
        "impression_id: conflicting lines share one impression_id", "line: an exact copy of another line",
    ]


def test_unlabelled_test_split_and_empty_file(tmp_path):
    _split_dir(tmp_path, "MINDlarge_test", behaviors=b"1\tU1\t11/16/2019 9:05:26 PM\t\tN3 N4\n")
    _split_dir(tmp_path, "MINDlarge_dev", behaviors=b"")
    behaviors, rejects, _ = read_behaviors(discover_splits(tmp_path), *ALL_DAYS)
    row = behaviors.row(0, named=True)
    assert rejects.height == 0 and behaviors.height == 1
    assert row["split"] == "test" and row["click_count"] is None and row["click_ratio"] is None
    assert [c["clicked"] for c in row["impressions"]] == [None, None]
    assert row["time"] == dt.datetime(2019, 11, 16, 21, 5, 26) and row["history"] == []


def test_news_union_across_splits_and_bad_entities(tmp_path):
    article = b"N1\tnews\tnewsus\tTitle\t\thttps://x\t[]\t[]\n"
    _split_dir(tmp_path, "MINDsmall_train", news=article + b"N2\tnews\tnewsus\tT2\tA\thttps://u\t{oops\t[]\n")
    _split_dir(tmp_path, "MINDsmall_dev", news=article + b"N3\tsports\tnfl\t\"Quoted\tA\thttps://u\t[]\t[]\n")
    news, rejects, _ = read_news(discover_splits(tmp_path))
    assert news.get_column("news_id").to_list() == ["N1", "N3"]
    assert news.filter(pl.col("news_id") == "N3").get_column("title").item() == '"Quoted'
    assert rejects.get_column("reason").to_list() == ["title_entities: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"]


def test_folder_problems_are_clear_errors(tmp_path):
    with pytest.raises(MindInputError, match="does not exist"):
        discover_splits(tmp_path / "nowhere")
    with pytest.raises(MindInputError, match="no MIND split folder"):
        discover_splits(tmp_path)
    _split_dir(tmp_path, "MINDsmall_train")
    with pytest.raises(MindInputError, match="has no readable behaviors.tsv"):
        read_behaviors(discover_splits(tmp_path), *ALL_DAYS)
    _split_dir(tmp_path, "MINDlarge_train")
    with pytest.raises(MindInputError, match="more than one train split"):
        discover_splits(tmp_path)


def test_real_rows_with_a_copy_under_another_name(real_mind, tmp_path):
    """Any MIND*_<split> folder name is accepted (MINDlarge_train etc.)."""
    shutil.copytree(real_mind / "MINDsmall_train", tmp_path / "MINDlarge_train")
    behaviors = read_behaviors(discover_splits(tmp_path), *ALL_DAYS).rows
    assert behaviors.height == 5000


LINE = b"%d\tU%d\t11/11/2019 9:05:58 AM\tN1 N2\tN3-1 N4-0\n"


def _lines(*ids: int) -> bytes:
    return b"".join(LINE % (i, i) for i in ids)


@pytest.mark.parametrize("kind", ["dangling link", "link loop", "plain file"])
def test_a_split_folder_that_cannot_be_read_stops_the_read(tmp_path, kind):
    """Skipping it would replace its days with nothing, silently."""
    _split_dir(tmp_path, "MINDsmall_train", behaviors=_lines(1), news=b"")
    dev = tmp_path / "MINDsmall_dev"
    if kind == "dangling link":
        dev.symlink_to(tmp_path / "unmounted" / "MINDsmall_dev")
    elif kind == "link loop":
        dev.symlink_to(dev)
    else:
        dev.write_bytes(b"")
    with pytest.raises(MindInputError, match=f"{dev} looks like a MIND split folder but cannot be read"):
        discover_splits(tmp_path)


def _open_inputs(mind_dir: Path) -> list[str]:
    """What every read does first, for every split: find the folders and open their files."""
    splits = discover_splits(mind_dir)
    opened = [str(split.file(name)) for split in splits for name in ("behaviors.tsv", "news.tsv")]
    return opened + [str(file.path) for file in vector_files(splits, "entity")[0]]


@pytest.mark.parametrize(("target", "message"), [
    ("MINDsmall_dev", "looks like a MIND split folder but cannot be read (permission denied)"),
    ("MINDsmall_dev/behaviors.tsv", "cannot be read (permission denied)"),
    ("MINDsmall_train/news.tsv", "cannot be read (permission denied)"),
    ("MINDsmall_train/entity_embedding.vec", "cannot be read (permission denied)"),
])
def test_what_the_user_may_not_read_stops_the_read_naming_it(target, message):
    """Run as `nobody`: the same files read as that user until one of them loses its permissions."""
    with folder_nobody_can_enter() as root:
        for split in ("MINDsmall_train", "MINDsmall_dev"):
            _split_dir(root, split, behaviors=_lines(1), news=b"")
            (root / split / "entity_embedding.vec").write_bytes(b"")
        assert len(as_nobody(lambda: _open_inputs(root))) == 6  # nobody reads them all
        (root / target).chmod(0)
        with pytest.raises(MindInputError, match=re.escape(f"{root / target}") + ".*" + re.escape(message)):
            as_nobody(lambda: _open_inputs(root))
        assert len(_open_inputs(root)) == 6  # root still would: the test is about the user running it


def test_a_split_file_behind_a_dangling_link_is_named(tmp_path):
    folder = _split_dir(tmp_path, "MINDsmall_train", news=b"")
    (folder / "behaviors.tsv").symlink_to(tmp_path / "elsewhere.tsv")
    with pytest.raises(MindInputError, match="has no readable behaviors.tsv .*symbolic link to .*elsewhere.tsv"):
        read_behaviors(discover_splits(tmp_path), *ALL_DAYS)


@pytest.mark.parametrize("name", ["mind[v1]", "mind*", "mind?", "mind[!x]"])
def test_paths_are_read_literally_never_as_glob_patterns(tmp_path, name):
    """A folder named like a pattern is read as itself, not as the folders the pattern matches."""
    for decoy in ("mindv", "mind1", "mindx", "mindy"):
        _split_dir(tmp_path / decoy, "MINDsmall_train", behaviors=_lines(7, 8, 9), news=b"")
    _split_dir(tmp_path / name, "MINDsmall_train", behaviors=_lines(1), news=b"")
    behaviors, rejects, days = read_behaviors(discover_splits(tmp_path / name), *ALL_DAYS)
    assert behaviors.get_column("impression_id").to_list() == [1] and rejects.height == 0
    assert days.get_column("source_file").to_list() == [str(tmp_path / name / "MINDsmall_train" / "behaviors.tsv")]


def test_every_line_is_a_row_a_reject_or_blank(tmp_path):
    """Lines of 32 MB and more, and a file of NUL bytes without a newline, used to vanish."""
    huge = b"5\tU5\t11/11/2019 9:05:58 AM\t" + b"N1 " * 11_000_000 + b"N2\tN3-1\n"  # 33 MB
    long = b"6\tU6\t11/11/2019 9:05:58 AM\t" + b"N1 " * 1_000_000 + b"N2\tN3-1\r\n"  # 3 MB, CRLF
    _split_dir(tmp_path, "MINDsmall_train", behaviors=_lines(1) + huge + b"\n" + long + _lines(2, 3), news=b"\0" * 40_000_000)
    behaviors, rejects, _ = read_behaviors(discover_splits(tmp_path), *ALL_DAYS)
    assert behaviors.get_column("impression_id").to_list() == [1, 2, 3]
    assert rejects.select("line", "reason").rows() == [
        (2, "line: longer than 2,000,000 bytes (33,000,034)"), (4, "line: longer than 2,000,000 bytes (3,000,034)")
    ]
    assert rejects.get_column("raw_line")[0].startswith("5\tU5\t") and rejects.get_column("raw_line")[0].endswith("(33,000,034 bytes)")
    news, news_rejects, _ = read_news(discover_splits(tmp_path))
    assert news.height == 0 and news_rejects.select("line", "reason").rows() == [(1, "line: longer than 2,000,000 bytes (40,000,000)")]


def test_an_impression_of_40000_candidates_is_read_whole(tmp_path):
    """Counts are 32-bit: 32,768 candidates or history entries used to abort the whole read."""
    candidates = b" ".join(b"N%d-0" % i for i in range(40_000))
    history = b" ".join(b"N%d" % i for i in range(35_000))
    _split_dir(tmp_path, "MINDsmall_train", behaviors=b"1\tU1\t11/11/2019 9:05:58 AM\t" + history + b"\t" + candidates + b"\n")
    behaviors, rejects, _ = read_behaviors(discover_splits(tmp_path), *ALL_DAYS)
    assert behaviors.select("history_length", "impressions_count", "click_count").row(0) == (35_000, 40_000, 0)
    assert rejects.height == 0
    assert interactions_from_behaviors(behaviors).get_column("position").max() == 40_000
    next_day = behaviors.with_columns(pl.lit(dt.date(2019, 11, 12)).alias("date"), pl.col("time").dt.offset_by("1d"))
    features = user_features_for_day(pl.concat([behaviors, next_day]), pl.DataFrame(
        schema={"news_id": pl.String, "category": pl.String, "subcategory": pl.String}), dt.date(2019, 11, 12), 7)
    assert features.select("history_length", "impressions_count_max").row(0) == (35_000, 40_000)
