"""`roofsim estimate` and `roofsim list`: one prefill and one decode step through the roofline cost model."""

from __future__ import annotations

import argparse
from typing import Any

from roofsim.app.common import (
    Deployment,
    add_deployment_args,
    deployment_from_args,
    fmt_si,
    limit_arg,
    print_json,
    print_table,
    quant_line,
    schema_arg,
)
from roofsim.hardware_specs.catalog import list_hardware
from roofsim.model.cost import StepCost
from roofsim.model.estimate import estimate_deployment
from roofsim.model.loader import list_models
from roofsim.model.params import count_params
from roofsim.simulator.workload import FixedLengths
from roofsim.validation.profiles import resolve_calibration


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("estimate", help="TTFT, TPOT, throughput, per-kernel breakdown and memory of one config")
    add_deployment_args(p)
    p.add_argument("--batch", type=limit_arg("MAX_BATCH_SEQS", "--batch"), default=1, help="concurrent requests B")
    p.add_argument("--input-len", type=schema_arg(FixedLengths, "tokens", "--input-len"), default=1024,
                   help="prompt tokens I")
    p.add_argument("--output-len", type=schema_arg(FixedLengths, "tokens", "--output-len"), default=256,
                   help="generated tokens O")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_estimate)

    lp = sub.add_parser("list", help="list the bundled hardware or model presets")
    lp.add_argument("what", choices=("hardware", "models"))
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=run_list)


def estimate(dep: Deployment, batch: int, input_len: int, output_len: int,
             gpu_memory_utilization: float = 0.9) -> dict[str, Any]:
    """The numbers `roofsim estimate` prints (model.estimate.estimate_deployment), as a JSON-ready dict."""
    e = estimate_deployment(dep.model, dep.hardware, dep.quant, dep.parallel, dep.calibration, batch, input_len,
                            output_len, gpu_memory_utilization)
    return {
        "model": e.model.name,
        "hardware": e.hardware.id,
        "tp": e.parallel.tp,
        "pp": e.parallel.pp,
        "ep": e.parallel.ep,
        "num_gpus": e.parallel.num_gpus,
        "weight_dtype": e.quant.weight_dtype,
        "activation_dtype": e.quant.activation_dtype,
        "kv_dtype": e.quant.kv_dtype,
        "batch": batch,
        "input_len": input_len,
        "output_len": output_len,
        "params": e.params.total,
        "active_params": e.params.active,
        "ttft_s": e.ttft_s,
        "tpot_s": e.tpot_s,
        "e2e_s": e.e2e_s,
        "output_tokens_per_s": e.output_tokens_per_s,
        "prefill": _step_summary(e.prefill),
        "decode": _step_summary(e.decode),
        "kernels": _kernels(e.prefill, "prefill") + _kernels(e.decode, "decode"),
        "memory": e.memory.as_dict(),
        "max_batch_at_context": e.max_batch_at_context,
        "batch_fits": e.batch_fits,
        "calibration": e.calibration.name,
    }


def _step_summary(s: StepCost) -> dict[str, Any]:
    return {"seconds": s.seconds, "overhead_s": s.overhead_s, "bound": s.bound, "flops": s.flops, "bytes": s.bytes, "mfu": s.mfu,
            "mbu": s.mbu, "energy_j": s.energy_j, "seconds_by_bound": s.seconds_by_bound}


def _kernels(s: StepCost, phase: str) -> list[dict[str, Any]]:
    out = []
    for kc in s.kernels:
        k = kc.kernel
        out.append({
            "phase": phase, "name": k.name, "kind": k.kind, "dtype": k.dtype, "count": k.count,
            "flops": k.flops * k.count, "bytes": k.bytes * k.count,
            "weight_bytes": k.weight_bytes * k.count,
            "act_bytes": (k.act_read_bytes + k.act_write_bytes) * k.count,
            "kv_bytes": (k.kv_read_bytes + k.kv_write_bytes) * k.count,
            "arithmetic_intensity": k.arithmetic_intensity if k.bytes else None,
            "bound": kc.bound, "seconds": kc.seconds, "share": kc.seconds / s.seconds,
        })
    return out


