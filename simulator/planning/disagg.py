"""Disaggregated deployments in the planner: prefill:decode replica counts and per-pool layouts (each pool any
candidate of the plan's space with the same formats and scheduler), judged at the target rate by simulating the
whole deployment, cheapest first (docs/disaggregation.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from roofsim.simulator.config import KVLinkConfig, NetworkKVLink, SimConfig
from roofsim.simulator.planning.cache import PointCache
from roofsim.simulator.planning.executors import Executor, make_executor
from roofsim.simulator.planning.length import start_requests
from roofsim.simulator.planning.points import PointRunner, overload_guard, point_of, workload_at
from roofsim.simulator.planning.pricing import deployment_usd_per_hour
from roofsim.simulator.planning.result import PlanStats, Point
from roofsim.simulator.planning.search import resolve
from roofsim.simulator.planning.spec import Candidate, PlanSpec, candidates


@dataclass(frozen=True)
class DisaggOutcome:
    """One disaggregated deployment: `prefill_replicas` x `prefill` and `decode_replicas` x `decode`, and its
    point at the target rate."""

    prefill: Candidate
    prefill_replicas: int
    decode: Candidate
    decode_replicas: int
    usd_per_hour: float
    point: Point

    @property
    def gpus(self) -> int:
        return self.prefill_replicas * self.prefill.gpus + self.decode_replicas * self.decode.gpus

    @property
    def label(self) -> str:
        return (f"{self.prefill_replicas}P x {self.prefill.hardware} {self.prefill.layout} + "
                f"{self.decode_replicas}D x {self.decode.hardware} {self.decode.layout}")

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "prefill": self.prefill.as_dict(), "prefill_replicas": self.prefill_replicas,
                "decode": self.decode.as_dict(), "decode_replicas": self.decode_replicas, "gpus": self.gpus,
                "usd_per_hour": self.usd_per_hour, "point": self.point.as_dict()}


def pool_pairs(spec: PlanSpec) -> list[tuple[Candidate, Candidate]]:
    """(prefill, decode) layouts: any two candidates of the space that run the same formats, scheduler, batch
    limit and speculation (they may differ in hardware, TP and PP). Attention data parallelism only in the prefill
    pool: a prefill batch of several prompts spreads over the ranks with no attention all-reduce (the measured
    DeepSeek-V3 prefill workers, docs/disaggregation.md), and leaving the decode pool's out keeps the pairs from
    growing with the square of the attn_dp layouts."""
    cands = candidates(spec)

    def same(a: Candidate, b: Candidate) -> bool:
        return (a.weight_dtype, a.kv_dtype, a.scheduler, a.max_batch, a.speculative) == (
            b.weight_dtype, b.kv_dtype, b.scheduler, b.max_batch, b.speculative)

    return [(p, d) for p in cands for d in cands if d.attn_dp == 1 and same(p, d)]


def disaggregated_config(spec: PlanSpec, native_rate: float, prefill: Candidate, n_prefill: int,
                         decode: Candidate, n_decode: int, link: KVLinkConfig, with_slo: bool = False) -> SimConfig:
    """The run of one disaggregated deployment at the spec's target rate (the overload guard of point runs, or
    the SLOs for the reported run)."""
    n = disaggregated_length(spec, decode, n_decode)
    data: dict[str, Any] = {
        "workload": workload_at(spec, spec.rate_per_s, native_rate, n), "seed": spec.seed,
        "replicas": [{**prefill.group(spec, n_prefill), "role": "prefill"},
                     {**decode.group(spec, n_decode), "role": "decode"}],
        "kv_link": link.model_dump()}
    if with_slo:
        data["slo"] = {"ttft_s": spec.slo_ttft_s, "tpot_s": spec.slo_tpot_s}
    else:
        data["max_waiting_requests"] = overload_guard(n)
    return SimConfig.model_validate(data)


def disaggregated_length(spec: PlanSpec, decode: Candidate, n_decode: int) -> int:
    """Requests of a disaggregated deployment's run: the forced num_requests, else the planner's first length for
    what the decode pool holds at once (length.start_requests; one run per deployment, judged at the target
    rate, so its steady state is reported with the point rather than lengthened)."""
    if spec.num_requests is not None:
        return spec.num_requests
    return start_requests(n_decode * decode.seqs)


def plan_disaggregated(spec: PlanSpec, *, max_pool_replicas: int = 8, link: KVLinkConfig | None = None,
                       executor: Executor | None = None, cache: PointCache | None = None
                       ) -> tuple[list[DisaggOutcome], PlanStats]:
    """Every (prefill layout, decode layout, prefill replicas, decode replicas) up to `max_pool_replicas` per
    pool and the spec's max_gpus, in ascending $/hour (then GPUs), simulated at the target rate in rounds of
    spec.candidates_per_round until a round starts above the cheapest feasible deployment found. Returns the
    simulated outcomes, feasible first (cheapest first), and the statistics."""
    spec, ts = resolve(spec)
    link = link if link is not None else NetworkKVLink()
    options: list[tuple[float, int, Candidate, int, Candidate, int]] = []
    for p, d in pool_pairs(spec):
        for n_p in range(1, max_pool_replicas + 1):
            for n_d in range(1, max_pool_replicas + 1):
                gpus = n_p * p.gpus + n_d * d.gpus
                if spec.max_gpus is None or gpus <= spec.max_gpus:
                    usd = deployment_usd_per_hour(p, n_p) + deployment_usd_per_hour(d, n_d)
                    options.append((usd, gpus, p, n_p, d, n_d))
    options.sort(key=lambda o: (o[0], o[1], o[2].label, o[3], o[4].label, o[5]))
    own = executor is None
    ex = executor if executor is not None else make_executor()
    stats = PlanStats(workers=ex.workers, candidates=len(options))
    runner = PointRunner(ex, cache, stats)
    out: list[DisaggOutcome] = []
    best: float | None = None
    try:
        for i in range(0, len(options), spec.candidates_per_round):
            batch = options[i:i + spec.candidates_per_round]
            if best is not None and batch[0][0] > best:
                break
            stats.rounds += 1
            values = runner.run([disaggregated_config(spec, ts.native_rate, p, n_p, d, n_d, link)
                                 for _, _, p, n_p, d, n_d in batch])
            for (usd, _, p, n_p, d, n_d), v in zip(batch, values, strict=True):
                o = DisaggOutcome(p, n_p, d, n_d, usd, point_of(spec, spec.rate_per_s, v))
                out.append(o)
                if o.point.feasible and (best is None or usd < best):
                    best = usd
    finally:
        if own:
            ex.close()
    stats.simulated_candidates = len(out)
    out.sort(key=lambda o: (not o.point.feasible, o.usd_per_hour, o.gpus, o.label))
    return out, stats


__all__ = ["DisaggOutcome", "disaggregated_config", "disaggregated_length", "plan_disaggregated", "pool_pairs"]
