"""Valid seed files for every roofsim file reader and the hypothesis strategies that break them (bytes, encodings,
truncation, extreme numbers, deep nesting, long lines, repeated columns, type confusion); used by
tests/test_robustness_readers.py."""

from __future__ import annotations

import codecs
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import strategies as st

from roofsim.hardware_specs.catalog import DATA_DIR, load_hardware_file
from roofsim.model.loader import PRESET_DIR, load_model
from roofsim.simulator.config import SimConfig
from roofsim.simulator.traces import read_trace
from roofsim.validation.bench_table import read_bench_table
from roofsim.validation.converters import convert_aiconfigurator_silicon, convert_argonne, convert_splitwise
from roofsim.validation.engine_logs import read_vllm_memory_profile
from roofsim.validation.kernel_tables import read_kernel_tables, read_llmcompass, read_vidur
from roofsim.validation.logs import read_guidellm, read_llmperf, read_log, read_vllm_benchmark
from roofsim.validation.profiles import PROFILE_DIR, read_calibration

ROOT = Path(__file__).resolve().parents[1]
_LOG_DATA = ROOT / "tests" / "validation" / "data"  # the serving-log fixtures of tests/validation/test_log_formats.py


@dataclass(frozen=True)
class Reader:
    """One reader: the file name it reads (folders included, some formats are told by path), a valid text, the
    call, and the syntax its structure mutations use ("json", "toml" or "lines")."""

    name: str
    file: str
    seed: str
    read: Callable[[Path], Any]
    syntax: str


def _guidellm_req(start: float, n_out: int) -> dict[str, Any]:
    first, last = start + 0.2, start + 0.2 + 0.02 * (n_out - 1)
    return {"prompt_tokens": 128, "output_tokens": n_out, "start_time": start, "end_time": last + 0.001,
            "first_token_time": first, "last_token_time": last}


_VLLM = {"input_lens": [10, 20, 30], "output_lens": [3, 0, 2], "ttfts": [0.1, 0.0, 0.2],
         "itls": [[0.01, 0.02], [], [0.05]], "errors": ["", "timeout", ""], "request_rate": "inf", "duration": 1.5,
         "seed": 0, "send_times": [0.0, 0.5, 1.0], "burstiness": 1.0, "generated_texts": ["a", "", "b"]}
_GUIDELLM = {"benchmarks": [{"start_time": 1000.0, "end_time": 1010.0,
                             "args": {"strategy": {"type_": "poisson", "rate": 2.0, "random_seed": 42}},
                             "requests": {"successful": [_guidellm_req(1000.0, 11), _guidellm_req(1000.6, 5)],
                                          "errored": [], "incomplete": [{"request_id": "x"}]}}]}
_LLMPERF = [{"error_code": None, "error_msg": "", "ttft_s": 0.2, "end_to_end_latency_s": 1.2,
             "number_output_tokens": 21, "number_input_tokens": 550},
            {"error_code": 500, "error_msg": "boom", "ttft_s": 0, "end_to_end_latency_s": 0,
             "number_output_tokens": 0, "number_input_tokens": 550}]
_VLLM_SERVER = (
    "INFO 04-14 16:08:05 [llm_engine.py:242] Initializing a V0 LLM engine (v0.8.3) with config: model='m'\n"
    "INFO 04-14 16:11:36 [worker.py:267] the current vLLM instance can use total_gpu_memory (39.49GiB) x "
    "gpu_memory_utilization (0.90) = 35.55GiB\n"
    "INFO 04-14 16:11:36 [worker.py:267] model weights take 16.46GiB; non_torch_memory takes 0.89GiB; PyTorch "
    "activation peak memory takes 0.25GiB; the rest of the memory reserved for KV Cache is 17.94GiB.\n"
    "INFO 04-14 16:11:36 [executor_base.py:117] Maximum concurrency for 131072 tokens per request: 3.12x\n")
_BENCH = ("model,hardware,num_gpus,tp,pp,ep,weight_dtype,kv_dtype,framework,mode,isl,osl,concurrency,qps,"
          "num_requests,ttft_ms,tpot_ms,itl_ms,e2e_ms,output_tokens_per_s,requests_per_s,notes\n"
          "meta-llama/Llama-3.1-8B-Instruct,h100-sxm,1,1,1,1,bf16,bf16,vllm,poisson,1024,128,,4.0,200,50.0,10.0,,,,,\n"
          "meta-llama/Llama-3.1-8B-Instruct,h100-sxm,1,1,1,1,bf16,bf16,vllm,closed_loop,1024,128,16,,,,,,,,,x\n")
_VIDUR_MLP = ("n_head,n_kv_head,n_embd,n_expanded_embd,vocab_size,use_gated_mlp,num_tokens,"
              "num_tensor_parallel_workers,time_stats.mlp_up_proj.median,time_stats.attn_pre_proj.median\n"
              "32,8,4096,14336,128256,True,16,1,0.05,0.02\n32,8,4096,14336,128256,False,64,2,0.08,0.03\n")
