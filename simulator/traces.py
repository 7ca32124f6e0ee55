"""Readers for request-trace files (Azure 2023/2024, Vidur processed, Mooncake, BurstGPT, generic CSV/JSONL)
into a `Trace`; a malformed row raises InputError naming the file, the 1-based line and the field."""

from __future__ import annotations

import csv
import datetime as dt
import logging
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from roofsim.hardware_specs.errors import InputError, UnknownNameError
from roofsim.hardware_specs.loading import MAX_ROWS, open_text_lines, parse_json_text
from roofsim.simulator.workload import MAX_TOKENS, Trace

logger = logging.getLogger(__name__)

FORMATS = ("azure", "vidur", "mooncake", "burstgpt", "csv", "jsonl")

# Column names of each format: (arrival, input tokens, output tokens, optional hash ids).
_COLUMNS: dict[str, tuple[str, str, str, str | None]] = {
    "azure": ("TIMESTAMP", "ContextTokens", "GeneratedTokens", None),
    "vidur": ("arrived_at", "num_prefill_tokens", "num_decode_tokens", None),
    "mooncake": ("timestamp", "input_length", "output_length", "hash_ids"),
    "burstgpt": ("Timestamp", "Request tokens", "Response tokens", None),
    "csv": ("arrival_s", "input_tokens", "output_tokens", "hash_ids"),
    "jsonl": ("arrival_s", "input_tokens", "output_tokens", "hash_ids"),
}
# Formats whose times are wall-clock or log offsets: re-based so the first request arrives at t=0.
_REBASE = {"azure", "burstgpt"}
_CSV_FORMATS = {"azure", "vidur", "burstgpt", "csv"}

_TS_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$")
_EPOCH = dt.datetime(1970, 1, 1)


