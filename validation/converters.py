"""Converters from published end-to-end benchmark files (AIConfigurator silicon, Splitwise, Argonne
LLM-Inference-Bench) into the benchmark table format of validation.bench_table; unusable rows become problems.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal, overload

from roofsim.hardware_specs.errors import InputError
from roofsim.hardware_specs.loading import read_csv_records
from roofsim.validation.bench_table import BenchRow, BenchTable, rows_to_table
from roofsim.validation.kernel_tables import aic_system_hardware, normalize_dtype

__all__ = ["convert_aiconfigurator_silicon", "convert_splitwise", "convert_argonne", "SPLITWISE_HW", "ARGONNE_HW",
           "ARGONNE_FRAMEWORKS", "ARGONNE_NO_CONFIG", "LLAMACPP_NOTE", "aic_agg_max_num_tokens",
           "AIC_FP8_KV_BACKENDS", "aic_kv_dtype"]


class _Skip(Exception):
    pass


def _rows(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[tuple[int, dict]]]:
    header, out = read_csv_records(path, what="benchmark file")
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"{path} line 1: missing required column(s) {missing}")
    return header, out


@overload
def _f(r: dict, col: str, *, blank_ok: Literal[False] = ...) -> float: ...
@overload
def _f(r: dict, col: str, *, blank_ok: bool) -> float | None: ...


def _f(r: dict, col: str, *, blank_ok: bool = False) -> float | None:
    v = (r.get(col) or "").strip()
    if v == "":
        if blank_ok:
            return None
        raise _Skip(f"column {col!r} is empty")
    try:
        x = float(v)
    except ValueError:
        raise _Skip(f"column {col!r}={v!r} is not a number") from None
    if not math.isfinite(x) or x < 0:
        raise _Skip(f"column {col!r}={v!r} must be a finite non-negative number")
    return x


@overload
def _i(r: dict, col: str, *, blank_ok: Literal[False] = ...) -> int: ...
@overload
def _i(r: dict, col: str, *, blank_ok: bool) -> int | None: ...


def _i(r: dict, col: str, *, blank_ok: bool = False) -> int | None:
    x = _f(r, col, blank_ok=blank_ok)
    if x is None:
        return None
    if x != int(x):
        raise _Skip(f"column {col!r}={r[col]!r} is not an integer")
    return int(x)


def _convert(path: Path, required: tuple[str, ...], fn: Callable[[dict], BenchRow]) -> BenchTable:
    _, recs = _rows(path, required)
    return rows_to_table(path, recs, fn, _Skip)


# ---------------------------------------------------------------------------------- AIConfigurator silicon
_SILICON_REQ = ("backend", "model_path", "system", "precision", "mode", "isl", "osl", "gemm_quant_mode",
                "batch_size", "tp_size", "pp_size", "attention_dp_size", "moe_ep_size", "silicon_ttft_ms",
                "silicon_tpot_ms")


def convert_aiconfigurator_silicon(csv_path: Path | str, hardware: str | None = None) -> BenchTable:
    """silicon_sample_*.csv -> closed_loop rows: `agg` rows with concurrency = batch_size, `disagg` rows with
    the prefill/decode pool columns (_disagg_pools).

    The `system` column (an AIConfigurator system name such as h100_sxm or l40s) resolves through the hardware
    catalog like the kernel reader's system folders; `hardware` (id/alias) overrides it for every row.

    weight_dtype from gemm_quant_mode (blank = unquantised, taken as bf16). The KV dtype is not recorded: fp8
    beside fp8 GEMMs on the backends of AIC_FP8_KV_BACKENDS (AIConfigurator's quant configs pair them), bf16
    otherwise (stated in each row's notes).
    """
    path = Path(csv_path)
    fixed = aic_system_hardware("", path, hardware) if hardware is not None else None
    systems: dict[str, str | None] = {}

    def conv(r: dict) -> BenchRow:
        if r["mode"] not in ("agg", "disagg"):
            raise _Skip(f"mode={r['mode']!r} is neither 'agg' nor 'disagg'")
        sysname = r["system"]
        if fixed is None and sysname not in systems:
            try:
                systems[sysname] = aic_system_hardware(sysname, path)
            except InputError:
                systems[sysname] = None
        hw = fixed or systems[sysname]
        if hw is None:
            raise _Skip(f"column 'system'={sysname!r} is not a GPU the hardware catalog describes (add a hardware "
                        f"file whose aliases name it, or pass --hardware)")
        notes = []
        q = (r.get("gemm_quant_mode") or "").strip()
        if q:
            wd = normalize_dtype(q)
            if wd is None:
                raise _Skip(f"column 'gemm_quant_mode'={q!r} is not a known dtype")
            if wd != q:
                notes.append(f"gemm_quant_mode={q}")
        else:
            wd = "bf16"
            notes.append("no quant mode: weights assumed bf16")
        kv = aic_kv_dtype(r["backend"], wd)
        notes.insert(0, f"kv_dtype not recorded: {kv}" + (" with fp8 GEMMs (AIConfigurator's fp8 quant configs)"
                                                           if kv == "fp8" else " assumed"))
        ver = (r.get("backend_version") or "").strip()
        if ver:
            notes.append(f"{r['backend']} {ver}")
        if r["mode"] == "disagg":
            pools, concurrency = _disagg_pools(r, notes, recorded)
            limits = {f"{pool}_{k}": v or None for pool, p in pools.items()
                      for k, v in zip(("max_batch_size", "max_num_tokens"), p[4:6], strict=True)}
            ttft, tpot, osl = _f(r, "silicon_ttft_ms"), _f(r, "silicon_tpot_ms"), _i(r, "osl")
            # aiperf (the benchmark client) defines inter-token latency = (request latency - TTFT) / (output
            # tokens - 1), so the request latency follows; it is the figure a TTFT/TPOT split cannot move
            notes.append("e2e_ms derived: TTFT + (osl - 1) x TPOT")
            return BenchRow(
                model=r["model_path"], hardware=hw, num_gpus=sum(p[0] * p[1] * p[2] * p[6] for p in pools.values()),
                tp=pools["decode"][1], pp=pools["decode"][2], ep=pools["decode"][3],
                attn_dp=pools["decode"][6] if pools["decode"][6] > 1 else None, weight_dtype=wd,
                kv_dtype=kv, framework=r["backend"], mode="closed_loop", isl=_i(r, "isl"), osl=osl,
                concurrency=concurrency, ttft_ms=ttft, tpot_ms=tpot, e2e_ms=ttft + (osl - 1) * tpot,
                notes="; ".join(notes), framework_version=ver,
                **limits, **{f"{pool}_{k}": v for pool, p in pools.items()
                             for k, v in zip(("replicas", "tp", "pp", "ep"), p[:4], strict=True)},
                **{f"{pool}_attn_dp": p[6] for pool, p in pools.items() if p[6] > 1})
        tp, pp = _i(r, "tp_size"), _i(r, "pp_size")
        bs, isl = _i(r, "batch_size"), _i(r, "isl")
        dp = _i(r, "attention_dp_size", blank_ok=True) or 1
        ep = _i(r, "moe_ep_size", blank_ok=True) or 1
        conc = bs
        if dp > 1:
            # batch_size is one attention rank's (AIConfigurator's global batch = batch_size x attention_dp_size,
            # aic-core sdk/backends/base_backend.py); the client runs silicon_concurrency = that global batch
            conc = _concurrency(r) or bs * dp
            notes.append(f"attention_dp_size={dp}: {dp} attention ranks of tp {tp}, batch_size {bs} each "
                         f"(concurrency {conc}, max_batch_size and max_num_tokens x {dp})")
        return BenchRow(
            model=r["model_path"], hardware=hw, num_gpus=tp * pp * dp, tp=tp, pp=pp, ep=ep,
            attn_dp=dp if dp > 1 else None,
            weight_dtype=wd, kv_dtype=kv, framework=r["backend"], mode="closed_loop",
            isl=isl, osl=_i(r, "osl"), concurrency=conc,
            ttft_ms=_f(r, "silicon_ttft_ms"), tpot_ms=_f(r, "silicon_tpot_ms"), notes="; ".join(notes),
            framework_version=ver, max_batch_size=bs * dp,
            max_num_tokens=dp * aic_agg_max_num_tokens(r["backend"], bs, isl))

    _, recs = _rows(path, _SILICON_REQ)
    recorded = _recorded_layouts(recs)
    return rows_to_table(path, recs, conv, _Skip)


def aic_agg_max_num_tokens(backend: str, batch_size: int, isl: int) -> int:
    """The per-iteration token limit AIConfigurator's generator gives an aggregated deployment it benchmarks
    (ai-dynamo/aiconfigurator src/aiconfigurator/generator/rule_plugin/benchmark/{trtllm,vllm,sglang}.rule):
    TRT-LLM max_num_tokens and vLLM max-num-batched-tokens = max_batch_size + isl + 1500; SGLang
    max_prefill_tokens = isl + 1500. Its max_batch_size (max_num_seqs, max_running_requests) is the row's
    batch_size, which the silicon rows also run as the client concurrency."""
    return isl + _AIC_TOKEN_SLACK + (0 if backend.strip().lower() == "sglang" else batch_size)


_AIC_TOKEN_SLACK = 1500  # the generator rules' "+ 1500" over the prompt (rule_plugin/benchmark/*.rule)
# Backends whose silicon rows with fp8 GEMMs ran an fp8 KV cache. AIConfigurator's TRT-LLM quant configs pair fp8
# GEMMs with kvcache_quant_mode fp8 (and fp8 FMHA): src/aiconfigurator/cli/templates/trtllm/{dense,moe}_default.yaml
# at f8cc520 (Aug 2025, the TRT-LLM 1.0.0rc3 era of these rows), and its generator writes that mode to the engine
# (cli/backends/trtllm.py: kvcache_quant_mode fp8 -> kv_cache_dtype "fp8"). Decided on the Qwen3-32B TRT-LLM rows
# and checked on the other groups (docs/validation-e2e.md, "Causes found per group").
AIC_FP8_KV_BACKENDS = ("trtllm",)


def aic_kv_dtype(backend: str, weight_dtype: str) -> str:
    """The KV-cache dtype of a silicon row (not a column of the data): fp8 with fp8 weights on
    AIC_FP8_KV_BACKENDS, else bf16."""
    fp8 = weight_dtype.startswith("fp8") and backend.strip().lower() in AIC_FP8_KV_BACKENDS
    return "fp8" if fp8 else "bf16"
_CONCURRENCY = re.compile(r"silicon_concurrency=(\d+)")
_POOL_FIELDS = ("batch_size", "num_workers", "tp_size", "pp_size", "attention_dp_size", "moe_ep_size")
# AIConfigurator cannot estimate a disagg row without these (ai-dynamo/aiconfigurator
# src/aiconfigurator/cli/api.py cli_estimate; tools/accuracy_tracking/make_silicon_refs.py: "older dumps lack them")
_AIC_REQUIRED_DISAGG = ("prefill_batch_size", "prefill_num_workers", "decode_batch_size", "decode_num_workers")


def _concurrency(r: dict) -> int | None:
    m = _CONCURRENCY.search(r.get("silicon_data_source") or "")
    return None if m is None else int(m.group(1))


def _measurement_key(r: dict) -> tuple[str, ...]:
    """What identifies one measured disagg point apart from its layout columns. The latencies compare to 12
    significant digits: the dumps repeat a measurement with its last binary digit differing."""
    def num(col: str) -> str:
        try:
            return f"{float(r.get(col) or 'nan'):.12g}"
        except ValueError:
            return r.get(col) or ""
    return (r["backend"], r.get("backend_version") or "", num("isl"), num("osl"), str(_concurrency(r)),
            num("silicon_ttft_ms"), num("silicon_tpot_ms"))


def _recorded_layouts(recs: list[tuple[int, dict]]) -> dict[tuple[str, ...], str]:
    """Measurement key -> id of the disagg rows that record their whole pool layout."""
    return {_measurement_key(r): r.get("id") or f"line {ln}" for ln, r in recs
            if r.get("mode") == "disagg" and all((r.get(c) or "").strip() for c in _AIC_REQUIRED_DISAGG)}


def _disagg_pools(r: dict, notes: list[str], recorded: dict[tuple[str, ...], str]
                  ) -> tuple[dict[str, tuple[int, ...]], int]:
    """The (replicas, tp, pp, ep, max_batch_size, max_num_tokens, attn_dp) of the prefill and decode pools of a
    `disagg` row, and its client concurrency (docs/validation-formats.md, AIConfigurator silicon).

    Workers = replicas. A worker of attention_dp_size d and tp t is a replica of d attention ranks of tp t
    (ParallelSpec.attn_dp) whose running limit counts every rank's batch: max_batch_size = batch_size * d
    (AIConfigurator's global batch, aic-core sdk/backends/base_backend.py) and, on an attention-DP prefill pool,
    max_num_tokens = d * (isl + 1500), the generator's prefill limit (rule_plugin/benchmark/*.rule) on every rank.
    MoE expert parallelism = moe_ep_size (0 or blank = 1). Concurrency: `silicon_concurrency=` in
    silicon_data_source. A row without worker counts or concurrency is a problem saying why."""
    blank = [c for c in _AIC_REQUIRED_DISAGG if not (r.get(c) or "").strip()]
    if blank:
        same = recorded.get(_measurement_key(r))
        if same is not None:
            raise _Skip(f"mode=disagg with {', '.join(blank)} blank: the same measurement (isl, osl, concurrency, "
                        f"TTFT and TPOT identical) as row {same}, which records the layout and is scored")
        raise _Skip(f"mode=disagg with {', '.join(blank)} blank: the pool sizes are not recorded and no rule "
                    f"gives them (AIConfigurator itself requires these columns and skips such rows)")
    isl = _i(r, "isl")
    pools: dict[str, tuple[int, ...]] = {}
    for pool in ("prefill", "decode"):
        bs, workers, tp, pp, dp, ep = (_i(r, f"{pool}_{c}", blank_ok=True) or 1 for c in _POOL_FIELDS)
        if dp > 1:
            notes.append(f"{pool} attention_dp_size={dp} x tp {tp}: {dp} attention ranks, limits of all ranks")
        # the token limit only where d ranks stand for one replica; a plain worker keeps the engine's, as agg rows
        # do on the engines outside validation.e2e.ROW_TOKEN_BUDGET_ENGINES
        tokens = dp * (isl + _AIC_TOKEN_SLACK) if pool == "prefill" and dp > 1 else 0
        pools[pool] = (workers, tp, pp, ep, bs * dp, tokens, dp)
    concurrency = _concurrency(r)
    if concurrency is None:
        # AIConfigurator's benchmark script runs a sweep: 1, 2, 8, 16, 32, 64, 128 and 0.95/1/1.05 x decode workers
        # x decode max_batch_size (generator/config/backend_templates/benchmark/bench_run.sh.j2); the row does not
        # say which point it is. At decode_batch_size x decode_num_workers the Qwen3-32B vLLM row (2 x tp4 decode
        # at 224 each) would need >= 12 ms per step from KV reads alone at 4,500 tokens of context (fp8 KV,
        # 3.35 TB/s), against 8.7 ms measured.
        raise _Skip("mode=disagg but silicon_data_source records no silicon_concurrency: the client concurrency "
                    "is unknown (AIConfigurator's benchmark sweeps several; decode_batch_size is the engine's "
                    "batch limit)")
    return pools, concurrency


# ------------------------------------------------------------------------------------------------ Splitwise
# h100-80gb-pcap = an H100 capped at 70 % of its 700 W: splitwise-sim's DGX-H100-pcap SKU has tdp 7140 W against
# DGX-H100's 10200 W (configs/hardware_repo/skus/*.yaml; notebooks/utils.py power_cap_scaler=0.7). Its rows are the
# h100-80gb rows with prompt_time x 1.30 and token_time unchanged, exactly, on all 420: splitwise-sim's model of a
# cap (compute-bound prompts slow down, memory-bound tokens do not), not a second measurement.
SPLITWISE_HW = {"a100-80gb": "a100-sxm-80gb", "h100-80gb": "h100-sxm", "h100-80gb-pcap": "h100-sxm@490w"}
_SPLIT_REQ = ("model", "hardware", "prompt_size", "batch_size", "token_size", "prompt_time", "token_time",
              "e2e_time", "tensor_parallel")
_SPLIT_MODELS = {"llama2-70b": "meta-llama/Llama-2-70b-hf", "bloom-176b": "bigscience/bloom"}
# e2e_time agrees with the timed phases, prompt_time + (token_size - 1) x token_time, within 0.1 % on most rows but
# is off by more than this on 267 of 1,260 (x0.016 to x17: 8,192 tokens "generated" in 10 s, batch-64 runs 17x
# longer than their phases): those runs did not generate the stated tokens as one batch, so their e2e is dropped
SPLIT_E2E_TOL = 0.10


def convert_splitwise(csv_path: Path | str) -> BenchTable:
    """splitwise perf_model.csv -> static_batch rows: ttft = prompt_time, tpot = token_time (ms per decode
    iteration), e2e = e2e_time (when it agrees with the two phases: SPLIT_E2E_TOL), concurrency = batch_size; power-
    capped `-pcap` rows run on the H100 capped at 490 W (SPLITWISE_HW) and are flagged in notes. framework =
    `splitwise` selects the engine of that name (simulator/engines.py): the profiled stack ran eagerly, every
    kernel dispatched by the DGX host (docs/engines.md)."""
    path = Path(csv_path)

    def conv(r: dict) -> BenchRow:
        hw = r["hardware"]
        if hw not in SPLITWISE_HW:
            raise _Skip(f"column 'hardware'={hw!r} has no roofsim id (known: {sorted(SPLITWISE_HW)})")
        model = _SPLIT_MODELS.get(r["model"])
        if model is None:
            raise _Skip(f"column 'model'={r['model']!r} is not a known Splitwise model ({sorted(_SPLIT_MODELS)})")
        notes = [f"splitwise {r['model']} on {hw} (DGX node); fp16 assumed"]
        if hw.endswith("-pcap"):
            notes.append("POWER-CAPPED GPU (h100-80gb-pcap, 490 W = 70 % of TDP; splitwise-sim's model: the "
                         "uncapped prompt_time x 1.3, token_time unchanged)")
        tp, b, osl = _i(r, "tensor_parallel"), _i(r, "batch_size"), _i(r, "token_size")
        e2e: float | None = _f(r, "e2e_time")
        phases = _f(r, "prompt_time") + (osl - 1) * _f(r, "token_time")
        if phases <= 0:
            raise _Skip(f"columns 'prompt_time'={r['prompt_time']!r} and 'token_time'={r['token_time']!r} time "
                        "no phase (both must be positive)")
        if e2e and abs(e2e / phases - 1) > SPLIT_E2E_TOL:
            notes.append(f"e2e_time {e2e:.6g} ms disagrees with prompt_time + (token_size-1) x token_time = "
                         f"{phases:.6g} ms (x{e2e / phases:.3g}): e2e not scored")
            e2e = None
        return BenchRow(
            model=model, hardware=SPLITWISE_HW[hw], num_gpus=tp, tp=tp, pp=1, ep=1, weight_dtype="fp16",
            kv_dtype="fp16", framework="splitwise", mode="static_batch", isl=_i(r, "prompt_size"), osl=osl,
            concurrency=b, num_requests=b, ttft_ms=_f(r, "prompt_time"), tpot_ms=_f(r, "token_time"), e2e_ms=e2e,
            output_tokens_per_s=b * osl / (e2e / 1e3) if e2e else None, notes="; ".join(notes))

    return _convert(path, _SPLIT_REQ, conv)


# ------------------------------------------------------------------------------------------------- Argonne
# Argonne's A100 results come from ALCF Polaris (4x A100-SXM4-40GB per node): mapped to a100-sxm-40gb.
# H100 taken as the SXM part. Other accelerators have no roofsim hardware descriptor yet: rows become problems.
ARGONNE_HW = {"Nvidia A100 GPU": "a100-sxm-40gb", "Nvidia H100 GPU": "h100-sxm"}
ARGONNE_FRAMEWORKS = {"vLLM": "vllm", "TensorRT-LLM": "trtllm", "llama.cpp": "llamacpp", "Deepspeed": "deepspeed",
                      "Deepspeed-MII": "deepspeed-mii", "sambaflow": "sambaflow"}
_ARG_REQ = ("Hardware", "Num of Hardware", "Framework", "Model", "Input Output Length", "Batch Size", "Latency",
            "Throughput")


# Argonne models with no config.json of their architecture in the shared data (model/presets maps the Meta-Llama-3
# models to the Llama-3.1 files; these have no equal): their rows are problems, the reason said. Sizes from the
# Qwen2 technical report (Yang et al. 2024, arXiv 2407.10671, Table 1) and the model cards.
ARGONNE_NO_CONFIG = {
    "Qwen/Qwen2-7B": "Qwen2 (hidden 3584, 28 layers, 28 query / 4 KV heads, FFN 18944, vocab 152064, QKV bias); "
                     "the nearest config, Qwen3-8B, has hidden 4096, 36 layers, 32 / 8 heads and QK-norm",
    "Qwen/Qwen2-72B": "Qwen2 (hidden 8192, 80 layers, 64 / 8 heads, FFN 29568, vocab 152064, QKV bias); Llama-3-70B "
                      "shares the attention shape but has FFN 28672 and vocab 128256",
    "Qwen/Qwen1.5-7B": "Qwen1.5 (multi-head attention, 32 layers, FFN 11008, vocab 151936); no config in the data",
    "Deci/DeciLM-7B": "DeciLM (variable grouped-query attention: a different KV-head count per layer); no config "
                      "in the data",
    "BAAI/Aquila-7B": "Aquila (LLaMA-like with its own 100k vocabulary); no config in the data",
}
# llama.cpp rows were measured with `llama-bench -m <model>_f16.gguf -p L -n L -pg L,L -b <Batch Size> -r 1` on
# CUDA_VISIBLE_DEVICES of 1, 2 or 4 GPUs (argonne-lcf/LLM-Inference-Bench llama.cpp/H100/*.sh, llama.cpp/*/README).
# llama-bench runs ONE sequence: `-b` is n_batch, the most prompt tokens of one forward pass (the prompt goes in
# chunks of it; the micro-batch n_ubatch defaults to 512 >= every -b used), not a number of requests; and the table's
# Throughput is (ISL+OSL)/Latency on these rows, one sequence's tokens. Several GPUs hold the model split by layers
# (llama-bench's default split mode `layer`), so one sequence crosses them in turn: pipeline stages, pp = GPUs.
LLAMACPP_NOTE = ("llama.cpp llama-bench: one sequence, prompt in chunks of Batch Size tokens (-b = n_batch), f16 "
                 "GGUF, layers split over the GPUs (pp = Num of Hardware)")


def convert_argonne(csv_path: Path | str) -> BenchTable:
    """Argonne LLM-Inference-Bench Plots/All_results.csv -> static_batch rows: ISL = OSL = `Input Output Length`,
    concurrency = `Batch Size`, e2e_ms = Latency * 1000, output_tokens_per_s = batch * OSL / Latency,
    tp = `Num of Hardware` (pp 1), fp16 weights/KV assumed. llama.cpp rows are one sequence whose prompt runs in
    chunks of `Batch Size` tokens (max_num_tokens) over `Num of Hardware` pipeline stages (LLAMACPP_NOTE)."""
    path = Path(csv_path)

    def conv(r: dict) -> BenchRow:
        hw = r["Hardware"]
        if hw not in ARGONNE_HW:
            raise _Skip(f"column 'Hardware'={hw!r} has no roofsim hardware id (mapped: {sorted(ARGONNE_HW)})")
        fw = ARGONNE_FRAMEWORKS.get(r["Framework"])
        if fw is None:
            raise _Skip(f"column 'Framework'={r['Framework']!r} is not known ({sorted(ARGONNE_FRAMEWORKS)})")
        model = r["Model"].strip()
        if model.count("/") != 1:
            raise _Skip(f"column 'Model'={model!r} is not a HuggingFace org/name id")
        if model in ARGONNE_NO_CONFIG:
            raise _Skip(f"model {model}: no config.json of its architecture in the shared data: "
                        f"{ARGONNE_NO_CONFIG[model]}")
        n, b, L = _i(r, "Num of Hardware"), _i(r, "Batch Size"), _i(r, "Input Output Length")
        lat = _f(r, "Latency")
        if not lat:
            raise _Skip("column 'Latency' is 0")
        thr = _f(r, "Throughput")
        seqs, tp, pp, chunk = (1, 1, n, b) if fw == "llamacpp" else (b, n, 1, None)
        notes = [LLAMACPP_NOTE if fw == "llamacpp" else "Argonne static batch; tp = Num of Hardware, fp16 assumed"]
        expect = seqs * 2 * L / lat
        if thr and abs(thr / expect - 1) > 0.01:
            notes.append(f"published Throughput {thr:.4g} tok/s != sequences*(ISL+OSL)/Latency {expect:.4g}")
        return BenchRow(
            model=model, hardware=ARGONNE_HW[hw], num_gpus=n, tp=tp, pp=pp, ep=1, weight_dtype="fp16",
            kv_dtype="fp16", framework=fw, mode="static_batch", isl=L, osl=L, concurrency=seqs, num_requests=seqs,
            e2e_ms=lat * 1e3, output_tokens_per_s=seqs * L / lat, notes="; ".join(notes), max_num_tokens=chunk)

    return _convert(path, _ARG_REQ, conv)
