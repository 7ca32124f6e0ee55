"""`roofsim simulate`: run the serving simulator from a TOML run file and/or a few high-level flags plus generic
`--set PATH=VALUE` overrides (flags and --set write into the config dict before it is validated); summary table or
JSON on stdout, progress on stderr, optional per-request/time-series/Perfetto outputs."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

from roofsim.app.common import (
    SET_HELP,
    check_out,
    fmt_si,
    json_text,
    print_json,
    print_table,
    progress_bar,
    quant_line,
    schema_arg,
    set_epilog,
)
from roofsim.hardware_specs.catalog import load_hardware
from roofsim.model.loader import load_checkpoint_quant
from roofsim.model.quant import resolve_quant
from roofsim.model.uncertainty import E2ETerm
from roofsim.simulator.config import (
    KV_DTYPES,
    SCHEDULER_KINDS,
    WEIGHT_DTYPES,
    ReplicaGroup,
    SimConfig,
    apply_overrides,
    config_dict,
    group_engine_profile,
    set_path,
)
from roofsim.simulator.engines import DEFAULT_ENGINE, engine_names
from roofsim.simulator.ensemble import ENSEMBLE_METRICS, EnsembleResult, parse_levels, run_ensemble
from roofsim.simulator.metrics import SimResult
from roofsim.simulator.outfiles import atomic_path, atomic_write_text
from roofsim.simulator.planning.executors import make_executor
from roofsim.simulator.run import resolve_config_quants, simulate
from roofsim.simulator.workload import (
    ClosedLoopArrivals,
    OfflineArrivals,
    PoissonArrivals,
    SyntheticWorkload,
    TraceWorkload,
    mean_rate_per_s,
    named_workloads,
    resolve_workload,
    with_rate,
)
from roofsim.validation.profiles import (
    e2e_term_for,
    resolve_calibration,
    resolve_config_calibrations,
    resolve_config_error_models,
)

# Flags that became --set paths (replicas.* = every replica group; replicas.0 = the first).
SET_EQUIVALENTS: tuple[tuple[str, str], ...] = (
    ("--gpu-memory-utilization F", "replicas.*.gpu_memory_utilization=F"),
    ("--prefix-caching", "replicas.*.prefix_caching=true"),
    ("--frontend-ms M", "replicas.*.frontend_s_per_request=<M/1000>"),
    ("--max-batch N", "replicas.*.scheduler.max_num_seqs=N"),
    ("--max-batched-tokens N", "replicas.*.scheduler.max_batched_tokens=N"),
    ("--chunk-size N", "--scheduler sarathi --set replicas.*.scheduler.chunk_size=N"),
    ("--preemption P", "replicas.*.scheduler.preemption=P"),
    ("--router R", "router.kind=R"),
    ("--speculative K", "replicas.*.speculative.drafter.kind=K"),
    ("--speculative off", "replicas.*.speculative=none"),
    ("--draft-model M", "replicas.*.speculative.drafter.model=M"),
    ("--draft-layers N", "replicas.*.speculative.drafter.draft_layers=N (layerskip: .exit_layer=N)"),
    ("--spec-k K", "replicas.*.speculative.k=K"),
    ("--spec-acceptance 0.7", "'replicas.*.speculative.acceptance={kind=\"iid\", rate=0.7}'"),
    ("--spec-acceptance 0.8,0.6", "'replicas.*.speculative.acceptance={kind=\"positional\", rates=[0.8, 0.6]}'"),
    ("--spec-acceptance beta:A,B", "'replicas.*.speculative.acceptance={kind=\"beta\", alpha=A, beta=B}'"),
    ("--spec-tree-width W", "replicas.*.speculative.tree_width=W"),
    ("--spec-adaptive", "replicas.*.speculative.adaptive_k=true"),
    ("--early-exit K", "replicas.*.early_exit.kind=K"),
    ("--early-exit off", "replicas.*.early_exit=none"),
    ("--exit-layers 8:1,32:2", "'replicas.*.early_exit.distribution={kind=\"histogram\", layers=[8, 32], "
                               "weights=[1, 2]}'"),
    ("--exit-csv F", "'replicas.*.early_exit.distribution={kind=\"csv\", path=\"F\"}'"),
    ("--kv-fill X", "replicas.*.early_exit.kv_fill=X"),
    ("--no-batch-sync", "replicas.*.early_exit.batch_sync=false"),
    ("--exit-head H", "replicas.*.early_exit.exit_head=H"),
    ("--skip-layers MAX:MIN", "replicas.*.early_exit.max_layers=MAX --set replicas.*.early_exit.min_layers=MIN"),
    ("--slo-ttft S", "slo.ttft_s=S"),
    ("--slo-tpot S", "slo.tpot_s=S"),
    ("--max-sim-time S", "max_sim_time_s=S"),
)

def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("simulate", help="simulate serving a workload on replicas (latency, throughput, cost)",
                       epilog=set_epilog(SET_EQUIVALENTS), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="run file (.toml, e.g. from --print-config); flags override it")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help=SET_HELP)
    g = p.add_argument_group("deployment (applies to every replica group)")
    g.add_argument("--model", help="model preset/HF id/config.json (default llama-3.1-8b without --config)")
    g.add_argument("--hardware", help="hardware id or .toml (default h100-sxm without --config)")
    g.add_argument("--tp", type=schema_arg(ReplicaGroup, "tp", "--tp"))
    g.add_argument("--pp", type=schema_arg(ReplicaGroup, "pp", "--pp"))
    g.add_argument("--attn-dp", type=schema_arg(ReplicaGroup, "attn_dp", "--attn-dp"), metavar="N",
                   help="attention data-parallel ranks per replica of a mixture-of-experts model, each tp x pp GPUs "
                        "(= --set replicas.*.attn_dp=N); the experts are sharded over all attn_dp x tp GPUs, "
                        "expert-parallel with --set replicas.*.ep=E (E dividing attn_dp x tp)")
    g.add_argument("--replicas", type=schema_arg(ReplicaGroup, "count", "--replicas"), help="replicas per group")
    g.add_argument("--weight-dtype", choices=WEIGHT_DTYPES,
                   help="fp8 -> W8A8, fp4 -> W4A4, int8/int4 weight-only (default: a group's quant table, else the "
                        "checkpoint's format, bf16 for an unquantised one)")
    g.add_argument("--kv-dtype", choices=KV_DTYPES, help="KV-cache format (default: as --weight-dtype)")
    g.add_argument("--calibration", type=Path,
                   help="calibration profile .toml (e.g. from roofsim calibrate [--local], or a shipped one in "
                        "validation/profiles/), 'shipped' (the default: each GPU's shipped profile, or its "
                        "architecture family's) or 'default' (the cost model's defaults, docs/model.md)")
    g.add_argument("--engine", metavar="NAME[==VERSION]",
                   help=f"serving engine whose defaults set the scheduler, token budget, max_num_seqs, prefix "
                        f"caching and gpu_memory_utilization ({', '.join(engine_names())}; e.g. vllm==0.5.4, "
                        f"trtllm==1.0, roofsim-default; docs/engines.md). Default without --config: "
                        f"{DEFAULT_ENGINE} (the table's newest vLLM, V1); a run file's groups keep theirs. "
                        f"Explicit settings (--scheduler, --set, the run file) win")
    g.add_argument("--scheduler", choices=SCHEDULER_KINDS, help="batching policy (details: --set, see below)")
    w = p.add_argument_group("workload")
    w.add_argument("--workload", help=f"built-in workload: {', '.join(named_workloads())}")
    w.add_argument("--trace", type=Path, help="trace file to replay (format detected)")
    w.add_argument("--rate", type=schema_arg(PoissonArrivals, "rate_per_s", "--rate", float),
                   help="mean arrival rate, requests/s (synthetic/named)")
    w.add_argument("--rate-scale", type=schema_arg(TraceWorkload, "rate_scale", "--rate-scale", float),
                   help="multiply the arrival rate (trace: compress time)")
    w.add_argument("--duration", type=schema_arg(SyntheticWorkload, "duration_s", "--duration", float),
                   help="seconds of arrivals")
    w.add_argument("--num-requests", type=schema_arg(SyntheticWorkload, "num_requests", "--num-requests"))
    w.add_argument("--seed", type=schema_arg(SimConfig, "seed", "--seed"))
    add_interval_args(p, simulate=True)
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print one JSON object (no progress bar)")
    o.add_argument("--out", type=Path, help="write requests.csv, timeseries.csv, summary.json, trace.json here")
    o.add_argument("--force", action="store_true", help="overwrite files in --out")
    o.add_argument("--print-config", action="store_true",
                   help="print the resolved run file (TOML; --config reads it back to the same run) and exit")
    p.set_defaults(func=run_simulate)


def _levels_arg(text: str) -> tuple[float, ...]:
    try:
        return parse_levels(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_interval_args(p: argparse.ArgumentParser, simulate: bool) -> None:
    """--ensemble/--interval (estimate and simulate), --jobs/--dask-scheduler (simulate)."""
    e = p.add_argument_group("intervals (docs/intervals.md)")
    e.add_argument("--ensemble", type=int, metavar="M",
                   help="also run M members whose kernel times are drawn from the calibration profile's kernel error "
                        "model (one draw per kernel family held for the run); print the median and intervals")
    e.add_argument("--interval", type=_levels_arg, default=(0.8, 0.9), metavar="80,90",
                   help="interval levels in percent (default 80,90)")
    if simulate:
        e.add_argument("--jobs", type=int, help="local processes for the ensemble members (default: all cores; "
                                                "1 = in this process)")
        e.add_argument("--dask-scheduler", metavar="tcp://HOST:PORT", help="run the ensemble members on this "
                                                                           "Dask cluster")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The run file (or defaults), the flags written into its dict, then the --set overrides, validated once."""
    return config_and_notes(args)[0]


