"""One serving replica: a simpy process that runs iterations (batch -> DecodeStrategy -> advance time) over a
paged KV cache, with O(1) per-iteration bookkeeping; pipeline parallelism as `pp` micro-batch lanes."""

from __future__ import annotations

import heapq
import logging
import math
from array import array
from collections import deque
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import simpy

from roofsim.model.batch import causal_pairs, iteration_shape, windowed_pairs
from roofsim.model.memory import MemoryPlan
from roofsim.simulator.kvcache import BlockPool, PrefixCache
from roofsim.simulator.request import DECODING, DONE, PREFILLING, SWAPPED, WAITING, Request
from roofsim.simulator.strategy import DecodeStrategy

if TYPE_CHECKING:
    from roofsim.simulator.cluster import Cluster
    from roofsim.simulator.schedulers import Scheduler

logger = logging.getLogger(__name__)


class Waiting:
    """Waiting queue: preempted requests first (in preemption order), then FCFS or by a priority key."""

    __slots__ = ("front", "main", "keyed", "_seq")

    def __init__(self, keyed: bool) -> None:
        self.front: deque[Request] = deque()
        self.main: Any = [] if keyed else deque()
        self.keyed = keyed
        self._seq = 0

    def __len__(self) -> int:
        return len(self.front) + len(self.main)

    def push(self, r: Request) -> None:
        if self.keyed:
            self._seq += 1
            heapq.heappush(self.main, (r.predicted_output_tokens, self._seq, r))
        else:
            self.main.append(r)

    def push_front(self, r: Request) -> None:
        self.front.appendleft(r)

    def peek(self) -> Request | None:
        if self.front:
            return self.front[0]
        if self.main:
            return self.main[0][2] if self.keyed else self.main[0]
        return None

    def pop(self) -> Request:
        if self.front:
            return self.front.popleft()
        return heapq.heappop(self.main)[2] if self.keyed else self.main.popleft()


class Lane:
    """One micro-batch slot (the whole replica when pp == 1): its running requests and decode bookkeeping.

    `n_dec` counts its decoding sequences; the other decode fields belong to strategy.CounterProgress (plain
    decoding and early exit), which never iterates decoding requests per step.
    """

    __slots__ = ("idx", "running", "prefilling", "n_dec", "sum_kv", "phase_count", "counter", "finish_heap",
                 "win_heap", "n_cap", "sum_uncapped", "dec_end_s", "dec_cum", "busy", "static_lock")

    def __init__(self, idx: int, block_size: int) -> None:
        self.idx = idx
        self.running: dict[Request, None] = {}  # admission order (LIFO preemption victim = last)
        self.prefilling: list[Request] = []  # admitted, prompt not finished (FCFS)
        self.n_dec = 0
        self.sum_kv = 0
        self.phase_count = [0] * block_size
        self.counter = 0
        self.finish_heap: list[tuple[int, int, int, Request]] = []
        self.win_heap: list[tuple[int, int, int, Request]] = []
        self.n_cap = 0
        self.sum_uncapped = 0
        self.dec_end_s = array("d")  # end time of each decode iteration of this lane
        self.dec_cum = array("q")  # lane counter after each decode iteration
        self.busy = False
        self.static_lock = False


