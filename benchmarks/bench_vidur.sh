#!/usr/bin/env bash
# Vidur (PyPI vidur==0.0.26) and roofsim side by side on the same requests (docs/performance.md,
# "Simulator: scaling and Vidur side by side"). Nothing here touches the project venv: Vidur lives in
# $VENV, all inputs/outputs in $W. Steps: install | prep | train | vidur | roofsim | compare | all.
#   Llama-2-70B, 1 replica, TP2 on A100 (the only model/GPU/TP with a Vidur attention table on this machine:
#   kernels/vidur/legacy/acb95f6/a100_attention.csv of the shared data folder has only n_embd=8192, 64 q / 8 kv heads, TP2),
#   vLLM scheduler (batch cap 128, 4096 tokens per batch), Azure 2023 conversation trace (splitwise_conv.csv,
#   19,366 requests, prompt cut so prompt + output <= 4096 as Vidur's trace_replay does).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$REPO/../shared/data}
W=${W:-/tmp/vidur-work}
VENV=${VENV:-/tmp/vidur-venv}
CORE=${CORE:-0}
mkdir -p "$W"
install() { [ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV"; "$VENV/bin/pip" install vidur==0.0.26; }

prep() {
  cat > "$W/prep.py" <<'EOF'
"""Prepare Vidur 0.0.26 inputs from the shared data folder (no network): new-format trace + offline HF dataset snapshots."""
import json, os, shutil
import pandas as pd
import sys
SH, W = sys.argv[1], sys.argv[2]
# 1) trace: Vidur 0.0.26's trace_replay reads Date,Time,PromptTokenCount,CompletionTokenCount
t = pd.read_csv(f"{SH}/traces/vidur_processed/splitwise_conv.csv")
out = pd.DataFrame({"Date": "2023-08-21", "Time": t.arrived_at, "PromptTokenCount": t.num_prefill_tokens,
                    "CompletionTokenCount": t.num_decode_tokens})
out.to_csv(f"{W}/splitwise_conv_v026.csv", index=False)
# same requests as Vidur sees them with max_tokens=4096 (prompt cut so prompt+output <= 4096), for roofsim
MAXT = 4096
p = t.num_prefill_tokens.clip(lower=1); d = t.num_decode_tokens.clip(lower=1)
p = p - (p + d - MAXT).clip(lower=0)
assert (p >= 1).all(), "a request's output alone exceeds max_tokens"
pd.DataFrame({"arrived_at": t.arrived_at, "num_prefill_tokens": p, "num_decode_tokens": d}).to_csv(
    f"{W}/splitwise_conv_clip4096_vidur_format.csv", index=False)
print("requests", len(t), "clipped", int(((t.num_prefill_tokens + t.num_decode_tokens) > MAXT).sum()))
# 2) offline HF cache: <cache>/datasets--local--NAME/{refs/main, snapshots/<rev>/...}
def snapshot(cache, repo, files, cfg):
    folder = f"{cache}/datasets--{repo.replace('/', '--')}"
    rev = "0" * 40
    os.makedirs(f"{folder}/refs", exist_ok=True)
    open(f"{folder}/refs/main", "w").write(rev)
    snap = f"{folder}/snapshots/{rev}"
    os.makedirs(snap, exist_ok=True)
    json.dump(cfg, open(f"{snap}/config.json", "w"))
    for name, src in files.items():
        pd.read_csv(src).to_csv(f"{snap}/{name}", index=False, compression="xz")
    print("wrote", snap, os.listdir(snap))
P = f"{SH}/kernels/vidur/profiling"
snapshot(f"{W}/.vidur_cache/profiling_data/compute", "local/vidur-a100-llama-2-70b-hf",
         {"mlp.csv.xz": f"{P}/compute/a100/meta-llama/Llama-2-70b-hf/mlp.csv",
          "attention.csv.xz": f"{SH}/kernels/vidur/legacy/acb95f6/a100_attention.csv"},
         {"model": "meta-llama/Llama-2-70b-hf", "device_sku": "a100"})
snapshot(f"{W}/.vidur_cache/profiling_data/network", "local/vidur-a100-pairwise-nvlink",
         {"all_reduce.csv.xz": f"{P}/network/a100_pairwise_nvlink/all_reduce.csv",
          "send_recv.csv.xz": f"{P}/network/a100_pairwise_nvlink/send_recv.csv"},
         {"sku": "a100_pairwise_nvlink"})
EOF
  cat > "$W/vidur_fixed_main.py" <<'EOF'
"""Run vidur.main with one fix for vidur 0.0.26: Request.restart() (recompute preemption) resets
_num_processed_tokens but not the pipeline-stage counters, so the first preempted request trips
`assert self._num_stage_processed_tokens <= self.total_tokens` in on_batch_stage_end."""
import runpy, sys
from vidur.entities import request as R
_orig_restart = R.Request.restart
def restart(self):
    _orig_restart(self)
    self._num_stage_processed_tokens = 0
    self._is_prefill_stage_complete = False
R.Request.restart = restart
sys.argv = ["vidur.main"] + sys.argv[1:]
runpy.run_module("vidur.main", run_name="__main__")
EOF
  cat > "$W/compare.py" <<'EOF'
"""Side-by-side metrics: Vidur request_metrics.csv + log timestamps vs roofsim summary.json / requests.csv."""
import glob, json, re, sys, datetime as dt
import numpy as np, pandas as pd
W = sys.argv[1] if len(sys.argv) > 1 else "/tmp/vidur-work"
def stats(x):
    x = np.asarray(x, float); x = x[np.isfinite(x)]
    return {"mean": x.mean(), "p50": np.percentile(x, 50), "p99": np.percentile(x, 99)}
def ts(line):
    m = re.search(r"(\d\d-\d\d \d\d:\d\d:\d\d)", line); return dt.datetime.strptime(m.group(1), "%m-%d %H:%M:%S")
def timev(path):
    t = open(path).read()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", t).group(1).split(":")
    wall = sum(float(p) * 60 ** i for i, p in enumerate(reversed(wall)))
    user = float(re.search(r"User time \(seconds\): (\S+)", t).group(1)); sys_ = float(re.search(r"System time \(seconds\): (\S+)", t).group(1))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
    return wall, user + sys_, rss
rows = []
for log in sorted(glob.glob(f"{W}/run_v*.log")):
    lines = open(log).read().splitlines()
    start = [l for l in lines if "Starting simulation" in l]; end = [l for l in lines if "Simulation ended at" in l]
    if not (start and end): continue
    sim_end = float(re.search(r"ended at: ([\d.]+)s", end[0]).group(1))
    loop = (ts(end[0]) - ts(start[0])).total_seconds()
    wall, cpu, rss = timev(log)
    out = log.replace("run_", "out_").replace(".log", "")
    df = pd.read_csv(glob.glob(f"{out}/*/request_metrics.csv")[0])
    rows.append(dict(tool="vidur", run=log, wall_s=wall, cpu_s=cpu, loop_wall_s=loop, rss_mb=rss, sim_s=sim_end,
                     n=len(df), ttft=stats(df.prefill_e2e_time), tpot=stats(df.decode_time_execution_plus_preemption_normalized),
                     e2e=stats(df.request_e2e_time), req_s=len(df) / sim_end, out_tok_s=df.request_num_decode_tokens.sum() / sim_end,
                     restarts=int(df.request_num_restarts.sum())))
for tf in sorted(glob.glob(f"{W}/roofsim_r*.time")):
    d = tf.replace(".time", "")
    s = json.load(open(f"{d}/summary.json"))
    wall, cpu, rss = timev(tf)
    rows.append(dict(tool="roofsim", run=d, wall_s=wall, cpu_s=cpu, loop_wall_s=s["wall_s"], rss_mb=rss, sim_s=s["sim_duration_s"],
                     n=s["requests_completed"], ttft=s["ttft_s"], tpot=s["tpot_s"], e2e=s["e2e_s"], req_s=s["requests_per_s"],
                     out_tok_s=s["output_tokens_per_s"], restarts=s["preemptions"], iterations=s["iterations"],
                     mean_batch=s["mean_batch_size"]))
for r in rows:
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else ({a: round(b, 4) for a, b in v.items() if a in ("mean", "p50", "p99")} if isinstance(v, dict) else v)) for k, v in r.items()}))
EOF
  "$VENV/bin/python" "$W/prep.py" "$SHARED" "$W"
}

