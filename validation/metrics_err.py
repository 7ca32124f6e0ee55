"""Error statistics of predicted vs measured times: n, median/mean/P90 absolute % error and signed bias, by group.

Percentage error = 100 (predicted - measured) / measured, so a positive bias means roofsim predicts too slow.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from roofsim.validation.kernel_tables import KernelMeasurement

__all__ = ["ErrorStats", "error_stats", "grouped_stats", "group_key", "dtype_label", "summarize"]


@dataclass(frozen=True, slots=True)
class ErrorStats:
    n: int
    median_abs_pct_err: float
    mape: float  # mean absolute percentage error
    p90_abs_pct_err: float
    bias_pct: float  # median signed percentage error

    def as_dict(self) -> dict[str, float | int]:
        return {"n": self.n, "median_abs_pct_err": self.median_abs_pct_err, "mape": self.mape,
                "p90_abs_pct_err": self.p90_abs_pct_err, "bias_pct": self.bias_pct}


def error_stats(predicted: Sequence[float] | np.ndarray, measured: Sequence[float] | np.ndarray) -> ErrorStats:
    """Statistics of the signed % errors; P90 uses numpy's linear interpolation between order statistics."""
    p = np.asarray(predicted, dtype=float)
    m = np.asarray(measured, dtype=float)
    if p.shape != m.shape:
        raise ValueError(f"predicted has shape {p.shape} but measured has {m.shape}")
    if p.size == 0:
        raise ValueError("error_stats needs at least one (predicted, measured) pair")
    if np.any(m <= 0) or not np.all(np.isfinite(m)):
        raise ValueError("measured times must be positive and finite")
    if not np.all(np.isfinite(p)):
        raise ValueError("predicted times must be finite")
    e = 100.0 * (p - m) / m
    a = np.abs(e)
    return ErrorStats(n=int(e.size), median_abs_pct_err=float(np.median(a)), mape=float(np.mean(a)),
                      p90_abs_pct_err=float(np.percentile(a, 90)), bias_pct=float(np.median(e)))


_RAW_DTYPE = re.compile(r"(?:gemm_dtype|attn_dtype|quant_type|moe_dtype)=([A-Za-z0-9_]+)")
_KEEP_RAW = {"fp8_block", "int8_wo", "int4_wo", "sq", "w4a16_mxfp4", "nvfp4", "mxfp4", "w4afp8", "w4a8_mxfp4_mxfp8"}


def dtype_label(row: KernelMeasurement) -> str:
    """The row's dtype, keeping recipe spellings that matter for speed (fp8_block, int8_wo, int4_wo, sq)."""
    m = _RAW_DTYPE.search(row.variant)
    if m and m.group(1) in _KEEP_RAW:
        return m.group(1)
    return row.dtype or "-"


def group_key(row: KernelMeasurement) -> str:
    """'op/dtype/framework' ('op/dtype' when the table names no framework)."""
    parts = [row.op, dtype_label(row)]
    if row.framework:
        parts.append(row.framework)
    return "/".join(parts)


def grouped_stats(rows: Sequence[KernelMeasurement], predicted: np.ndarray, measured: np.ndarray | None = None,
                  key=group_key) -> dict[str, ErrorStats]:
    """ErrorStats per key(row), keys sorted."""
    if measured is None:
        measured = np.array([r.measured_s for r in rows], dtype=float)
    keys = np.array([key(r) for r in rows], dtype=object)
    out: dict[str, ErrorStats] = {}
    for k in sorted(set(keys.tolist())):
        sel = keys == k
        out[k] = error_stats(predicted[sel], measured[sel])
    return out


def summarize(rows: Sequence[KernelMeasurement], predicted: np.ndarray, measured: np.ndarray | None = None
              ) -> dict:
    """JSON-ready {"by_op": {group_key: stats}, "by_hardware": {hardware: {group_key: stats}}, "overall": stats}
    (overall is null when no row was predicted)."""
    if measured is None:
        measured = np.array([r.measured_s for r in rows], dtype=float)
    by_hw: dict[str, dict] = {}
    hws = np.array([r.hardware for r in rows], dtype=object)
    for hw in sorted(set(hws.tolist())):
        sel = np.flatnonzero(hws == hw)
        sub = [rows[int(i)] for i in sel]
        by_hw[hw] = {k: v.as_dict() for k, v in grouped_stats(sub, predicted[sel], measured[sel]).items()}
    return {
        "by_op": {k: v.as_dict() for k, v in grouped_stats(rows, predicted, measured).items()} if len(rows) else {},
        "by_hardware": by_hw,
        "overall": error_stats(predicted, measured).as_dict() if len(rows) else None,
    }
