"""The cost oracle: every graph kernel has an op kind, costs depend on the op and never on the kernel name, the
per-kernel and closed-form evaluations share their time functions, and techniques use public CostModel API only."""

from __future__ import annotations

import ast
import re
import typing
from dataclasses import replace
from pathlib import Path

import pytest

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.batch import BatchShape
from roofsim.model.cost import Calibration, CostModel, kernel_cost
from roofsim.model.graph import (
    elementwise,
    fixed_kernels,
    graph_context,
    layer_kernels,
    linear_kernels,
    step_kernels,
)
from roofsim.model.kernel import OP_KIND, Kernel, OpKind
from roofsim.model.loader import load_model
from roofsim.model.spec import ParallelSpec, QuantSpec

H100 = load_hardware("h100-sxm")
MODEL_DIR = Path(__file__).resolve().parents[2] / "model"
# every per-op-class calibration field away from its neighbours', so dispatch on the wrong class changes a cost
SKEWED = Calibration(
    elementwise_norm_passes=3.5, elementwise_act_passes=4.0, elementwise_rope_passes=4.5,
    elementwise_cache_gain=2.0, elementwise_norm_cache_gain=3.0, elementwise_act_cache_gain=5.0,
    elementwise_rope_cache_gain=7.0, elementwise_cache_bytes=1e6, comm_floor_s=2e-5, nccl_latency_s=9e-6,
    decode_cuda_graphs=True, attn_prefill_tile=128.0, attn_softmax_flops=4.0, attn_decode_unit_s=3e-6,
    attn_decode_split_tokens=300.0, attn_decode_l2_gain=3.0, attn_decode_cuda_group=6.0, gemm_overlap_loss=0.3,
)
# (model, quant, parallel) covering GQA + RoPE, MoE with EP, MLA, sliding windows, pipelines, int8 KV
CASES = [
    ("llama-3.1-8b", QuantSpec(kv_dtype="int8"), ParallelSpec(tp=2, pp=2)),
    ("mixtral-8x7b", QuantSpec(), ParallelSpec(tp=2, ep=2)),
    ("mixtral-8x7b", QuantSpec(), ParallelSpec(tp=2, pp=2, ep=4)),  # EP beyond TP: all-to-all
    ("deepseek-v3", QuantSpec(), ParallelSpec(tp=8)),
    ("gpt-oss-20b", QuantSpec(), ParallelSpec()),
]
MIXED = BatchShape.build(prefill=[(700, 0), (300, 2000)], decode_ctx=[100, 5000, 9000], window=128)
DECODE = BatchShape.build(decode_ctx=[100, 5000, 9000], window=128)


def _kernels(name: str, quant: QuantSpec, par: ParallelSpec) -> list[Kernel]:
    model = load_model(name)
    return step_kernels(model, quant, par, MIXED) + step_kernels(model, quant, par, DECODE)


@pytest.mark.parametrize(("name", "quant", "par"), CASES)
def test_every_graph_kernel_has_a_known_op_kind(name: str, quant: QuantSpec, par: ParallelSpec) -> None:
    for k in _kernels(name, quant, par):
        assert k.op in typing.get_args(OpKind)
        assert k.kind == OP_KIND[k.op]


def test_op_kinds_of_a_tp_pp_ep_graph() -> None:
    ops = {k.op for case in CASES for k in _kernels(*case)}
    assert ops == {"embedding", "norm", "gemm", "rope", "residual", "activation", "allreduce", "all_to_all",
                   "send_recv", "all_gather", "sampling", "attn_prefill", "attn_decode", "elementwise"}
    assert set(OP_KIND) == set(typing.get_args(OpKind))


def test_unknown_op_is_refused_naming_the_kinds() -> None:
    with pytest.raises(ValueError, match="op='matmul' is not one of"):
        Kernel(name="x", op="matmul", dtype="bf16")  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "quant", "par"), CASES)
def test_renaming_a_kernel_does_not_change_its_cost(name: str, quant: QuantSpec, par: ParallelSpec) -> None:
    for cal in (Calibration(), SKEWED):
        for k in _kernels(name, quant, par):
            for label in ("renamed", "input_norm", "tp_allreduce", "rope", "mlp_act"):
                assert kernel_cost(replace(k, name=label), H100, cal) == replace(
                    kernel_cost(k, H100, cal), kernel=replace(k, name=label)), (k.name, label)


