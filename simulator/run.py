"""`simulate(config)`: build the trace, the replicas and the cluster from a SimConfig, run simpy, summarise.
All randomness comes from one numpy Generator seeded with config.seed (trace, predictor noise, router)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import simpy

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.hardware_specs.spec import HardwareSpec
from roofsim.model.cost import DEFAULT_CALIBRATION, Calibration, CostModel
from roofsim.model.loader import load_checkpoint_quant, load_model
from roofsim.model.memory import MemoryPlan, plan_memory
from roofsim.model.quant import resolve_quant
from roofsim.model.spec import ParallelSpec, QuantSpec
from roofsim.simulator.cluster import Cluster
from roofsim.simulator.config import KV_TIER_READ_BYTES_PER_S, ReplicaGroup, SimConfig
from roofsim.simulator.disagg import DisaggCluster
from roofsim.simulator.early_exit import early_exit_parts
from roofsim.simulator.kvcache import PrefixCache, Tier
from roofsim.simulator.metrics import SimResult, summarize
from roofsim.simulator.replica import Replica
from roofsim.simulator.request import Request
from roofsim.simulator.schedulers import make_scheduler
from roofsim.simulator.sessions import SessionTrace, SessionWorkload, run_trace
from roofsim.simulator.speculative import speculative_parts
from roofsim.simulator.strategy import (
    DecodeStrategy,
    HostDispatchFloor,
    PlainDecoding,
    StrategyMaker,
    plain_parts,
)
from roofsim.simulator.workload import (
    ClosedLoopArrivals,
    SyntheticWorkload,
    Trace,
    resolve_workload,
)

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

# decode strategy kind -> (strategy maker given the run's Generator, memory plan with the technique's extra memory)
STRATEGY_PARTS: dict[str, Callable[[ReplicaGroup, CostModel, MemoryPlan], tuple[StrategyMaker, MemoryPlan]]] = {
    "plain": plain_parts,
    "speculative": speculative_parts,
    "early_exit": early_exit_parts,
}


def strategy_kind(group: ReplicaGroup) -> str:
    """The STRATEGY_PARTS key of a replica group: from its `speculative` / `early_exit` fields."""
    if group.speculative is not None and group.early_exit is not None:
        raise ValueError("speculative and early_exit cannot both be set on a replica group; for early-exit "
                         "drafting use speculative.drafter.kind = 'layerskip'")
    return "speculative" if group.speculative is not None else "early_exit" if group.early_exit is not None \
        else "plain"


def group_quant(group: ReplicaGroup, hardware: HardwareSpec | None = None) -> tuple[QuantSpec, list[str]]:
    """The formats a replica group runs in and notes saying where they came from: its `quant` table when the run
    file has one (no notes), else the checkpoint's own format on the group's hardware (model.quant.resolve_quant:
    bf16 for an unquantised checkpoint, 16-bit activations where the GPU lacks the checkpoint's)."""
    if group.quant is not None:
        return group.quant, []
    hw = hardware if hardware is not None else load_hardware(group.hardware)
    return resolve_quant(load_checkpoint_quant(group.model), hardware=hw)


def resolve_config_quants(config: SimConfig) -> tuple[SimConfig, list[str]]:
    """`config` with every replica group's `quant` filled in (group_quant), and one note per group whose format
    came from its checkpoint; the front ends resolve before simulating, so results and their saved configs name
    the formats that ran."""
    groups, notes = [], []
    for i, g in enumerate(config.replicas):
        if g.quant is None:
            q, why = group_quant(g)
            g = g.model_copy(update={"quant": q})
            notes += [f"replicas[{i}] {g.model}: {n}" for n in why]
        groups.append(g)
    return config.model_copy(update={"replicas": tuple(groups)}), notes


def group_calibration(group: ReplicaGroup) -> Calibration | None:
    """The group's calibration with its engine's host time per sequence (ReplicaGroup.host_s_per_seq) in place of
    the calibration's step_overhead_per_seq_s; the calibration itself when the group sets none."""
    return with_host_s_per_seq(group.calibration, group.host_s_per_seq)


def with_host_s_per_seq(calibration: Calibration | None, host_s_per_seq: float | None) -> Calibration | None:
    """`calibration` (None = the model defaults) with an engine's host time per running sequence in place of its
    step_overhead_per_seq_s; unchanged when the engine sets none."""
    if host_s_per_seq is None:
        return calibration
    return (calibration or DEFAULT_CALIBRATION).model_copy(update={"step_overhead_per_seq_s": host_s_per_seq})


def build_replicas(config: SimConfig, strategy_factory: Callable[[CostModel], DecodeStrategy] = PlainDecoding,
                   rng: np.random.Generator | None = None) -> list[Replica]:
    """Replicas of every group, in config order (one CostModel per group, shared by its replicas). Each replica
    gets its decode strategy (drawing from `rng`) from STRATEGY_PARTS; `strategy_factory(cost)` makes the
    strategy of plain groups instead (instrumented benchmarks, tests)."""
    rng = rng if rng is not None else np.random.default_rng(config.seed)
    replicas: list[Replica] = []
    for gi, g in enumerate(config.replicas):
        model = load_model(g.model)
        hw = load_hardware(g.hardware)
        par = ParallelSpec(tp=g.tp, pp=g.pp, ep=g.ep, attn_dp=g.attn_dp)
        par.validate_for(model)
        quant, _ = group_quant(g, hw)
        cost = CostModel(model, hw, quant, par, group_calibration(g), g.attn_backend)
        sched_cfg = g.scheduler
        plan = plan_memory(model, hw, quant, par, g.gpu_memory_utilization,
                           max_batched_tokens=sched_cfg.max_batched_tokens, max_seqs=sched_cfg.max_num_seqs,
                           block_size=g.block_size)
        window = model.sliding_window if model.num_sliding_layers else None
        kind = strategy_kind(g)
        make_strategy, plan = STRATEGY_PARTS[kind](g, cost, plan)
        for _ in range(g.count):
            name = (f"{model.name}@{g.count}x{hw.id}(tp{g.tp},pp{g.pp}"
                    + (f",dp{g.attn_dp}" if g.attn_dp > 1 else "") + f")#{len(replicas)}")
            strategy = strategy_factory(cost) if kind == "plain" else make_strategy(rng)
            if g.host_s_per_launch or g.prefill_s_per_seq:
                strategy = HostDispatchFloor(strategy, g.host_s_per_launch, g.eager_prompts_only, g.prefill_s_per_seq)
            rep = Replica(len(replicas), gi, name, strategy, plan, make_scheduler(sched_cfg),
                          g.max_model_len or model.max_context_tokens, window)
            rep.frontend_s = g.frontend_s_per_request
            rep.frontend_tok_s = g.frontend_s_per_token
            rep.role = g.role
            rep.attn_dp = g.attn_dp
            replicas.append(rep)
    return replicas


def attach_images(config: SimConfig, requests: Sequence[Request]) -> None:
    """Give `config.images.share` of the requests (drawn from the seed, on a stream of its own so a text-only
    run's draws are unchanged) their images: LLM tokens added to the prompt, patches for the encoder."""
    im = config.images
    assert im is not None
    sizes = set()
    for g in config.replicas:
        v = load_model(g.model).vision
        if v is None:
            raise ValueError(f"images: model {g.model!r} has no vision encoder (no vision_config in its "
                             f"config.json); drop [images] or serve a VL model")
        sizes.add((v.tokens_per_image(im.height_px, im.width_px), v.patches(im.height_px, im.width_px)))
    if len(sizes) > 1:
        raise ValueError(f"images: the replica groups' vision encoders turn a {im.height_px}x{im.width_px} image "
                         f"into different token counts {sorted(sizes)}; serve one VL model per run")
    tokens, patches = sizes.pop()
    pick = (np.ones(len(requests), dtype=bool) if im.share >= 1.0
            else np.random.default_rng((config.seed, 0x1A9E)).random(len(requests)) < im.share)
    for r, p in zip(requests, pick.tolist(), strict=True):
        if p:
            r.input_tokens += im.per_request * tokens
            r.image_patches = im.per_request * patches
            r.image_attn_pairs = float(im.per_request * patches * patches)


def prefix_cache(rep: Replica, group: ReplicaGroup, block_tokens: int) -> PrefixCache:
    """The prefix cache of one replica: HBM holds its KV pool in `block_tokens`-token blocks; each of the group's
    kv_tiers holds capacity_bytes // (one block's KV bytes on one GPU) blocks (docs/kv-tiers.md)."""
    cap = max(rep.pool.total * rep.B // block_tokens, 1)
    block_bytes = rep.pool.kv_bytes_per_token * block_tokens
    tiers = tuple(Tier(t.kind, int(t.capacity_bytes // block_bytes),
                       t.read_bytes_per_s or KV_TIER_READ_BYTES_PER_S.get(t.kind)
                       or rep.cost.hardware.interconnect.pcie_bytes_per_s)
                  for t in group.kv_tiers)
    return PrefixCache(cap, block_tokens, tiers, block_bytes)


def simulate(config: SimConfig, progress: Progress | None = None, trace: Trace | None = None,
             strategy_factory: Callable[[CostModel], DecodeStrategy] = PlainDecoding,
             warm_prefixes: Sequence[tuple[int, ...]] = (), rng: np.random.Generator | None = None) -> SimResult:
    """Run one simulation. `progress(done, total)` is called now and then; `trace` replaces the workload's
    requests (its arrival process settings still decide closed loop). `warm_prefixes`: prefix-block hash ids
    already in every prefix cache at t=0 (e.g. prompts an earlier run sent). `rng`: the run's generator (default
    one from config.seed; an ensemble passes each member the state a plain run has after building `trace`).
    Same config -> identical result."""
    wall0 = time.perf_counter()
    rng = rng if rng is not None else np.random.default_rng(config.seed)
    if trace is None:
        trace = run_trace(config.workload, rng)
    wl = config.workload if isinstance(config.workload, SessionWorkload) else resolve_workload(config.workload)
    closed: ClosedLoopArrivals | None = None
    if isinstance(wl, SyntheticWorkload) and isinstance(wl.arrival, ClosedLoopArrivals):
        closed = wl.arrival
    n = len(trace)
    if n == 0:
        raise ValueError(f"workload {config.workload.kind!r} produced no requests")
    arr = trace.arrival_s.tolist()
    inp = trace.input_tokens.tolist()
    out = trace.output_tokens.tolist()
    requests = [Request(i, arr[i], inp[i], out[i]) for i in range(n)]
    if config.images is not None:
        attach_images(config, requests)
    if isinstance(trace, SessionTrace):
        for r, sid in zip(requests, trace.session_ids, strict=True):
            r.session = sid
    if any(g.scheduler.kind == "sjf" for g in config.replicas):
        z = rng.standard_normal(n).tolist()
        for r, zi in zip(requests, z, strict=True):
            r.predictor_z = zi
    replicas = build_replicas(config, strategy_factory, rng)
    if any(g.prefix_caching for g in config.replicas):
        if trace.hash_ids is not None:
            for r, h in zip(requests, trace.hash_ids, strict=True):
                r.prefix = h
        else:
            # info, not a warning: engines (vLLM V1, SGLang, TRT-LLM 1.x) turn prefix caching on by default
            logger.info("prefix caching is on but the trace has no hash ids: no prefix can be reused")
        for rep in replicas:
            group = config.replicas[rep.group]
            if group.prefix_caching:
                rep.prefix = prefix_cache(rep, group, trace.hash_block_tokens)
                if group.kv_tiers and group.kv_load_layerwise:
                    rep.load_layers = rep.cost.model.num_layers
                for ids in warm_prefixes:
                    rep.prefix.insert(ids)
    last_arrival = float(trace.arrival_s[-1])
    if config.max_sim_time_s is not None:
        max_t = config.max_sim_time_s
    elif closed is None and last_arrival > 0:
        max_t = max(4.0 * last_arrival, last_arrival + 3600.0)
    else:
        max_t = math.inf  # closed loop / offline: nothing piles up beyond what was issued
    env = simpy.Environment()
    if config.disaggregated:
        cluster: Cluster = DisaggCluster(env, replicas, config.router.kind, requests, rng, config.kv_link, closed,
                                         max_t, config.max_waiting_requests, progress, router_cfg=config.router)
    else:
        cluster = Cluster(env, replicas, config.router.kind, requests, rng, closed, max_t,
                          config.max_waiting_requests, progress, router_cfg=config.router)
    # Closed loop with several replicas: a completion at one replica creates an arrival another replica may
    # already have simulated past, so replicas must stay in lock step with simpy's clock.
    stepwise = config.stepwise or (closed is not None and len(replicas) > 1)
    cluster.start()
    for rep in replicas:
        env.process(rep.run(env, stepwise))
    try:
        env.run(until=cluster.done_event)
    except RuntimeError as e:  # no events left before the run was done: an engine bug, not user error
        raise AssertionError(f"simulation deadlocked at t={env.now}: {e}") from None
    end_s = cluster.last_completion_s
    if cluster.stop_reason != "completed":
        end_s = max(end_s, min(env.now, max_t))
    if progress is not None:
        progress(cluster.completed + cluster.rejected, n)
    result = summarize(requests, replicas, slo_ttft_s=config.slo.ttft_s, slo_tpot_s=config.slo.tpot_s,
                       stop_reason=cluster.stop_reason, last_arrival_s=last_arrival,
                       wall_s=time.perf_counter() - wall0, end_s=end_s)
    s = result.summary
    if isinstance(cluster, DisaggCluster):
        s["disaggregation"] = cluster.summary(result.measured, result.arrival_s, end_s)
    if s["requests_unfinished"]:
        logger.warning("%d requests unfinished (%d waiting, %d running) when the run stopped: %s",
                       s["requests_unfinished"], s["requests_waiting_at_end"], s["requests_running_at_end"],
                       cluster.stop_reason)
    return result


__all__ = ["STRATEGY_PARTS", "attach_images", "build_replicas", "group_calibration", "group_quant", "prefix_cache", "resolve_config_quants", "with_host_s_per_seq",
           "simulate", "strategy_kind"]
