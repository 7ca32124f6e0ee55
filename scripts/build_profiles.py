"""Build the shipped calibration profiles (validation/profiles/*.toml) from ../shared/data and print the held-out
kernel-level accuracy table that docs/validation.md quotes. Run: `make validate` (or this script directly)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from roofsim.model.cost import Calibration  # noqa: E402
from roofsim.validation.calibrate import calibrate  # noqa: E402
from roofsim.validation.kernel_tables import (  # noqa: E402
    KernelMeasurement,
    read_aiconfigurator,
    read_llmcompass,
    read_vidur,
)
from roofsim.validation.metrics_err import dtype_label, grouped_stats  # noqa: E402
from roofsim.validation.predict import predict_rows  # noqa: E402
from roofsim.validation.profiles import PROFILE_DIR, write_calibration  # noqa: E402

log = logging.getLogger("build_profiles")

SYSTEMS = {"a100-sxm-80gb": "a100_sxm", "h100-sxm": "h100_sxm"}
# fitted dtypes: 16-bit, fp8 (and fp8_block) and W8A8 int8 have their own peak-efficiency fields; weight-only
# int4/int8 GEMMs are reported as not fitted (their dequantisation cost is the vector_eff term)
FIT_DTYPES = ("bf16", "fp16", "fp8", "int8")
# Starting point of every fit: the defaults with the framework all-reduce switches enabled. One-shot up to 8 MiB:
# vLLM's CustomAllreduce max_size default (8192 * 1024 bytes), above which the frameworks fall back to NCCL.
# The floor and the decode per-sequence term start above zero so the fit sees their gradient (a max() term
# that is inactive everywhere has none); the fit then moves them, down to 0 where the data says so.
# decode_cuda_graphs: vLLM (V1 cudagraph capture sizes up to 512), SGLang (cuda_graph_max_bs) and TRT-LLM's PyTorch
# flow (cuda_graph_config) replay decode batches as CUDA graphs, so a simulated decode step's TP all-reduces skip
# the eager host-dispatch floor that the tables' eager rows fit (A100 vLLM: 44 us eager vs 5 us graphed).
BASE = Calibration(comm_oneshot_max_bytes=8 * 1024 * 1024, comm_floor_s=3e-5, attn_decode_seq_s=1e-7,
                   decode_cuda_graphs=True)
OPS = ("gemm", "attn_prefill", "attn_decode", "allreduce")
MAX_PER_KEY = 5_000  # rows per (op, dtype, framework) kept for fitting/evaluation (random, seed 0)


def _sample(rows: list[KernelMeasurement], seed: int) -> list[KernelMeasurement]:
    rng = np.random.default_rng(seed)
    by: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        by.setdefault((r.op, r.dtype, r.framework, r.variant.split(";")[1] if ";" in r.variant else ""), []).append(i)
    keep: list[int] = []
    for idx in by.values():
        keep.extend(idx if len(idx) <= MAX_PER_KEY else rng.choice(idx, MAX_PER_KEY, replace=False).tolist())
    return [rows[i] for i in sorted(keep)]


def load_rows(data: Path, hw: str) -> dict[str, list[KernelMeasurement]]:
    """Rows per source of one GPU: aiconfigurator (gemm, attention, comm), vidur (compute + dgx network), llmcompass."""
    kern = data / "kernels"
    aic = read_aiconfigurator(kern / "aiconfigurator", systems=[SYSTEMS[hw]], families=["gemm", "attention", "comm"])
    vid_dir = "a100" if hw.startswith("a100") else "h100"
    vid = read_vidur(kern / "vidur" / "profiling" / "compute" / vid_dir)
    node = "a100_dgx" if hw.startswith("a100") else "h100_dgx"
    vid = vid + read_vidur(kern / "vidur" / "profiling" / "network" / node)
    out = {"aiconfigurator": [r for r in aic.rows if r.hardware == hw],
           "vidur": [r for r in vid.rows if r.hardware == hw]}
    if hw.startswith("a100"):
        out["llmcompass"] = [r for r in read_llmcompass(kern / "llmcompass").rows if r.hardware == hw]
    for problem in aic.problems + vid.problems:
        log.warning("%s", problem)
    return out


def _fitted(r: KernelMeasurement) -> bool:
    return r.dtype in FIT_DTYPES and dtype_label(r) not in ("int8_wo", "int4_wo")


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=PROFILE_DIR)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--hardware", action="append", default=None, choices=sorted(SYSTEMS))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if not (args.data / "kernels").is_dir():
        log.error("no kernel data under %s", args.data)
        return 2
    t_all = time.time()
    lines = ["| profile | op/dtype/framework | n | held-out median abs % | held-out P90 % | held-out bias % | "
             "in-sample median % |", "|---|---|---|---|---|---|---|"]
    for hw in args.hardware or sorted(SYSTEMS):
        t0 = time.time()
        by_src = load_rows(args.data, hw)
        every = _sample([r for rows in by_src.values() for r in rows if r.op in OPS or r.source == "vidur"
                         or r.source == "llmcompass"], seed=0)
        sixteen = [r for r in every if _fitted(r)]
        log.info("%s: %d rows (%d of fitted dtypes) read in %.0f s", hw, len(every), len(sixteen), time.time() - t0)
        jobs: list[tuple[str, list[KernelMeasurement]]] = [(hw, sixteen)]
        for fw in ("trtllm", "vllm", "sglang"):
            sel = [r for r in sixteen if r.framework in (fw, "nccl")]
            if any(r.framework == fw for r in sel):
                jobs.append((f"{hw}-{fw}", sel))
        for name, rows in jobs:
            t1 = time.time()
            res = calibrate(rows, hw, base=BASE, folds=args.folds, seed=0, name=name)
            srcs = sorted({r.file.split("/kernels/")[-1].rsplit("/", 1)[0] for r in rows})
            cal = res.calibration.model_copy(update={
                "source": f"scripts/build_profiles.py: fit to {res.n_rows} measured {'/'.join(FIT_DTYPES)} kernel rows "
                          f"of {hw} in ../shared/data/kernels ({len(srcs)} tables: AIConfigurator (aiconfigurator-core "
                          f"0.12.0, Apache-2.0), Vidur (microsoft/vidur @ 7d47513, MIT)"
                          f"{', LLMCompass (PrincetonUniversity/LLMCompass @ 2e015fd, BSD-3-Clause)' if hw.startswith('a100') and name == hw else ''})"})
            # weight-only rows were not fitted: their error under this profile is out-of-sample by construction
            other = [r for r in every if not _fitted(r)
                     and (name == hw or r.framework == name.split("-")[-1])]
            extra = {}
            if other:
                pred = predict_rows(other, cal, hardware=hw)
                extra = {k: {kk: round(vv, 3) if isinstance(vv, float) else vv for kk, vv in v.as_dict().items()}
                         for k, v in grouped_stats(pred.rows, pred.predicted_s, pred.measured_s).items()}
            meta = {"command": "python scripts/build_profiles.py (make validate)", "data": "../shared/data/kernels",
                    "tables": srcs, "fit_dtypes": list(FIT_DTYPES), "max_rows_per_group": MAX_PER_KEY,
                    **res.meta(), "not_fitted_dtypes": extra}
            path = write_calibration(cal, args.out / f"{name}.toml", meta)
            log.info("%s: wrote %s in %.0f s (held-out overall median %.1f%%)", name, path, time.time() - t1,
                     res.held_out_overall.median_abs_pct_err)
            for k, s in res.held_out.items():
                lines.append(f"| {name} | {k} | {s.n} | {_fmt(s.median_abs_pct_err)} | {_fmt(s.p90_abs_pct_err)} | "
                             f"{s.bias_pct:+.1f} | {_fmt(res.in_sample[k].median_abs_pct_err)} |")
            for k, d in extra.items():
                lines.append(f"| {name} | {k} (not fitted) | {d['n']} | {_fmt(d['median_abs_pct_err'])} | "
                             f"{_fmt(d['p90_abs_pct_err'])} | {d['bias_pct']:+.1f} | - |")
    print("\n".join(lines))
    log.info("all profiles built in %.0f s", time.time() - t_all)
    return 0


if __name__ == "__main__":
    sys.exit(main())
