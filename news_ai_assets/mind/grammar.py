"""MIND's line grammar, field by field: the one place it is stated. reader.py and entities.py
validate with it, docs/input-grammar.md states it in words, and the tests hold a line-by-line
reference to it. A line that breaks it is a counted reject whose reason starts with the field it
breaks (`time: ...`), or with `line:` where the whole line is at fault (encoding, length, the
number of fields, an exact duplicate).

Patterns are full matches in the syntax RE2 (DuckDB), Rust's regex (Polars) and Python's `re`
read alike. Text is UTF-8; a control character is U+0000-U+001F or U+007F-U+009F.
"""

import json
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    name: str
    pattern: str  # the field's text matches it in full
    problem: str  # the reject reason when it does not, after "<name>: "


NO_CONTROL = r"[^\x00-\x1f\x7f-\x9f]"
MAX_IMPRESSION_ID = 2**31 - 1
YEARS = (1970, 2099)
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"  # and a real calendar day

BEHAVIOR_FIELDS = (
    Field("impression_id", "[0-9]{1,10}", f"not a decimal integer from 1 to {MAX_IMPRESSION_ID}"),
    Field("user_id", "U[0-9]+", "not U followed by digits"),
    Field("time", "(0?[1-9]|1[0-2])/(0?[1-9]|[12][0-9]|3[01])/[0-9]{4} (0?[1-9]|1[0-2]):[0-5][0-9]:[0-5][0-9] [AP]M",
          "not a time M/D/YYYY h:mm:ss AM|PM"),
    Field("history", " *(N[0-9]+( N[0-9]+)*)? *", "not news ids separated by single spaces"),
    Field("impressions", " *(N[0-9]+-[01]( N[0-9]+-[01])*|N[0-9]+( N[0-9]+)*) *",
          "not news ids separated by single spaces, each with -1 or -0 (labelled) or none (unlabelled)"),
)
DUPLICATE_LINE = "line: an exact copy of another line"
# Past its pattern, each field of a behaviors line also has to satisfy these (checked in this order).
TIME_NOT_A_DAY = "not a real calendar day and time"
TIME_OUT_OF_RANGE = f"year outside {YEARS[0]}-{YEARS[1]}"
NO_IMPRESSIONS = "empty"
LABELLED_IMPRESSIONS = "N[0-9]+-[01]( N[0-9]+-[01])*"  # of the impressions without the spaces around them
MIXED_LABELS = "labelled and unlabelled candidates mixed"  # the tokens match ANY_IMPRESSION_TOKENS
ANY_IMPRESSION_TOKENS = " *N[0-9]+(-[01])?( N[0-9]+(-[01])?)* *"
UNLABELLED_IN_LABELLED_SPLIT = "unlabelled in a labelled split (train, dev)"
REPEATED_CANDIDATE = "a candidate repeated"
LABELLED_SPLITS = ("train", "dev")

NEWS_FIELDS = (
    Field("news_id", "N[0-9]+", "not N followed by digits"),
    Field("category", "[A-Za-z0-9_-]+", "empty or not letters, digits, _ and -"),
    Field("subcategory", "[A-Za-z0-9_-]*", "not letters, digits, _ and -"),
    Field("title", f"{NO_CONTROL}*", "holds a control character"),
    Field("abstract", f"{NO_CONTROL}*", "holds a control character"),
    Field("url", r"(https?://[^\x00-\x20\x7f-\x9f]+)?", "neither empty nor an http(s) URL without spaces or control characters"),
    Field("title_entities", ".*", ""),  # checked by entity_list_problem
    Field("abstract_entities", ".*", ""),
)
ENTITY_FIELDS = ("title_entities", "abstract_entities")
ENTITY_KEYS = ("Label", "Type", "WikidataId", "Confidence", "OccurrenceOffsets", "SurfaceForms")
WIKIDATA_ID = "Q[0-9]+"
MAX_OFFSET = 2**31 - 1

VECTOR_DIMENSION = 100
VECTOR_IDS = {"entity": WIKIDATA_ID, "relation": "P[0-9]+"}
VECTOR_VALUE = r"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?"
VECTOR_VALUE_PROBLEM = "a value is not a decimal number finite as a 32-bit float"
VECTOR_FIELD_COUNT_PROBLEM = f"expected an id and {VECTOR_DIMENSION} values"
REPEATED_VECTOR = "line: the same id and vector as an earlier line"


