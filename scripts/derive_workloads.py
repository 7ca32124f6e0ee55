"""Derive the built-in named workloads (simulator/data/workloads.toml) from statistics of the public traces
in ../shared/data/traces: quantile tables of input/output lengths, mean rate, gap cv, length correlation.
Usage: .venv/bin/python scripts/derive_workloads.py [--data ../shared/data] [--out simulator/data/workloads.toml]"""

from __future__ import annotations

import argparse
import csv
import logging
import math
from pathlib import Path

import numpy as np
from scipy import special, stats

from roofsim.simulator.traces import read_trace
from roofsim.simulator.workload import QuantileLengths, Trace
from roofsim.validation.profiles import toml_text

logger = logging.getLogger("derive_workloads")

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python scripts/derive_workloads.py --data ../shared/data --out simulator/data/workloads.toml"
DEFAULT_NUM_REQUESTS = 1000

# Quantile grid: 1% steps to p90, 0.5% to p99, 0.1% to p99.9, then p99.95 and the max; the dense tail
# keeps the table's mean within ~1% of the trace mean for these heavy-tailed lengths.
PROBABILITIES = np.unique(np.round(np.concatenate([
    np.arange(0, 0.90, 0.01), np.arange(0.90, 0.99, 0.005), np.arange(0.99, 0.999, 0.001), [0.9995, 1.0]]), 6))

AZURE_CITE = ("Azure LLM inference trace 2023 (Azure/AzurePublicDataset, CC-BY 4.0; Patel et al., "
              "'Splitwise', ISCA 2024)")
SOURCES = {
    "conversation": ("traces/azure_2023/AzureLLMInferenceTrace_conv.csv", AZURE_CITE,
                     "Azure OpenAI conversation (chat) traffic, 1 h, Nov 2023"),
    "code": ("traces/azure_2023/AzureLLMInferenceTrace_code.csv", AZURE_CITE,
             "Azure OpenAI code-completion traffic: long prompts, very short outputs, 1 h, Nov 2023"),
    "mooncake-conversation": ("traces/mooncake/conversation_trace.jsonl",
                              "Mooncake FAST25 conversation trace (kvcache-ai/Mooncake, Apache-2.0; Qin et al., "
                              "'Mooncake', FAST 2025)", "Kimi long-context conversation traffic, ~1 h"),
    "arxiv-summarization": ("traces/vidur_processed/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
                            "Vidur arXiv-summarization length stats, Llama-2 tokenizer (microsoft/vidur, MIT; "
                            "Agrawal et al., 'Vidur', MLSys 2024)",
                            "arXiv paper summarization: long prompts (<= 4k), medium outputs; no arrival times"),
}
ARXIV_RATE_PER_S = 1.0  # not from any trace: the arXiv stats file has no timestamps; override rate_per_s


def normal_scores_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Correlation of normal scores (van der Waerden): the MLE-free estimate of a Gaussian copula's rho."""
    n = x.size
    zx = special.ndtri(stats.rankdata(x) / (n + 1))
    zy = special.ndtri(stats.rankdata(y) / (n + 1))
    return float(np.corrcoef(zx, zy)[0, 1])


def length_stats(values: np.ndarray, prefix: str) -> dict[str, float]:
    logs = np.log(values)
    return {
        f"{prefix}_mean_tokens": float(values.mean()),
        f"{prefix}_median_tokens": float(np.median(values)),
        f"{prefix}_p90_tokens": float(np.quantile(values, 0.9)),
        f"{prefix}_p99_tokens": float(np.quantile(values, 0.99)),
        f"{prefix}_min_tokens": float(values.min()),
        f"{prefix}_max_tokens": float(values.max()),
        f"{prefix}_lognormal_mu": float(logs.mean()),  # reference fit: ln(tokens) mean and std
        f"{prefix}_lognormal_sigma": float(logs.std()),
    }


def quantile_table(values: np.ndarray) -> QuantileLengths:
    q = np.quantile(values.astype(np.float64), PROBABILITIES)
    return QuantileLengths(probabilities=tuple(float(p) for p in PROBABILITIES),
                           tokens=tuple(round(float(v), 1) for v in q))


