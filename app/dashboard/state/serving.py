"""State of the serving what-if page: its widgets as one table of session key -> SimConfig dump path (the config is
built by one SimConfig.model_validate of the dict the rows write; an uploaded scenario is restored by the same paths)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from typing import Any, get_args

from roofsim.app.common import quant_from_args
from roofsim.app.dashboard.state.common import (
    ACTIVATION_CHOICES,
    CHECKPOINT,
    KV_CHOICES,
    MAX_SEED,
    WEIGHT_OR_CHECKPOINT,
    format_list,
    kinds,
    literal_values,
    parse_list,
)
from roofsim.app.dashboard.state.form import (
    NEVER,
    OMIT,
    SKIP,
    Values,
    Widget,
    all_of,
    build_dict,
    defaults,
    is_,
    restore,
)
from roofsim.hardware_specs.catalog import hardware_ids, load_hardware
from roofsim.model.loader import load_checkpoint_quant, load_model, model_ids
from roofsim.model.techniques import Acceptance, Drafter, EarlyExitConfig, ExitDistribution, PerTokenExit
from roofsim.simulator.config import KVLinkConfig, RouterConfig, SchedulerConfig, SimConfig, VLLMScheduler
from roofsim.simulator.engines import DEFAULT_ENGINE, engine_choices
from roofsim.simulator.ensemble import run_ensemble
from roofsim.simulator.workload import TraceFormat, named_workload, named_workloads
from roofsim.validation.profiles import resolve_config_calibrations, resolve_config_error_models

ARRIVAL_MODES = ("open loop (rate)", "closed loop (clients)")
DEPLOYMENTS = ("colocated", "disaggregated")  # disaggregated: replicas.0 = prefill pool, replicas.1 = decode pool


def _trace(v: Values) -> bool:
    return bool(v["sv_trace_path"])


def _mode(i: int) -> Callable[[Values], bool]:
    return lambda v: not _trace(v) and v["sv_arrival_mode"] == ARRIVAL_MODES[i]


def _off_omitted(kind: str) -> Any:
    return OMIT if kind == "off" else kind


def _arrival_table(mode: str) -> dict[str, Any]:
    """Open loop = the built-in workload at a rate; closed loop = benchmark clients over its lengths."""
    return {"kind": "named"} if mode == ARRIVAL_MODES[0] else {"kind": "synthetic", "arrival": {"kind": "closed_loop"}}


def _arrival_mode(wl: Mapping[str, Any]) -> Any:
    if wl["kind"] == "named":
        return ARRIVAL_MODES[0]
    return ARRIVAL_MODES[1] if wl["kind"] == "synthetic" and wl["arrival"]["kind"] == "closed_loop" else SKIP


def _lengths(name: str) -> dict[str, Any]:
    """The lengths of a built-in workload (a closed-loop run keeps them; simulator.workload.named_workload)."""
    base = named_workload(name).model_dump(mode="json")
    return {k: base[k] for k in ("input", "output", "correlation")}


def _name_of_lengths(wl: Mapping[str, Any]) -> Any:
    if wl["kind"] != "synthetic":
        return SKIP
    lengths = {k: wl[k] for k in ("input", "output", "correlation")}
    return next((n for n in named_workloads() if _lengths(n) == lengths), SKIP)


def _csv_path(path: str) -> str:
    if not path:
        raise ValueError("early exit from a CSV of measured exit layers: upload the CSV")
    return path


def is_moe(v: Values) -> bool:
    """The chosen model is a mixture of experts (attention DP and EP apply); an unknown model is not."""
    try:
        return load_model(v["sv_model"]).moe is not None
    except (KeyError, ValueError, OSError):
        return False


_open, _closed = _mode(0), _mode(1)
_disagg = is_("sv_deployment", DEPLOYMENTS[1])
_not_trace = all_of(lambda v: not _trace(v))
_spec = all_of(lambda v: v["sv_spec_drafter"] != "off")
_ee = is_("sv_ee_kind", "per_token")
_hist = all_of(_ee, is_("sv_ee_distribution", "histogram"))
CUSTOM_ENGINE = "custom"
_custom = is_("sv_engine", CUSTOM_ENGINE)
_R = "replicas.0."
_SP = _R + "speculative."
_EE = _R + "early_exit."

# One row per widget: session key, SimConfig dump path, element, label, default [, options, when, converters, kw].
SERVING_WIDGETS: tuple[Widget, ...] = (
    Widget("sv_trace_path", "workload", "", "", "", when=_trace, to_cfg=lambda p: {"kind": "trace", "path": p},
           **NEVER),
    Widget("sv_trace_format", "workload.format", "selectbox", "Trace format", "auto", get_args(TraceFormat),
           when=_trace),
    Widget("sv_rate_scale", "workload.rate_scale", "number_input", "Rate scale (2 = twice as fast)", 1.0,
           when=_trace, kw={"min_value": 0.0}),
    Widget("sv_workload", "workload.name", "selectbox", "Built-in workload", "conversation", named_workloads,
           when=_open),
    Widget("sv_workload", "workload", "", "", "conversation", when=_closed, to_cfg=_lengths,
           from_cfg=_name_of_lengths),
    Widget("sv_arrival_mode", "workload", "radio", "Arrivals", ARRIVAL_MODES[0], ARRIVAL_MODES, when=_not_trace,
           to_cfg=_arrival_table, from_cfg=_arrival_mode, kw={"horizontal": True}),
    Widget("sv_rate_per_s", "workload.rate_per_s", "number_input", "Request rate (req/s)", 4.0, when=_open,
           kw={"min_value": 0.0, "step": 1.0, "format": "%g"}),
    Widget("sv_clients", "workload.arrival.clients", "number_input", "Clients (concurrency)", 16, when=_closed,
           kw={"min_value": 1}),
    Widget("sv_think_s", "workload.arrival.think_s", "number_input", "Think time (s)", 0.0, when=_closed,
           kw={"min_value": 0.0}),
    Widget("sv_ramp_first_token", "workload.arrival.ramp_up_s", "checkbox",
           "Ramp: next client starts at the previous one's first token", False, when=_closed,
           to_cfg=lambda on: "first_token" if on else OMIT, from_cfg=lambda r: r == "first_token"),
    Widget("sv_ramp_up_s", "workload.arrival.ramp_up_s", "number_input", "Linear ramp-up over (s; 0 = all at once)",
           0.0, when=all_of(_closed, is_("sv_ramp_first_token", False)),
           from_cfg=lambda r: SKIP if r == "first_token" else r, kw={"min_value": 0.0}),
    Widget("sv_warmup_requests", "workload.arrival.warmup_requests", "number_input", "Warm-up requests per client",
           0, when=_closed, kw={"min_value": 0, "help": "sent first, counted, excluded from the statistics "
                                                         "(genai-perf/aiperf)"}),
    Widget("sv_warmup_drain", "workload.arrival.warmup_drain", "checkbox", "Drain warm-up first", True,
           when=_closed, kw={"help": "aiperf: the measured phase starts when every warm-up answer is in"}),
    Widget("sv_num_requests", "workload.num_requests", "number_input", "Requests", 1000, when=_not_trace,
           kw={"min_value": 1, "step": 500}),
    Widget("sv_num_requests", "workload.max_requests", "", "", 1000, when=_trace),
    # deployment
    Widget("sv_model", _R + "model", "selectbox", "Model", "Llama-3.1-8B", model_ids),
    Widget("sv_hardware", _R + "hardware", "selectbox", "Hardware", "h100-sxm", hardware_ids),
    Widget("sv_tp", _R + "tp", "number_input", "TP", 1, kw={"min_value": 1}),
    Widget("sv_pp", _R + "pp", "number_input", "PP", 1, kw={"min_value": 1}),
    Widget("sv_count", _R + "count", "number_input", "Replicas", 1, kw={"min_value": 1}),
    Widget("sv_attn_dp", _R + "attn_dp", "number_input", "Attention DP", 1, when=is_moe, kw={
        "min_value": 1, "help": "attention data-parallel ranks per replica, each TP x PP GPUs (vLLM "
                                "--data-parallel-size, SGLang --enable-dp-attention); the experts are sharded over "
                                "all attention DP x TP GPUs (docs/model.md)"}),
    Widget("sv_ep", _R + "ep", "number_input", "EP", 1, when=is_moe, kw={
        "min_value": 1, "help": "expert-parallel ways over those GPUs (dividing attention DP x TP and the "
                                "experts); the rest is tensor parallel inside an expert"}),
    # disaggregated prefill/decode (docs/disaggregation.md): the group above is the prefill pool; the decode pool
    # copies it (sim_config) with its own replicas, TP and hardware
    Widget("sv_deployment", _R + "role", "radio", "Deployment", DEPLOYMENTS[0], DEPLOYMENTS,
           to_cfg=lambda d: "prefill" if d == DEPLOYMENTS[1] else OMIT,
           from_cfg=lambda r: DEPLOYMENTS[1] if r == "prefill" else DEPLOYMENTS[0], absent=DEPLOYMENTS[0],
           kw={"horizontal": True, "help": "disaggregated: the replicas above prefill, a decode pool decodes; "
                                           "the KV crosses the link below"}),
    Widget("sv_decode_hardware", "replicas.1.hardware", "selectbox", "Decode hardware", "h100-sxm", hardware_ids,
           when=_disagg),
    Widget("sv_decode_tp", "replicas.1.tp", "number_input", "Decode TP", 1, when=_disagg, kw={"min_value": 1}),
    Widget("sv_decode_count", "replicas.1.count", "number_input", "Decode replicas", 1, when=_disagg,
           kw={"min_value": 1}),
    Widget("sv_kv_link", "kv_link.kind", "selectbox", "KV link", "network", kinds(KVLinkConfig), when=_disagg,
           kw={"help": "nvlink: one NVLink domain; network: InfiniBand/RoCE NIC per GPU; pcie: through host"}),
    Widget("sv_kv_layerwise", "kv_link.layerwise", "checkbox", "Layer-wise KV transfer", False, when=_disagg,
           kw={"help": "send each layer's KV while the next layer computes"}),
    Widget("sv_weight_dtype", _R + "quant.weight_dtype", "selectbox", "Weights", CHECKPOINT, WEIGHT_OR_CHECKPOINT),
    Widget("sv_activation_dtype", _R + "quant.activation_dtype", "selectbox", "Activations", "auto",
           ACTIVATION_CHOICES),
    Widget("sv_kv_dtype", _R + "quant.kv_dtype", "selectbox", "KV cache", "auto", KV_CHOICES),
    # scheduler and router: a named engine (simulator/engines.py) sets the scheduler, prefix caching and
    # gpu_memory_utilization, so those widgets are shown (and written) only for a custom scheduler
    Widget("sv_engine", _R + "engine", "selectbox", "Engine", DEFAULT_ENGINE, (CUSTOM_ENGINE, *engine_choices()),
           to_cfg=lambda e: OMIT if e == CUSTOM_ENGINE else e, absent=CUSTOM_ENGINE,
           kw={"help": "a serving engine and version: its default scheduler and limits for this GPU "
                       "(docs/engines.md); 'custom' = set them below"}),
    Widget("sv_scheduler", _R + "scheduler.kind", "selectbox", "Policy", "vllm", kinds(SchedulerConfig),
           when=_custom),
    Widget("sv_max_num_seqs", _R + "scheduler.max_num_seqs", "number_input", "max_num_seqs", 256,
           when=_custom, kw={"min_value": 1}),
    Widget("sv_max_batched_tokens", _R + "scheduler.max_batched_tokens", "number_input", "max_batched_tokens", 8192,
           when=_custom, kw={"min_value": 1}),
    Widget("sv_chunk_size", _R + "scheduler.chunk_size", "number_input", "Chunk size (tokens)", 512,
           when=all_of(_custom, is_("sv_scheduler", "sarathi")), kw={"min_value": 1}),
    Widget("sv_predictor_sigma", _R + "scheduler.predictor_sigma", "number_input", "Length predictor error sigma",
           0.0, when=all_of(_custom, is_("sv_scheduler", "sjf")), kw={"min_value": 0.0}),
    Widget("sv_preemption", _R + "scheduler.preemption", "selectbox", "Preemption", "recompute",
           literal_values(VLLMScheduler, "preemption"), when=_custom),
    Widget("sv_router", "router.kind", "selectbox", "Router", "round_robin", kinds(RouterConfig)),
    Widget("sv_prefix_caching", _R + "prefix_caching", "checkbox", "Prefix caching", False, when=_custom,
           kw={"help": "reuse cached prompt blocks (needs a trace with hash ids, e.g. Mooncake)"}),
    Widget("sv_frontend_s_per_request", _R + "frontend_s_per_request", "number_input",
           "Front-end time per request (s)", 0.0, to_cfg=lambda s: s or OMIT, absent=0.0,
           kw={"min_value": 0.0, "format": "%.4f",
               "help": "serialized API-server time per request before it can be scheduled; 0 = the engine's "
                       "(vllm==0.8: 1.1 ms, docs/engines.md)"}),
    # speculative decoding (model.techniques.SpeculativeConfig)
    Widget("sv_spec_drafter", _SP + "drafter.kind", "selectbox", "Drafter", "off", ("off", *kinds(Drafter)),
           to_cfg=_off_omitted, absent="off"),
    Widget("sv_spec_draft_model", _SP + "drafter.model", "selectbox", "Draft model (same vocabulary)", "Qwen3-0.6B",
           model_ids, when=is_("sv_spec_drafter", "draft_model")),
    Widget("sv_spec_draft_layers", _SP + "drafter.draft_layers", "number_input", "Draft layers", 16,
           when=is_("sv_spec_drafter", "self"), kw={"min_value": 1}),
    Widget("sv_spec_exit_layer", _SP + "drafter.exit_layer", "number_input", "Exit layer", 8,
           when=is_("sv_spec_drafter", "layerskip"), kw={"min_value": 1}),
    Widget("sv_spec_lookup_s", _SP + "drafter.lookup_s", "number_input", "Lookup CPU time (s)", 0.0,
           when=is_("sv_spec_drafter", "ngram"), kw={"min_value": 0.0, "format": "%.5f"}),
    Widget("sv_spec_k", _SP + "k", "number_input", "k (draft tokens)", 4, when=_spec,
           kw={"min_value": 1, "max_value": 64}),
    Widget("sv_spec_tree_width", _SP + "tree_width", "number_input", "Tree width", 1, when=_spec,
           kw={"min_value": 1, "max_value": 64}),
    Widget("sv_spec_acceptance", _SP + "acceptance.kind", "selectbox", "Acceptance", "iid", kinds(Acceptance),
           when=_spec),
    Widget("sv_spec_rate", _SP + "acceptance.rate", "slider", "Acceptance rate", 0.7,
           when=all_of(_spec, is_("sv_spec_acceptance", "iid")), kw={"min_value": 0.0, "max_value": 1.0, "step": 0.01}),
    Widget("sv_spec_rates", _SP + "acceptance.rates", "text_input", "Rate per draft position (comma-separated)",
           "0.8, 0.7, 0.6, 0.5", when=all_of(_spec, is_("sv_spec_acceptance", "positional")),
           to_cfg=lambda t: parse_list(t, "acceptance rates per position"), from_cfg=format_list),
    Widget("sv_spec_alpha", _SP + "acceptance.alpha", "number_input", "Beta alpha", 7.0,
           when=all_of(_spec, is_("sv_spec_acceptance", "beta")), kw={"min_value": 0.0}),
    Widget("sv_spec_beta", _SP + "acceptance.beta", "number_input", "Beta beta", 3.0,
           when=all_of(_spec, is_("sv_spec_acceptance", "beta")), kw={"min_value": 0.0}),
    Widget("sv_spec_adaptive_k", _SP + "adaptive_k", "checkbox", "Adaptive k", False, when=_spec),
    Widget("sv_spec_k_min", _SP + "k_min", "number_input", "k min", 1,
           when=all_of(_spec, is_("sv_spec_adaptive_k", True)), kw={"min_value": 1, "max_value": 64}),
    Widget("sv_spec_k_max", _SP + "k_max", "number_input", "k max", 8,
           when=all_of(_spec, is_("sv_spec_adaptive_k", True)), kw={"min_value": 1, "max_value": 64}),
    # early exit (model.techniques.PerTokenExit / SkipDecodeExit)
    Widget("sv_ee_kind", _EE + "kind", "selectbox", "Early exit", "off", ("off", *kinds(EarlyExitConfig)),
           to_cfg=_off_omitted, absent="off"),
    Widget("sv_ee_distribution", _EE + "distribution.kind", "selectbox", "Exit distribution", "histogram",
           kinds(ExitDistribution), when=_ee),
    Widget("sv_ee_layers", _EE + "distribution.layers", "text_input", "Exit layers (comma-separated)", "16, 24, 32",
           when=_hist, to_cfg=lambda t: parse_list(t, "exit layers", int), from_cfg=format_list),
    Widget("sv_ee_weights", _EE + "distribution.weights", "text_input", "Weights (comma-separated)",
           "0.3, 0.3, 0.4", when=_hist, to_cfg=lambda t: parse_list(t, "exit weights"), from_cfg=format_list),
    Widget("sv_ee_probs", _EE + "distribution.probs", "text_input", "P(exit | reached) per layer (comma-separated)",
           "0.05, 0.05, 0.05", when=all_of(_ee, is_("sv_ee_distribution", "per_layer")),
           to_cfg=lambda t: parse_list(t, "exit probability per layer"), from_cfg=format_list),
    Widget("sv_ee_csv_path", _EE + "distribution.path", "", "", "", when=all_of(_ee, is_("sv_ee_distribution", "csv")),
           to_cfg=_csv_path),
    Widget("sv_ee_batch_sync", _EE + "batch_sync", "checkbox", "Batch sync", True, when=_ee),
    Widget("sv_ee_kv_fill", _EE + "kv_fill", "selectbox", "KV fill", "copy", literal_values(PerTokenExit, "kv_fill"),
           when=_ee),
    Widget("sv_ee_exit_head", _EE + "exit_head", "selectbox", "Exit head", "classifier",
           literal_values(PerTokenExit, "exit_head"), when=_ee),
    Widget("sv_ee_max_layers", _EE + "max_layers", "number_input", "Max layers", 32,
           when=is_("sv_ee_kind", "skipdecode"), kw={"min_value": 1}),
    Widget("sv_ee_min_layers", _EE + "min_layers", "number_input", "Min layers", 16,
           when=is_("sv_ee_kind", "skipdecode"), kw={"min_value": 1}),
    Widget("sv_ee_max_position", _EE + "max_position", "number_input", "Max position", 2048,
           when=is_("sv_ee_kind", "skipdecode"), kw={"min_value": 1}),
    # SLOs and seed
    Widget("sv_slo_ttft_s", "slo.ttft_s", "number_input", "TTFT SLO (s)", 1.0, kw={"min_value": 0.0}),
    Widget("sv_slo_tpot_s", "slo.tpot_s", "number_input", "TPOT SLO (s)", 0.1,
           kw={"min_value": 0.0, "format": "%.4f"}),
    Widget("sv_seed", "seed", "number_input", "Seed", 0, kw={"min_value": 0, "max_value": MAX_SEED}),
)
WIDGETS_BY_KEY: dict[str, Widget] = {}
for _w in SERVING_WIDGETS:
    WIDGETS_BY_KEY.setdefault(_w.key, _w)


def serving_defaults() -> dict[str, Any]:
    """Every widget's default value (session key -> value)."""
    return defaults(SERVING_WIDGETS)


