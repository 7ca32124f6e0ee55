"""Ensembles: one simulation replayed by M members whose kernel times are perturbed by correlated draws from the
kernel error models (model.uncertainty), run in parallel, summarised as a median and intervals per metric.

A member draws one probability per kernel family/dtype of each error model and keeps it for every step of the run
(the same GPU is consistently fast or slow on a family); its perturbed Calibration (`time_scale`) is built once.
Members differ only in those multipliers, so a plain-decoding member costs a step as the dot product of the step's
unscaled per-error-group times (CostModel.step_parts, memoised per process and shared by every member a worker runs)
with its multipliers (MemberDecoding). Members replay one workload built once, with the generator state a plain run
has after building it, so a member without perturbation is the plain run, bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from roofsim.model.batch import BatchShape
from roofsim.model.cost import CostModel
from roofsim.model.uncertainty import (
    ANY,
    E2E_INPUTS,
    E2E_KERNEL_LEVEL,
    E2ETerm,
    ErrorModel,
    e2e_features,
    metric_family,
    parent_keys,
)
from roofsim.simulator.config import SimConfig
from roofsim.simulator.planning.executors import Executor, SerialExecutor
from roofsim.simulator.run import simulate
from roofsim.simulator.strategy import DecodeStrategy, PlainDecoding
from roofsim.simulator.workload import (
    ClosedLoopArrivals,
    Trace,
    TraceWorkload,
    build_trace,
    mean_rate_per_s,
    resolve_workload,
)

__all__ = ["DEFAULT_LEVELS", "ENSEMBLE_METRICS", "EnsembleResult", "MemberDecoding", "clear_shared_parts",
           "member_seeds", "member_configs", "member_strategy", "run_ensemble", "quantile_interval", "parse_levels",
           "run_inputs"]

DEFAULT_LEVELS: tuple[float, ...] = (0.8, 0.9)
# Summary entries an ensemble reports: "a.b" = summary[a][b]
ENSEMBLE_METRICS: tuple[str, ...] = (
    *(f"{m}.{s}" for m in ("ttft_s", "tpot_s", "itl_s", "e2e_s") for s in ("mean", "p50", "p90", "p99")),
    "output_tokens_per_s", "requests_per_s", "goodput_requests_per_s", "slo_attainment", "cost_usd",
    "cost_per_million_output_tokens_usd", "energy_j", "energy_per_output_token_j",
)
# second word of the SeedSequence entropy: the ensemble's draws never coincide with the run's own generator
_ENSEMBLE_STREAM = 0x656E73


def parse_levels(text: str) -> tuple[float, ...]:
    """'80,90' (percent) -> (0.8, 0.9); ValueError unless every level is in (0, 100)."""
    try:
        out = tuple(float(x) / 100.0 for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--interval {text!r} must be comma-separated percentages, e.g. 80,90") from None
    if not out or not all(0 < q < 1 for q in out):
        raise ValueError(f"--interval {text!r}: every level must be a percentage strictly between 0 and 100")
    return tuple(sorted(set(out)))


def member_seeds(seed: int, members: int) -> list[np.random.SeedSequence]:
    """One SeedSequence per member, spawned from (seed, ensemble stream): the same seed gives the same draws."""
    if members < 1:
        raise ValueError(f"members={members} must be >= 1")
    return np.random.SeedSequence([seed, _ENSEMBLE_STREAM]).spawn(members)


def member_configs(config: SimConfig, error_models: Sequence[ErrorModel | None], members: int,
                   seed: int | None = None) -> list[SimConfig]:
    """`members` copies of `config` whose replica group i runs on its calibration with the time_scale of one draw
    from error_models[i] (None: unperturbed). Groups with equal error models share the member's draw (the same
    GPU is slow on a family in every group it serves). Every group needs a calibration (resolve it first)."""
    if len(error_models) != len(config.replicas):
        raise ValueError(f"{len(error_models)} error models for {len(config.replicas)} replica groups")
    missing = [i for i, g in enumerate(config.replicas) if g.calibration is None]
    if missing:
        raise ValueError(f"replica group(s) {missing} have no calibration: resolve them before the ensemble "
                         "(validation.profiles.resolve_config_calibrations)")
    out = []
    for ss in member_seeds(config.seed if seed is None else seed, members):
        rng = np.random.default_rng(ss)
        drawn: dict[ErrorModel, tuple[tuple[str, float], ...]] = {}
        groups = []
        for g, em in zip(config.replicas, error_models, strict=True):
            if em is None:
                groups.append(g)
                continue
            if em not in drawn:
                drawn[em] = em.sample_member(rng)
            cal = g.calibration.model_copy(update={"time_scale": drawn[em]})  # type: ignore[union-attr]
            groups.append(g.model_copy(update={"calibration": cal}))
        out.append(config.model_copy(update={"replicas": tuple(groups)}))
    return out


# One BatchShape's entry in the memo: the error-group keys of its parts (one interned tuple per distinct key
# sequence, so a member finds its multipliers for them with one look-up), their unscaled seconds and joules, the
# overhead seconds and the joules of the GPUs idling through it.
_Entry = tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...], float, float]


# A BatchShape's fields as one tuple, in C: the memo's key (hashing and comparing it skips BatchShape's generated
# Python __hash__ and __eq__ on every step of every member)
_SHAPE_KEY = operator.attrgetter(*(f.name for f in dataclasses.fields(BatchShape)))


class _SharedParts:
    """The step parts of one unscaled CostModel per BatchShape, and the interned key sequences of its parts."""

    __slots__ = ("base", "memo", "keys")

    def __init__(self, base: CostModel) -> None:
        self.base = base
        self.memo: dict[tuple[Any, ...], _Entry] = {}  # key: _SHAPE_KEY(shape)
        self.keys: dict[tuple[str, ...], tuple[str, ...]] = {}

    def compute(self, shape: BatchShape, key: tuple[Any, ...]) -> _Entry:
        """The memo's entry of `shape`, whose _SHAPE_KEY is `key` (computed and stored; the memo is cleared past
        _PARTS_MAX shapes)."""
        if len(self.memo) >= _PARTS_MAX:
            self.memo.clear()
        parts, overhead = self.base.step_parts(shape)
        keys, secs, joules = zip(*parts, strict=True) if parts else ((), (), ())
        keys = self.keys.setdefault(keys, keys)
        e = self.memo[key] = (keys, secs, joules, overhead, self.base.idle_energy_j(overhead))
        return e


# Per process: unscaled CostModel -> its step parts per BatchShape, shared by the members a worker runs (members
# of one ensemble revisit each other's shapes: about half of a member's distinct shapes occur in another member's
# run, Llama-3.1-8B on H100, 2,000 conversation requests). Bounded: cleared when it grows past _PARTS_MAX shapes.
_PARTS: dict[tuple[Any, ...], _SharedParts] = {}
_PARTS_MAX = 600_000


class MemberDecoding(PlainDecoding):
    """Plain decoding of an ensemble member: a step's seconds and joules are sum(multiplier(group) x the step's
    unscaled part of the group) + overhead, from the per-process memo of CostModel.step_parts. Equals the member
    CostModel's scaled step_seconds_energy to rounding (tested); the member's own cost model still costs
    everything else (vision encoder, pipeline stages)."""

    def __init__(self, cost: CostModel) -> None:
        super().__init__(cost)
        cal = cost.calibration
        key = (cost.model, cost.hardware, cost.quant, cost.parallel, cal.model_copy(update={"time_scale": ()}),
               cost.attn_backend)
        if key not in _PARTS:
            _PARTS[key] = _SharedParts(CostModel(*key))
        self._shared = _PARTS[key]
        self._memo = self._shared.memo
        self._table = dict(cal.time_scale)
        # this member's multipliers per interned key sequence of the memo (computed once per sequence)
        self._factors: dict[tuple[str, ...], tuple[float, ...]] = {}

    def _factor(self, key: str) -> float:
        """model.cost.time_factor's multiplier of group `key`: its own, the nearest pooled parent's, else 1."""
        return next((self._table[p] for p in parent_keys(key) if p in self._table), 1.0)

    def step(self, shape: BatchShape) -> tuple[float, float]:
        key = _SHAPE_KEY(shape)
        e = self._memo.get(key)
        if e is None:
            e = self._shared.compute(shape, key)
        keys, secs, joules_parts, overhead, idle_j = e
        fs = self._factors.get(keys)
        if fs is None:
            fs = self._factors[keys] = tuple(self._factor(k) for k in keys)
        # the same products, summed in the same order, as one loop over (key, s, J) parts: bit for bit
        seconds = joules = 0.0
        for f, s, j in zip(fs, secs, joules_parts, strict=True):
            seconds += f * s
            joules += f * j
        return seconds + overhead, joules + idle_j


def clear_shared_parts() -> None:
    """Forget this process's memo of step parts (as a fresh worker starts; benchmarks/bench_ensemble.py --cpu)."""
    _PARTS.clear()


