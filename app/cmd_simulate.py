"""`roofsim simulate`: run the serving simulator from a TOML run file and/or flags (flags override the file);
summary table or JSON on stdout, progress on stderr, optional per-request/time-series/Perfetto outputs."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

from roofsim.app.common import KV_DTYPES, WEIGHT_DTYPES, fmt_si, print_json, print_table, quant_from_args
from roofsim.model.techniques import DRAFTER_KINDS
from roofsim.simulator.config import SCHEDULER_KINDS, SimConfig
from roofsim.simulator.metrics import SimResult
from roofsim.simulator.run import simulate
from roofsim.simulator.workload import (
    ClosedLoopArrivals,
    OfflineArrivals,
    mean_rate_per_s,
    named_workloads,
    resolve_workload,
    with_rate,
)

ROUTER_KINDS = ("round_robin", "least_outstanding", "least_kv", "power_of_two")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("simulate", help="simulate serving a workload on replicas (latency, throughput, cost)")
    p.add_argument("--config", type=Path, help="run file (.toml); flags below override it")
    g = p.add_argument_group("deployment (applies to every replica group)")
    g.add_argument("--model", help="model preset/HF id/config.json (default llama-3.1-8b without --config)")
    g.add_argument("--hardware", help="hardware id or .toml (default h100-sxm without --config)")
    g.add_argument("--tp", type=int)
    g.add_argument("--pp", type=int)
    g.add_argument("--replicas", type=int, help="replicas per group")
    g.add_argument("--weight-dtype", choices=WEIGHT_DTYPES)
    g.add_argument("--kv-dtype", choices=KV_DTYPES)
    g.add_argument("--gpu-memory-utilization", type=float)
    g.add_argument("--calibration", type=Path,
                   help="calibration profile .toml (e.g. from roofsim calibrate [--local], or a shipped one in "
                        "validation/profiles/); default: the cost model's defaults (docs/model.md)")
    g.add_argument("--prefix-caching", action="store_true",
                   help="automatic prefix caching (reuses prompt blocks with equal trace hash ids)")
    g.add_argument("--frontend-ms", type=float,
                   help="serialized API-server time per request, ms (measure: a burst's first-scheduled gaps)")
    s = p.add_argument_group("scheduling")
    s.add_argument("--scheduler", choices=SCHEDULER_KINDS)
    s.add_argument("--max-batch", type=int, help="max_num_seqs")
    s.add_argument("--max-batched-tokens", type=int)
    s.add_argument("--chunk-size", type=int, help="Sarathi token budget (implies --scheduler sarathi)")
    s.add_argument("--preemption", choices=("recompute", "swap"))
    s.add_argument("--router", choices=ROUTER_KINDS)
    t = p.add_argument_group("speculative decoding / early exit (docs/techniques.md)")
    t.add_argument("--speculative", choices=(*DRAFTER_KINDS, "off"), help="drafter kind")
    t.add_argument("--draft-model", help="draft model for --speculative draft_model")
    t.add_argument("--draft-layers", type=int, help="self: layers the draft runs; layerskip: exit layer")
    t.add_argument("--spec-k", type=int, help="draft tokens per step (medusa: heads)")
    t.add_argument("--spec-acceptance", help="per-token rate '0.7', per-position '0.8,0.6,0.5', or 'beta:A,B'")
    t.add_argument("--spec-tree-width", type=int, help="candidates per draft position (tree verification)")
    t.add_argument("--spec-adaptive", action="store_true", help="adapt k from recent acceptance")
    t.add_argument("--early-exit", choices=("per_token", "skipdecode", "off"), help="early-exit policy")
    t.add_argument("--exit-layers", help="per_token exit histogram 'layer:weight,...' e.g. '8:1,16:1,32:2'")
    t.add_argument("--exit-csv", help="per_token exit layers measured, one per CSV row")
    t.add_argument("--kv-fill", choices=("copy", "recompute"), help="KV of skipped layers (per_token)")
    t.add_argument("--no-batch-sync", action="store_true", help="tokens leave the batch at their exit layer")
    t.add_argument("--exit-head", choices=("lm_head", "classifier"))
    t.add_argument("--skip-layers", help="skipdecode depth 'MAX:MIN' (executed layers at position 0 and later)")
    w = p.add_argument_group("workload")
    w.add_argument("--workload", help=f"built-in workload: {', '.join(named_workloads())}")
    w.add_argument("--trace", type=Path, help="trace file to replay (format detected)")
    w.add_argument("--rate", type=float, help="mean arrival rate, requests/s (synthetic/named)")
    w.add_argument("--rate-scale", type=float, help="multiply the arrival rate (trace: compress time)")
    w.add_argument("--duration", type=float, help="seconds of arrivals")
    w.add_argument("--num-requests", type=int)
    w.add_argument("--seed", type=int)
    w.add_argument("--slo-ttft", type=float, help="TTFT target for goodput, s")
    w.add_argument("--slo-tpot", type=float, help="TPOT target for goodput, s")
    w.add_argument("--max-sim-time", type=float, help="stop the simulated clock here, s")
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print one JSON object (no progress bar)")
    o.add_argument("--out", type=Path, help="write requests.csv, timeseries.csv, summary.json, trace.json here")
    o.add_argument("--force", action="store_true", help="overwrite files in --out")
    o.add_argument("--print-config", action="store_true", help="print the resolved run file (TOML) and exit")
    p.set_defaults(func=run_simulate)


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The run file (or defaults) with the flags applied on top."""
    if args.config is not None:
        data: dict[str, Any] = SimConfig.from_toml(args.config).model_dump(mode="json", exclude_none=True)
    else:
        data = {"workload": {"kind": "named", "name": "conversation"},
                "replicas": [{"model": args.model or "llama-3.1-8b", "hardware": args.hardware or "h100-sxm"}]}
    wl = data["workload"]
    if args.workload and args.trace:
        raise ValueError("give --workload or --trace, not both")
    if args.workload:
        wl = {"kind": "named", "name": args.workload}
    if args.trace:
        wl = {"kind": "trace", "path": str(args.trace)}
    wl = _workload_overrides(wl, args)
    data["workload"] = wl
    groups = []
    for grp in data["replicas"]:
        grp = dict(grp)
        for flag, key in (("model", "model"), ("hardware", "hardware"), ("tp", "tp"), ("pp", "pp"),
                          ("replicas", "count"), ("gpu_memory_utilization", "gpu_memory_utilization")):
            if getattr(args, flag) is not None:
                grp[key] = getattr(args, flag)
        if getattr(args, "calibration", None) is not None:
            from roofsim.validation.profiles import read_calibration  # noqa: PLC0415

            grp["calibration"] = read_calibration(args.calibration).model_dump(mode="json")
        if getattr(args, "prefix_caching", False):
            grp["prefix_caching"] = True
        if getattr(args, "frontend_ms", None) is not None:
            grp["frontend_s_per_request"] = args.frontend_ms / 1e3
        if args.weight_dtype or args.kv_dtype:
            q = quant_from_args(argparse.Namespace(weight_dtype=args.weight_dtype or "bf16", activation_dtype="auto",
                                                   kv_dtype=args.kv_dtype or "auto", group_size=128))
            grp["quant"] = q.model_dump(mode="json")
        sched = dict(grp.get("scheduler", {"kind": "vllm"}))
        kind = args.scheduler or ("sarathi" if args.chunk_size is not None else sched.get("kind", "vllm"))
        if kind != sched.get("kind"):
            sched = {k: v for k, v in sched.items() if k in ("max_num_seqs", "max_batched_tokens", "preemption")}
        sched["kind"] = kind
        for flag, key in (("max_batch", "max_num_seqs"), ("max_batched_tokens", "max_batched_tokens"),
                          ("chunk_size", "chunk_size"), ("preemption", "preemption")):
            if getattr(args, flag) is not None:
                sched[key] = getattr(args, flag)
        grp["scheduler"] = sched
        _technique_overrides(grp, args)
        groups.append(grp)
    data["replicas"] = groups
    if args.router:
        data["router"] = {"kind": args.router}
    if args.seed is not None:
        data["seed"] = args.seed
    slo = dict(data.get("slo", {}))
    if args.slo_ttft is not None:
        slo["ttft_s"] = args.slo_ttft
    if args.slo_tpot is not None:
        slo["tpot_s"] = args.slo_tpot
    data["slo"] = slo
    if args.max_sim_time is not None:
        data["max_sim_time_s"] = args.max_sim_time
    return SimConfig.from_dict(data, str(args.config) if args.config else "command line")