def derive(name: str, inp: np.ndarray, out: np.ndarray, trace: Trace | None, data: Path) -> dict:
    rel, cite, description = SOURCES[name]
    st: dict[str, float] = {"requests": float(inp.size)}
    note = ""
    if trace is not None:
        gaps = np.diff(trace.arrival_s)
        st.update(duration_s=trace.duration_s, rate_per_s=trace.rate_per_s,
                  gap_cv=float(gaps.std() / gaps.mean()), zero_gap_fraction=float(np.mean(gaps == 0)))
        cv = st["gap_cv"]
        if st["zero_gap_fraction"] > 0.5:
            # Timestamps quantised into buckets (Mooncake: 3 s): the raw gap cv measures the bucketing,
            # not burstiness. Use the index of dispersion of per-bucket counts instead; for a renewal
            # process var/mean of counts -> cv^2 (Cox & Lewis 1966, ch. 4), and 1 for Poisson.
            bucket_s = float(np.median(gaps[gaps > 0]))
            counts = np.unique(np.floor(trace.arrival_s / bucket_s + 0.5), return_counts=True)[1]
            st.update(bucket_s=bucket_s, bucket_count_dispersion=float(counts.var() / counts.mean()))
            cv = math.sqrt(st["bucket_count_dispersion"])
            note = (f"timestamps are quantised to {bucket_s:.0f} s buckets ({st['zero_gap_fraction']:.0%} zero "
                    f"gaps), so cv = sqrt(var/mean of per-bucket counts) = {cv:.3f}, not the raw gap cv "
                    f"{st['gap_cv']:.3f}")
        st["arrival_cv"] = cv
        arrival = {"kind": "gamma", "rate_per_s": round(st["rate_per_s"], 6), "cv": round(cv, 6)}
    else:
        arrival = {"kind": "poisson", "rate_per_s": ARXIV_RATE_PER_S}
        note = f"the source has no timestamps: Poisson at {ARXIV_RATE_PER_S} req/s is a placeholder, override it"
    st.update(length_stats(inp, "input"))
    st.update(length_stats(out, "output"))
    st["correlation"] = normal_scores_correlation(inp, out)
    qin, qout = quantile_table(inp), quantile_table(out)
    st["input_table_mean_tokens"] = qin.mean_tokens()
    st["output_table_mean_tokens"] = qout.mean_tokens()
    return {"description": description, "source": f"{cite}; file ../shared/data/{rel}", "arrival_note": note,
            "num_requests": DEFAULT_NUM_REQUESTS, "correlation": round(st["correlation"], 4),
            "arrival": arrival, "input": qin, "output": qout, "stats": st}


def _rounded(v: object) -> object:
    """Floats to 6 significant decimals (the statistics are not more precise than that), NaN kept."""
    if isinstance(v, float):
        return round(v, 6) if math.isfinite(v) else v
    if isinstance(v, dict):
        return {k: _rounded(x) for k, x in v.items()}
    if isinstance(v, tuple | list):
        return [_rounded(x) for x in v]
    return v


def to_toml(workloads: dict[str, dict]) -> str:
    data = {}
    for name, w in workloads.items():
        entry = {key: w[key] for key in ("description", "source", "arrival_note", "num_requests", "correlation")
                 if w.get(key, "") != ""}
        for sub in ("arrival", "input", "output", "stats"):
            entry[sub] = w[sub] if isinstance(w[sub], dict) else w[sub].model_dump()
        data[name] = entry
    return toml_text({"workloads": _rounded(data)}, [
        "Built-in named workloads: synthetic generators parameterised by statistics of public traces",
        "(quantile tables, mean rate, gap coefficient of variation, normal-scores length correlation).",
        "No trace rows are copied. Generated; do not edit by hand. Regenerate with:",
        f"  {COMMAND}",
        "Field meanings: docs/workloads.md. Length tables: tokens[i] is the probabilities[i] quantile.",
    ])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "simulator" / "data" / "workloads.toml")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data: Path = args.data

    workloads: dict[str, dict] = {}
    for name in ("conversation", "code", "mooncake-conversation"):
        trace = read_trace(data / SOURCES[name][0])
        workloads[name] = derive(name, trace.input_tokens, trace.output_tokens, trace, data)
    with (data / SOURCES["arxiv-summarization"][0]).open(newline="") as f:
        rows = list(csv.DictReader(f))
    inp = np.array([int(r["num_prefill_tokens"]) for r in rows], dtype=np.int64)
    out = np.array([int(r["num_decode_tokens"]) for r in rows], dtype=np.int64)
    workloads["arxiv-summarization"] = derive("arxiv-summarization", inp, out, None, data)
    workloads["chat-short"] = {
        "description": "Quick-demo chat: ~512-token prompts, ~128-token answers, Poisson 2 req/s. Chosen "
                       "round numbers, not fitted to any trace.",
        "source": "none (hand-picked demo defaults)",
        "num_requests": 200, "correlation": 0.0,
        "arrival": {"kind": "poisson", "rate_per_s": 2.0},
        "input": {"kind": "normal", "mean": 512.0, "std": 128.0, "low": 16, "high": 2048},
        "output": {"kind": "normal", "mean": 128.0, "std": 32.0, "low": 8, "high": 512},
        "stats": {"input_mean_tokens": 512.0, "output_mean_tokens": 128.0, "rate_per_s": 2.0},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(to_toml(workloads), encoding="utf-8")
    for name, w in workloads.items():
        st = w["stats"]
        logger.info("%-22s rate %.3f/s cv %.3f  input mean %.1f (table %.1f)  output mean %.1f (table %.1f)  rho %.3f",
                    name, st.get("rate_per_s", math.nan), st.get("arrival_cv", math.nan), st["input_mean_tokens"],
                    st.get("input_table_mean_tokens", math.nan), st["output_mean_tokens"],
                    st.get("output_table_mean_tokens", math.nan), st.get("correlation", math.nan))
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
