"""Paged KV-cache accounting: a pool of fixed-size blocks per replica, the O(1) rule that tells how many
decoding sequences need a new block in the next decode step (block-boundary phases), and the prefix cache with
its tiers below HBM."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

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


class Tier:
    """One KV tier below HBM (host DRAM, local SSD, a remote store): an LRU set of prefix-block hash ids holding
    at most `capacity` blocks, read back into HBM at `read_bytes_per_s` per GPU, and its traffic counters."""

    __slots__ = ("kind", "capacity", "read_bytes_per_s", "lru", "hit_tokens", "bytes_read", "bytes_written",
                 "evicted")

    def __init__(self, kind: str, capacity_blocks: int, read_bytes_per_s: float) -> None:
        if capacity_blocks < 0 or not read_bytes_per_s > 0:
            raise ValueError(f"KV tier {kind!r}: capacity_blocks={capacity_blocks} must be >= 0 and "
                             f"read_bytes_per_s={read_bytes_per_s} > 0")
        self.kind = kind
        self.capacity = capacity_blocks
        self.read_bytes_per_s = read_bytes_per_s
        self.lru: OrderedDict[int, None] = OrderedDict()
        self.hit_tokens = 0  # prompt tokens served from this tier (loaded back into HBM)
        self.bytes_read = 0.0  # per GPU, loaded back into HBM
        self.bytes_written = 0.0  # per GPU, demoted into this tier
        self.evicted = 0  # blocks pushed out of this tier (to the next one, or dropped from the last)


class PrefixCache:
    """Automatic prefix caching (vLLM APC, SGLang RadixAttention) as an LRU set of prefix-block hash ids, with
    optional tiers below HBM (LMCache, Mooncake Store; docs/kv-tiers.md).

    A hash id names a block of `block_tokens` prompt tokens *and everything before it* (Mooncake's `hash_ids`),
    so a request's hit is its longest run of leading ids present in any tier. HBM capacity is the replica's
    whole KV pool in prefix blocks: in vLLM a cached block is either in use (shared by running requests) or free
    but still holding its content until it is reallocated, evicted least recently used first. Simplification:
    eviction follows LRU at that capacity, not the pool's momentary free list. Blocks are touched tail first so
    that the head of a prefix is the most recent (vLLM frees a request's blocks in reverse order so tails go
    first). Tiers are exclusive: a block evicted from HBM is demoted to the first tier, one evicted from tier k
    to tier k + 1, one evicted from the last is gone; a hit in tier k is loaded back into HBM (moved, not
    copied) and costs `block_bytes` / that tier's read bandwidth (`pending_load_s`, taken by the replica).
    """

    __slots__ = ("capacity", "block_tokens", "lru", "lookup_tokens", "hit_tokens", "lookups", "hit_requests",
                 "tiers", "block_bytes", "pending_load_s", "load_s")

    def __init__(self, capacity_blocks: int, block_tokens: int, tiers: tuple[Tier, ...] = (),
                 block_bytes: float = 0.0) -> None:
        if capacity_blocks < 1 or block_tokens < 1:
            raise ValueError(f"prefix cache capacity_blocks={capacity_blocks} and block_tokens={block_tokens} "
                             "must be >= 1")
        if tiers and not block_bytes > 0:
            raise ValueError(f"prefix cache with tiers needs block_bytes={block_bytes} > 0")
        self.capacity = capacity_blocks
        self.block_tokens = block_tokens
        self.lru: OrderedDict[int, None] = OrderedDict()
        self.lookup_tokens = 0  # prompt tokens looked up at admissions
        self.hit_tokens = 0  # of those, served from the cache (any tier)
        self.lookups = 0
        self.hit_requests = 0
        self.tiers = tiers
        self.block_bytes = block_bytes  # KV bytes of one prefix block on one GPU
        self.pending_load_s = 0.0  # load-back time of admissions not yet charged to an iteration
        self.load_s = 0.0  # all load-back time of the run

    def hit_blocks(self, ids: tuple[int, ...]) -> int:
        """Leading ids of `ids` present in some tier (no side effect)."""
        lru = self.lru
        n = 0
        if not self.tiers:
            for h in ids:
                if h not in lru:
                    break
                n += 1
            return n
        for h in ids:
            if h not in lru and self._tier_of(h) is None:
                break
            n += 1
        return n

    def _tier_of(self, h: int) -> Tier | None:
        for t in self.tiers:
            if h in t.lru:
                return t
        return None

    def cached_tokens(self, ids: tuple[int, ...], target: int) -> int:
        """Prompt tokens of a `target`-token prefill served from the cache; the last token is always computed
        (vLLM recomputes it to get the logits of the next token)."""
        return min(self.hit_blocks(ids) * self.block_tokens, target - 1) if ids else 0

    def lookup(self, ids: tuple[int, ...], target: int) -> int:
        """cached_tokens, counting the lookup and refreshing the hit blocks' recency; hits below HBM are loaded
        back (their time added to `pending_load_s`)."""
        cached = self.cached_tokens(ids, target)
        self.lookups += 1
        self.lookup_tokens += target
        if cached:
            self.hit_requests += 1
            self.hit_tokens += cached
            used = ids[: -(-cached // self.block_tokens)]
            if self.tiers:
                self._load_back(used, cached)
            lru = self.lru
            for h in reversed(used):
                lru.move_to_end(h)
            if self.tiers:
                self._evict()
        return cached

    def _load_back(self, used: tuple[int, ...], cached: int) -> None:
        """Move the blocks of `used` held below HBM into HBM (the caller evicts), charging their reads (the last
        block's bytes are counted whole: a prefix block is read as a unit)."""
        lru, bt, nb = self.lru, self.block_tokens, len(used)
        for i, h in enumerate(used):
            if h in lru:
                continue
            t = self._tier_of(h)
            assert t is not None, "a hit block is in no tier"
            del t.lru[h]
            t.hit_tokens += min(bt, cached - i * bt) if i == nb - 1 else bt
            t.bytes_read += self.block_bytes
            dt = self.block_bytes / t.read_bytes_per_s
            self.pending_load_s += dt
            self.load_s += dt
            lru[h] = None

    def take_load_s(self) -> float:
        """Load-back time accumulated since the last call (the replica charges it to the iteration)."""
        s, self.pending_load_s = self.pending_load_s, 0.0
        return s

    def insert(self, ids: tuple[int, ...]) -> None:
        """The blocks of a prompt whose prefill finished are now cached (evicting least recently used)."""
        lru = self.lru
        tiers = self.tiers
        for h in reversed(ids):
            if h in lru:
                lru.move_to_end(h)
            else:
                if tiers:  # its KV is in HBM now: a stale copy below is dropped (tiers are exclusive)
                    t = self._tier_of(h)
                    if t is not None:
                        del t.lru[h]
                lru[h] = None
        self._evict()

    def _evict(self) -> None:
        """HBM over capacity: least recently used blocks go down the tiers (or are dropped without tiers)."""
        lru = self.lru
        if not self.tiers:
            while len(lru) > self.capacity:
                lru.popitem(last=False)
            return
        while len(lru) > self.capacity:
            h, _ = lru.popitem(last=False)
            for t in self.tiers:
                if t.capacity == 0:
                    continue
                t.lru[h] = None
                t.bytes_written += self.block_bytes
                if len(t.lru) <= t.capacity:
                    break
                t.evicted += 1
                h, _ = t.lru.popitem(last=False)


def reuse_bound(hash_ids: Sequence[tuple[int, ...]], input_tokens: Sequence[int], block_tokens: int) -> float:
    """Fraction of prompt tokens an infinite cache would serve: each prompt's longest run of leading ids sent
    by an earlier prompt (the last token always computed), over all prompt tokens."""
    seen: set[int] = set()
    hit = total = 0
    for ids, n in zip(hash_ids, input_tokens, strict=True):
        k = 0
        while k < len(ids) and ids[k] in seen:
            k += 1
        hit += min(k * block_tokens, int(n) - 1) if k else 0
        total += int(n)
        seen.update(ids)
    return hit / total if total else math.nan


__all__ = ["BlockPool", "PrefixCache", "Tier", "decode_phase", "reuse_bound"]
