"""The end-to-end benchmark table (one CSV row per measured serving configuration): schema, reader and writer.

Measured cells may be blank; a bad cell becomes a problem naming line and column, never a silently dropped row.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from roofsim.hardware_specs.errors import InputError
from roofsim.hardware_specs.loading import read_csv_records
from roofsim.model.spec import MAX_MODEL_SIZE
from roofsim.simulator.clients import HARNESSES
from roofsim.simulator.limits import MAX_CLIENTS, MAX_REQUESTS

__all__ = ["BenchRow", "BenchTable", "read_bench_table", "rows_to_table", "write_bench_table", "COLUMNS",
           "DISAGG_COLUMNS", "ENGINE_LIMIT_COLUMNS", "MODES", "MODE_REQUIRED"]

MODES = ("offline", "closed_loop", "poisson", "static_batch")
# Fields a row of each mode must fill, besides the always-required identity columns.
MODE_REQUIRED: dict[str, tuple[str, ...]] = {
    "offline": ("num_requests",),
    "closed_loop": ("concurrency",),
    "poisson": ("qps", "num_requests"),
    "static_batch": ("concurrency",),  # concurrency = the static batch size
}
# Counts a row may ask the predictor to simulate: beyond them a row is a problem, not a multi-GB allocation. The
# same limits a run file has (roofsim.simulator.limits: a row's concurrency is its closed-loop clients, its
# num_requests the replay's requests); the token bound is the model layer's.
_LIMITS = {"concurrency": ("MAX_CLIENTS", MAX_CLIENTS), "num_requests": ("MAX_REQUESTS", MAX_REQUESTS),
           "isl": ("MAX_MODEL_SIZE", MAX_MODEL_SIZE), "osl": ("MAX_MODEL_SIZE", MAX_MODEL_SIZE)}
_MEASURED = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "output_tokens_per_s", "requests_per_s")


@dataclass(frozen=True, slots=True)
class BenchRow:
    """One end-to-end benchmark point. Times in ms as in the column names (tpot_ms = mean over requests of
    (e2e - ttft)/(osl - 1)); None = not measured. `notes` carries converter remarks (not a CSV column of the
    standard header, but written and read back when present)."""

    model: str
    hardware: str
    num_gpus: int
    tp: int
    pp: int
    ep: int
    weight_dtype: str
    kv_dtype: str
    framework: str
    mode: str
    isl: int
    osl: int
    concurrency: int | None = None
    qps: float | None = None
    num_requests: int | None = None
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    itl_ms: float | None = None
    e2e_ms: float | None = None
    output_tokens_per_s: float | None = None
    requests_per_s: float | None = None
    notes: str = ""
    framework_version: str = ""  # e.g. 0.10.1; picks the engine profile's version row (simulator/engines.py)
    harness: str = ""  # the benchmark client (simulator/clients.py HARNESSES: aiperf, vllm-bench, ...); "" = unknown
    # engine limits the benchmarked deployment set (None = the engine's default, docs/engines.md): the most running
    # requests (TRT-LLM max_batch_size, vLLM max_num_seqs, SGLang max_running_requests) and the most tokens of one
    # iteration (TRT-LLM max_num_tokens, vLLM max_num_batched_tokens, SGLang max_prefill_tokens); on a static_batch
    # row, a max_num_tokens below the batch's prompt tokens feeds the prompts in chunks of it (llama-bench -b)
    max_batch_size: int | None = None
    max_num_tokens: int | None = None
    # attention data-parallel ranks of a MoE replica, each tp x pp (model.spec.ParallelSpec.attn_dp); None = 1.
    # num_gpus = replicas x attn_dp x tp x pp
    attn_dp: int | None = None
    # a disaggregated deployment (docs/validation-formats.md): replicas and layout of the prefill and the decode
    # pool; blank on a colocated row. On a disaggregated row tp/pp/ep repeat the decode pool's and num_gpus counts
    # both pools.
    prefill_replicas: int | None = None
    prefill_tp: int | None = None
    prefill_pp: int | None = None
    prefill_ep: int | None = None
    decode_replicas: int | None = None
    decode_tp: int | None = None
    decode_pp: int | None = None
    decode_ep: int | None = None
    prefill_attn_dp: int | None = None  # None = 1
    decode_attn_dp: int | None = None
    # the engine limits of each pool's workers (optional; None = the row's max_batch_size/max_num_tokens, else the
    # engine's default): an attention-DP worker's running limit counts every attention rank's batch
    prefill_max_batch_size: int | None = None
    prefill_max_num_tokens: int | None = None
    decode_max_batch_size: int | None = None
    decode_max_num_tokens: int | None = None

    @property
    def disaggregated(self) -> bool:
        return self.prefill_replicas is not None

    def pool_gpus(self, pool: str) -> int:
        """GPUs of the `pool` ("prefill" or "decode") of a disaggregated row."""
        return int(getattr(self, f"{pool}_replicas")) * int(getattr(self, f"{pool}_tp")) * int(
            getattr(self, f"{pool}_pp")) * (getattr(self, f"{pool}_attn_dp") or 1)


DISAGG_COLUMNS = tuple(f"{pool}_{k}" for pool in ("prefill", "decode") for k in ("replicas", "tp", "pp", "ep"))
# read when present; notes always written, a version or a harness when any row has one, the pool columns when a
# row is disaggregated
ENGINE_LIMIT_COLUMNS = ("max_batch_size", "max_num_tokens")
POOL_LIMIT_COLUMNS = tuple(f"{pool}_{c}" for pool in ("prefill", "decode") for c in ENGINE_LIMIT_COLUMNS)
ATTN_DP_COLUMNS = ("attn_dp", "prefill_attn_dp", "decode_attn_dp")  # written when a row has one
OPTIONAL_COLUMNS = ("notes", "framework_version", "harness", *ENGINE_LIMIT_COLUMNS, *DISAGG_COLUMNS,
                    *POOL_LIMIT_COLUMNS, *ATTN_DP_COLUMNS)


def written_columns(rows: Sequence[BenchRow]) -> tuple[str, ...]:
    """The columns a table of these rows is written with: framework_version, harness and the engine limits only
    when a row has one, the pool columns only when a row is disaggregated."""
    return (*COLUMNS, "notes", *(c for c in ("framework_version", "harness", *ENGINE_LIMIT_COLUMNS)
                                 if any(getattr(r, c) for r in rows)),
            *(DISAGG_COLUMNS if any(r.disaggregated for r in rows) else ()),
            *(c for c in (*POOL_LIMIT_COLUMNS, *ATTN_DP_COLUMNS) if any(getattr(r, c) for r in rows)))
COLUMNS = tuple(f.name for f in fields(BenchRow) if f.name not in OPTIONAL_COLUMNS)
_REQUIRED = ("model", "hardware", "num_gpus", "tp", "pp", "ep", "weight_dtype", "kv_dtype", "framework", "mode",
             "isl", "osl")
_INT = {"num_gpus", "tp", "pp", "ep", "isl", "osl", "concurrency", "num_requests", *ENGINE_LIMIT_COLUMNS,
        *DISAGG_COLUMNS, *POOL_LIMIT_COLUMNS, *ATTN_DP_COLUMNS}
_FLOAT = {"qps", *_MEASURED}
_STR = {"model", "hardware", "weight_dtype", "kv_dtype", "framework", "mode", "notes", "framework_version", "harness"}


@dataclass(frozen=True, slots=True)
class BenchTable:
    rows: tuple[BenchRow, ...]
    problems: tuple[str, ...]


class _CellError(Exception):
    pass


def _cell(col: str, raw: str):
    v = raw.strip()
    if v == "":
        if col in _REQUIRED:
            raise _CellError(f"column {col!r} is empty (required)")
        return "" if col in _STR else None
    if col in _STR:
        if col == "mode" and v not in MODES:
            raise _CellError(f"column 'mode'={v!r} is not one of {list(MODES)}")
        if col == "harness" and v not in HARNESSES:
            raise _CellError(f"column 'harness'={v!r} is not one of {list(HARNESSES)}")
        return v
    try:
        x = float(v)
    except ValueError:
        raise _CellError(f"column {col!r}={v!r} is not a number") from None
    if col == "qps" and math.isinf(x) and x > 0:
        return x  # qps=inf: every request sent at t=0
    if not math.isfinite(x) or x < 0:
        raise _CellError(f"column {col!r}={v!r} must be a finite non-negative number")
    if col in _INT:
        if x != int(x):
            raise _CellError(f"column {col!r}={v!r} is not an integer")
        if col in ("num_gpus", "tp", "pp", "ep", "osl", "isl", *ENGINE_LIMIT_COLUMNS, *DISAGG_COLUMNS,
                   *POOL_LIMIT_COLUMNS, *ATTN_DP_COLUMNS) and x < 1:
            raise _CellError(f"column {col!r}={v!r} must be >= 1")
        if col in _LIMITS and x > _LIMITS[col][1]:
            raise _CellError(f"column {col!r}={v!r} is over {_LIMITS[col][0]}={_LIMITS[col][1]:,}")
        return int(x)
    return x


def _check_row(row: BenchRow) -> None:
    for f in MODE_REQUIRED[row.mode]:
        if getattr(row, f) is None:
            raise _CellError(f"mode {row.mode!r} needs column {f!r}")
    if row.tp * row.pp * (row.attn_dp or 1) > row.num_gpus:
        raise _CellError(f"attn_dp*tp*pp={row.tp * row.pp * (row.attn_dp or 1)} exceeds num_gpus={row.num_gpus}")
    given = [c for c in DISAGG_COLUMNS if getattr(row, c) is not None]
    if given and len(given) < len(DISAGG_COLUMNS):
        missing = [c for c in DISAGG_COLUMNS if c not in given]
        raise _CellError(f"a disaggregated row needs every pool column; {missing} blank")
    if given:
        gpus = row.pool_gpus("prefill") + row.pool_gpus("decode")
        if gpus != row.num_gpus:
            raise _CellError(f"num_gpus={row.num_gpus} differs from the pools' prefill_replicas*prefill_tp*"
                             f"prefill_pp*prefill_attn_dp + decode_replicas*decode_tp*decode_pp*decode_attn_dp "
                             f"= {gpus}")
        if (row.tp, row.pp, row.ep, row.attn_dp or 1) != (row.decode_tp, row.decode_pp, row.decode_ep,
                                                          row.decode_attn_dp or 1):
            raise _CellError(f"tp/pp/ep/attn_dp={row.tp}/{row.pp}/{row.ep}/{row.attn_dp or 1} of a disaggregated "
                             f"row must repeat the decode pool's {row.decode_tp}/{row.decode_pp}/{row.decode_ep}/"
                             f"{row.decode_attn_dp or 1}")


def read_bench_table(path: Path | str) -> BenchTable:
    """Read a benchmark table CSV (pool columns: a disaggregated deployment, docs/validation-formats.md). Missing required column -> InputError naming it; a bad cell -> a problem
    "<file> line N: column 'x' ...". Line numbers count the header as line 1."""
    path = Path(path)
    header, records = read_csv_records(path, what="benchmark table")
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path} line 1: missing required column(s) {missing}")
    unknown = [c for c in header if c not in COLUMNS and c not in OPTIONAL_COLUMNS]
    if unknown:
        raise InputError(f"{path} line 1: unknown column(s) {unknown}; known: {list(COLUMNS)} (+ optional "
                         f"{', '.join(OPTIONAL_COLUMNS)})")

    def make_row(r: dict[str, str]) -> BenchRow:
        row = BenchRow(**{c: _cell(c, r[c]) for c in header})
        _check_row(row)
        return row

    return rows_to_table(path, records, make_row, _CellError)


def rows_to_table(path: Path, records: Iterable[tuple[int, dict]], make_row: Callable[[dict], BenchRow],
                  row_error: type[Exception]) -> BenchTable:
    """The BenchTable of CSV records: a ragged row or a row whose make_row raises `row_error` becomes a problem
    naming file and line; a table with no data rows gets one problem saying nothing was read."""
    rows: list[BenchRow] = []
    problems: list[str] = []
    for ln, r in records:
        if None in r or any(v is None for v in r.values()):
            problems.append(f"{path} line {ln}: number of cells differs from the header")
            continue
        try:
            rows.append(make_row(r))
        except row_error as e:
            problems.append(f"{path} line {ln}: {e}")
    if not rows and not problems:
        problems.append(f"{path}: no rows: the table has a header but no data (nothing read)")
    return BenchTable(tuple(rows), tuple(problems))


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "inf" if math.isinf(v) else repr(v)
    return str(v)


def write_bench_table(rows: Iterable[BenchRow], path: Path | str) -> Path:
    """Write rows as a benchmark table CSV (standard columns + notes [+ framework_version]); returns the path."""
    path = Path(path)
    rows = list(rows)
    cols = written_columns(rows)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for row in rows:
            w.writerow([_fmt(getattr(row, c)) for c in cols])
    return path