def member_strategy(cfg: SimConfig) -> Callable[[CostModel], DecodeStrategy]:
    """The plain-group decode strategy a member runs with: MemberDecoding when some group's multipliers are not
    all 1 (else PlainDecoding, so an unperturbed member is the plain run bit for bit)."""
    scaled = any(g.calibration is not None and any(f != 1.0 for _, f in g.calibration.time_scale)
                 for g in cfg.replicas)
    return MemberDecoding if scaled else PlainDecoding


def _run_member(task: tuple[SimConfig, Trace, Mapping[str, Any], tuple[tuple[int, ...], ...]]) -> dict[str, Any]:
    """One member in a worker: simulate on the shared trace from the shared generator state; its summary."""
    cfg, trace, state, warm = task
    rng = np.random.default_rng()
    rng.bit_generator.state = dict(state)
    return simulate(cfg, trace=trace, rng=rng, warm_prefixes=warm, strategy_factory=member_strategy(cfg)).summary


def _metric(summary: Mapping[str, Any], path: str) -> float:
    v: Any = summary
    for part in path.split("."):
        v = v[part]
    return float(v)


def quantile_interval(values: Sequence[float], level: float) -> tuple[float, float]:
    """Equal-tailed interval of `values` (numpy's linear quantiles at (1 -+ level) / 2); NaNs ignored."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if not len(v):
        return math.nan, math.nan
    return float(np.quantile(v, (1 - level) / 2)), float(np.quantile(v, (1 + level) / 2))


@dataclass(frozen=True)
class EnsembleResult:
    """Member summaries (simulator.metrics) in member order, the unperturbed run's when asked for, the levels."""

    members: tuple[dict[str, Any], ...]
    levels: tuple[float, ...]
    seed: int
    point: dict[str, Any] | None = None
    # the profile's end-to-end term (validation.profiles.e2e_term_for): with a point, summary adds "e2e <level>"
    e2e: E2ETerm | None = None
    # the run's model.uncertainty.E2E_INPUTS (run_inputs) its term's learned difficulty reads; None: unknown, so
    # those features count as the fit's means (factor 1 for them) instead of a guess
    inputs: Mapping[str, float] | None = None

    def values(self, metric: str) -> np.ndarray:
        """One value of `metric` ('ttft_s.p99', 'cost_usd', ...) per member."""
        return np.array([_metric(s, metric) for s in self.members])

    def interval(self, metric: str, level: float) -> tuple[float, float]:
        return quantile_interval(self.values(metric), level)

    def summary(self, metrics: Sequence[str] = ENSEMBLE_METRICS) -> dict[str, dict[str, Any]]:
        """metric -> {"point": unperturbed value (when run), "median": over members, "80%": [low, high], ...}."""
        out: dict[str, dict[str, Any]] = {}
        for m in metrics:
            v = self.values(m)
            row: dict[str, Any] = {}
            if self.point is not None:
                row["point"] = _metric(self.point, m)
            row["median"] = float(np.nanmedian(v)) if np.any(~np.isnan(v)) else math.nan
            for q in self.levels:
                row[f"{q:.0%}"] = list(quantile_interval(v, q))
            row.update(self._e2e_ranges(m, row.get("point")))
            out[m] = row
        return out

    def _e2e_ranges(self, metric: str, point: float | None) -> dict[str, list[float]]:
        """'e2e <level>' -> the end-to-end term's interval around the plain run's value (metrics whose family the
        term has a cell for: TTFT, TPOT, ITL, E2E, output throughput); every error, not only the kernels'."""
        fam = metric_family(metric)
        if self.e2e is None or point is None or not point > 0 or fam not in {c.key for c in self.e2e.cells} - {ANY}:
            return {}
        b = self.e2e.bounds(point, (fam,), [q for q in self.levels if q <= self.e2e.score_levels[-1]], metric,
                            self.e2e_features(metric))
        return {f"e2e {q:.0%}": list(lo_hi) for q, lo_hi in b.items()}

    def e2e_features(self, metric: str) -> dict[str, float]:
        """model.uncertainty.e2e_features of `metric` in this run: the members' half-width at E2E_KERNEL_LEVEL and
        the run's inputs. What the run does not know is left out (the kernel spread of NaN members, every input
        when `inputs` is None), so the difficulty counts it as the fit's mean."""
        lo, hi = self.interval(metric, E2E_KERNEL_LEVEL)
        f = e2e_features(metric, math.log(hi / lo) / 2 if lo > 0 and hi > 0 else math.nan, self.inputs or {})
        drop = {f"log_{k}" for k in E2E_INPUTS} if self.inputs is None else set()
        if not math.isfinite(f["log_kernel_half_width"]):
            drop.add("log_kernel_half_width")
        return {k: v for k, v in f.items() if k not in drop}

    def as_dict(self, metrics: Sequence[str] = ENSEMBLE_METRICS) -> dict[str, Any]:
        """The JSON `--ensemble` emits: members, levels, seed, how members were drawn, per-metric ranges (with an
        end-to-end term: the run's inputs its difficulty reads, "e2e_inputs")."""
        return {"members": len(self.members), "levels": list(self.levels), "seed": self.seed,
                "method": "member = one draw per kernel family/dtype from the kernel error model, held for the "
                          "whole run; 'e2e <level>': the profile's end-to-end term around the plain run "
                          "(docs/intervals.md)",
                "metrics": self.summary(metrics),
                **({"e2e_inputs": dict(self.inputs)} if self.e2e is not None and self.inputs is not None else {})}


