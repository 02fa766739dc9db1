"""What commands print: the one USD formatter, tables, JSON and CSV, one-line errors."""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import IO, Any

from rich.console import Console


def usd(value: Decimal | None, places: int = 6) -> str:
    """`$1.234567`; None (no priced call) is `unpriced`, never $0."""
    if value is None:
        return "unpriced"
    q = Decimal(1).scaleb(-places)
    return f"${value.quantize(q):,}"


def plain(value: Any) -> Any:
    """A value as JSON / CSV can hold it: Decimal as a string (exact), times as ISO."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN / Infinity; ClickHouse's own JSON output writes null too
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(plain(value), ensure_ascii=False)
    return str(value)


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(plain(value), ensure_ascii=False)
    return str(plain(value))


def write_json(data: Any, out: IO[str]) -> None:
    json.dump(plain(data), out, ensure_ascii=False, indent=2, allow_nan=False)
    out.write("\n")


def write_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]], out: IO[str]) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([csv_cell(v) for v in r])


def numeric(type_name: str) -> bool:
    t = type_name.removeprefix("Nullable(").removeprefix("LowCardinality(")
    return t.startswith(("Int", "UInt", "Float", "Decimal"))


def console_for(*, markup: bool = False) -> Console:
    # piped output: wide, so tables are not squeezed to 80 columns; markup off by default:
    # values from the store (SQL results, model names) are printed verbatim
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False, soft_wrap=False, markup=markup)


def err(message: str) -> None:
    line = " ".join(str(message).split())
    if not line.startswith("tokentrail"):
        line = f"tokentrail: {line}"
    sys.stderr.write(line + "\n")
    sys.stderr.flush()