def config_and_notes(args: argparse.Namespace) -> tuple[SimConfig, list[str]]:
    """config_from_args and the notes of what --weight-dtype/--kv-dtype did to each group's formats."""
    if args.config is not None:
        # engine-relative (config_dict): a group's settings that merely repeat its engine's stay implicit, so a
        # different --engine takes effect
        data: dict[str, Any] = config_dict(SimConfig.from_toml(args.config))
    else:
        data = {"workload": {"kind": "named", "name": "conversation"},
                "replicas": [{"model": args.model or "llama-3.1-8b", "hardware": args.hardware or "h100-sxm",
                              "engine": DEFAULT_ENGINE}]}
    if args.workload and args.trace:
        raise ValueError("give --workload or --trace, not both")
    if args.workload:
        data["workload"] = {"kind": "named", "name": args.workload}
    if args.trace:
        data["workload"] = {"kind": "trace", "path": str(args.trace)}
    data["workload"] = _workload_overrides(data["workload"], args)
    flags: list[tuple[str, Any]] = [(f"replicas.*.{key}", getattr(args, flag)) for flag, key in (
        ("model", "model"), ("hardware", "hardware"), ("engine", "engine"), ("tp", "tp"), ("pp", "pp"),
        ("attn_dp", "attn_dp"), ("replicas", "count"), ("scheduler", "scheduler.kind"))
        if getattr(args, flag) is not None]
    notes: list[str] = []
    if args.weight_dtype or args.kv_dtype:
        # --kv-dtype alone changes the KV format of a group's quant table; otherwise the flags apply over the
        # group's checkpoint format on its hardware (model.quant.resolve_quant: an FP8 checkpoint keeps fp8 weights)
        for i, group in enumerate(data["replicas"]):
            model = flags_or(group, flags, "model")
            if not args.weight_dtype and isinstance(group.get("quant"), dict):
                quant, why = {**group["quant"], "kv_dtype": args.kv_dtype}, [f"--kv-dtype {args.kv_dtype} in the "
                                                                           "run file's quant table"]
            else:
                q, why = resolve_quant(load_checkpoint_quant(model), args.weight_dtype, args.kv_dtype or "auto",
                                       load_hardware(flags_or(group, flags, "hardware")))
                quant = q.model_dump(mode="json")
            flags.append((f"replicas.{i}.quant", quant))
            notes += [f"replicas[{i}] {model}: {n}" for n in why]
    if args.calibration is not None and str(args.calibration) != "shipped":  # shipped: resolved per group later
        cal, _ = resolve_calibration(args.calibration, None)  # a file or "default": no hardware needed
        flags.append(("replicas.*.calibration", cal.model_dump(mode="json")))
    if args.seed is not None:
        flags.append(("seed", args.seed))
    for path, value in flags:
        set_path(data, path, value, SimConfig)
    data = apply_overrides(data, args.set)
    return SimConfig.from_dict(data, str(args.config) if args.config else "command line"), notes