class _Rows:
    """Accumulates parsed rows and remembers each one's line number for later messages."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.fmt = path, fmt
        self.whole_s: list[int] = []  # integer part of the time: keeps microseconds exact on wall clocks
        self.frac_s: list[float] = []
        self.inp: list[int] = []
        self.out: list[int] = []
        self.hashes: list[tuple[int, ...] | None] = []
        self.lines: list[int] = []

    def fail(self, line: int, field: str | None, msg: str) -> InputError:
        where = f"{self.path.name}:{line}" + (f": field {field!r}" if field else "")
        return InputError(f"{where}: {msg} (file {self.path})")


# Largest arrival time accepted (keeps whole seconds inside int64 and is far beyond any real trace).
MAX_ARRIVAL_S = 1e12


def _parse_float(rows: _Rows, line: int, field: str, value: Any) -> float:
    if isinstance(value, bool) or value is None:
        raise rows.fail(line, field, f"{value!r} is not a number")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise rows.fail(line, field, f"{value!r} is not a number") from None
    if not math.isfinite(x):
        raise rows.fail(line, field, f"{value!r} is not a finite number")
    return x


def _parse_tokens(rows: _Rows, line: int, field: str, value: Any, allow_zero: bool = False) -> int:
    n: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str):
        try:
            n = int(value.strip())
        except ValueError:
            n = None
    if n is None:
        x = _parse_float(rows, line, field, value)
        if not x.is_integer():
            raise rows.fail(line, field, f"{value!r} is not a whole number of tokens")
        n = int(x)
    lowest = 0 if allow_zero else 1
    if not lowest <= n <= MAX_TOKENS:
        raise rows.fail(line, field, f"{value!r} tokens must be in [{lowest}, {MAX_TOKENS}]")
    return n


def _parse_hashes(rows: _Rows, line: int, field: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, str):  # CSV cell: space-separated integers, may be empty
        parts = value.split()
    elif isinstance(value, list):
        parts = value
    else:
        raise rows.fail(line, field, f"{value!r} is not a list of integers")
    out = []
    for p in parts:
        if isinstance(p, bool) or not isinstance(p, int | str):
            raise rows.fail(line, field, f"{p!r} is not an integer hash id")
        try:
            out.append(int(p))
        except ValueError:
            raise rows.fail(line, field, f"{p!r} is not an integer hash id") from None
    return tuple(out)


def _parse_wallclock(rows: _Rows, line: int, field: str, value: Any) -> tuple[int, float]:
    m = _TS_RE.match(value.strip()) if isinstance(value, str) else None
    if m is None:
        raise rows.fail(line, field, f"{value!r} is not a timestamp like 2023-11-16 18:15:46.6805900")
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        whole = int((dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s)) - _EPOCH).total_seconds())
    except ValueError as e:
        raise rows.fail(line, field, f"{value!r}: {e}") from None
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        whole -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return whole, (int(frac) / 10 ** len(frac) if frac else 0.0)


def _add_row(rows: _Rows, line: int, get: Callable[[str], Any]) -> None:
    t_col, i_col, o_col, h_col = _COLUMNS[rows.fmt]
    if rows.fmt == "azure":
        whole, frac = _parse_wallclock(rows, line, t_col, get(t_col))
    else:
        t = _parse_float(rows, line, t_col, get(t_col))
        if rows.fmt == "mooncake":
            t /= 1000.0  # Mooncake timestamps are milliseconds (Mooncake FAST25 README)
        if rows.fmt not in _REBASE and t < 0:
            raise rows.fail(line, t_col, f"{t!r} s is negative")
        if abs(t) > MAX_ARRIVAL_S:
            raise rows.fail(line, t_col, f"{t!r} s is beyond {MAX_ARRIVAL_S:g} s (about 31,700 years)")
        whole, frac = math.floor(t), t - math.floor(t)
    rows.whole_s.append(whole)
    rows.frac_s.append(frac)
    rows.inp.append(_parse_tokens(rows, line, i_col, get(i_col)))
    # 0 output tokens = a failed request (BurstGPT logs them); decided in _finish, never dropped silently.
    rows.out.append(_parse_tokens(rows, line, o_col, get(o_col), allow_zero=True))
    if h_col is not None:
        value = get(h_col)
        if value is None and rows.fmt == "mooncake":
            raise rows.fail(line, h_col, "missing")
        rows.hashes.append(None if value is None else _parse_hashes(rows, line, h_col, value))
    rows.lines.append(line)
    if len(rows.lines) > MAX_ROWS:
        raise rows.fail(line, None, f"more than MAX_ROWS={MAX_ROWS:,} requests; split the trace")


def _read_csv(rows: _Rows, text_lines: Iterator[str]) -> None:
    reader = csv.reader(text_lines)
    header: list[str] | None = None
    required = [c for c in _COLUMNS[rows.fmt] if c is not None]
    index: dict[str, int] = {}
    try:
        for cells in reader:
            line = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue  # a blank line is not a row
            if header is None:
                header = [c.strip() for c in cells]
                dup = sorted({c for c in header if header.count(c) > 1})
                if dup:
                    raise rows.fail(line, None, f"header repeats column(s) {dup}; each column must appear once")
                index = {name: i for i, name in enumerate(header)}
                optional = _COLUMNS[rows.fmt][3] if rows.fmt == "csv" else None
                missing = [c for c in required if c not in index and c != optional]
                if missing:
                    raise rows.fail(line, None, f"header lacks column(s) {missing} of the {rows.fmt} "
                                    f"format (columns {required}); header is {header}")
                continue
            if len(cells) != len(header):
                raise rows.fail(line, None, f"row has {len(cells)} cells, the header has {len(header)}")

            def get(col: str, cells: list[str] = cells, index: dict[str, int] = index) -> Any:
                return cells[index[col]] if col in index else None

            _add_row(rows, line, get)
    except csv.Error as e:
        raise rows.fail(reader.line_num, None, f"not valid CSV: {e}") from None
    if header is None:
        raise rows.fail(1, None, "the file is empty (no header)")


def _read_jsonl(rows: _Rows, text_lines: Iterator[str]) -> None:
    for line, text in enumerate(text_lines, start=1):
        if not text.strip():
            continue
        try:
            record = parse_json_text(text, f"{rows.path.name}:{line}")
        except InputError as e:
            raise InputError(f"{e} (file {rows.path})") from None
        if not isinstance(record, dict):
            raise rows.fail(line, None, f"expected a JSON object, got {type(record).__name__}")
        for col in _COLUMNS[rows.fmt][:3]:
            if col not in record:
                raise rows.fail(line, col, f"missing (keys are {sorted(record)})")
        _add_row(rows, line, record.get)


def _finish(rows: _Rows, drop_failed: bool, sort: bool) -> Trace:
    name = rows.path.name
    o_col = _COLUMNS[rows.fmt][2]
    t_col = _COLUMNS[rows.fmt][0]
    whole = np.asarray(rows.whole_s, dtype=np.int64)
    frac = np.asarray(rows.frac_s, dtype=np.float64)
    inp = np.asarray(rows.inp, dtype=np.int64)
    out = np.asarray(rows.out, dtype=np.int64)
    lines = np.asarray(rows.lines, dtype=np.int64)
    hashes: list[tuple[int, ...]] | None = None
    if any(h is not None for h in rows.hashes):
        gap = next((i for i, h in enumerate(rows.hashes) if h is None), None)
        if gap is not None:
            raise rows.fail(int(lines[gap]), _COLUMNS[rows.fmt][3], "missing while other rows have it")
        hashes = rows.hashes  # type: ignore[assignment]

    if not out.size:
        raise rows.fail(1, None, "no requests: the file has a header (or nothing) but no rows")
    failed = np.flatnonzero(out == 0)
    if failed.size:
        if not drop_failed:
            raise rows.fail(int(lines[failed[0]]), o_col,
                            f"0 output tokens (a failed request); the file has {failed.size} such rows. "
                            "Pass drop_failed=True to drop them with a warning")
        logger.warning("%s: dropped %d failed request(s) with 0 %r (drop_failed=True), kept %d",
                       name, failed.size, o_col, out.size - failed.size)
        keep = out > 0
        whole, frac, inp, out, lines = whole[keep], frac[keep], inp[keep], out[keep], lines[keep]
        if hashes is not None:
            hashes = [h for h, k in zip(hashes, keep, strict=True) if k]

    if rows.fmt in _REBASE:
        base = int(whole.min()) if whole.size else 0
        arrival = (whole - base).astype(np.float64) + frac
    else:
        arrival = whole.astype(np.float64) + frac
    back = np.flatnonzero(np.diff(arrival) < 0)
    if back.size:
        if not sort:
            i = int(back[0]) + 1
            raise rows.fail(int(lines[i]), t_col, f"time goes backwards (earlier than line {int(lines[i - 1])}); "
                            f"{back.size} such row(s). Pass sort=True to sort by arrival with a warning")
        logger.warning("%s: %d row(s) out of time order; sorted by arrival (sort=True)", name, back.size)
        order = np.argsort(arrival, kind="stable")
        arrival, inp, out = arrival[order], inp[order], out[order]
        if hashes is not None:
            hashes = [hashes[int(i)] for i in order]
    if rows.fmt in _REBASE and arrival.size:
        arrival = arrival - arrival[0]
    return Trace(arrival, inp, out, tuple(hashes) if hashes is not None else None, name)


def detect_format(path: str | Path) -> str:
    """The trace format of a file, from its header (CSV) or its first record's keys (JSONL)."""
    path = Path(path)
    with open_text_lines(path, what="trace") as lines:
        first = next((ln for ln in lines if ln.strip()), "")
    if first.lstrip().startswith("{"):
        try:
            record = parse_json_text(first, f"{path.name}:1")
        except InputError as e:
            raise InputError(f"{e} (file {path})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path.name}:1: expected a JSON object, got {type(record).__name__} (file {path})")
        keys = set(record)
        for fmt in ("mooncake", "jsonl"):
            if set(_COLUMNS[fmt][:3]) <= keys:
                return fmt
        raise InputError(f"{path.name}:1: cannot tell the trace format from keys {sorted(keys)}; known JSONL "
                         f"keys: mooncake {_COLUMNS['mooncake'][:3]}, jsonl {_COLUMNS['jsonl'][:3]} (file {path})")
    try:
        header = {c.strip() for c in next(csv.reader([first]), [])}
    except csv.Error as e:
        raise InputError(f"{path.name}:1: not valid CSV: {e} (file {path})") from None
    for fmt in ("azure", "vidur", "burstgpt", "csv"):
        if set(_COLUMNS[fmt][:3]) <= header:
            return fmt
    known = "; ".join(f"{fmt}: {list(_COLUMNS[fmt][:3])}" for fmt in ("azure", "vidur", "burstgpt", "csv"))
    raise InputError(f"{path.name}:1: cannot tell the trace format from header {sorted(header)}; known CSV "
                     f"headers: {known} (file {path})")


def read_trace(path: str | Path, format: str = "auto", *, drop_failed: bool = False, sort: bool = False) -> Trace:
    """Read a trace file into a Trace (see docs/workloads.md for every format's columns).

    Rows with 0 output tokens are failed requests: InputError unless `drop_failed` (then dropped with a
    warning giving the count). Rows out of time order: InputError unless `sort` (then stably sorted with
    a warning). Azure and BurstGPT times are re-based so the first request arrives at t=0.
    """
    path = Path(path)
    if format == "auto":
        format = detect_format(path)
    if format not in FORMATS:
        raise UnknownNameError("trace format", format, (*FORMATS, "auto"))
    rows = _Rows(path, format)
    with open_text_lines(path, what="trace") as lines:
        if format in _CSV_FORMATS:
            _read_csv(rows, lines)
        else:
            _read_jsonl(rows, lines)
    trace = _finish(rows, drop_failed, sort)
    logger.debug("read %d requests from %s (%s)", len(trace), path, format)
    return trace


__all__ = ["FORMATS", "detect_format", "read_trace"]
