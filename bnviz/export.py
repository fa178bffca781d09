"""Downloads: named columns to CSV, named arrays to NPZ. Every lesson's export is a mapping of
column names to values; how a number is written is decided here once.

CSV cells: integers as integers, other numbers to ``digits`` significant digits, NaN and
infinities (a diverged run) and None as empty cells, text as it is. NPZ files hold numeric
arrays and strings only, so loading one never runs code (``allow_pickle=False``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def cell(v: Any, digits: int = 6) -> str:
    """One CSV cell."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, bool | np.bool_):
        return "1" if v else "0"
    if isinstance(v, int | np.integer):
        return str(int(v))
    v = float(v)
    return f"{v:.{digits}g}" if math.isfinite(v) else ""


def csv_table(columns: Mapping[str, Sequence[Any]], digits: int = 6) -> str:
    """A CSV table from equal-length columns, header first."""
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns must have equal lengths; got {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    values = [list(v) for v in columns.values()]
    rows = [",".join(columns)]
    rows += [",".join(cell(col[i], digits) for col in values) for i in range(n)]
    return "\n".join(rows) + "\n"


def columns_of(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Rows (one mapping each, the same keys in the same order) as columns for ``csv_table``."""
    if not rows:
        return {}
    return {name: [row[name] for row in rows] for name in rows[0]}


def padded(values: Sequence[Any], n: int) -> list[Any]:
    """A column of length n: the values, then empty cells (a run that stopped early)."""
    out = list(values)[:n]
    return out + [None] * (n - len(out))


def npz_bytes(arrays: Mapping[str, Any]) -> bytes:
    """A compressed NPZ of named arrays (numbers and strings only)."""
    clean = {}
    for name, value in arrays.items():
        a = np.asarray(value)
        if a.dtype == object:
            raise ValueError(f"{name}: only numeric or string arrays go into an NPZ")
        clean[name] = a
    buf = io.BytesIO()
    np.savez_compressed(buf, **clean)
    return buf.getvalue()