def flags_or(group: dict[str, Any], flags: list[tuple[str, Any]], key: str) -> Any:
    """A replica group's `key` as the flags set it for every group, else as the run file has it."""
    return next((v for path, v in flags if path == f"replicas.*.{key}"), group.get(key))


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
        wl["rate_per_s"] = rate * _scale(args)
    elif kind == "synthetic" and (args.rate is not None or args.rate_scale is not None):
        cfg = SimConfig.model_validate({"workload": wl, "replicas": [{"model": "x", "hardware": "x"}]})
        arrival = cfg.workload.arrival  # type: ignore[union-attr]
        if isinstance(arrival, ClosedLoopArrivals | OfflineArrivals):
            raise ValueError(f"--rate/--rate-scale do not apply to {arrival.kind!r} arrivals (the engine sends "
                             "those requests itself); change clients/think time or use an open-loop arrival")
        # a burst process scales both of its rates, keeping its shape (workload.with_rate)
        rate = args.rate if args.rate is not None else mean_rate_per_s(arrival)
        wl["arrival"] = with_rate(arrival, rate * _scale(args)).model_dump(mode="json")
    if args.num_requests is not None:
        wl["num_requests"] = args.num_requests
        wl.setdefault("duration_s", None)
    if args.duration is not None:
        wl["duration_s"] = args.duration
    return {k: v for k, v in wl.items() if v is not None}