def sim_config(values: Values | None = None, **changes: Any) -> SimConfig:
    """The SimConfig the widget values describe (defaults for keys not given): one SimConfig.model_validate of the
    dict the rows build; quantization 'auto' resolved as the CLI does (app.common.quant_from_args)."""
    v = serving_defaults() | dict(values or {}) | changes
    d = build_dict(SERVING_WIDGETS, v)
    rep = d["replicas"][0]
    q = rep["quant"]
    _quant_table(rep, q)
    if len(d["replicas"]) > 1:  # the decode pool: the prefill group with its own hardware, TP and count;
        # attention DP for the prefill pool only (as the planner's disaggregated pools); the EP degree carries
        # over where the decode pool's tensor-parallel group can hold it (ep dividing its tp), else 1
        dec = {**rep, **d["replicas"][1]}
        ep = int(rep.get("ep", 1) or 1)
        d["replicas"][1] = {**dec, "role": "decode", "attn_dp": 1,
                            "ep": ep if ep <= int(dec.get("tp", 1)) and int(dec.get("tp", 1)) % ep == 0 else 1}
    return SimConfig.model_validate(d)


def _quant_table(rep: dict[str, Any], q: dict[str, Any]) -> None:
    """Replace the group's widget quant table with the QuantSpec dump it means (none: the checkpoint's)."""
    if (q["weight_dtype"], q["activation_dtype"], q["kv_dtype"]) == (CHECKPOINT, "auto", "auto"):
        del rep["quant"]  # no quant table: the checkpoint's own format (simulator.run.group_quant), as a run file
    else:
        ns = argparse.Namespace(weight_dtype=q["weight_dtype"], activation_dtype=q["activation_dtype"],
                                kv_dtype=q["kv_dtype"], group_size=None)
        # the checkpoint and the hardware only where they decide something (a model path or hardware file of an
        # uploaded scenario need not exist on this machine to show its explicit formats)
        ckpt = load_checkpoint_quant(rep["model"]) if q["weight_dtype"] == CHECKPOINT else None
        hw = load_hardware(rep["hardware"]) if q["weight_dtype"] == CHECKPOINT or q["activation_dtype"] == "auto" \
            else None
        rep["quant"] = quant_from_args(ns, ckpt, hw).model_dump()


