"""`roofsim estimate` and `roofsim list`: one prefill and one decode step through the roofline cost model."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import numpy as np

from roofsim.app.cmd_simulate import add_interval_args, print_ranges
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
from roofsim.model.cost import Calibration, StepCost
from roofsim.model.estimate import estimate_deployment
from roofsim.model.loader import list_models, load_checkpoint_quant, model_summary
from roofsim.model.uncertainty import ErrorModel
from roofsim.simulator.ensemble import EnsembleResult, member_seeds
from roofsim.simulator.workload import FixedLengths
from roofsim.validation.profiles import e2e_term_for, resolve_calibration, resolve_error_model

# what `estimate --ensemble` gives a range for
ESTIMATE_METRICS: tuple[str, ...] = ("ttft_s", "tpot_s", "e2e_s", "output_tokens_per_s")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("estimate", help="TTFT, TPOT, throughput, per-kernel breakdown and memory of one config")
    add_deployment_args(p)
    p.add_argument("--batch", type=limit_arg("MAX_BATCH_SEQS", "--batch"), default=1, help="concurrent requests B")
    p.add_argument("--input-len", type=schema_arg(FixedLengths, "tokens", "--input-len"), default=1024,
                   help="prompt tokens I")
    p.add_argument("--output-len", type=schema_arg(FixedLengths, "tokens", "--output-len"), default=256,
                   help="generated tokens O")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_interval_args(p, simulate=False)
    p.set_defaults(func=run_estimate)

    lp = sub.add_parser("list", help="list the bundled hardware or model presets")
    lp.add_argument("what", choices=("hardware", "models"))
    lp.add_argument("--context", type=schema_arg(FixedLengths, "tokens", "--context"), default=8192,
                    help="models: tokens of context the KV/state bytes per token are given at (default 8192)")
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
        "attn_dp": e.parallel.attn_dp,
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


def estimate_ensemble(dep: Deployment, error_model: ErrorModel, batch: int, input_len: int, output_len: int,
                      members: int, levels: tuple[float, ...], gpu_memory_utilization: float = 0.9,
                      seed: int = 0) -> EnsembleResult:
    """`members` estimates whose calibration carries one draw each from `error_model` (simulator.ensemble's
    member seeds, so the same seed gives the same ranges), as an EnsembleResult over ESTIMATE_METRICS."""
    base = dep.calibration or Calibration()
    out = []
    for ss in member_seeds(seed, members):
        cal = base.model_copy(update={"time_scale": error_model.sample_member(np.random.default_rng(ss))})
        e = estimate_deployment(dep.model, dep.hardware, dep.quant, dep.parallel, cal, batch, input_len, output_len,
                                gpu_memory_utilization)
        out.append({m: getattr(e, m) for m in ESTIMATE_METRICS})
    # a static batch as a benchmark row states it (simulator.ensemble.run_inputs): no request rate
    inputs = {"isl": float(input_len), "osl": float(output_len), "concurrency": float(batch), "qps": 0.0,
              "tp": float(dep.parallel.tp)}
    return EnsembleResult(tuple(out), levels, seed, inputs=inputs)


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
    ens = None
    if args.ensemble is not None:
        if args.ensemble < 1:
            raise ValueError(f"--ensemble={args.ensemble} must be >= 1")
        em, label = resolve_error_model(args.calibration, dep.hardware)
        ens = estimate_ensemble(dep, em, args.batch, args.input_len, args.output_len, args.ensemble, args.interval,
                                args.gpu_memory_utilization)
        ens = dataclasses.replace(ens, point={m: r[m] for m in ESTIMATE_METRICS}, e2e=e2e_term_for(dep.hardware))
        r["ensemble"] = {**ens.as_dict(ESTIMATE_METRICS), "error_model": label}
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
    if ens is not None:
        print(f"\n  ensemble of {len(ens.members)} members (kernel error model: {r['ensemble']['error_model']}):")
        print_ranges(ens, ESTIMATE_METRICS)
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
    summaries = model_rows(args.context)
    if args.json:
        print_json(summaries)
        return 0
    rows = [[r["name"], r["family"], str(r["num_layers"]), _mixers(r["layers_by_kind"]),
             _mlps(r["layers_by_kind"]), fmt_si(r["total_params"]), fmt_si(r["active_params"]),
             fmt_si(r["kv_bytes_per_token"], "B"), fmt_si(r["state_bytes_per_seq"], "B") if r["state_bytes_per_seq"]
             else "-", r["checkpoint_quant"]["label"] if r["checkpoint_quant"] else "-"] for r in summaries]
    print_table(rows, ["model", "family", "layers", "token mixers", "mlp", "params", "active",
                       f"KV/token@{args.context}", "state/seq", "checkpoint quant"], left=(3, 4))
    return 0


def model_rows(context_tokens: int) -> list[dict[str, Any]]:
    """Every preset's model_summary at `context_tokens` (the cache in the checkpoint's KV format) and checkpoint
    quantisation, as JSON-ready dicts (`roofsim list models`)."""
    out = []
    for m in list_models():
        ckpt = load_checkpoint_quant(m.name)
        s = model_summary(m, context_tokens, ckpt.quant if ckpt else None)
        q = None
        if ckpt is not None:
            label = ckpt.scheme + (f", KV {ckpt.quant.kv_dtype}" if ckpt.kv_stated else "")
            q = {"label": label, "scheme": ckpt.scheme, "source": ckpt.source,
                 **ckpt.quant.model_dump()}
        out.append({"name": s.name, "hf_id": s.hf_id, "family": s.family, "num_layers": m.num_layers,
                    "layers_by_kind": s.layers_by_kind, "total_params": s.total_params,
                    "active_params": s.active_params, "context_tokens": s.context_tokens,
                    "kv_bytes_per_token": s.kv_bytes_per_token, "state_bytes_per_seq": s.state_bytes_per_seq,
                    "checkpoint_quant": q})
    return out


def _short(kind: str) -> str:
    kind = kind.split(": ", 1)[1]
    for long, short in (("sliding window ", "swa "), ("mamba2 state ", "mamba2/"), ("gated delta", "gated-delta"),
                        (", compressed 1/", " /"), ("sparse mla top-", "dsa-mla "), ("sparse top-", "dsa ")):
        kind = kind.replace(long, short)
    if kind.startswith("moe top-"):  # moe top-8 of 256 + 1 shared -> moe 8/256+1
        top, _, rest = kind.removeprefix("moe top-").partition(" of ")
        n, _, shared = rest.partition(" + ")
        kind = f"moe {top}/{n}" + (f"+{shared.split()[0]}" if shared else "")
    return kind


def _mixers(kinds: dict[str, int]) -> str:
    return " + ".join(f"{n} {_short(k)}" for k, n in kinds.items() if not k.startswith("mlp: "))


def _mlps(kinds: dict[str, int]) -> str:
    return " + ".join(f"{n} {_short(k)}" for k, n in kinds.items() if k.startswith("mlp: "))
