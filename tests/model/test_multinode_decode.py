"""Decode steps of large MoE models: NCCL's hierarchical latency across nodes (ring steps on the
node's fabric, tree all-reduce), no MoE all-to-all when attention TP already spans the EP group, residual adds
fused into the next norm."""

from __future__ import annotations

import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.cost import Calibration, allreduce_seconds, comm_seconds
from roofsim.model.graph import graph_context, linear_kernels
from roofsim.model.kernel import Kernel
from roofsim.model.loader import load_model
from roofsim.model.spec import ParallelSpec, QuantSpec

H100 = load_hardware("h100-sxm")  # clock 1.83 GHz = COMM_REF_CLOCK_HZ: NCCL latencies unscaled
CAL = Calibration(nccl_bw_eff_pcie=0.75, comm_latency_s=0.0)
NET_BUS = 50e9 * 0.75  # one 400 Gb/s NIC per GPU x nccl_bw_eff_pcie


def test_small_allreduce_over_two_nodes_runs_as_nccl_tree_ll() -> None:
    # 2 tokens x 7168 x bf16 over 2 x 8 GPUs: tree LL 6.8 + 2 x (7 NVLink hops x 0.6 x 1.8 + 1 network hop x 5.0) us,
    # the message at half the bus bandwidth x 0.92 / 3.8; the ring LL (6.6 + 28 x 1.08 + 2 x 2.7 = 42.2 us) loses
    msg = 2 * 7168 * 2.0
    tree = (6.8 + 2 * (7 * 0.6 * 1.8 + 5.0)) * 1e-6 + msg / (0.5 * NET_BUS * 0.92 / 3.8)
    assert allreduce_seconds(msg, 16, H100, CAL, nccl=True) == pytest.approx(tree, rel=1e-9)
    assert tree == pytest.approx(38.2e-6, rel=1e-2)
    # TensorRT-LLM's own kernel needs NVLink between all ranks: across nodes it is NCCL + the call's fixed cost
    trt = CAL.model_copy(update={"comm_custom_nvlink_only": True, "comm_latency_s": 3e-6})
    assert allreduce_seconds(msg, 16, H100, trt, graphed=True) == pytest.approx(tree + 3e-6, rel=1e-9)


def test_large_allreduce_over_two_nodes_runs_as_ring_simple() -> None:
    # 256 MB: ring Simple, 2 of its 30 steps on the network (14 us), 28 on NVLink at max(3.4, 3 x 1.0 us overhead)
    msg = float(1 << 28)
    ring = (8.4 + 28 * 3.4 + 2 * 14.0) * 1e-6 + 30 / 16 * msg / NET_BUS
    assert allreduce_seconds(msg, 16, H100, CAL, nccl=True) == pytest.approx(ring, rel=1e-9)


def test_allgather_over_two_nodes_crosses_the_network_once() -> None:
    # ring all-gather over 16 GPUs: 15 steps, 1 on the network; LL: 6.6 + 14 x 1.08 + 2.7 us, no tree
    k = Kernel(name="logits_gather", op="all_gather", dtype="fp32", comm_bytes=4096.0, comm_gpus=16)
    ll = (6.6 + 14 * 0.6 * 1.8 + 2.7) * 1e-6 + 15 / 16 * 4096.0 / min(141e9, 0.5 * NET_BUS)
    assert comm_seconds(k, H100, CAL) == pytest.approx(ll, rel=1e-9)


def test_one_node_allreduce_is_the_ring_and_nvls_model() -> None:
    # 8 GPUs, 64 KB: ring LL 6.6 + 14 x 0.6 us, half the NVLink bus bandwidth capped at 141 GB/s (no tree on one node)
    cal = Calibration(nccl_bw_eff=0.8)
    assert allreduce_seconds(64e3, 8, H100, cal, nccl=True) == pytest.approx(15.0e-6 + 1.75 * 64e3 / 141e9,
                                                                           rel=1e-9)


def _names(model: str, par: ParallelSpec) -> dict[str, int]:
    ctx = graph_context(load_model(model), QuantSpec(), par)
    return {k.name: k.count for k in linear_kernels(ctx, 2, 2, graphed=True)}


def test_attention_tp_over_the_ep_group_sends_no_all_to_all() -> None:
    # DeepSeek-V3 at tp 16 x ep 16: every EP rank holds the batch; the layer's two all-reduces combine the experts
    ks = _names("deepseek-v3", ParallelSpec(tp=16, ep=16))
    assert "moe_all_to_all" not in ks and ks["tp_allreduce"] == 2 * 61
    # EP beyond the TP group (experts over pipeline stages): tokens differ between EP ranks, dispatch + combine
    ks = _names("mixtral-8x7b", ParallelSpec(tp=2, pp=2, ep=4))
    assert ks["moe_all_to_all"] == 2 * 32


def test_residual_add_fused_into_the_norm_pays_its_bytes_but_no_launch() -> None:
    from roofsim.model.cost import kernel_cost
    from roofsim.model.graph import elementwise

    ctx = graph_context(load_model("llama-3.1-8b"), QuantSpec(), ParallelSpec())
    add = elementwise("residual_add", 2 * 4 * 4096, 4 * 4096, 1, ctx, 64, op="residual")
    fused, own = Calibration(kernel_overhead_s=3e-6), Calibration(kernel_overhead_s=3e-6,
                                                                  elementwise_residual_fused=False)
    memory = add.bytes / (H100.memory.bandwidth_bytes_per_s * 0.8)
    assert kernel_cost(add, H100, fused).seconds == pytest.approx(64 * memory, rel=1e-9)
    assert kernel_cost(add, H100, own).seconds == pytest.approx(64 * (memory + 3e-6), rel=1e-9)
    # any other elementwise kernel keeps its launch
    norm = elementwise("input_norm", 4 * 4096, 4 * 4096, 4, ctx, 1, op="norm")
    assert kernel_cost(norm, H100, fused).seconds == pytest.approx(kernel_cost(norm, H100, own).seconds, rel=1e-12)
