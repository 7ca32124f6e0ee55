"""Benchmark clients as they really behave: per-harness models of the time a closed-loop client spends between
one response and its next request (and between the starts of a phase's clients), which is what desynchronises a
closed loop of identical clients. `ideal` is the lock-step client (no gaps)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

Harness = Literal["ideal", "aiperf", "genai-perf", "vllm-bench", "guidellm", "trtllm-bench"]
HARNESSES: tuple[str, ...] = get_args(Harness)


@dataclass(frozen=True, slots=True)
class ClientModel:
    """What one benchmark harness does between a response and the next request of the same client.

    `gap_s`: mean client-side time from the last byte of a response to the next request's send (bookkeeping,
    the hops through the harness's own processes, building the payload). The gap of each request is drawn
    exponential with this mean: the sum of several independent event-loop and socket waits whose sizes the
    harnesses do not document; the exponential is the maximum-entropy law for a positive delay of known mean,
    and it is what breaks the tie between clients that finished in the same engine iteration.
    `start_spacing_s`: time between successive clients' first sends when a phase starts (a harness that hands out
    its clients' first requests one at a time through one loop).
    `source`: where the behaviour is documented (code paths of the harness).
    `prompt_pool`: the harness's synthetic dataset holds this many prompts and each request draws one at random
    (with replacement), so later requests repeat earlier prompts, which an engine with prefix caching serves from
    its cache; 0 = every request has its own prompt."""

    name: str
    gap_s: float
    start_spacing_s: float
    source: str
    prompt_pool: int = 0  # distinct prompts the harness draws from with replacement; 0 = a new prompt per request

    def gaps(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` client gaps (seconds, >= 0); none drawn (zeros, the Generator untouched) for a gap-free client."""
        if self.gap_s == 0:
            return np.zeros(n)
        return rng.exponential(self.gap_s, n)


# Mean client gap of a Python asyncio harness whose request path crosses its own processes. Not documented by any
# harness; one value for every Python/ZMQ harness, fitted on half of the AIConfigurator silicon rows (the even
# rows of the H100 dense agg table) and reported on the other half (docs/validation-e2e.md, "Clients").
ASYNCIO_GAP_S = 2e-3

CLIENT_MODELS: dict[str, ClientModel] = {
    "ideal": ClientModel("ideal", 0.0, 0.0, "lock-step: every client sends its next request the instant its "
                         "previous one finishes (no harness)"),
    # ai-dynamo/aiperf aiperf/timing/request_rate_strategy.py (concurrency = asyncio.Semaphore released on a
    # CreditReturnMessage, then drop_credit over ZMQ to a worker process) and aiperf/workers/worker.py (per credit:
    # a conversation request/reply to the DatasetManager, payload formatting, aiohttp send; the credit returns
    # after the response is processed). Four inter-process hops per request; the credits of a phase's start are
    # dropped one after another by the one timing-manager loop.
    # Prompts: the synthetic composer makes --num-dataset-entries conversations (default 100,
    # aiperf/common/config/config_defaults.py NUM_DATASET_ENTRIES) and DatasetManager answers each credit with
    # random.choice over them (aiperf/dataset/dataset_manager.py). AIConfigurator's bench_run.sh.j2 leaves it at
    # 100, its sflow.py workflow sets it to the request count; the silicon rows do not say which. With a pool of
    # 100 the engines' default prefix caches serve most prompts and the silicon TTFT comes out -64 % (bias) on the
    # even rows, so the default is no pool; ClientModel(prompt_pool=100) states the other case.
    "aiperf": ClientModel("aiperf", ASYNCIO_GAP_S, ASYNCIO_GAP_S / 4, "ai-dynamo/aiperf request_rate_strategy.py "
                          "+ workers/worker.py: credit return -> semaphore -> credit drop -> conversation "
                          "request -> aiohttp send, 4 ZMQ hops between processes per request; 100 synthetic "
                          "prompts drawn with replacement (NUM_DATASET_ENTRIES)"),
    # genai-perf drives perf_analyzer (C++, triton-inference-server/perf_analyzer concurrency_manager.cc): worker
    # threads each keep their share of the concurrency in flight and re-send from the completion callback, no
    # inter-process hop: the gap is the callback-to-send path of libcurl, taken as a tenth of the asyncio gap.
    "genai-perf": ClientModel("genai-perf", ASYNCIO_GAP_S / 10, 0.0, "triton-inference-server/perf_analyzer "
                              "concurrency_manager.cc / concurrency_worker.cc: C++ threads re-send from the "
                              "completion callback"),
    # vLLM benchmarks/serve.py: every request is an asyncio task gated by asyncio.Semaphore(max_concurrency); a
    # finished task releases the semaphore and the next waiting task wakes on the same event loop, whose SSE
    # parsing of every stream runs in the same process.
    "vllm-bench": ClientModel("vllm-bench", ASYNCIO_GAP_S / 2, 0.0, "vllm benchmarks/serve.py (vllm bench "
                              "serve): one asyncio loop, Semaphore(max_concurrency), aiohttp streaming"),
    # GuideLLM concurrent/synchronous strategies: worker processes each run their streams on an asyncio loop and
    # take the next request from a multiprocessing queue filled by the scheduler process (neuralmagic/guidellm
    # scheduler/worker_group.py), one inter-process hop per request.
    "guidellm": ClientModel("guidellm", ASYNCIO_GAP_S / 2, ASYNCIO_GAP_S / 4, "neuralmagic/guidellm scheduler: "
                            "worker processes pull requests from a multiprocessing queue"),
    # trtllm-bench feeds pre-tokenised requests to the executor in-process (NVIDIA/TensorRT-LLM
    # tensorrt_llm/bench/benchmark/utils/asynchronous.py: asyncio tasks bounded by the concurrency, no HTTP):
    # a completion wakes the next task on the same loop.
    "trtllm-bench": ClientModel("trtllm-bench", ASYNCIO_GAP_S / 10, 0.0, "NVIDIA/TensorRT-LLM "
                                "tensorrt_llm/bench/benchmark/utils/asynchronous.py: in-process asyncio, no HTTP"),
}


PROMPT_HASH_BLOCK_TOKENS = 16  # tokens per prefix-block hash id of a pooled prompt (vLLM's default KV block)


def pooled_prompt_hash_ids(rng: np.random.Generator, input_tokens: np.ndarray, pool: int,
                           block_tokens: int = PROMPT_HASH_BLOCK_TOKENS) -> tuple[tuple[int, ...], ...]:
    """Prefix-block hash ids of requests whose prompts are drawn uniformly with replacement from `pool` distinct
    prompts: prompt k's j-th block is k * 2**32 + j, so two requests with the same prompt share every block and
    different prompts none (random corpus excerpts share no prefix)."""
    if pool < 1:
        raise ValueError(f"prompt pool={pool} must be >= 1")
    keys = rng.integers(0, pool, size=len(input_tokens))
    return tuple(tuple(int(k) * 2**32 + j for j in range(-(-int(n) // block_tokens)))
                 for n, k in zip(np.asarray(input_tokens).tolist(), keys.tolist(), strict=True))


def client_model(name: str) -> ClientModel:
    """The client model of a harness name (HARNESSES)."""
    if name not in CLIENT_MODELS:
        raise ValueError(f"client={name!r} is not one of {list(CLIENT_MODELS)}")
    return CLIENT_MODELS[name]


__all__ = ["ASYNCIO_GAP_S", "CLIENT_MODELS", "HARNESSES", "PROMPT_HASH_BLOCK_TOKENS", "ClientModel", "Harness",
           "client_model", "pooled_prompt_hash_ids"]