def run_ensemble(config: SimConfig, error_models: Sequence[ErrorModel | None], members: int = 16,
                 levels: Sequence[float] = DEFAULT_LEVELS, executor: Executor | None = None,
                 with_point: bool = False, trace: Trace | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 warm_prefixes: Sequence[tuple[int, ...]] = ()) -> EnsembleResult:
    """Simulate `members` perturbed copies of `config` (member_configs) on one workload built once, on `executor`
    (default: in this process; planning.executors.make_executor for a process pool or Dask), plus the plain run
    when `with_point`. `warm_prefixes` as simulate's (a log replay's cached prompts). Same config, error models
    and seed -> identical results on any executor."""
    rng = np.random.default_rng(config.seed)
    if trace is None:
        trace = build_trace(config.workload, rng)
    state = rng.bit_generator.state
    cfgs = member_configs(config, error_models, members)
    if with_point:
        cfgs = [config, *cfgs]
    ex = executor or SerialExecutor()
    warm = tuple(warm_prefixes)
    summaries = ex.map(_run_member, [(c, trace, state, warm) for c in cfgs])
    if progress is not None:
        progress(len(cfgs), len(cfgs))
    point = summaries.pop(0) if with_point else None
    return EnsembleResult(tuple(summaries), tuple(levels), config.seed, point, inputs=run_inputs(config, trace))


def run_inputs(config: SimConfig, trace: Trace) -> dict[str, float]:
    """The E2E_INPUTS of a run as a measured benchmark row states them (validation.e2e: isl, osl, concurrency,
    qps, tp): the trace's mean prompt and output tokens, the closed-loop clients (a static batch: the scheduler's
    max_num_seqs), the open-loop mean rate (a trace's own), the first replica group's tp. An input the row kind
    has none of is 0, as a row leaves it unset (a closed loop has no rate, an open loop no concurrency)."""
    wl = resolve_workload(config.workload)
    g = config.replicas[0]
    concurrency = qps = 0.0
    if isinstance(wl, TraceWorkload):
        qps = trace.rate_per_s
    elif isinstance(wl.arrival, ClosedLoopArrivals):
        concurrency = float(wl.arrival.clients)
    elif math.isfinite(rate := mean_rate_per_s(wl.arrival)):
        qps = rate
    elif g.scheduler.kind == "static":
        concurrency = float(g.scheduler.max_num_seqs)
    return {"isl": trace.mean_input_tokens, "osl": trace.mean_output_tokens, "concurrency": concurrency,
            "qps": qps if math.isfinite(qps) else 0.0, "tp": float(g.tp)}
