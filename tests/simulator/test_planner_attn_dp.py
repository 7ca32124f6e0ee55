"""Attention data parallelism in the planner: MoE models get attn_dp candidates within the GPU budget (experts
expert-parallel over attn_dp x tp GPUs), dense models none; per-rank limits scale to the replica; disaggregated
plans use it for the prefill pool only."""

from __future__ import annotations

from roofsim.simulator.config import ReplicaGroup
from roofsim.simulator.planning import PlanSpec, SerialExecutor, candidates, plan, resolve
from roofsim.simulator.planning.disagg import pool_pairs
from roofsim.simulator.workload import NamedWorkload

MOE = "qwen3-30b-a3b"  # 128 experts


def _spec(**kw: object) -> PlanSpec:
    base: dict[str, object] = dict(model=MOE, workload=NamedWorkload(name="conversation"), rate_per_s=12.0,
                                   slo_ttft_s=1.0, slo_tpot_s=0.05, hardware=("h100-sxm",), num_requests=150,
                                   tolerance=0.1, verify_winner=False)
    base.update(kw)
    return PlanSpec(**base)  # type: ignore[arg-type]


def _layouts(spec: PlanSpec) -> set[tuple[int, int, int]]:
    return {(c.attn_dp, c.tp, c.ep) for c in candidates(spec)}


def test_moe_models_get_attn_dp_layouts_within_the_budget_and_dense_models_none() -> None:
    # default tp 1,2,4,8: ranks of tp 1 (the smallest), budget = 8 GPUs, so dp <= 8; ep = dp x tp
    assert _layouts(_spec()) == {(1, 1, 1), (1, 2, 1), (1, 4, 1), (1, 8, 1), (2, 1, 2), (4, 1, 4), (8, 1, 8)}
    assert _layouts(_spec(max_gpus=2, tp=(1, 2))) == {(1, 1, 1), (1, 2, 1), (2, 1, 2)}
    assert _layouts(_spec(tp=(2, 4))) == {(1, 2, 1), (1, 4, 1), (2, 2, 4)}  # budget 4: dp2 x tp2 only
    assert _layouts(_spec(attn_dp=(1,))) == {(1, 1, 1), (1, 2, 1), (1, 4, 1), (1, 8, 1)}
    assert _layouts(_spec(model="llama-3.1-8b")) == {(1, 1, 1), (1, 2, 1), (1, 4, 1), (1, 8, 1)}
    # Mixtral's 8 experts: ep = dp x tp = 16 cannot divide them, so dp8 x tp2 is left out within 16 GPUs
    mixtral = _layouts(_spec(model="mixtral-8x7b", tp=(2, 4), max_gpus=16))
    assert (4, 2, 8) in mixtral and (8, 2, 16) not in mixtral and (2, 4, 8) not in mixtral
    # speculative decoding is not modelled with attn_dp: those candidates keep attn_dp 1
    spec = _spec(tp=(1,), max_gpus=2, speculative=(None, '{"drafter": {"kind": "eagle"}, "k": 2}'))
    assert {(c.attn_dp, c.speculative is None) for c in candidates(spec)} == {(1, True), (1, False), (2, True)}


def test_attn_dp_candidate_is_a_replica_of_all_its_ranks() -> None:
    spec, _ = resolve(_spec(tp=(1,), max_gpus=4, attn_dp=(4,), engine="vllm==0.10"))
    one, dp4 = candidates(spec)
    assert (dp4.attn_dp, dp4.ep, dp4.gpus, dp4.label) == (4, 4, 4, "h100-sxm dp4 x tp1 bf16 vllm==0.10: sarathi b1024")
    assert one.label == "h100-sxm tp1 bf16 vllm==0.10: sarathi b1024" and "attn_dp" not in one.group(spec)
    g = ReplicaGroup.model_validate(dp4.group(spec))
    # each rank runs the engine's per-rank limits (vLLM: 1024 sequences, 8192 tokens on an H100)
    assert (g.attn_dp, g.ep, g.tp, g.scheduler.max_num_seqs, g.scheduler.max_batched_tokens) == (4, 4, 1, 4096, 32768)
    assert dp4.as_dict()["attn_dp"] == 4 and dp4.as_dict()["gpus"] == 4


def test_plan_of_a_moe_model_ranks_attn_dp_candidates() -> None:
    r = plan(_spec(tp=(1,), max_gpus=2), SerialExecutor())
    by = {o.candidate.label: o for o in r.outcomes}
    assert set(by) == {"h100-sxm tp1 bf16 vllm: sarathi b1024", "h100-sxm dp2 x tp1 bf16 vllm: sarathi b1024"}
    dp2 = by["h100-sxm dp2 x tp1 bf16 vllm: sarathi b1024"]
    # both meet the SLOs at 12 req/s on one replica; the two-GPU dp2 replica costs twice as much
    assert dp2.status == "feasible" and (dp2.replicas, dp2.gpus) == (1, 2)
    assert r.winner is not None and r.winner.candidate.label == "h100-sxm tp1 bf16 vllm: sarathi b1024"


def test_disaggregated_pools_use_attn_dp_for_prefill_only() -> None:
    spec, _ = resolve(_spec(tp=(1, 2), max_gpus=2))
    pairs = pool_pairs(spec)
    assert {d.attn_dp for _, d in pairs} == {1}
    assert {p.attn_dp for p, _ in pairs} == {1, 2} and len(pairs) == 3 * 2