INVALID_UTF8 = "line: invalid UTF-8"


def field_count_problem(expected: int, too_many: bool) -> str:
    return f"line: too {'many' if too_many else 'few'} fields (expected {expected})"


def conflicting_lines(key: str) -> str:
    """The reason for every line of a key whose lines disagree: nothing says which is right."""
    return f"{key}: conflicting lines share one {key}"


def vector_id_problem(kind: str) -> str:
    return f"id: not {VECTOR_IDS[kind][0]} followed by digits"


class _NotTheGrammar(ValueError):
    pass


def _reject_constant(token: str):
    raise _NotTheGrammar(f"{token} is not JSON")


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    if len({key for key, _ in pairs}) < len(pairs):
        raise _NotTheGrammar("a key repeated")
    return dict(pairs)


# Built once: json.loads with hooks builds a decoder per call, which costs more than the parsing.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _is_text(value: object) -> bool:
    """A JSON string that is Unicode text (JSON's \\ud800 escapes can spell a lone surrogate, which is not)."""
    return isinstance(value, str) and _SURROGATE.search(value) is None


def _entity_problem(entity: object) -> str | None:
    if not isinstance(entity, dict) or set(entity) != set(ENTITY_KEYS):
        return f"an entity is not an object of exactly {', '.join(ENTITY_KEYS)}"
    for key in ("Label", "Type", "WikidataId"):
        if not _is_text(entity[key]):
            return f"{key} is not a string"
    if not re.fullmatch(WIKIDATA_ID, entity["WikidataId"]):
        return "WikidataId is not Q followed by digits"
    confidence = entity["Confidence"]
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 <= confidence <= 1:
        return "Confidence is not a number from 0 to 1"
    offsets = entity["OccurrenceOffsets"]
    if not isinstance(offsets, list) or not all(
            isinstance(o, int) and not isinstance(o, bool) and 0 <= o <= MAX_OFFSET for o in offsets):
        return f"OccurrenceOffsets is not a list of integers from 0 to {MAX_OFFSET}"
    if not isinstance(entity["SurfaceForms"], list) or not all(_is_text(s) for s in entity["SurfaceForms"]):
        return "SurfaceForms is not a list of strings"
    return None


# The form MIND writes its entity lists in: json.dumps' separators, the keys in ENTITY_KEYS' order, no
# escape of a surrogate, a Confidence written 0.xxx or 1, offsets of at most 9 digits. A text that fully
# matches it is an entity list (it is a narrowing of the grammar, never a widening), so the readers
# parse only the texts it does not match with entity_list_problem: a Python parse is ~5 us a list.
_JSON_TEXT = r'"([^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u([0-9a-cA-Ce-fE-F][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2}))*"'
_OFFSET = "(0|[1-9][0-9]{0,8})"
_ENTITY = (rf'\{{"Label": {_JSON_TEXT}, "Type": {_JSON_TEXT}, "WikidataId": "{WIKIDATA_ID}", '
           rf'"Confidence": (0(\.[0-9]+)?|1(\.0+)?), "OccurrenceOffsets": \[({_OFFSET}(, {_OFFSET})*)?\], '
           rf'"SurfaceForms": \[({_JSON_TEXT}(, {_JSON_TEXT})*)?\]\}}')
ENTITY_LIST_COMMON_FORM = rf"\[({_ENTITY}(, {_ENTITY})*)?\]"


def entity_list_problem(text: str) -> str | None:
    """Why `text` is not an entity list (None when it is): empty, or a JSON array (RFC 8259: no NaN,
    no trailing comma, no repeated key) of objects with exactly Label (string), Type (string),
    WikidataId (Q and digits), Confidence (a number from 0 to 1), OccurrenceOffsets (integers from 0
    to 2^31-1) and SurfaceForms (strings)."""
    if text in ("", "[]"):  # a third of MIND's lists: no need to parse them
        return None
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError) as err:
        return f"not valid JSON ({err})"
    if not isinstance(value, list):
        return "not a JSON array"
    for entity in value:
        if problem := _entity_problem(entity):
            return problem
    return None
