"""Numbers of docs/reproductions.md: each function runs our model on the closest setting to a published claim
(techniques.md); `python benchmarks/reproductions.py` prints them. tests/simulator/test_reproductions.py checks
the trends with the same functions."""

from __future__ import annotations

from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.batch import BatchShape
from roofsim.model.cost import CostModel
from roofsim.model.loader import load_model
from roofsim.model.memory import plan_memory
from roofsim.model.spec import ParallelSpec, QuantSpec
from roofsim.model.techniques import (
    LayerCoster,
    SpeculativeConfig,
    SpeculativeCoster,
    closed_form_tokens,
)
from roofsim.simulator.config import SimConfig
from roofsim.simulator.run import simulate
from roofsim.simulator.speculative import draft_cost_model


def _coster(model: str, hw: str, spec: dict, tp: int = 1) -> SpeculativeCoster:
    cost = CostModel(load_model(model), load_hardware(hw), parallel=ParallelSpec(tp=tp))
    cfg = SpeculativeConfig.model_validate(spec)
    draft = draft_cost_model(cost, cfg.drafter.model) if cfg.drafter.kind == "draft_model" else None
    return SpeculativeCoster(cost, cfg, draft)


def leviathan(a: float = 0.8, k: int = 4) -> tuple[float, float]:
    """(closed-form tokens per step, our batch-1 speedup with a free drafter) on Llama-3.1-8B / H100."""
    sc = _coster("llama-3.1-8b", "h100-sxm", {"drafter": {"kind": "ngram"}, "acceptance": {"kind": "iid", "rate": a},
                                            "k": k})
    return closed_form_tokens(a, k), sc.speedup(1, 512)


def osd(base: float, gain: float, k: int = 4) -> float:
    """Latency reduction from raising acceptance base -> base + gain: Qwen3-8B target, Qwen3-0.6B drafter, H100."""
    sc = _coster("qwen3-8b", "h100-sxm", {"drafter": {"kind": "draft_model", "model": "qwen3-0.6b"}, "k": k})
    return sc.speedup(1, 512, rate=base + gain) / sc.speedup(1, 512, rate=base)


MEDUSA_RATES = [0.6, 0.45, 0.35, 0.3]  # our assumption (per-head conditional acceptance), not a published number


def medusa(batch: int, tree_width: int = 3) -> float:
    sc = _coster("llama-2-7b", "a100-sxm-80gb", {"drafter": {"kind": "medusa"}, "k": 4, "tree_width": tree_width,
                                                 "acceptance": {"kind": "positional", "rates": MEDUSA_RATES}})
    return sc.speedup(batch, 512)


def layerskip(exit_layer: int = 8, a: float = 0.75, k: int = 4) -> tuple[float, float]:
    """(LayerSkip speedup, Draft&Verify-style speedup with the same draft depth), Llama-2-7B on A100, batch 1."""
    ls = _coster("llama-2-7b", "a100-sxm-80gb", {"drafter": {"kind": "layerskip", "exit_layer": exit_layer},
                                                 "acceptance": {"kind": "iid", "rate": a}, "k": k})
    dv = _coster("llama-2-7b", "a100-sxm-80gb", {"drafter": {"kind": "self", "draft_layers": exit_layer},
                                                 "acceptance": {"kind": "iid", "rate": a}, "k": k})
    return ls.speedup(1, 512), dv.speedup(1, 512)


def depth_speedup(fraction: float, batch: int = 16, model: str = "opt-13b", hw: str = "a100-sxm-80gb",
                  context: int = 512) -> float:
    """Decode speedup of running `fraction` of the layers for the whole batch (SkipDecode / synchronised exit)."""
    cost = CostModel(load_model(model), load_hardware(hw))
    lc = LayerCoster(cost)
    shape = BatchShape(decode_seqs=batch, decode_tokens=batch, decode_ctx_tokens=batch * context)
    return cost.step_seconds_energy(shape)[0] / lc.partial_step(shape, round(fraction * lc.L))[0]


def kv_quant(kv_dtype: str = "int4", context: int = 32768, model: str = "llama-3.1-8b",
             hw: str = "h100-sxm") -> tuple[float, float, float]:
    """(KV memory saving, concurrent sequences gain, decode throughput gain at full memory) at `context` tokens."""
    m, h = load_model(model), load_hardware(hw)
    out = []
    for kv in ("bf16", kv_dtype):
        q = QuantSpec(kv_dtype=kv)
        plan = plan_memory(m, h, q)
        n = plan.max_sequences(context)
        cost = CostModel(m, h, q)
        t = cost.step_seconds(BatchShape(decode_seqs=n, decode_tokens=n, decode_ctx_tokens=n * context))
        out.append((plan.kv_bytes_per_token, n, n / t))
    (b0, n0, r0), (b1, n1, r1) = out
    return b0 / b1, n1 / n0, r1 / r0


def sarathi_capacity(scheduler: dict, rates: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0),
                     slo_itl_p99_s: float = 0.1, n: int = 200) -> float:
    """Highest arrival rate (of `rates`) whose P99 inter-token latency meets the SLO: Mistral-7B on one A100."""
    best = 0.0
    for rate in rates:
        cfg = SimConfig.model_validate({
            "workload": {"kind": "synthetic", "arrival": {"kind": "poisson", "rate_per_s": rate},
                         "input": {"kind": "uniform", "low": 500, "high": 3000},
                         "output": {"kind": "uniform", "low": 50, "high": 400}, "num_requests": n},
            "replicas": [{"model": "mistral-7b-v0.1", "hardware": "a100-sxm-80gb", "scheduler": scheduler}],
            "seed": 1})
        s = simulate(cfg).summary
        if s["saturated"] or s["itl_s"]["p99"] > slo_itl_p99_s:
            break
        best = rate
    return best


if __name__ == "__main__":
    print("leviathan a=0.8 k=4 (closed form, speedup):", leviathan())
    for b, g in ((0.3, 0.1), (0.25, 0.65)):
        print(f"OSD {b}->{b + g}: latency reduction {osd(b, g):.2f}x")
    print("medusa batch 1/16/64/256:", [round(medusa(b), 2) for b in (1, 16, 64, 256)])
    print("layerskip (ls, draft&verify):", layerskip())
    print("depth speedup 1/2, 1/3, 1/5:", [round(depth_speedup(f), 2) for f in (1 / 2, 1 / 3, 1 / 5)])
    print("kv int4 32K:", kv_quant("int4"), "kv int8:", kv_quant("int8"), "kv fp8:", kv_quant("fp8"))
    v = sarathi_capacity({"kind": "vllm"})
    s = sarathi_capacity({"kind": "sarathi", "chunk_size": 512})
    print(f"sarathi capacity: vllm {v} req/s, sarathi {s} req/s")
