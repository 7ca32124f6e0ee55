"""Paged KV-cache accounting: a pool of fixed-size blocks per replica, and the O(1) rule that tells how many
decoding sequences need a new block in the next decode step (block-boundary phases)."""

from __future__ import annotations

from model.memory import MemoryPlan


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


__all__ = ["BlockPool", "decode_phase"]