_VIDUR_NET = (",time_stats.all_reduce.median,rank,num_workers,size,collective,devices_per_node,max_devices_per_node\n"
              "0,0.037,0,8,2048,all_reduce,8,8\n1,0.023,0,8,10240,all_reduce,8,8\n")
_SILICON = ("backend,backend_version,model_path,system,precision,mode,isl,osl,gemm_quant_mode,batch_size,tp_size,"
            "pp_size,attention_dp_size,moe_ep_size,silicon_ttft_ms,silicon_tpot_ms\n"
            "sglang,0.5.1,Qwen/Qwen3-32B,h100_sxm,,agg,1024,128,,16,2,1,,1,840.8,16.5\n")


def _trace(fmt: str, text: str, suffix: str = "csv") -> Reader:
    return Reader(f"trace-{fmt}", f"t.{suffix}", text, lambda p: read_trace(p, fmt), "lines")


READERS: tuple[Reader, ...] = (
    *(Reader(f"model-config-{preset.split('_')[0]}", "m/config.json", (PRESET_DIR / preset).read_text(), load_model,
             "json")
      for preset in ("meta-llama--Meta-Llama-3.1-8B_config.json", "Qwen--Qwen3-30B-A3B_config.json",
                     "deepseek-ai--DeepSeek-V3_config.json", "openai--gpt-oss-20b_config.json", "gpt-3-175b.json")),
    Reader("hardware", "hw.toml", (DATA_DIR / "h100-sxm.toml").read_text(), load_hardware_file, "toml"),
    Reader("run-file", "run.toml", (ROOT / "tests" / "golden" / "demo.toml").read_text(), SimConfig.from_toml,
           "toml"),
    Reader("calibration", "cal.toml", (PROFILE_DIR / "h100-sxm.toml").read_text(), read_calibration, "toml"),
    _trace("azure", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n"
                    "2023-11-16 18:15:50.9951690,396,109\n"),
    _trace("vidur", "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,100,20\n0.5,200,30\n"),
    _trace("mooncake", '{"timestamp": 0, "input_length": 100, "output_length": 10, "hash_ids": [1, 2]}\n'
                       '{"timestamp": 27, "input_length": 600, "output_length": 5, "hash_ids": [1, 3]}\n', "jsonl"),
    _trace("burstgpt", "Timestamp,Model,Request tokens,Response tokens\n5,ChatGPT,472,18\n45,GPT-4,1087,3\n"),
    _trace("csv", "arrival_s,input_tokens,output_tokens,hash_ids\n0.0,10,5,1 2\n0.25,20,3,1 3\n"),
    _trace("jsonl", '{"arrival_s": 0.0, "input_tokens": 10, "output_tokens": 5}\n'
                    '{"arrival_s": 0.5, "input_tokens": 7, "output_tokens": 2}\n', "jsonl"),
    _trace("auto", "arrival_s,input_tokens,output_tokens\n0.0,10,5\n0.25,20,3\n"),
    Reader("log-vllm", "v.json", json.dumps(_VLLM), read_vllm_benchmark, "json"),
    Reader("log-guidellm", "benchmarks.json", json.dumps(_GUIDELLM), read_guidellm, "json"),
    Reader("log-llmperf", "x_individual_responses.json", json.dumps(_LLMPERF), read_llmperf, "json"),
    Reader("log-auto", "log.json", json.dumps(_VLLM), read_log, "json"),
    Reader("vllm-server-log", "server.log", _VLLM_SERVER, read_vllm_memory_profile, "lines"),
    Reader("log-vllm-bench-serve", "v.json", (_LOG_DATA / "vllm_bench_serve_detailed.json").read_text(), read_log,
           "json"),
    Reader("log-guidellm-0.6", "benchmarks.json", (_LOG_DATA / "guidellm_0_6_sweep.json").read_text(), read_log,
           "json"),
    Reader("log-sglang", "s.jsonl", (_LOG_DATA / "sglang_bench_serving.jsonl").read_text(), read_log, "lines"),
    Reader("log-aiperf", "profile_export.jsonl", (_LOG_DATA / "aiperf_profile_export.jsonl").read_text(), read_log,
           "lines"),
    Reader("kernels-csv", "k.csv", "op,dtype,hardware,measured_s,m,n,k,message_bytes,num_gpus,variant\n"
           "gemm,bf16,h100-sxm,1e-5,16,4096,4096,0,0,x\nallreduce,bf16,h100-sxm,2e-5,0,0,0,1048576,8,\n",
           read_kernel_tables, "lines"),
    Reader("kernels-vidur-mlp", "compute/a100/meta-llama/Llama-3-8B/mlp.csv", _VIDUR_MLP, read_vidur, "lines"),
    Reader("kernels-vidur-network", "network/h100_dgx/all_reduce.csv", _VIDUR_NET, read_vidur, "lines"),
    Reader("kernels-llmcompass", "figure5/a/real_hardware/matmul_A100.csv",
           "64, 12288, 12288, 0.1900ms, 101.7Tflops\n128, 12288, 12288, 0.2003ms, 193.0Tflops\n",
           read_llmcompass, "lines"),
    Reader("bench-table", "b.csv", _BENCH, read_bench_table, "lines"),
    Reader("convert-splitwise", "s.csv",
           "model,hardware,prompt_size,batch_size,token_size,prompt_time,token_time,e2e_time,tensor_parallel\n"
           "llama2-70b,a100-80gb,512,1,128,196.25,54.88,7168.98,2\n", convert_splitwise, "lines"),
    Reader("convert-argonne", "a.csv",
           "Hardware,Num of Hardware,Framework,Model,Input Output Length,Batch Size,Latency,Throughput\n"
           "Nvidia A100 GPU,1,vLLM,meta-llama/Llama-2-7b-hf,128,64,5.72,2864.4\n", convert_argonne, "lines"),
    Reader("convert-aiconfigurator", "sil.csv", _SILICON, convert_aiconfigurator_silicon, "lines"),
)