class Replica:
    """A model copy on tp x pp GPUs. The scheduler policy forms each iteration's batch; the decode strategy costs
    it and tracks what decoding requests gain (strategy.py); this class owns the mechanics (admission,
    preemption, block accounting, prefill progress, timing, recording)."""

    def __init__(self, idx: int, group: int, name: str, strategy: DecodeStrategy, plan: MemoryPlan,
                 scheduler: Scheduler, max_context_tokens: int, window: int | None) -> None:
        self.idx, self.group, self.name = idx, group, name
        self.strategy = strategy
        self.cost = strategy.cost
        self.plan = plan
        self.scheduler = scheduler
        cfg = scheduler.cfg
        self.max_num_seqs = cfg.max_num_seqs
        self.max_batched_tokens = cfg.max_batched_tokens
        self.swap = cfg.preemption == "swap"
        self.predictor_sigma = float(getattr(cfg, "predictor_sigma", 0.0))
        self.pool = BlockPool(plan, cfg.watermark_fraction)
        self.B = plan.block_size
        self.max_context_tokens = max_context_tokens
        self.window = window
        self.pp = strategy.pp
        self.lanes = [Lane(i, self.B) for i in range(self.pp)]
        self.stage_free = [0.0] * self.pp
        self.waiting = Waiting(keyed=scheduler.keyed)
        self.swapped: deque[Request] = deque()
        self.n_running = 0
        self.queued_prompt_tokens = 0  # prompts of requests never scheduled yet (least_kv router)
        self.prefix: PrefixCache | None = None  # set by simulate() for groups with prefix_caching
        self.load_layers = 0  # load-back from KV tiers overlaps layer by layer over this many layers; 0: not
        self.frontend_s = 0.0  # serialized per-request front-end time (ReplicaGroup.frontend_s_per_request)
        self.frontend_free_s = 0.0  # when the front end finishes the requests it already holds
        self.frontend_n = 0  # requests in the front end
        self.frontend_tok_s = 0.0  # front-end time per streamed output token (ReplicaGroup.frontend_s_per_token)
        self.cluster: Cluster | None = None
        # disaggregated deployments (simulator/disagg.py): a prefill replica hands a request whose prompt is done
        # to `handoff`; a decode replica takes handed-over requests in through `intake` when an iteration starts
        self.role = "colocated"
        self.attn_dp = 1  # attention data-parallel ranks (ReplicaGroup.attn_dp): a sequence's KV lives on one rank
        self.handoff: Callable[[Replica, Lane, Request, float], None] | None = None
        self.intake: Callable[[Replica, Lane, float], None] | None = None
        self.yield_until_s = math.inf  # simulated time this replica's process resumes at (inf: idle)
        self.env: simpy.Environment | None = None
        self._wake: simpy.Event | None = None
        self.num_gpus = strategy.cost.parallel.num_gpus
        # per-iteration series
        self.it_start_s = array("d")
        self.it_dur_s = array("d")
        self.it_lane = array("i")
        self.it_prefill_tokens = array("q")
        self.it_prefill_seqs = array("i")
        self.it_decode_seqs = array("i")
        self.it_kv_blocks = array("q")
        self.it_waiting = array("q")
        self.it_running = array("q")
        self.energy_j = 0.0
        self.busy_s = 0.0
        self.preemptions = 0
        self.swap_s = 0.0
        self.vision_s = 0.0  # seconds of vision-encoder work (images of VL requests)
        # aggregate batch sums (for MFU/MBU of the whole run, see metrics.py)
        self.sum_pairs = 0.0
        self.sum_pairs_win = 0.0
        self.sum_prefill_ctx = 0
        self.sum_decode_ctx = 0
        self.sum_decode_ctx_win = 0
        # the iteration being formed
        self._chunks: list[tuple[Request, int]] = []
        self._swap_extra_s = 0.0
        self.progress = strategy.progress(self)  # after lanes, pool, B and window: the tracker reads them

    # ---- queries used by routers -------------------------------------------------------------------------
    @property
    def outstanding(self) -> int:
        return len(self.waiting) + len(self.swapped) + self.n_running + self.frontend_n

    @property
    def kv_load(self) -> float:
        return self.pool.used / self.pool.total

    def never_fits(self, r: Request) -> str:
        """Why `r` can never be served here ('' when it can)."""
        total = r.input_tokens + r.output_tokens
        if total > self.max_context_tokens:
            return f"input+output={total} tokens exceeds the model context ({self.max_context_tokens})"
        # a prefill replica holds the prompt and the first token only: the decode replica holds the rest
        held, what = (r.input_tokens + 1, "input+1") if self.role == "prefill" else (total, "input+output")
        # with attention DP the pool is the sum of the ranks' and one sequence's KV lives on one rank
        dp = self.attn_dp
        room, free = self.pool.total // dp, self.pool.watermark // dp
        if self.pool.blocks_for(held) > room - free:
            where = "the replica has" if dp == 1 else f"one of the replica's {dp} attention-DP ranks has"
            return (f"{what}={held} tokens needs {self.pool.blocks_for(held)} KV blocks; {where} "
                    f"{room} ({free} kept free)")
        return self.scheduler.never_fits(self, r)

    # ---- arrival ---------------------------------------------------------------------------------------
    def enqueue(self, r: Request) -> None:
        r.replica = self.idx
        r.state = WAITING
        if self.scheduler.keyed:
            r.predicted_output_tokens = r.output_tokens * math.exp(self.predictor_sigma * r.predictor_z)
        self.waiting.push(r)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    # ---- mechanics the schedulers call ---------------------------------------------------------------
    def admit(self, lane: Lane, r: Request, now: float) -> None:
        """Move `r` from waiting into `lane` and reserve KV blocks for its whole prompt."""
        target = r.input_tokens + r.generated
        blocks = self.pool.blocks_for(target)
        self.pool.allocate(blocks)
        r.blocks = blocks
        r.kv_tokens = 0
        r.prefill_target = target
        # prefix-cache hit: those tokens' KV is already there (they still occupy the blocks reserved above)
        cached = self.prefix.lookup(r.prefix, target) if self.prefix is not None and r.prefix else 0
        r.prefilled = cached
        r.state = PREFILLING
        r.lane = lane.idx
        if r.first_scheduled_s != r.first_scheduled_s:  # NaN: first time
            r.first_scheduled_s = now
            r.cached_tokens = cached
            self.queued_prompt_tokens -= r.input_tokens
        lane.running[r] = None
        lane.prefilling.append(r)
        self.n_running += 1

    def new_prefill_tokens(self, r: Request, target: int) -> int:
        """Tokens a `target`-token prefill of `r` must compute if admitted now (prefix-cache hits excluded)."""
        if self.prefix is None or not r.prefix:
            return target
        return target - self.prefix.cached_tokens(r.prefix, target)

    def swap_in(self, lane: Lane, r: Request) -> None:
        blocks = self.pool.blocks_for(r.kv_tokens)
        self.pool.allocate(blocks)
        self._swap_extra_s += r.kv_tokens * self.pool.kv_bytes_per_token / self._pcie_bytes_per_s()
        lane.running[r] = None
        self.n_running += 1
        r.lane = lane.idx
        r.segments.append([math.nan, lane.idx, lane.counter, 0])
        self._join_decode(lane, r, r.kv_tokens, blocks)

    def join_handed_over(self, lane: Lane, r: Request, kv: int, blocks: int, first_token_s: float) -> None:
        """A request prefilled elsewhere joins decoding in `lane` with `kv` KV tokens in `blocks` blocks already
        allocated here; its first token (from the prefill replica) counts at `first_token_s`."""
        lane.running[r] = None
        self.n_running += 1
        r.replica = self.idx
        r.lane = lane.idx
        r.segments.append([first_token_s, lane.idx, lane.counter, 0])
        self._join_decode(lane, r, kv, blocks)

    def _load_extra_s(self, load_s: float, compute_s: float) -> float:
        """Time a load-back of `load_s` from the KV tiers adds to an iteration computing for `compute_s`.
        Layer-wise (LMCache `use_layerwise`, vLLM's KV connector `wait_for_layer_load`): a two-stage pipeline
        over L layers, layer l+1 loading while layer l computes, so the iteration takes
        load/L + (L-1)/L max(compute, load) + compute/L. Otherwise the load precedes the computation."""
        L = self.load_layers
        if not L:
            return load_s
        return load_s / L + (L - 1) / L * max(0.0, load_s - compute_s)

    def _pcie_bytes_per_s(self) -> float:
        return self.cost.hardware.interconnect.pcie_bytes_per_s

    def _join_decode(self, lane: Lane, r: Request, kv: int, blocks: int) -> None:
        r.state = DECODING
        r.kv_tokens = kv
        r.blocks = blocks
        r.stint += 1
        lane.n_dec += 1
        self.progress.join(lane, r)

    def _leave_decode(self, lane: Lane, r: Request) -> int:
        """Take a decoding request out of the lane; returns its KV tokens now."""
        kv, emitted = self.progress.leave(lane, r)
        lane.n_dec -= 1
        r.generated += emitted
        r.join_counter = -1
        r.stint += 1  # invalidates heap entries
        return kv

    def preempt_one(self, lane: Lane, now: float) -> bool:
        """Preempt the most recently admitted request of `lane` (vLLM's victim order). False if none."""
        if not lane.running:
            return False
        victim, _ = lane.running.popitem()
        self.n_running -= 1
        victim.preemptions += 1
        self.preemptions += 1
        if victim.state == DECODING:
            kv = self._leave_decode(lane, victim)
            self.pool.release(self.pool.blocks_for(kv))
            if self.swap:
                # Swap the victim's KV to host memory over PCIe; every GPU moves its own shard in parallel.
                victim.kv_tokens = kv
                victim.swaps += 1
                victim.state = SWAPPED
                self._swap_extra_s += kv * self.pool.kv_bytes_per_token / self._pcie_bytes_per_s()
                self.swapped.append(victim)
                return True
        else:  # prefilling: drop its partial KV (always recomputed)
            lane.prefilling.remove(victim)
            self.pool.release(victim.blocks)
        victim.blocks = 0
        victim.kv_tokens = 0
        victim.state = WAITING
        self.waiting.push_front(victim)
        return True

    def prepare_decode(self, lane: Lane, now: float) -> int:
        """Reserve blocks for one decode step of every decoding request in `lane`, preempting (LIFO) while
        the pool is short. Returns the number of decoding sequences left."""
        return self.progress.reserve(lane, now)

    # ---- one iteration -------------------------------------------------------------------------------
    def start_iteration(self, lane: Lane, now: float) -> float | None:
        """Form and cost the next iteration of `lane` starting at `now`; returns its end time (None: idle)."""
        if self.intake is not None:
            self.intake(self, lane, now)
        chunks: list[tuple[Request, int]] = []
        self._chunks = chunks
        self._swap_extra_s = 0.0
        n_dec = self.scheduler.form(self, lane, now, chunks)
        if n_dec == 0 and not chunks:
            if self._swap_extra_s:
                raise AssertionError("swap without an iteration")
            return None
        # prefill aggregates (O(chunks))
        p_tok = p_ctx = v_patches = 0
        pairs = pairs_w = v_pairs = 0.0
        W = self.window
        for r, new in chunks:  # most iterations of a busy replica decode only: no chunks
            ctx = r.prefilled
            p_tok += new
            p_ctx += ctx
            pairs += causal_pairs(new, ctx)
            if W is not None:
                pairs_w += windowed_pairs(new, ctx, W)
            if r.image_patches and not r.images_encoded:
                # the encoder runs in the step of the request's first prefill chunk (vLLM V1 schedules the
                # encoder inputs with the chunk that first needs them; our image tokens lead the prompt)
                v_patches += r.image_patches
                v_pairs += r.image_attn_pairs
                r.images_encoded = True
        d_ctx, d_ctx_w = self.progress.context(lane, n_dec)
        n_chunks = len(chunks)
        # the derived fields given as BatchShape.__post_init__ would fill them in (iteration_shape checks nothing)
        shape = iteration_shape(
            prefill_tokens=p_tok, prefill_seqs=n_chunks, prefill_attn_pairs=pairs, prefill_ctx_tokens=p_ctx,
            decode_seqs=n_dec, decode_tokens=n_dec, decode_ctx_tokens=d_ctx, logit_tokens=n_dec + n_chunks,
            prefill_attn_pairs_win=pairs_w if W is not None else pairs,
            decode_ctx_tokens_win=d_ctx_w if d_ctx_w >= 0 else d_ctx,
        )
        seconds, joules = self.strategy.step(shape)
        self.progress.advance(lane, n_dec)
        extra = self._swap_extra_s
        if self.prefix is not None and self.prefix.pending_load_s:
            extra += self._load_extra_s(self.prefix.take_load_s(), seconds)
        if v_patches:  # the vision encoder, outside the decode strategy (it does not change how tokens decode)
            v_s, v_j = self.cost.vision_seconds_energy(v_patches, v_pairs)
            extra += v_s
            joules += v_j
            self.vision_s += v_s
        if self.pp == 1:
            start = now
            end = now + seconds + extra
        else:
            # techniques that change the step's cost refuse pp > 1, so a stage's time is the cost model's
            stage = self.cost.pipeline_stage_seconds(shape) + extra / self.pp
            sf = self.stage_free
            start = prev = max(now, sf[0])
            for s in range(self.pp):
                b = prev if prev > sf[s] else sf[s]
                prev = b + stage
                sf[s] = prev
            end = prev
        if extra:
            self.swap_s += extra
        self.energy_j += joules
        self.busy_s += end - start
        if chunks:
            self.sum_pairs += pairs
            self.sum_pairs_win += pairs_w
            self.sum_prefill_ctx += p_ctx
        self.sum_decode_ctx += d_ctx
        if W is not None:
            self.sum_decode_ctx_win += d_ctx_w
        li = lane.idx
        w = self.waiting  # its length inline: Waiting.__len__ is a Python call per iteration
        self.it_start_s.append(start)
        self.it_dur_s.append(end - start)
        self.it_lane.append(li)
        self.it_prefill_tokens.append(p_tok)
        self.it_prefill_seqs.append(n_chunks)
        self.it_decode_seqs.append(n_dec)
        self.it_kv_blocks.append(self.pool.used)
        self.it_waiting.append(len(w.front) + len(w.main) + len(self.swapped))
        self.it_running.append(self.n_running)
        lane.busy = True
        self._lane_chunks[li] = chunks
        self._lane_dec[li] = n_dec
        return end

    def end_iteration(self, lane: Lane, end: float) -> None:
        """Apply the iteration of `lane` that ends at `end`: prefill progress, emitted tokens, completions."""
        lane.busy = False
        chunks = self._lane_chunks[lane.idx]
        if self._lane_dec[lane.idx]:
            self.progress.complete(lane, end)
        # One front-end process handles admissions and outputs first come, first served: this step's outputs
        # start when it is free, in batch order (the running requests' tokens before the new ones'), so a first
        # token reaches the client `pos` tokens' time after that.
        pos = self._lane_dec[lane.idx]
        out_s = max(end, self.frontend_free_s) if self.frontend_s or self.frontend_tok_s else end
        for r, new in chunks:
            r.prefilled += new
            if r.prefilled < r.prefill_target:
                continue
            lane.prefilling.remove(r)
            if self.prefix is not None and r.prefix:
                self.prefix.insert(r.prefix)
            r.generated += 1
            if self.handoff is not None and r.generated < r.output_tokens:
                self.handoff(self, lane, r, end)  # its KV goes to the decode pool (disagg.py)
                continue
            seen = end
            if r.first_token_s != r.first_token_s:
                pos += 1
                seen = out_s + self.frontend_tok_s * pos
                r.first_token_s = seen
                if self.cluster.first_token_hook:  # type: ignore[union-attr]
                    self.cluster.on_first_token(r, seen)  # type: ignore[union-attr]
            r.segments.append([end, lane.idx, lane.counter, 0])
            if r.generated >= r.output_tokens:
                self.pool.release(r.blocks)
                self._finish(lane, r, seen)
            else:
                self._join_decode(lane, r, r.prefill_target, r.blocks)
        if self.frontend_tok_s:
            self.frontend_free_s = out_s + self.frontend_tok_s * pos

    def finish_decoding(self, lane: Lane, r: Request, end: float) -> None:
        """`r` has all its tokens at `end` (called by the decode progress tracker): release its KV, record it."""
        kv = self._leave_decode(lane, r)
        self.pool.release(self.pool.blocks_for(kv))
        self._finish(lane, r, end)

    def _finish(self, lane: Lane, r: Request, end: float) -> None:
        r.blocks = 0
        del lane.running[r]
        self.n_running -= 1
        r.state = DONE
        r.completion_s = end
        assert self.cluster is not None
        self.cluster.on_finish(r, end)

    # ---- the simpy process ---------------------------------------------------------------------------
    def has_work(self) -> bool:
        return bool(self.n_running or len(self.waiting) or self.swapped)

    def run(self, env: simpy.Environment, stepwise: bool) -> Generator[simpy.Event, Any, None]:
        """Iterate while there is work. Between external events (the next arrival, the stop time) nothing can
        change the outcome, so iterations that end before the next one are applied without yielding to
        simpy; `stepwise` yields after every iteration instead (same results; slower)."""
        cluster = self.cluster
        assert cluster is not None
        self.env = env
        self._lane_chunks: list[list[tuple[Request, int]]] = [[] for _ in self.lanes]
        self._lane_dec = [0] * self.pp
        lanes = self.lanes
        pending: list[tuple[float, int]] = []
        while not cluster.stopped:
            t = env.now
            for lane in lanes:
                if not lane.busy:
                    e = self.start_iteration(lane, t)
                    if e is not None:
                        heapq.heappush(pending, (e, lane.idx))
            if not pending:
                self.yield_until_s = math.inf
                self._wake = env.event()
                yield self._wake
                self._wake = None
                continue
            while pending:
                end, li = pending[0]
                if stepwise or end >= cluster.next_event_s:
                    self.yield_until_s = end
                    yield env.timeout(end - env.now)
                    if cluster.stopped:
                        return
                heapq.heappop(pending)
                lane = lanes[li]
                self.end_iteration(lane, end)
                if cluster.stopped:
                    return
                e = self.start_iteration(lane, end)
                if e is not None:
                    heapq.heappush(pending, (e, li))
                if self.pp > 1:
                    for other in lanes:
                        if not other.busy and other is not lane:
                            e = self.start_iteration(other, end)
                            if e is not None:
                                heapq.heappush(pending, (e, other.idx))
            # idle now; loop back (the wake event handles the next arrival)

__all__ = ["Lane", "Replica", "Waiting"]