vidur_cmd() {  # vidur_cmd OUTDIR [extra flags]
  local out=$1; shift
  (cd "$W" && HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled "$VENV/bin/python" "$W/vidur_fixed_main.py" \
    --replica_config_device a100 --replica_config_network_device a100_pairwise_nvlink \
    --replica_config_model_name meta-llama/Llama-2-70b-hf --replica_config_tensor_parallel_size 2 \
    --replica_config_num_pipeline_stages 1 --cluster_config_num_replicas 1 \
    --global_scheduler_config_type round_robin --replica_scheduler_config_type vllm \
    --request_generator_config_type trace_replay \
    --trace_request_generator_config_trace_file "$W/splitwise_conv_v026.csv" \
    --trace_request_generator_config_prefill_scale_factor 1 --trace_request_generator_config_decode_scale_factor 1 \
    --trace_request_generator_config_time_scale_factor 1 --trace_request_generator_config_max_tokens 4096 \
    --execution_time_predictor_config_type random_forrest \
    --random_forrest_execution_time_predictor_config_model_profiling_dataset local/vidur-a100-llama-2-70b-hf \
    --random_forrest_execution_time_predictor_config_network_profiling_dataset local/vidur-a100-pairwise-nvlink \
    --random_forrest_execution_time_predictor_config_prediction_max_tokens_per_request 4096 \
    --random_forrest_execution_time_predictor_config_cache_dir "$W/.vidur_cache" \
    --random_forrest_execution_time_predictor_config_num_estimators 500 \
    --random_forrest_execution_time_predictor_config_max_depth 32 \
    --random_forrest_execution_time_predictor_config_min_samples_split 2 \
    --random_forrest_execution_time_predictor_config_k_fold_cv_splits 2 \
    --metrics_config_output_dir "$out" "$@")
}