def _scale(args: argparse.Namespace) -> float:
    return 1.0 if args.rate_scale is None else float(args.rate_scale)


def result_json(cfg: SimConfig, r: SimResult) -> dict[str, Any]:
    s = dict(r.summary)
    return {**s, "config": cfg.model_dump(mode="json", exclude_none=True)}


def run_simulate(args: argparse.Namespace) -> int:
    cfg, flag_notes = config_and_notes(args)
    if args.print_config:
        sys.stdout.write(_engine_comments(cfg) + cfg.to_toml())
        return 0
    cfg, cal_labels = resolve_config_calibrations(cfg)  # groups without one: the GPU's shipped/transferred profile
    cfg, quant_notes = resolve_config_quants(cfg)  # groups without a quant table: the checkpoint's format
    quant_notes = flag_notes + quant_notes  # (the dtype flags write every group's table: one of the two is empty)
    check_out(args.out, "--out", args.force, directory=True, names=OUT_FILES)  # before the long work
    if args.ensemble is not None and args.ensemble < 1:
        raise ValueError(f"--ensemble={args.ensemble} must be >= 1")
    with progress_bar(not args.json, "req", "simulating") as progress:
        r = simulate(cfg, progress)
    ens, ens_labels = (ensemble_from_args(args, cfg, r) if args.ensemble else (None, []))
    if args.out is not None:
        write_outputs(args.out, cfg, r)
    if args.json:
        out = result_json(cfg, r)
        if ens is not None:
            out["ensemble"] = {**ens.as_dict(), "error_models": ens_labels}
        print_json(out)
        return 0
    print("calibration: " + "; ".join(cal_labels))
    if (line := quant_line(quant_notes)) is not None:
        print(line)
    _print_summary(cfg, r)
    if ens is not None:
        print(f"\nensemble of {len(ens.members)} members (kernel error models: {'; '.join(ens_labels)}):")
        print_ranges(ens)
    return 0


