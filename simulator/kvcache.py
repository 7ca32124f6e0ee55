"""Paged KV-cache accounting: a pool of fixed-size blocks per replica, and the O(1) rule that tells how many
decoding sequences need a new block in the next decode step (block-boundary phases)."""

from __future__ import annotations

from collections import OrderedDict

from roofsim.model.memory import MemoryPlan


class BlockPool:
    """The KV blocks of one replica (vLLM PagedAttention, Kwon et al., SOSP 2023): `total` blocks of
    `block_size` tokens; a sequence of L cached tokens holds ceil(L / block_size) blocks."""

    __slots__ = ("block_size", "total", "used", "watermark", "kv_bytes_per_token", "peak_used")

    def __init__(self, plan: MemoryPlan, watermark_fraction: float) -> None:
        self.block_size = plan.block_size
        self.total = plan.kv_blocks
        self.used = 0
        self.peak_used = 0
        self.watermark = int(self.total * watermark_fraction)
        self.kv_bytes_per_token = plan.kv_bytes_per_token

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    @property
    def free(self) -> int:
        return self.total - self.used

    def can_admit(self, blocks: int) -> bool:
        """Admission keeps `watermark` blocks free for running sequences to grow into (vLLM)."""
        return self.total - self.used - blocks >= self.watermark

    def allocate(self, blocks: int) -> None:
        used = self.used + blocks
        if used > self.total:
            raise AssertionError(f"KV over-allocation: {used} > {self.total} blocks")
        self.used = used
        if used > self.peak_used:
            self.peak_used = used

    def release(self, blocks: int) -> None:
        self.used -= blocks
        assert self.used >= 0, "KV blocks released twice"


def decode_phase(join_counter: int, kv_tokens_at_join: int, block_size: int) -> int:
    """Phase of a sequence that joined decoding at lane counter J holding L KV tokens.

    At the decode step that starts from counter c, the sequence writes its (L + c - J + 1)-th KV token; it
    needs a new block when L + c - J is a multiple of the block size, i.e. when c % B == (J - L) % B. Counting
    the decoding sequences per phase makes "blocks needed by the next step" one list lookup.
    """
    return (join_counter - kv_tokens_at_join) % block_size


class PrefixCache:
    """Automatic prefix caching (vLLM APC, SGLang RadixAttention) as an LRU set of prefix-block hash ids.

    A hash id names a block of `block_tokens` prompt tokens *and everything before it* (Mooncake's `hash_ids`),
    so a request's hit is its longest run of leading ids present. Capacity is the replica's whole KV pool in
    prefix blocks: in vLLM a cached block is either in use (shared by running requests) or free but still
    holding its content until it is reallocated, evicted least recently used first. Simplification: eviction
    follows LRU at that capacity, not the pool's momentary free list. Blocks are touched tail first so that the
    head of a prefix is the most recent (vLLM frees a request's blocks in reverse order so tails go first).
    """

    __slots__ = ("capacity", "block_tokens", "lru", "lookup_tokens", "hit_tokens", "lookups", "hit_requests")

    def __init__(self, capacity_blocks: int, block_tokens: int) -> None:
        if capacity_blocks < 1 or block_tokens < 1:
            raise ValueError(f"prefix cache capacity_blocks={capacity_blocks} and block_tokens={block_tokens} "
                             "must be >= 1")
        self.capacity = capacity_blocks
        self.block_tokens = block_tokens
        self.lru: OrderedDict[int, None] = OrderedDict()
        self.lookup_tokens = 0  # prompt tokens looked up at admissions
        self.hit_tokens = 0  # of those, served from the cache
        self.lookups = 0
        self.hit_requests = 0

    def hit_blocks(self, ids: tuple[int, ...]) -> int:
        """Leading ids of `ids` present (no side effect)."""
        lru = self.lru
        n = 0
        for h in ids:
            if h not in lru:
                break
            n += 1
        return n

    def cached_tokens(self, ids: tuple[int, ...], target: int) -> int:
        """Prompt tokens of a `target`-token prefill served from the cache; the last token is always computed
        (vLLM recomputes it to get the logits of the next token)."""
        return min(self.hit_blocks(ids) * self.block_tokens, target - 1) if ids else 0

    def lookup(self, ids: tuple[int, ...], target: int) -> int:
        """cached_tokens, counting the lookup and refreshing the hit blocks' recency."""
        cached = self.cached_tokens(ids, target)
        self.lookups += 1
        self.lookup_tokens += target
        if cached:
            self.hit_requests += 1
            self.hit_tokens += cached
            lru = self.lru
            for h in reversed(ids[: -(-cached // self.block_tokens)]):
                lru.move_to_end(h)
        return cached

    def insert(self, ids: tuple[int, ...]) -> None:
        """The blocks of a prompt whose prefill finished are now cached (evicting least recently used)."""
        lru = self.lru
        for h in reversed(ids):
            if h in lru:
                lru.move_to_end(h)
            else:
                lru[h] = None
        while len(lru) > self.capacity:
            lru.popitem(last=False)


__all__ = ["BlockPool", "PrefixCache", "decode_phase"]
