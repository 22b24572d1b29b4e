import math

import polars as pl


def _close(a, b, tol: float) -> bool:
    """Equal values of the same Python type (an int is not a float, a bool not an int), floats to `tol`."""
    if a is not None and b is not None and type(a) is not type(b):
        return False
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is None and b is None
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    return a == b


def assert_rows_match(actual: pl.DataFrame, expected: list[dict], key: list[str], tol: float = 1e-6) -> None:
    """Every expected row is in `actual` (matched on `key`), column by column, each value of the reference's
    type; floats to `tol`."""
    assert actual.height == len(expected), f"{actual.height} rows, reference has {len(expected)}"
    by_key = {tuple(row[k] for k in key): row for row in actual.to_dicts()}
    assert len(by_key) == actual.height, "duplicate keys in the fast output"
    for want in expected:
        got = by_key[tuple(want[k] for k in key)]
        for column, value in want.items():
            assert _close(got[column], value, tol), (
                f"row {tuple(want[k] for k in key)} column {column}: got {got[column]!r}, reference {value!r}"
            )


def assert_same_rows(want: pl.DataFrame, got: pl.DataFrame, name: str, tol: float = 1e-6) -> None:
    """The same columns of the same types and the same values, floats (and lists of floats) within the
    docs' `tol` with the same nulls: a text embedded in another batch differs in the last bits of its
    vector, and so do the cosines computed from it (docs/features.md). Rows in the same order."""
    assert got.height == want.height, f"{name}: {got.height} rows, expected {want.height}"
    assert got.schema == want.schema, f"{name}: {got.schema} against {want.schema}"
    differing = []
    for column, type_ in want.schema.items():
        a, b = got.get_column(column), want.get_column(column)
        if type_.is_float() or (isinstance(type_, pl.List) and type_.inner.is_float()):
            a, b = (a.explode(), b.explode()) if isinstance(type_, pl.List) else (a, b)
            gap = (a - b).abs().max()
            if not (a.is_null().equals(b.is_null()) and (gap is None or gap <= tol)):
                differing.append(f"{column} (largest gap {gap})")
        elif not a.equals(b):
            differing.append(column)
    assert not differing, f"{name}: {', '.join(differing)}"