def test_the_op_kind_not_the_name_selects_the_calibration() -> None:
    ctx = graph_context(load_model("llama-3.1-8b"), QuantSpec(), ParallelSpec())
    args = ("input_norm", 4096 * 4096, 4096 * 4096, 4, ctx, 1)
    as_norm, as_plain = elementwise(*args, op="norm"), elementwise(*args, op="elementwise")
    cal = Calibration(elementwise_norm_passes=3.5)
    assert kernel_cost(as_norm, H100, cal).memory_s == pytest.approx(
        3.5 * kernel_cost(as_plain, H100, cal).memory_s, rel=1e-12)
    tp = Kernel(name="tp_allreduce", op="all_gather", dtype="bf16", comm_bytes=1e6, comm_gpus=4)
    assert kernel_cost(tp, H100, Calibration(comm_floor_s=1e-3)).seconds < 1e-3  # NCCL all-gather: no floor
    assert kernel_cost(replace(tp, op="allreduce"), H100, Calibration(comm_floor_s=1e-3)).seconds == 1e-3


@pytest.mark.parametrize(("name", "quant", "par"), CASES)
def test_layer_and_fixed_kernels_partition_the_linear_kernels(name: str, quant: QuantSpec,
                                                              par: ParallelSpec) -> None:
    c = graph_context(load_model(name), quant, par)
    for tokens, logits in ((37, 5), (1, 1), (0, 3), (8, 0)):
        lin = linear_kernels(c, tokens, logits)
        split = layer_kernels(c, tokens) + fixed_kernels(c, tokens, logits)
        assert sorted(lin, key=repr) == sorted(split, key=repr)
        assert all(k.count == 1 or k.op == "send_recv" for k in fixed_kernels(c, tokens, logits))


@pytest.mark.parametrize(("name", "quant", "par"), CASES)
def test_public_building_blocks_sum_to_the_hot_path_bit_for_bit(name: str, quant: QuantSpec,
                                                                par: ParallelSpec) -> None:
    cm = CostModel(load_model(name), H100, quant, par, SKEWED)
    for shape in (MIXED, DECODE):
        graphed = not shape.prefill_tokens and par.tp > 1
        lin_s, lin_j = cm.linear_seconds_energy(shape.tokens, shape.logit_tokens, graphed)
        a_s, a_j = cm.attention_seconds_energy(shape)
        o_s, o_j = cm.overhead_seconds_energy(shape)
        assert cm.step_seconds_energy(shape) == (lin_s + a_s + o_s, lin_j + a_j + o_j)
        assert cm.linear_seconds_energy(shape.tokens, shape.logit_tokens, graphed) == cm.kernels_seconds_energy(
            linear_kernels(cm.ctx, shape.tokens, shape.logit_tokens, graphed))
        full = cm.step(shape)
        assert cm.step_seconds_energy(shape) == pytest.approx((full.seconds, full.energy_j), rel=1e-12)
    a_s, a_j = cm.attention_seconds_energy(DECODE)
    assert cm.decode_attention(DECODE.decode_seqs, DECODE.decode_tokens, DECODE.decode_ctx_tokens,
                               DECODE.decode_ctx_tokens_win) == (a_s, a_j)
    assert o_s == cm.overhead_seconds(3) and o_j == cm.idle_energy_j(o_s)


def test_techniques_use_only_public_cost_model_members() -> None:
    src = (MODEL_DIR / "techniques.py").read_text()
    private = re.findall(r"\b(?:cost|draft|cm)\._\w+", src)
    assert private == []


def _reads_kernel_name(tree: ast.AST) -> list[int]:
    """Line numbers where a `.name` attribute is compared or string-tested (k.name == ..., k.name in ...,
    name.endswith(...)): dispatch on a kernel label."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Attribute) and o.attr == "name" for o in operands):
                lines.append(node.lineno)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("endswith", "startswith")):
            target = node.func.value
            if (isinstance(target, ast.Attribute) and target.attr == "name") or (
                    isinstance(target, ast.Name) and target.id == "name"):
                lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("module", ["cost.py", "techniques.py", "graph.py", "kernel.py"])
def test_no_cost_dispatch_on_kernel_names(module: str) -> None:
    assert _reads_kernel_name(ast.parse((MODEL_DIR / module).read_text())) == []


def test_the_name_dispatch_detector_detects() -> None:
    assert _reads_kernel_name(ast.parse("if k.name == 'x': pass\nname.endswith('norm')\n")) == [1, 2]