def _acceptance(text: str) -> dict[str, Any]:
    try:
        if text.startswith("beta:"):
            a, b = (float(x) for x in text[5:].split(","))
            return {"kind": "beta", "alpha": a, "beta": b}
        rates = [float(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"--spec-acceptance {text!r}: expected '0.7', '0.8,0.6,0.5' or 'beta:A,B'") from None
    return {"kind": "iid", "rate": rates[0]} if len(rates) == 1 else {"kind": "positional", "rates": rates}


def _technique_overrides(grp: dict[str, Any], args: argparse.Namespace) -> None:
    """Apply the speculative / early-exit flags to one replica group (a flag given alone edits the file's)."""
    if args.speculative == "off":
        grp.pop("speculative", None)
    elif args.speculative or any(getattr(args, f) is not None for f in
                                 ("draft_model", "spec_k", "spec_acceptance", "spec_tree_width")) or args.spec_adaptive:
        spec = dict(grp.get("speculative") or {})
        drafter = dict(spec.get("drafter") or {})
        kind = args.speculative or drafter.get("kind")
        if kind is None:
            raise ValueError("speculative flags need --speculative KIND (or a [replicas.speculative] table)")
        if kind != drafter.get("kind"):
            drafter = {"kind": kind}
        if args.draft_model is not None:
            drafter["model"] = args.draft_model
        if args.draft_layers is not None:
            drafter["exit_layer" if kind == "layerskip" else "draft_layers"] = args.draft_layers
        spec["drafter"] = drafter
        if args.spec_k is not None:
            spec["k"] = args.spec_k
        if args.spec_acceptance is not None:
            spec["acceptance"] = _acceptance(args.spec_acceptance)
        if args.spec_tree_width is not None:
            spec["tree_width"] = args.spec_tree_width
        if args.spec_adaptive:
            spec["adaptive_k"] = True
        grp["speculative"] = spec
    if args.early_exit == "off":
        grp.pop("early_exit", None)
        return
    flags = ("exit_layers", "exit_csv", "kv_fill", "exit_head", "skip_layers")
    if not (args.early_exit or any(getattr(args, f) is not None for f in flags) or args.no_batch_sync):
        return
    ee = dict(grp.get("early_exit") or {})
    kind = args.early_exit or ee.get("kind") or ("skipdecode" if args.skip_layers else "per_token")
    if kind != ee.get("kind"):
        ee = {"kind": kind}
    if kind == "skipdecode":
        if args.skip_layers is not None:
            try:
                hi, lo = (int(x) for x in args.skip_layers.split(":"))
            except ValueError:
                raise ValueError(f"--skip-layers {args.skip_layers!r}: expected 'MAX:MIN', e.g. '32:12'") from None
            ee.update(max_layers=hi, min_layers=lo)
    else:
        if args.exit_layers is not None:
            try:
                pairs = [x.split(":") for x in args.exit_layers.split(",")]
                ee["distribution"] = {"kind": "histogram", "layers": [int(a) for a, _ in pairs],
                                      "weights": [float(b) for _, b in pairs]}
            except ValueError:
                raise ValueError(f"--exit-layers {args.exit_layers!r}: expected 'layer:weight,...'") from None
        if args.exit_csv is not None:
            ee["distribution"] = {"kind": "csv", "path": args.exit_csv}
        if args.kv_fill is not None:
            ee["kv_fill"] = args.kv_fill
        if args.exit_head is not None:
            ee["exit_head"] = args.exit_head
        if args.no_batch_sync:
            ee["batch_sync"] = False
    grp["early_exit"] = ee


def _workload_overrides(wl: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    wl = dict(wl)
    kind = wl["kind"]
    if kind == "trace":
        if args.rate is not None:
            raise ValueError("--rate does not apply to a trace; use --rate-scale")
        if args.rate_scale is not None:
            wl["rate_scale"] = args.rate_scale
        if args.num_requests is not None:
            wl["max_requests"] = args.num_requests
        if args.duration is not None:
            wl["end_s"] = wl.get("start_s", 0.0) + args.duration
        return wl
    if kind == "named" and (args.rate is not None or args.rate_scale is not None):
        base = resolve_workload(SimConfig.model_validate(
            {"workload": wl, "replicas": [{"model": "x", "hardware": "x"}]}).workload)
        rate = args.rate if args.rate is not None else base.arrival.rate_per_s  # type: ignore[union-attr]
        wl["rate_per_s"] = rate * (args.rate_scale or 1.0)
    elif kind == "synthetic" and (args.rate is not None or args.rate_scale is not None):
        cfg = SimConfig.model_validate({"workload": wl, "replicas": [{"model": "x", "hardware": "x"}]})
        arrival = cfg.workload.arrival  # type: ignore[union-attr]
        if isinstance(arrival, ClosedLoopArrivals | OfflineArrivals):
            raise ValueError(f"--rate/--rate-scale do not apply to {arrival.kind!r} arrivals (the engine sends "
                             "those requests itself); change clients/think time or use an open-loop arrival")
        # a burst process scales both of its rates, keeping its shape (workload.with_rate)
        rate = args.rate if args.rate is not None else mean_rate_per_s(arrival)
        wl["arrival"] = with_rate(arrival, rate * (args.rate_scale or 1.0)).model_dump(mode="json")
    if args.num_requests is not None:
        wl["num_requests"] = args.num_requests
        wl.setdefault("duration_s", None)
    if args.duration is not None:
        wl["duration_s"] = args.duration
    return {k: v for k, v in wl.items() if v is not None}


def result_json(cfg: SimConfig, r: SimResult) -> dict[str, Any]:
    s = dict(r.summary)
    return {**s, "config": cfg.model_dump(mode="json", exclude_none=True)}


def run_simulate(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.print_config:
        sys.stdout.write(cfg.to_toml())
        return 0
    if args.out is not None:
        _check_out(args.out, args.force)
    progress = None
    bar = None
    if not args.json:
        from tqdm import tqdm  # noqa: PLC0415

        bar = tqdm(total=None, unit="req", file=sys.stderr, desc="simulating", leave=False)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()
    try:
        r = simulate(cfg, progress)
    finally:
        if bar is not None:
            bar.close()
    if args.out is not None:
        write_outputs(args.out, cfg, r)
    if args.json:
        print_json(result_json(cfg, r))
        return 0
    _print_summary(cfg, r)
    return 0


def _print_summary(cfg: SimConfig, r: SimResult) -> None:
    s = r.summary
    groups = "; ".join(f"{g.count} x {g.model} on {g.tp * g.pp} x {g.hardware} (tp={g.tp}, pp={g.pp}, "
                       f"{g.scheduler.kind})" for g in cfg.replicas)
    print(f"{groups}; router {cfg.router.kind}; seed {cfg.seed}")
    print(f"requests: {s['requests_completed']} completed, {s['requests_rejected']} rejected, "
          f"{s['requests_unfinished']} unfinished; stop: {s['stop_reason']}"
          + ("; SATURATED (queue still growing at the last arrival)" if s["saturated"] else ""))
    rows = []
    for key, label in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("itl_s", "ITL"), ("e2e_s", "E2E"),
                       ("queueing_s", "queueing")):
        d = s[key]
        rows.append([label] + [_ms(d[k]) for k in ("mean", "p50", "p90", "p95", "p99")])
    print()
    print_table(rows, ["latency (ms)", "mean", "p50", "p90", "p95", "p99"])
    print()
    print(f"throughput: {s['output_tokens_per_s']:.1f} output tok/s, {s['input_tokens_per_s']:.1f} input tok/s, "
          f"{s['requests_per_s']:.3f} req/s, goodput {s['goodput_requests_per_s']:.3f} req/s")
    print(f"utilisation: MFU {s['mfu']:.1%}, MBU {s['mbu']:.1%}, mean batch {s['mean_batch_size']:.1f}, "
          f"peak KV {s['max_kv_usage']:.0%}, preemptions {s['preemptions']}")
    if s.get("requests_warmup"):
        print(f"warm-up: {s['requests_warmup']} requests simulated and excluded; statistics over "
              f"{s['requests_measured']} measured requests from t={s['measure_start_s']:.2f} s")
    if "prefix_cache_hit_rate" in s:
        print(f"prefix cache: {s['prefix_cache_hit_rate']:.1%} of prompt tokens served from cache "
              f"({s['prefix_cache_request_hit_rate']:.1%} of admissions hit)")
    if "spec_tokens_per_step" in s:
        print(f"speculation: {s['spec_tokens_per_step']:.2f} tokens/step, draft acceptance "
              f"{s['spec_acceptance_rate']:.1%} (per-token rate ~{s['spec_alpha_estimate']:.2f}), mean k "
              f"{s['spec_mean_k']:.2f}, draft time {s['spec_draft_time_fraction']:.1%} of busy time")
    if "ee_mean_executed_depth" in s:
        print(f"early exit: executed depth {s['ee_mean_executed_depth']:.1f} layers (requested "
              f"{s['ee_mean_requested_depth']:.1f}, sync loss {s['ee_sync_loss_layers']:.1f}); decode time saved "
              f"{s['ee_time_saved_fraction']:.1%}, energy saved {fmt_si(s['ee_energy_saved_j'], 'J')} "
              f"({s['ee_energy_saved_fraction']:.1%} of decode)")
    print(f"energy {fmt_si(s['energy_per_output_token_j'], 'J')}/output token; cost "
          f"${s['cost_per_million_output_tokens_usd']:.3f} per million output tokens (${s['cost_usd']:.2f})")
    print(f"simulated {s['sim_duration_s']:.1f} s in {s['wall_s']:.2f} s wall "
          f"({s['sim_s_per_wall_s']:.0f}x, {s['iterations']} iterations, {s['iterations_per_wall_s']:.0f}/s)")


def _ms(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x * 1e3:.1f}"


OUT_FILES = ("requests.csv", "timeseries.csv", "summary.json", "trace.json")


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    existing = [f for f in OUT_FILES if (out / f).exists()]
    if existing and not force:
        raise ValueError(f"--out {out} already has {', '.join(existing)}; pass --force to overwrite")


def write_outputs(out: Path, cfg: SimConfig, r: SimResult) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "requests.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "replica", "status", "arrival_s", "first_scheduled_s", "first_token_s", "completion_s",
                    "input_tokens", "output_tokens", "ttft_s", "tpot_s", "e2e_s", "preemptions", "reject_reason"])
        for i in range(r.arrival_s.size):
            status = "completed" if r.completed[i] else "rejected" if r.rejected[i] else "unfinished"
            w.writerow([i, int(r.replica[i]), status, repr(float(r.arrival_s[i])), repr(float(r.first_scheduled_s[i])),
                        repr(float(r.first_token_s[i])), repr(float(r.completion_s[i])), int(r.input_tokens[i]),
                        int(r.output_tokens[i]), repr(float(r.ttft_s[i])), repr(float(r.tpot_s[i])),
                        repr(float(r.e2e_s[i])), int(r.preemptions[i]), r.reject_reasons[i]])
    ts = r.series
    cols = ("replica", "lane", "start_s", "duration_s", "prefill_tokens", "prefill_seqs", "decode_seqs",
            "kv_blocks_used", "kv_blocks_total", "waiting", "running")
    with (out / "timeseries.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        arrays = [getattr(ts, c).tolist() for c in cols]
        w.writerows(zip(*arrays, strict=True))
    (out / "summary.json").write_text(json.dumps(result_json(cfg, r), indent=2, default=float))
    # Chrome/Perfetto trace: one complete ("X") event per iteration, pid = replica, tid = pipeline lane.
    events: list[dict[str, Any]] = []
    for i in range(ts.start_s.size):
        events.append({"name": f"iter p{int(ts.prefill_seqs[i])} d{int(ts.decode_seqs[i])}", "ph": "X",
                       "ts": float(ts.start_s[i]) * 1e6, "dur": float(ts.duration_s[i]) * 1e6,
                       "pid": int(ts.replica[i]), "tid": int(ts.lane[i]),
                       "args": {"prefill_tokens": int(ts.prefill_tokens[i]), "prefill_seqs": int(ts.prefill_seqs[i]),
                                "decode_seqs": int(ts.decode_seqs[i]), "kv_blocks_used": int(ts.kv_blocks_used[i]),
                                "waiting": int(ts.waiting[i])}})
    (out / "trace.json").write_text(json.dumps({"traceEvents": events, "displayTimeUnit": "ms"}))


__all__ = ["config_from_args", "register", "result_json", "run_simulate", "write_outputs"]
