"""Early exit in the simulator: a decode strategy that draws each decode token's exit depth from the run's
Generator (vectorised), applies the batch-synchronisation rule and KV-fill policy via EarlyExitCoster, and counts
executed depth, synchronisation loss and the energy saved against full-depth decoding."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from roofsim.hardware_specs.errors import InputError
from roofsim.model.batch import BatchShape
from roofsim.model.cost import CostModel
from roofsim.model.memory import MemoryPlan
from roofsim.model.techniques import (
    CsvExit,
    EarlyExitCoster,
    HistogramExit,
    PerTokenExit,
    SkipDecodeExit,
    exit_pmf,
)
from roofsim.simulator.strategy import CounterProgress, DecodeProgress, StrategyMaker

if TYPE_CHECKING:
    from roofsim.simulator.config import ReplicaGroup
    from roofsim.simulator.replica import Replica


def read_exit_csv(path: str | Path) -> HistogramExit:
    """Histogram of measured exit layers (first column, one integer >= 1 per row; a text header is skipped)."""
    path = Path(path)
    counts: dict[int, int] = {}
    try:
        f = path.open(newline="", encoding="utf-8")
    except OSError as e:
        raise InputError(f"{path}: cannot read exit-layer CSV: {e.strerror}") from None
    with f:
        for line, row in enumerate(csv.reader(f), start=1):
            if not row or not row[0].strip():
                continue
            cell = row[0].strip()
            try:
                layer = int(cell)
            except ValueError:
                if line == 1:
                    continue  # header
                raise InputError(f"{path}:{line}: exit layer {cell!r} is not an integer") from None
            if layer < 1:
                raise InputError(f"{path}:{line}: exit layer {layer} must be >= 1")
            counts[layer] = counts.get(layer, 0) + 1
    if not counts:
        raise InputError(f"{path}: no exit layers found")
    layers = tuple(sorted(counts))
    return HistogramExit(layers=layers, weights=tuple(float(counts[x]) for x in layers))


class EarlyExitDecoding:
    """Decode iterations at the depth the policy allows; prefill always runs every layer (its KV is needed).
    Every decoding sequence still gains one token per iteration (strategy.CounterProgress)."""

    def __init__(self, cost: CostModel, cfg: PerTokenExit | SkipDecodeExit, rng: np.random.Generator) -> None:
        self.cost = cost
        self.pp = cost.parallel.pp
        if cost.parallel.pp > 1:
            raise ValueError(f"early_exit with pp={cost.parallel.pp} is not modelled (exits leave later pipeline "
                             "stages idle, EE-LLM arXiv 2312.04916); use pp=1")
        self.cfg = cfg
        self.rng = rng
        L = self.L = cost.model.num_layers
        if isinstance(cfg, PerTokenExit):
            dist = read_exit_csv(cfg.distribution.path) if isinstance(cfg.distribution, CsvExit) else cfg.distribution
            self.pmf: np.ndarray | None = exit_pmf(dist, L)
            self.cdf = np.cumsum(self.pmf)
            self.cdf[-1] = 1.0
            exits = np.flatnonzero(self.pmf)
            self.coster = EarlyExitCoster(cost, exits, cfg.batch_sync, cfg.kv_fill, cfg.exit_head)
        else:
            if cfg.max_layers > L:
                raise ValueError(f"early_exit.max_layers={cfg.max_layers} exceeds the model's num_layers={L}")
            self.pmf = None
            # monotone depth: later tokens skip what earlier ones skipped, so no KV fill and no exit head
            self.coster = EarlyExitCoster(cost, np.empty(0), True, "copy", "classifier")
        self.tokens = 0
        self.requested = 0.0
        self.executed = 0.0
        self.s = self.j = self.full_s = self.full_j = 0.0

    def depths(self, n: int, shape: BatchShape) -> np.ndarray:
        """Requested exit depth of each of the n decode tokens."""
        cfg = self.cfg
        if isinstance(cfg, SkipDecodeExit):
            # one depth for the batch at its mean position (the batch's positions differ under continuous batching)
            return np.full(n, cfg.depth(shape.decode_ctx_tokens / shape.decode_seqs), dtype=np.int64)
        return np.searchsorted(self.cdf, self.rng.random(n), side="right")

    def progress(self, rep: Replica) -> DecodeProgress:
        return CounterProgress(rep)

    def step(self, shape: BatchShape) -> tuple[float, float]:
        if shape.decode_seqs == 0:
            return self.cost.step_seconds_energy(shape)
        n = shape.decode_tokens
        d = self.depths(n, shape)
        counts = np.bincount(d, minlength=self.L + 1)
        if isinstance(self.cfg, SkipDecodeExit):
            s, j, executed = self._skipdecode(shape, int(d[0]))
        else:
            s, j, executed = self.coster.step(shape, counts)
        fs, fj = self.cost.step_seconds_energy(shape)
        self.tokens += n
        self.requested += float(d.sum())
        self.executed += executed
        self.s += s
        self.j += j
        self.full_s += fs
        self.full_j += fj
        return s, j

    def _skipdecode(self, shape: BatchShape, depth: int) -> tuple[float, float, float]:
        lc, L = self.coster.lc, self.L
        p = shape.prefill_tokens
        n = shape.decode_tokens
        s = j = 0.0
        a, b = lc.layer(p + n), lc.layer(p)
        s += depth * a[0] + (L - depth) * b[0]
        j += depth * a[1] + (L - depth) * b[1]
        from roofsim.model.techniques import decode_only, prefill_only  # noqa: PLC0415

        if p:
            x = lc.attention(prefill_only(shape))
            s, j = s + x[0], j + x[1]
        x = lc.attention(decode_only(shape))
        s, j = s + depth / L * x[0], j + depth / L * x[1]
        fx, ox = lc.fixed(shape.tokens, shape.logit_tokens), lc.overhead(shape)
        return s + fx[0] + ox[0], j + fx[1] + ox[1], float(depth * n)

    def counters(self) -> dict[str, float]:
        return {"ee_tokens": self.tokens, "ee_layers_x_tokens": self.tokens * self.L,
                "ee_requested": self.requested, "ee_executed": self.executed, "ee_s": self.s, "ee_j": self.j,
                "ee_full_s": self.full_s, "ee_full_j": self.full_j}


def early_exit_parts(group: ReplicaGroup, cost: CostModel, plan: MemoryPlan) -> tuple[StrategyMaker, MemoryPlan]:
    """(strategy maker given the run's Generator, memory plan) of a replica group with `early_exit` set."""
    ee = group.early_exit
    assert ee is not None
    EarlyExitDecoding(cost, ee, np.random.default_rng(0))  # validate now (exit layers vs depth, pp)
    return (lambda rng: EarlyExitDecoding(cost, ee, rng)), plan


__all__ = ["EarlyExitDecoding", "early_exit_parts", "read_exit_csv"]