def restore_scenario(cfg: SimConfig) -> tuple[dict[str, Any], list[str]]:
    """(widget values, the fields the page cannot show) of an uploaded scenario."""
    return restore(SERVING_WIDGETS, cfg, sim_config)


# ---- ensembles: ranges on the KPI cards, bands on the CDFs (docs/intervals.md) ------------------------------
MAX_ENSEMBLE = 64
KPI_RANGE_LEVEL = 0.8
# KPI card label -> (ensemble metric, scale, unit, decimals), as the cards serving_kpis shows format them
KPI_METRICS: dict[str, tuple[str, float, str, int]] = {
    "P50 TTFT": ("ttft_s.p50", 1e3, "ms", 1), "P99 TTFT": ("ttft_s.p99", 1e3, "ms", 1),
    "P50 TPOT": ("tpot_s.p50", 1e3, "ms", 1), "P99 TPOT": ("tpot_s.p99", 1e3, "ms", 1),
    "P50 E2E": ("e2e_s.p50", 1.0, "s", 2), "P99 E2E": ("e2e_s.p99", 1.0, "s", 2),
    "Throughput": ("output_tokens_per_s", 1.0, "tok/s", 0), "Goodput": ("goodput_requests_per_s", 1.0, "req/s", 2),
    "$ / 1M tokens": ("cost_per_million_output_tokens_usd", 1.0, "", 3),
    "J / token": ("energy_per_output_token_j", 1.0, "", 3),
}
CDF_PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