train() {  # first run: trains and caches the random-forest predictors (both cores), then simulates
  /usr/bin/time -v bash -c "$(declare -f vidur_cmd); W=$W VENV=$VENV vidur_cmd $W/out_train --no-metrics_config_store_plots" \
    > "$W/train.log" 2>&1
}

vidur() {  # timed runs with cached predictors, one core; plots off (kaleido/chromium PNG export is not simulation)
  for i in 1 2 3; do
    /usr/bin/time -v taskset -c "$CORE" bash -c "$(declare -f vidur_cmd); W=$W VENV=$VENV vidur_cmd $W/out_v$i --no-metrics_config_store_plots" \
      > "$W/run_v$i.log" 2>&1
  done
}

roofsim() {  # same requests, same deployment; max_sim_time_s large so the queue drains like Vidur's run
  for i in 1 2 3; do
    (cd "$REPO" && /usr/bin/time -v taskset -c "$CORE" .venv/bin/roofsim simulate \
      --trace "$W/splitwise_conv_clip4096_vidur_format.csv" --model llama-2-70b --hardware a100-sxm-80gb --tp 2 \
      --scheduler vllm --set 'replicas.*.scheduler.max_num_seqs=128' --set 'replicas.*.scheduler.max_batched_tokens=4096' \
      --set max_sim_time_s=1000000 --json \
      --out "$W/roofsim_r$i" --force > "$W/roofsim_r$i.stdout" 2> "$W/roofsim_r$i.time")
  done
}

compare() { "$VENV/bin/python" "$W/compare.py" "$W"; }

case "${1:-all}" in
  install) install ;; prep) prep ;; train) train ;; vidur) vidur ;; roofsim) roofsim ;; compare) compare ;;
  all) install; prep; train; vidur; roofsim; compare ;;
  *) echo "usage: $0 [install|prep|train|vidur|roofsim|compare|all]" >&2; exit 2 ;;
esac
