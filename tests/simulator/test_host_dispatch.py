"""Eager host dispatch (simulator/strategy.py HostDispatchFloor, ReplicaGroup.host_s_per_launch) and the
`splitwise` engine that sets it from the DGX host CPU's per-core speed (simulator/engines.py)."""

from __future__ import annotations

import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.batch import BatchShape
from roofsim.model.cost import CostModel
from roofsim.model.loader import load_model
from roofsim.model.spec import ParallelSpec, QuantSpec
from roofsim.simulator.config import ReplicaGroup, SimConfig, StaticScheduler
from roofsim.simulator.engines import (
    DGX_A100_HOST,
    DGX_H100_HOST,
    SPLITWISE_HOST_S_PER_LAUNCH,
    SPLITWISE_HOST_S_PER_SEQ,
    SPLITWISE_PREFILL_S_PER_SEQ,
    TRTLLM_HOST_S_PER_LAUNCH,
    engine_profile,
)
from roofsim.simulator.run import simulate
from roofsim.simulator.strategy import HostDispatchFloor, PlainDecoding
from roofsim.simulator.workload import FixedLengths, OfflineArrivals, SyntheticWorkload

LLAMA2 = "meta-llama/Llama-2-70b-hf"


def _cost(tp: int = 8) -> CostModel:
    return CostModel(load_model(LLAMA2), load_hardware("a100-sxm-80gb"), QuantSpec(weight_dtype="fp16",
                     activation_dtype="fp16", kv_dtype="fp16"), ParallelSpec(tp=tp))


def test_host_costs_follow_the_dgx_host_cores_speed() -> None:
    """DGX A100 (EPYC 7742, the reference core) and DGX H100 (Xeon 8480C): host seconds scale with the inverse of
    the per-core SPECrate2017_int_base (5.27 and 8.14, x1.55), per launch by the model's code (BLOOM's costs more
    than Llama-2's; another model gets Llama-2's); the per-sequence cost is the same on both hosts; a power-capped
    H100 sits in the same host; a GPU in no known DGX asks for the launch cost."""
    assert DGX_A100_HOST.int_rate_per_core == pytest.approx(5.27, abs=0.01)
    assert DGX_H100_HOST.int_rate_per_core == pytest.approx(8.14, abs=0.01)
    a100 = engine_profile("splitwise", "a100-sxm-80gb", model=LLAMA2)
    h100 = engine_profile("splitwise", "h100-sxm", model=LLAMA2)
    assert a100.host_s_per_launch == SPLITWISE_HOST_S_PER_LAUNCH[LLAMA2] == 42.3e-6
    assert a100.host_s_per_seq == SPLITWISE_HOST_S_PER_SEQ == 210e-6
    assert a100.host_s_per_launch / h100.host_s_per_launch == pytest.approx((912 / 112) / (674 / 128))
    assert h100.host_s_per_seq == a100.host_s_per_seq
    assert engine_profile("splitwise", "a100-sxm-80gb", model="bigscience/bloom").host_s_per_launch == 57.0e-6
    assert engine_profile("splitwise", "a100-sxm-80gb", model="Qwen/Qwen3-32B").host_s_per_launch == 42.3e-6
    assert engine_profile("splitwise", "h100-sxm@490w", model=LLAMA2) == h100
    assert engine_profile("vllm", "h100-sxm").host_s_per_launch == 0.0
    with pytest.raises(ValueError, match="no DGX host known for GPU 'l40s'.*host_s_per_launch"):
        engine_profile("splitwise", "l40s")


def test_engine_fills_the_group_and_an_explicit_value_wins() -> None:
    g = ReplicaGroup(model=LLAMA2, hardware="h100-sxm", tp=8, engine="splitwise")
    assert g.host_s_per_launch == pytest.approx(42.3e-6 * (674 / 128) / (912 / 112))
    assert g.host_s_per_seq == 210e-6
    assert ReplicaGroup(model="bigscience/bloom", hardware="a100-sxm-80gb", tp=8,
                        engine="splitwise").host_s_per_launch == 57.0e-6  # the group's model picks the cost
    assert ReplicaGroup(model=LLAMA2, hardware="a100-sxm-80gb", tp=8, engine="splitwise",
                        host_s_per_launch=2e-5).host_s_per_launch == 2e-5
    # another host: any group sets the cost itself
    assert ReplicaGroup(model=LLAMA2, hardware="l40s", tp=8, host_s_per_launch=2e-5).host_s_per_launch == 2e-5
    assert ReplicaGroup(model=LLAMA2, hardware="h100-sxm", tp=8).host_s_per_launch == 0.0


def test_launches_are_the_op_graphs_kernels() -> None:
    """Llama-2-70B at tp 8: 13 kernels a layer (2 norms, QKV, rope, attention, o_proj, 2 all-reduces, 2 residual
    adds, up/gate, activation, down) x 80 layers + embedding, final norm, LM head, logits gather, sampling."""
    floor = HostDispatchFloor(PlainDecoding(_cost()), 4e-5)
    assert floor.launches[(0, 1)] == 13 * 80 + 5 == floor.launches[(1, 0)]
    assert floor.launches[(1, 1)] == 14 * 80 + 5  # a mixed step launches both attention kernels


