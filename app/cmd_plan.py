"""`roofsim plan`: the cheapest (or fewest-GPU, or least-energy) replica configuration that serves a target
request rate within P99 TTFT/TPOT SLOs; ranked table or JSON on stdout, progress on stderr, HTML report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from roofsim.app.common import (
    SET_HELP,
    check_out,
    print_json,
    print_table,
    progress_bar,
    schema_arg,
    set_epilog,
)
from roofsim.app.plan_report import (
    HEADERS,
    run_length_text,
    table_rows,
    unsteady_text,
    winner_summary_text,
    write_report,
)
from roofsim.app.plan_risk import plan_risk_for, print_risk
from roofsim.model.loader import load_checkpoint_quant
from roofsim.simulator.config import (
    KV_DTYPES,
    KV_LINK_KINDS,
    SCHEDULER_KINDS,
    WEIGHT_DTYPES,
    KVLinkConfig,
    apply_overrides,
)
from roofsim.simulator.engines import DEFAULT_ENGINE
from roofsim.simulator.planning import PlanResult, PlanSpec, PointCache, make_executor, plan
from roofsim.simulator.planning.disagg import DisaggOutcome, plan_disaggregated
from roofsim.simulator.workload import NamedWorkload, TraceWorkload, named_workloads
from roofsim.validation.profiles import resolve_plan_calibrations


def _ints(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not vals:
        raise argparse.ArgumentTypeError("empty list")
    return vals


def _choices(valid: tuple[str, ...], what: str) -> Any:
    def parse(text: str) -> tuple[str, ...]:
        vals = tuple(v.strip() for v in text.split(",") if v.strip())
        bad = [v for v in vals if v not in valid]
        if bad or not vals:
            raise argparse.ArgumentTypeError(f"{what} {bad[0] if bad else text!r} is not one of {', '.join(valid)}")
        return vals
    return parse


# Flags that became --set paths of the PlanSpec.
SET_EQUIVALENTS: tuple[tuple[str, str], ...] = (
    ("--max-batched-tokens N", "max_batched_tokens=N"),
    ("--chunk-size N", "chunk_size=N"),
    ("--gpu-memory-utilization F", "gpu_memory_utilization=F"),
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("plan", help="capacity planning: cheapest configuration meeting latency SLOs at a rate",
                       description="For every candidate (hardware x tp x pp x attention DP x quantization x scheduler x batch) find "
                       "the highest rate one replica sustains within the SLOs by bisection over simulated rates, "
                       "then replicas, GPUs, $/hour, $/1M output tokens and J/token for --rate; rank them.",
                       epilog=set_epilog(SET_EQUIVALENTS) + "\nother PlanSpec fields: max_replicas, "
                       "candidates_per_round, verify_winner", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                   help=SET_HELP + " PATHs are PlanSpec fields (tp=[1, 2], chunk_size=1024, workload.rate_per_s=..).")
    g = p.add_argument_group("question")
    g.add_argument("--model", required=True, help="model preset, HF id or config.json")
    g.add_argument("--workload", help=f"built-in workload: {', '.join(named_workloads())}")
    g.add_argument("--trace", type=Path, help="trace file to replay (rate-scaled to each tried rate)")
    g.add_argument("--rate", type=schema_arg(PlanSpec, "rate_per_s", "--rate", float), required=True,
                   help="target request rate of the deployment, req/s")
    g.add_argument("--slo-ttft-p99", type=float, required=True, help="P99 TTFT target, s")
    g.add_argument("--slo-tpot-p99", type=float, required=True, help="P99 TPOT target, s")
    g.add_argument("--objective", choices=("cost", "gpus", "energy"), default="cost")
    g.add_argument("--slo-confidence", type=schema_arg(PlanSpec, "slo_confidence", "--slo-confidence", float),
                   default=None, metavar="P", help="require the P99 SLOs to hold with probability P (e.g. 0.9) over "
                   "an ensemble of kernel error models; shows each deployment's risk (docs/intervals.md)")
    g.add_argument("--risk-members", type=schema_arg(PlanSpec, "risk_members", "--risk-members"), default=None,
                   help="ensemble members per deployment with --slo-confidence (default 16)")
    g.add_argument("--max-gpus", type=schema_arg(PlanSpec, "max_gpus", "--max-gpus"),
                   help="GPU budget of the whole deployment")
    g.add_argument("--num-requests", type=schema_arg(PlanSpec, "num_requests", "--num-requests"),
                   help="requests per simulated point. Default: the planner chooses per point (from the candidate's "
                        "concurrency, doubled until the run is steady and its verdict stable, at most "
                        "MAX_PLAN_REQUESTS; docs/capacity-planning.md). A given length overrides that; the plan says "
                        "which candidates it left without a steady state")
    g.add_argument("--seed", type=schema_arg(PlanSpec, "seed", "--seed"), default=0)
    g.add_argument("--tolerance", type=float, default=0.05, help="relative capacity tolerance (default 0.05)")
    c = p.add_argument_group("candidate space (comma-separated lists)")
    c.add_argument("--hardware", default="h100-sxm", help="hardware ids/aliases (default h100-sxm)")
    c.add_argument("--tp", type=_ints, default=(1, 2, 4, 8))
    c.add_argument("--pp", type=_ints, default=(1,))
    c.add_argument("--attn-dp", type=_ints, default=None,
                   help="attention data-parallel ranks per replica (default 1,2,4,8), tried for a mixture-of-experts "
                        "model only, on ranks of the smallest --tp, within --max-gpus (else the largest tp x pp), "
                        "experts expert-parallel over all attn_dp x tp GPUs; the table shows dp4 x tp1")
    c.add_argument("--weight-dtype", type=_choices(("checkpoint", *WEIGHT_DTYPES), "weight dtype"), default=None,
                   help="checkpoint = the checkpoint's own format (default for a quantised checkpoint, else bf16)")
    c.add_argument("--kv-dtype", type=_choices(("auto", *KV_DTYPES), "kv dtype"), default=("auto",))
    c.add_argument("--engine", metavar="NAME[==VERSION]",
                   help="serving engine (docs/engines.md: vllm, vllm==0.5.4, trtllm==1.0, sglang, roofsim-default) "
                        "whose defaults set each candidate's scheduler, max batch, token budget, chunk size and "
                        f"gpu_memory_utilization for its GPU (default {DEFAULT_ENGINE}: the newest vLLM, V1); "
                        "--scheduler, --max-batch and --set win")
    c.add_argument("--scheduler", type=_choices(SCHEDULER_KINDS, "scheduler"), default=None,
                   help="scheduler kinds (default: the engine's)")
    c.add_argument("--max-batch", type=_ints, default=None, help="max_num_seqs values (default: the engine's)")
    c.add_argument("--speculative", action="append", metavar="JSON",
                   help="a ReplicaGroup `speculative` setting as a JSON object, or 'none'; repeat for several")
    c.add_argument("--exhaustive", action="store_true",
                   help="simulate every candidate and refine every capacity to the tolerance (no cost-bound pruning)")
    d = p.add_argument_group("disaggregated prefill/decode (docs/disaggregation.md)")
    d.add_argument("--disaggregated", action="store_true",
                   help="plan a prefill pool + a decode pool instead: every per-pool layout of the candidate space "
                        "and prefill:decode replica count up to --max-pool-replicas, simulated at --rate cheapest "
                        "first until a round starts above the cheapest deployment meeting the SLOs")
    d.add_argument("--max-pool-replicas", type=int, default=8, help="most replicas per pool (default 8)")
    d.add_argument("--kv-link", choices=KV_LINK_KINDS, default="network",
                   help="link the KV crosses between the pools (default network: the GPUs' RDMA NIC)")
    e = p.add_argument_group("execution")
    e.add_argument("--dask-scheduler", metavar="tcp://HOST:PORT", help="run the simulations on this Dask cluster")
    e.add_argument("--workers", type=int, help="local worker processes (default: all cores; 1 = in-process)")
    e.add_argument("--cache-dir", type=Path, help="point cache (default $ROOFSIM_CACHE_DIR or ~/.cache/roofsim/plan)")
    e.add_argument("--no-cache", action="store_true", help="neither read nor write the point cache")
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print one JSON object (no progress bar)")
    o.add_argument("--report", type=Path, help="write an HTML report (table + Pareto plot) here")
    o.add_argument("--force", action="store_true", help="overwrite --report if it exists")
    o.add_argument("--top", type=int, default=15, help="rows of the ranked table to print (default 15)")
    p.set_defaults(func=run_plan)


def spec_from_args(args: argparse.Namespace) -> PlanSpec:
    if bool(args.workload) == bool(args.trace):
        raise ValueError("give exactly one of --workload NAME and --trace FILE")
    wl: NamedWorkload | TraceWorkload
    if args.trace:
        if not args.trace.is_file():
            raise FileNotFoundError(f"--trace {args.trace}: no such file")
        wl = TraceWorkload(path=str(args.trace))
    else:
        if args.workload not in named_workloads():
            from roofsim.hardware_specs.errors import UnknownNameError  # noqa: PLC0415

            raise UnknownNameError("workload", args.workload, named_workloads())
        wl = NamedWorkload(name=args.workload)
    spec: list[str | None] = [None]
    if args.speculative:
        spec = [None if s.strip().lower() in ("none", "off") else s for s in args.speculative]
    data = {
        "model": args.model, "workload": wl.model_dump(mode="json", exclude_none=True), "rate_per_s": args.rate,
        "slo_ttft_s": args.slo_ttft_p99, "slo_tpot_s": args.slo_tpot_p99,
        "hardware": [h.strip() for h in args.hardware.split(",") if h.strip()], "tp": args.tp, "pp": args.pp,
        "weight_dtypes": args.weight_dtype, "kv_dtypes": args.kv_dtype, "speculative": spec,
        "objective": args.objective, "num_requests": args.num_requests, "seed": args.seed,
        "tolerance": args.tolerance, "max_gpus": args.max_gpus, "exhaustive": args.exhaustive,
        "slo_confidence": args.slo_confidence, "risk_members": args.risk_members}
    # only what was given: PlanSpec's defaults apply otherwise, and an engine can tell the given from the default
    for key, value in (("engine", args.engine), ("schedulers", args.scheduler), ("max_batch", args.max_batch),
                       ("attn_dp", args.attn_dp)):
        if value is not None:
            data[key] = value
    return PlanSpec.model_validate(apply_overrides(data, args.set, PlanSpec))


def run_plan(args: argparse.Namespace) -> int:
    spec, cal_labels = resolve_plan_calibrations(spec_from_args(args))
    check_out(args.report, "--report", args.force)
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers={args.workers} must be >= 1")
    cache = None if args.no_cache else PointCache(args.cache_dir)
    executor = make_executor(args.dask_scheduler, args.workers)
    if args.disaggregated:
        return _run_disaggregated(args, spec, cal_labels, executor, cache)
    try:
        with progress_bar(not args.json, "cand", "planning") as progress:
            result = plan(spec, executor, cache, progress)
        risk = plan_risk_for(result, executor) if spec.slo_confidence is not None else None
    finally:
        executor.close()
    command = "roofsim " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else ""
    if args.report is not None:
        write_report(result, args.report, command)
    if args.json:
        print_json({**result.as_dict(), **({"risk": risk.as_dict()} if risk else {})})
        return 0 if result.winner is not None else 1
    print("calibration: " + "; ".join(cal_labels))
    _print(result, args.top)
    if risk is not None:
        print_risk(risk)
    if args.report is not None:
        print(f"\nreport: {args.report}")
    return 0 if result.winner is not None else 1


def _run_disaggregated(args: argparse.Namespace, spec: PlanSpec, cal_labels: list[str], executor: Any,
                       cache: PointCache | None) -> int:
    """`plan --disaggregated`: the cheapest prefill/decode deployment meeting the SLOs at --rate."""
    if args.report is not None or spec.slo_confidence is not None:
        executor.close()
        raise ValueError("--report and --slo-confidence are not available with --disaggregated (use --json)")
    if args.max_pool_replicas < 1:
        raise ValueError(f"--max-pool-replicas={args.max_pool_replicas} must be >= 1")
    from pydantic import TypeAdapter  # noqa: PLC0415

    link = TypeAdapter(KVLinkConfig).validate_python({"kind": args.kv_link})
    try:
        out, stats = plan_disaggregated(spec, max_pool_replicas=args.max_pool_replicas, link=link,
                                        executor=executor, cache=cache)
    finally:
        executor.close()
    winner = out[0] if out and out[0].point.feasible else None
    if args.json:
        print_json({"disaggregated": True, "winner": winner.as_dict() if winner else None,
                    "outcomes": [o.as_dict() for o in out], "simulations": stats.simulations,
                    "deployments": stats.candidates, "calibration": cal_labels})
        return 0 if winner is not None else 1
    print("calibration: " + "; ".join(cal_labels))
    print(f"{stats.simulations} of {stats.candidates} prefill/decode deployments simulated at {spec.rate_per_s:g} "
          f"req/s (cheapest first), KV over the {args.kv_link} link")
    _print_disaggregated(out[:args.top])
    print("winner: " + (f"{winner.label}, ${winner.usd_per_hour:.2f}/h" if winner else
                        "none of the simulated deployments meets the SLOs (raise --max-pool-replicas or --max-gpus)"))
    return 0 if winner is not None else 1


def _print_disaggregated(outcomes: list[DisaggOutcome]) -> None:
    print(f"{'deployment':58} {'GPUs':>4} {'$/h':>8} {'P99 TTFT s':>10} {'P99 TPOT ms':>11}  verdict")
    for o in outcomes:
        p = o.point
        print(f"{o.label:58} {o.gpus:>4} {o.usd_per_hour:>8.2f} {p.p99_ttft_s:>10.3f} {p.p99_tpot_s * 1e3:>11.2f}  "
              + ("meets the SLOs" if p.feasible else p.why))


def _print(result: PlanResult, top: int) -> None:
    s, st = result.spec, result.stats
    w = result.winner
    print(f"{s.model}: {s.rate_per_s:g} req/s, P99 TTFT <= {s.slo_ttft_s:g} s, P99 TPOT <= "
          f"{s.slo_tpot_s * 1e3:g} ms; objective {s.objective}; {run_length_text(result)}, seed {s.seed}")
    if "checkpoint" in s.weight_dtypes and (ckpt := load_checkpoint_quant(s.model)) is not None:
        q = ckpt.quant
        print(f"quantisation: weight dtype 'checkpoint' = {ckpt.scheme} from the checkpoint ({ckpt.source}): "
              f"weights {q.weight_dtype}, activations {q.activation_dtype}, KV {q.kv_dtype} (16-bit activations "
              "on a GPU without that format; --weight-dtype overrides)")
    print(f"{st.candidates} candidates: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in st.by_status.items())
          + f"; {st.simulations} simulations, {st.cache_hits} cached, {st.wall_s:.1f} s on {st.workers} worker(s)")
    print()
    if w is None:
        print("NO CANDIDATE MEETS THE SLOs.")
        closest = result.closest()
        if closest:
            print("closest candidates (best P99 latency / SLO ratio seen):")
            for o in closest:
                print(f"  {o.candidate.label}: {o.slo_ratio:.2f}x the SLO; {o.reason}")
        print()
    else:
        print(f"WINNER: {w.replicas} x {w.candidate.label} = {w.gpus} GPUs, ${w.usd_per_hour:.2f}/hour, "
              f"${w.usd_per_million_tokens:.3f}/1M output tokens, {w.j_per_token:.3g} J/output token "
              f"(capacity {w.capacity_per_s:.3g} req/s per replica, {w.load_per_replica_s:.3g} req/s each at the target)")
        if result.winner_metrics is not None:
            print("the deployment simulated at the target rate:")
            print("  " + winner_summary_text(result.winner_metrics).replace("\n", "\n  "))
            m = result.winner_metrics
            if not (m["ttft_s"]["p99"] <= s.slo_ttft_s and m["tpot_s"]["p99"] <= s.slo_tpot_s) or m["saturated"]:
                print("  WARNING: the routed deployment misses an SLO that each replica met alone at its share "
                      "of the load (routing imbalance); consider one more replica")
        print()
    if (warning := unsteady_text(result)) is not None:
        print(warning + "\n")
    rows = table_rows(result, top)
    print_table(rows, HEADERS)
    if len(result.outcomes) > top:
        print(f"... {len(result.outcomes) - top} more (--top N, --json or --report for all)")
    pf = result.pareto
    if pf:
        print("\nPareto front (cost vs P99 TTFT and TPOT at load): " + "; ".join(
            f"{o.candidate.label} ${o.usd_per_hour:.2f}/h" for o in sorted(pf, key=lambda o: o.usd_per_hour)))
    if any(o.status == "pruned" for o in result.outcomes):
        print("pruned = stopped once its cost lower bound exceeded a feasible candidate's cost; --exhaustive "
              "simulates them all (fuller Pareto front)")


__all__ = ["register", "run_plan", "spec_from_args"]