def run_estimate(args: argparse.Namespace) -> int:
    dep = deployment_from_args(args)
    r = estimate(dep, args.batch, args.input_len, args.output_len, args.gpu_memory_utilization)
    r["calibration"] = resolve_calibration(args.calibration, dep.hardware)[1]
    r["quantisation"] = list(dep.quant_notes)  # where the formats came from: the checkpoint, a flag
    if args.json:
        print_json(r)
        return 0
    print(f"{r['model']} on {r['num_gpus']} x {r['hardware']} (tp={r['tp']} pp={r['pp']}), weights "
          f"{r['weight_dtype']}, activations {r['activation_dtype']}, KV {r['kv_dtype']}; "
          f"{fmt_si(r['params'])} params ({fmt_si(r['active_params'])} active); calibration: {r['calibration']}")
    if (line := quant_line(r["quantisation"])) is not None:
        print(line)
    print(f"batch {r['batch']}, input {r['input_len']}, output {r['output_len']} tokens\n")
    print(f"  TTFT  (prefill of {r['batch']} x {r['input_len']} tokens): {r['ttft_s'] * 1e3:9.2f} ms "
          f"[{r['prefill']['bound']}-bound, MFU {r['prefill']['mfu']:.0%}]")
    print(f"  TPOT  (decode step, batch {r['batch']}, context {r['input_len'] + r['output_len'] // 2}): "
          f"{r['tpot_s'] * 1e3:9.2f} ms [{r['decode']['bound']}-bound, MBU {r['decode']['mbu']:.0%}]")
    print(f"  E2E per request: {r['e2e_s']:.3f} s;  output throughput {r['output_tokens_per_s']:.0f} tokens/s")
    for phase in ("prefill", "decode"):
        print(f"\n{phase} step kernels (all layers):")
        rows = [[k["name"], fmt_si(k["flops"]), fmt_si(k["bytes"], "B"),
                 f"{k['arithmetic_intensity']:.1f}" if k["arithmetic_intensity"] is not None else "-",
                 k["bound"], f"{k['seconds'] * 1e6:.1f}", f"{k['share']:.1%}"]
                for k in r["kernels"] if k["phase"] == phase]
        print_table(rows, ["kernel", "FLOPs", "bytes", "FLOP/B", "bound", "time us", "share"])
    m = r["memory"]
    print("\nmemory per GPU:")
    print(f"  capacity {m['capacity_bytes'] / 1e9:.1f} GB, usable {m['usable_bytes'] / 1e9:.1f} GB; weights "
          f"{m['weights_bytes'] / 1e9:.2f} GB, activations {m['activation_bytes'] / 1e9:.2f} GB, non-torch "
          f"{m['non_torch_bytes'] / 1e9:.2f} GB, KV cache {m['kv_capacity_bytes'] / 1e9:.2f} GB")
    print(f"  KV {m['kv_bytes_per_token'] / 1e3:.1f} kB/token -> {m['max_kv_tokens']} tokens; largest batch at "
          f"{r['input_len'] + r['output_len']} tokens of context: {r['max_batch_at_context']}"
          + ("" if r["batch_fits"] else f"  (batch {r['batch']} does NOT fit: requests would queue or be preempted)"))
    return 0


def run_list(args: argparse.Namespace) -> int:
    if args.what == "hardware":
        hws = list_hardware()
        if args.json:
            print_json([h.model_dump() for h in hws])
            return 0
        rows = [[h.id, h.name, fmt_si(h.peak_flops_per_s.bf16 or h.peak_flops_per_s.fp32, "FLOP/s"),
                 fmt_si(h.peak_flops_per_s.fp8 or 0, "FLOP/s") if h.peak_flops_per_s.fp8 else "-",
                 f"{h.memory.capacity_bytes / 1e9:.0f} GB", fmt_si(h.memory.bandwidth_bytes_per_s, "B/s"),
                 f"${h.price_usd_per_hour:.2f}"] for h in hws]
        print_table(rows, ["id", "name", "bf16", "fp8", "memory", "bandwidth", "$/h"])
        return 0
    models = list_models()
    if args.json:
        print_json([m.model_dump() for m in models])
        return 0
    rows = []
    for m in models:
        p = count_params(m)
        rows.append([m.name, m.hf_id, m.family, str(m.num_layers), str(m.hidden_size),
                     f"{m.num_heads}/{m.num_kv_heads}", fmt_si(p.total), fmt_si(p.active)])
    print_table(rows, ["model", "hf id", "family", "layers", "hidden", "heads/kv", "params", "active"])
    return 0