def test_iteration_is_the_slower_of_gpu_and_host() -> None:
    """A batch-1 decode step of Llama-2-70B on 8 A100s: host-bound at 40 us a launch (1045 x 40 us = 41.8 ms
    against ~24 ms of GPU work), GPU-bound at 1 us; the host-bound step idles the GPUs through the gap."""
    cost = _cost()
    shape = BatchShape(decode_seqs=1, decode_ctx_tokens=600)
    gpu_s, gpu_j = cost.step_seconds_energy(shape)
    overhead = cost.overhead_seconds_energy(shape)[0]
    assert gpu_s - overhead < 1045 * 4e-5
    s, j = HostDispatchFloor(PlainDecoding(cost), 4e-5).step(shape)
    assert s == pytest.approx(1045 * 4e-5 + overhead)
    assert j == pytest.approx(gpu_j + cost.idle_energy_j(s - gpu_s))
    assert HostDispatchFloor(PlainDecoding(cost), 1e-6).step(shape) == (gpu_s, gpu_j)
    assert HostDispatchFloor(PlainDecoding(cost), 4e-5).step(BatchShape()) == cost.step_seconds_energy(BatchShape())


def test_prefill_steps_pay_the_engines_time_per_prompt() -> None:
    """A step with prefills adds prefill_s_per_seq per prompt after the launch floor (the GPUs idle through it);
    a decode step does not. The splitwise engine sets 20 ms on either DGX host (not scaled by the core's speed)."""
    cost = _cost()
    floor = HostDispatchFloor(PlainDecoding(cost), 4e-5)
    with_prompt = HostDispatchFloor(PlainDecoding(cost), 4e-5, prefill_s_per_seq=0.02)
    prefill = BatchShape(prefill_tokens=4 * 128, prefill_seqs=4, prefill_attn_pairs=4 * 128 * 129 / 2)
    (s0, j0), (s1, j1) = floor.step(prefill), with_prompt.step(prefill)
    assert s1 - s0 == pytest.approx(4 * 0.02)
    assert j1 - j0 == pytest.approx(cost.idle_energy_j(4 * 0.02))
    decode = BatchShape(decode_seqs=4, decode_ctx_tokens=2400)
    assert with_prompt.step(decode) == floor.step(decode)
    assert SPLITWISE_PREFILL_S_PER_SEQ == 20e-3
    for gpu in ("a100-sxm-80gb", "h100-sxm"):
        assert engine_profile("splitwise", gpu, model=LLAMA2).prefill_s_per_seq == 20e-3
    assert engine_profile("vllm", "h100-sxm").prefill_s_per_seq == 0.0
    assert ReplicaGroup(model=LLAMA2, hardware="h100-sxm", tp=8, engine="splitwise").prefill_s_per_seq == 20e-3


def test_simulated_decode_stops_shortening_with_tp() -> None:
    """The signature of a host-bound stack (Splitwise's A100 rows: 44.3 / 44.8 ms at tp 4 / 8): with the engine's
    host cost the tp 4 and tp 8 decode steps take the same time; without it tp 8 is faster."""
    def tpot(tp: int, host: float) -> float:
        cfg = SimConfig(workload=SyntheticWorkload(arrival=OfflineArrivals(), input=FixedLengths(tokens=512),
                                                   output=FixedLengths(tokens=16), num_requests=1),
                        replicas=(ReplicaGroup(model=LLAMA2, hardware="a100-sxm-80gb", tp=tp, host_s_per_launch=host,
                                               quant=QuantSpec(weight_dtype="fp16", activation_dtype="fp16",
                                                               kv_dtype="fp16"),
                                               scheduler=StaticScheduler(max_num_seqs=1, max_batched_tokens=512)),))
        return simulate(cfg).summary["tpot_s"]["mean"]
    host = engine_profile("splitwise", "a100-sxm-80gb", model=LLAMA2).host_s_per_launch
    assert tpot(4, host) == pytest.approx(tpot(8, host), rel=0.01)
    assert tpot(4, host) == pytest.approx(1045 * host, rel=0.05)
    assert tpot(8, 0.0) < 0.7 * tpot(4, host)


def test_prompt_only_floor_spares_generation_only_iterations() -> None:
    """An engine that replays CUDA graphs for generation-only iterations (TensorRT-LLM's PyTorch executor) pays
    the host floor only in an iteration with a prompt: a decode step keeps its GPU time, a prefill step or a mixed
    step takes its launches x the host cost."""
    cost = _cost()
    decode = BatchShape(decode_seqs=1, decode_ctx_tokens=600)
    prefill = BatchShape(prefill_tokens=16, prefill_seqs=1, prefill_attn_pairs=136.0)
    mixed = BatchShape(prefill_tokens=16, prefill_seqs=1, prefill_attn_pairs=136.0, decode_seqs=1,
                       decode_ctx_tokens=600)
    floor = HostDispatchFloor(PlainDecoding(cost), 4e-5, prompt_only=True)
    assert floor.step(decode) == cost.step_seconds_energy(decode)
    assert floor.step(prefill)[0] == pytest.approx(1045 * 4e-5 + cost.overhead_seconds_energy(prefill)[0])
    assert floor.step(mixed)[0] == pytest.approx(1125 * 4e-5 + cost.overhead_seconds_energy(mixed)[0])


def test_trtllm_1x_engine_floors_prompt_iterations_only() -> None:
    """trtllm 1.x fills the group with TRTLLM_HOST_S_PER_LAUNCH on prompt iterations; trtllm 0.x (TensorRT
    engines, no Python dispatch) and vLLM set no floor."""
    g = ReplicaGroup(model=LLAMA2, hardware="h100-sxm", tp=8, engine="trtllm==1.0")
    assert (g.host_s_per_launch, g.eager_prompts_only) == (TRTLLM_HOST_S_PER_LAUNCH, True)
    assert TRTLLM_HOST_S_PER_LAUNCH > 0
    old = ReplicaGroup(model=LLAMA2, hardware="h100-sxm", tp=8, engine="trtllm==0.12")
    assert (old.host_s_per_launch, old.eager_prompts_only) == (0.0, False)
    assert ReplicaGroup(model=LLAMA2, hardware="h100-sxm", tp=8, engine="vllm").eager_prompts_only is False