def ensemble_from_args(args: argparse.Namespace, cfg: SimConfig, r: SimResult) -> tuple[EnsembleResult, list[str]]:
    """The --ensemble run of a resolved config (every group calibrated): each group's error model (its
    --calibration file's, else the GPU's shipped or transferred profile's), members on --jobs/--dask-scheduler."""
    models, labels = resolve_config_error_models(cfg, args.calibration)
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs={args.jobs} must be >= 1")
    ex = make_executor(args.dask_scheduler, args.jobs)
    try:
        ens = run_ensemble(cfg, models, args.ensemble, args.interval, ex)
    finally:
        ex.close()
    return dataclasses.replace(ens, point=r.summary, e2e=_e2e_term(cfg)), labels


def _e2e_term(cfg: SimConfig) -> E2ETerm | None:
    """The end-to-end term of the first replica group's GPU profile (validation.profiles.e2e_term_for), if any."""
    return e2e_term_for(cfg.replicas[0].hardware)


def print_ranges(ens: EnsembleResult, metrics: tuple[str, ...] = ENSEMBLE_METRICS) -> None:
    """One line per metric: the plain run, the members' median, each interval and (a profile with an end-to-end
    term) each end-to-end interval ('-' for metrics it has none for)."""
    rows = []
    summary = ens.summary(metrics)
    cols = list(dict.fromkeys(k for v in summary.values() for k in v if k.endswith("%")))
    for m, v in summary.items():
        scale, unit = (1e3, " ms") if m.split(".")[0] in ("ttft_s", "tpot_s", "itl_s", "e2e_s") else (1.0, "")
        def f(x: float, scale: float = scale) -> str:
            return "-" if not math.isfinite(x) else f"{x * scale:.4g}"
        rows.append([m + unit, f(v.get("point", math.nan)), f(v["median"]),
                     *(f"{f(v[k][0])} - {f(v[k][1])}" if k in v else "-" for k in cols)])
    print_table(rows, ["metric", "plain run", "median", *(f"{k} interval" for k in cols)])


def _engine_comments(cfg: SimConfig) -> str:
    """TOML comments saying what each group's engine resolved to (the file itself keeps only the overrides)."""
    lines = [f"# replicas.{i}: engine {group_engine_profile(g).summary()}; explicit settings below win "
             f"(docs/engines.md)\n" for i, g in enumerate(cfg.replicas) if g.engine]
    return "".join(lines)