# ------------------------------------------------------------------------------------------------ strategies
EXTREME = ("inf", "-inf", "nan", "NaN", "1e308", "1e400", "-1", "0", "-0", "1e-300", "4294967297", "1" * 40,
           "1" * 5000, "0x10", "true", "", " ", '"x"', "[]", "{}", "null", "\x00", "\u00e9", "1e12", "1e8")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:e[+-]?\d+)?")

JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8) | st.sampled_from([10**30, 10**7, 0, -1, 1, 2**63]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _set(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    value[path[0]] = _set(value[path[0]], path[1:], new)
    return value


def _toml_safe(value: Any) -> Any:
    """A JSON value TOML can hold (no null, no None keys)."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return {str(k): _toml_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_toml_safe(v) for v in value]
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return float(value)
    return value


@st.composite
def _structural(draw: st.DrawFn, reader: Reader) -> str:
    """Replace one value of the parsed seed with any JSON value (type confusion, extreme numbers, deep lists)."""
    data = json.loads(reader.seed) if reader.syntax == "json" else tomllib.loads(reader.seed)
    path = draw(st.sampled_from(_paths(data)))
    data = _set(data, path, draw(JSON_VALUE))
    if reader.syntax == "json":
        return json.dumps(data)
    data = _toml_safe(data)
    return tomli_w.dumps(data) if isinstance(data, dict) else tomli_w.dumps({"v": data})


@st.composite
def _textual(draw: st.DrawFn, seed: str) -> str:
    text = seed
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["truncate", "insert", "number", "drop_line", "dup_line", "dup_column",
                                   "nest", "long_line", "header_only", "nul"]))
        lines = text.splitlines(keepends=True) or [""]
        at = draw(st.integers(0, len(text)))
        if op == "truncate":
            text = text[:at]
        elif op == "insert":
            text = text[:at] + draw(st.text(max_size=12)) + text[at:]
        elif op == "number":
            numbers = list(_NUMBER.finditer(text))
            if numbers:
                m = draw(st.sampled_from(numbers))
                text = text[:m.start()] + draw(st.sampled_from(EXTREME)) + text[m.end():]
        elif op == "drop_line":
            del lines[draw(st.integers(0, len(lines) - 1))]
            text = "".join(lines)
        elif op == "dup_line":
            i = draw(st.integers(0, len(lines) - 1))
            text = "".join(lines[: i + 1] + lines[i:])
        elif op == "dup_column":
            first = lines[0].rstrip("\r\n")
            cols = first.split(",")
            text = ",".join(cols + [draw(st.sampled_from(cols))]) + "\n" + "".join(lines[1:])
        elif op == "nest":
            n = draw(st.sampled_from([65, 1000, 100_000]))
            text = text[:at] + "[" * n + "1" + "]" * n + text[at:]
        elif op == "long_line":
            text = text[:at] + "9" * draw(st.sampled_from([131_073, 300_000])) + text[at:]
        elif op == "header_only":
            text = lines[0]
        else:
            text = text[:at] + "\x00" + text[at:]
    return text


def _encode(text: str, encoding: str) -> bytes:
    if encoding == "utf-8-bom":
        return codecs.BOM_UTF8 + text.encode("utf-8", "surrogatepass")
    if encoding == "latin-1":
        return text.encode("latin-1", "replace")
    return text.encode(encoding, "surrogatepass")


def file_bytes(reader: Reader) -> st.SearchStrategy[bytes]:
    """Malformed or extreme contents for `reader`'s file: mostly mutations of its valid seed."""
    texts: list[st.SearchStrategy[str]] = [_textual(reader.seed)]
    if reader.syntax in ("json", "toml"):
        texts.append(_structural(reader))
    encoded = st.builds(_encode, st.one_of(*texts),
                        st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-bom", "utf-16", "latin-1"]))
    return st.one_of(encoded, encoded, encoded, st.binary(max_size=200))
