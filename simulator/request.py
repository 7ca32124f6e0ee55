"""Request: the mutable state of one request in the simulator, with the timestamps every metric derives from.

Per-token times are not stored per request: a request keeps `segments`, one per stretch of decoding on one
micro-batch lane, and its token times are read from the lane's per-iteration end times (see metrics.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Request states
WAITING, PREFILLING, DECODING, SWAPPED, DONE, REJECTED = range(6)


@dataclass(slots=True, eq=False)
class Request:
    """One request. Times are simulated seconds; NaN until the event happens.

    `generated` counts tokens emitted before the current decode stint; while decoding, the tokens emitted so
    far are generated + (lane token counter - join_counter). `segments` holds one entry per admission:
    [prefill_end_s (NaN for a swap-in), lane, join_counter, decode_tokens] -- the prefill (if any) emitted one
    token at prefill_end_s, then decode_tokens more were emitted by the lane's decode iterations after
    join_counter.
    """

    id: int
    arrival_s: float
    input_tokens: int
    output_tokens: int
    predicted_output_tokens: float = 0.0
    predictor_z: float = 0.0  # standard-normal draw of the output-length predictor's error
    replica: int = -1
    lane: int = 0
    state: int = WAITING
    first_scheduled_s: float = math.nan
    first_token_s: float = math.nan
    completion_s: float = math.nan
    preemptions: int = 0
    swaps: int = 0
    reject_reason: str = ""
    prefix: tuple[int, ...] = ()  # prefix-block hash ids of the prompt (prefix caching); () = none known
    cached_tokens: int = 0  # prompt tokens served from the prefix cache at the first admission
    session: int = -1  # the multi-turn session it belongs to (sessions.py; sticky routing); -1 = none
    warmup: bool = False  # a benchmark client's warm-up request: simulated, counted, excluded from statistics
    image_patches: int = 0  # vision-encoder patches of the request's images (their LLM tokens are in input_tokens)
    image_attn_pairs: float = 0.0  # sum over its images of patches^2 (the encoder's bidirectional attention)
    images_encoded: bool = False
    generated: int = 0
    prefill_target: int = 0  # tokens the current prefill must put into the KV cache
    prefilled: int = 0  # of those, already processed
    kv_tokens: int = 0  # KV tokens held when not decoding (decoding: derived from the lane counter)
    blocks: int = 0  # KV blocks held when not decoding
    join_counter: int = -1
    phase: int = 0  # block-boundary phase while decoding (kvcache.py)
    stint: int = 0  # bumps on every decode join; validates lazy heap entries
    segments: list[list[float]] = field(default_factory=list)

    @property
    def is_finished(self) -> bool:
        return self.state == DONE

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> float:
        return self.completion_s - self.arrival_s


__all__ = ["DECODING", "DONE", "PREFILLING", "REJECTED", "Request", "SWAPPED", "WAITING"]