def _print_summary(cfg: SimConfig, r: SimResult) -> None:
    s = r.summary
    groups = "; ".join(("" if g.role == "colocated" else f"{g.role} pool: ")
                       + f"{g.count} x {g.model} on {g.attn_dp * g.tp * g.pp} x {g.hardware} ("
                       + (f"attn_dp={g.attn_dp}, " if g.attn_dp > 1 else "") + f"tp={g.tp}, pp={g.pp}, "
                       + f"{g.engine or 'roofsim-default'}: {g.scheduler.kind})" for g in cfg.replicas)
    link = f"; KV link {cfg.kv_link.kind}" if cfg.disaggregated else ""
    print(f"{groups}; router {cfg.router.kind}{link}; seed {cfg.seed}")
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
    if dis := s.get("disaggregation"):
        h = dis["handover"]
        print("pools: " + "; ".join(
            f"{p} {dis[p]['gpus']} GPUs busy {dis[p]['busy_fraction']:.0%}, mean batch {dis[p]['mean_batch_size']:.1f}, "
            f"peak KV {dis[p]['max_kv_usage']:.0%}" for p in ("prefill", "decode")))
        print(f"handover (p50, ms): prefill first token {_ms(h['prefill_ttft_s']['p50'])}, decode KV wait "
              f"{_ms(h['decode_kv_wait_s']['p50'])}, link queue {_ms(h['link_queue_s']['p50'])}, transfer "
              f"{_ms(h['transfer_s']['p50'])}; {fmt_si(h['bytes_total'], 'B')} moved; TTFT counts the handover")
    st = s["steady_state"]
    if st["steady"]:
        print(f"steady state: {st['requests']} requests arriving {st['start_s']:.1f}-{st['end_s']:.1f} s "
              f"(after the warm-up, before the drain; {st['metric'].removesuffix('_s').upper()} drift "
              f"{st['drift']:+.0%}): TTFT mean {_ms(st['ttft_s']['mean'])} ms, P99 {_ms(st['ttft_s']['p99'])} ms; "
              f"TPOT mean {_ms(st['tpot_s']['mean'])} ms, P99 {_ms(st['tpot_s']['p99'])} ms")
    else:
        print(f"steady state: not reached: {st['reason']}")
    if s.get("requests_warmup"):
        print(f"warm-up: {s['requests_warmup']} requests simulated and excluded; statistics over "
              f"{s['requests_measured']} measured requests from t={s['measure_start_s']:.2f} s")
    if "prefix_cache_hit_rate" in s and not math.isfinite(s["prefix_cache_hit_rate"]):
        print("prefix cache: on, but no request carries prompt block hashes (a synthetic workload): nothing reused")
    elif "prefix_cache_hit_rate" in s:
        print(f"prefix cache: {s['prefix_cache_hit_rate']:.1%} of prompt tokens served from cache "
              f"({s['prefix_cache_request_hit_rate']:.1%} of admissions hit)")
        for kind, t in s.get("kv_tiers", {}).items():  # docs/kv-tiers.md
            moved = (f"; read {t['bytes_read'] / 1e9:.1f} GB, written {t['bytes_written'] / 1e9:.1f} GB"
                     if kind != "hbm" else "")
            print(f"  {kind}: {t['hit_rate']:.1%} of prompt tokens{moved}")
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



def write_outputs(out: Path, cfg: SimConfig, r: SimResult) -> None:
    """The four files of --out, each written whole or not at all (simulator.outfiles.atomic_path)."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "requests.csv") as tmp, tmp.open("w", newline="") as f:
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
    with atomic_path(out / "timeseries.csv") as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        arrays = [getattr(ts, c).tolist() for c in cols]
        w.writerows(zip(*arrays, strict=True))
    atomic_write_text(out / "summary.json", json_text(result_json(cfg, r)))
    # Chrome/Perfetto trace: one complete ("X") event per iteration, pid = replica, tid = pipeline lane.
    events: list[dict[str, Any]] = []
    for i in range(ts.start_s.size):
        events.append({"name": f"iter p{int(ts.prefill_seqs[i])} d{int(ts.decode_seqs[i])}", "ph": "X",
                       "ts": float(ts.start_s[i]) * 1e6, "dur": float(ts.duration_s[i]) * 1e6,
                       "pid": int(ts.replica[i]), "tid": int(ts.lane[i]),
                       "args": {"prefill_tokens": int(ts.prefill_tokens[i]), "prefill_seqs": int(ts.prefill_seqs[i]),
                                "decode_seqs": int(ts.decode_seqs[i]), "kv_blocks_used": int(ts.kv_blocks_used[i]),
                                "waiting": int(ts.waiting[i])}})
    atomic_write_text(out / "trace.json", json_text({"traceEvents": events, "displayTimeUnit": "ms"}, indent=None))


__all__ = ["add_interval_args", "config_and_notes", "config_from_args", "ensemble_from_args", "print_ranges",
           "register", "result_json", "run_simulate", "write_outputs"]