def serving_ensemble(cfg: SimConfig, members: int, progress: Callable[[int, int], None] | None = None
                     ) -> dict[str, dict[str, Any]]:
    """The ensemble summary (simulator.ensemble.EnsembleResult.summary, 80 % and 90 % intervals) of `members`
    runs of `cfg`, every replica group on its GPU's shipped or transferred profile and that profile's kernel error
    model (validation.profiles.resolve_config_error_models); members run in this process."""
    cfg = resolve_config_calibrations(cfg)[0]
    ems, _ = resolve_config_error_models(cfg)
    return run_ensemble(cfg, ems, members, (0.8, 0.9), progress=progress).summary()


def kpi_ranges(ens: Mapping[str, Mapping[str, Any]], level: float = KPI_RANGE_LEVEL) -> dict[str, str]:
    """KPI card label -> its ensemble range, e.g. '80 %: 40.1-52.3 ms'."""
    out = {}
    for label, (metric, scale, unit, digits) in KPI_METRICS.items():
        lo, hi = ens[metric][f"{level:.0%}"]
        if math.isfinite(lo) and math.isfinite(hi):
            out[label] = f"{level:.0%}: {lo * scale:.{digits}f}-{hi * scale:.{digits}f} {unit}".rstrip()
    return out


def cdf_band(ens: Mapping[str, Mapping[str, Any]], metric: str, level: float = KPI_RANGE_LEVEL
             ) -> list[tuple[float, float, float]]:
    """(fraction of requests, low s, high s) of `metric`'s P50/P90/P99 across the ensemble's members at `level`:
    the band a latency CDF carries."""
    return [(frac, *ens[f"{metric}.{p}"][f"{level:.0%}"]) for p, frac in CDF_PERCENTILES]
