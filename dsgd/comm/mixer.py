"""The one mixing step x_i <- sum_j W[i, j] x_j over ranks x K workers, on any communicator.

Rows of each (K, m) buffer are this rank's K workers. The plan read off W decides the shape
of the step: identity moves nothing, the all-1/n matrix is one allreduce, anything else is an
exchange with the ranks holding in/out-neighbours followed by a local weighted sum.

Each worker's sum runs in a fixed order (its own term, then neighbours by ascending global
index), so the result does not depend on how workers are spread over processes.

With one worker per process on CPU, a sparse step moves each buffer in column chunks and sums
chunk c as soon as chunk c has arrived, while later chunks are still in flight: the received
chunk is summed while it is still in cache, and the sum overlaps the transfer. The sum per
element is the same operations in the same order, so the result is bitwise the same.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch

from .base import Communicator, Done, Timer, mean_stats
from .memory import Recycler, host_empty
from .plan import MixPlan, make_plan
from topologies.steps import is_step

PLAN_CACHE_SIZE = 1024  # time-varying families repeat with a period; keep a cycle's worth
CHUNK_BYTES = 4 << 20   # pipeline chunk of one row: a few MiB keeps it in cache, amortizes per-message cost
MAX_CHUNKS = 64         # per buffer; larger rows get larger chunks (keeps tags small)
MAX_TAG = 32767         # the MPI standard's smallest guaranteed MPI_TAG_UB
CHAIN_TAGS = 16384      # averages in worker order take tags from here up, apart from the sparse step's


class PendingMix:
    """A started mixing step. wait() finishes it and writes the mixed values in place.

    For a sparse step, requests[i] lists (column range, request) of buffer i, one per chunk.
    """

    def __init__(self, mixer: "Mixer", plan: MixPlan, buffers, requests, scratch):
        self.mixer, self.plan, self.buffers = mixer, plan, buffers
        self.requests, self.scratch = requests, scratch
        self.done = False

    def wait(self) -> None:
        if self.done:
            return
        if self.plan.kind == "sparse":
            self._wait_sparse()
            self.mixer._release_recv(self.scratch)  # finished: another step may now receive into them
        else:
            with Timer(self.mixer.comm.stats):
                for r in self.requests:
                    r.wait()
            if self.plan.kind == "average":
                self.mixer._finish_average(self.buffers, self.scratch)
        self.done = True

    def _wait_sparse(self) -> None:
        # Chunk c of a wire buffer is summed once its own sends and receives are done: later
        # chunks keep moving meanwhile, and the in-place sum never overwrites bytes still being
        # sent (a wire that packs several buffers is a copy, so nothing it sends is overwritten).
        for (wire, members), recv, chunks in zip(self.buffers, self.scratch, self.requests):
            for cols, request in chunks:
                with Timer(self.mixer.comm.stats):
                    request.wait()
                for b, offset, width in members:
                    lo, hi = max(cols.start, offset), min(cols.stop, offset + width)
                    if lo < hi:
                        self.mixer._combine(self.plan, b, recv[:, offset:offset + width],
                                            slice(lo - offset, hi - offset))


class PendingHierarchical:
    """A hierarchical step whose communication is done: wait() writes the mixed rows in place."""

    def __init__(self, buffers, means):
        self.buffers, self.means, self.done = buffers, means, False

    def wait(self) -> None:
        if not self.done:
            for b, m in zip(self.buffers, self.means):
                b.copy_(m.expand_as(b))
            self.done = True


class PendingChain:
    """An average summed in worker order: the partial sum of the ranks before travels rank to rank
    along a chain, each rank adding its rows in order, and the last rank sends the average back along
    it; chunk by chunk, so the links work at once. Each rank sends and receives the model twice, as in
    a ring allreduce, but the first chunk takes 2 (ranks - 1) hops. Every receive is posted at the
    start and the first rank's chunks leave at once; progress() moves what has arrived on."""

    def __init__(self, mixer: "Mixer", buffers, first_tag: int):
        self.mixer, self.comm = mixer, mixer.comm
        r, p = self.comm.rank, self.comm.size
        self.items, self.sends, self.done = [], [], False
        for i, b in enumerate(buffers):
            fwd = torch.empty_like(b[0])
            bwd = fwd if r == p - 1 else torch.empty_like(b[0])  # the last rank's sum is the average
            m = fwd.numel()
            width = max(1, min(m, CHUNK_BYTES // max(1, fwd.element_size())))
            chunks = [slice(lo, min(m, lo + width)) for lo in range(0, m, width)]
            tag_f, tag_b = first_tag + 2 * i, first_tag + 2 * i + 1
            recv_f = [self.comm.iexchange([], [(r - 1, fwd[c])], tag=tag_f) for c in chunks] if r > 0 else []
            recv_b = [self.comm.iexchange([], [(r + 1, bwd[c])], tag=tag_b) for c in chunks] if r < p - 1 else []
            self.items.append({"b": b, "fwd": fwd, "bwd": bwd, "chunks": chunks, "recv_f": recv_f, "recv_b": recv_b,
                               "next_f": 0, "next_b": 0, "tags": (tag_f, tag_b)})
        self.progress()

    def _forward(self, it, c: int) -> None:
        r, p = self.comm.rank, self.comm.size
        cols, b = it["chunks"][c], it["b"]
        part = it["fwd"][cols]
        if r == 0:
            part.copy_(b[0, cols])
        else:
            part.add_(b[0, cols])
        for k in range(1, b.shape[0]):
            part.add_(b[k, cols])
        if r == p - 1:
            part.div_(self.mixer.n_workers)
            if r > 0:
                self.sends.append(self.comm.iexchange([(r - 1, part)], [], tag=it["tags"][1]))
        else:
            self.sends.append(self.comm.iexchange([(r + 1, part)], [], tag=it["tags"][0]))

    def _backward(self, it, c: int) -> None:
        if self.comm.rank > 0:
            self.sends.append(self.comm.iexchange([(self.comm.rank - 1, it["bwd"][it["chunks"][c]])], [],
                                                  tag=it["tags"][1]))

    def _advance(self, it, block: bool) -> bool:
        """Move one item on as far as its messages allow (block: wait for each); whether it is complete."""
        n_chunks = len(it["chunks"])
        while it["next_f"] < n_chunks:
            c = it["next_f"]
            if it["recv_f"]:
                if block:
                    it["recv_f"][c].wait()
                elif not it["recv_f"][c].test():
                    return False
            self._forward(it, c)
            it["next_f"] += 1
        while it["next_b"] < len(it["recv_b"]):
            c = it["next_b"]
            if block:
                it["recv_b"][c].wait()
            elif not it["recv_b"][c].test():
                return False
            self._backward(it, c)
            it["next_b"] += 1
        return True

    def progress(self) -> None:
        with Timer(self.mixer.stats):
            for it in self.items:
                self._advance(it, block=False)

    def wait(self) -> None:
        if self.done:
            return
        with Timer(self.mixer.stats):
            for it in self.items:
                self._advance(it, block=True)
            for s in self.sends:
                s.wait()
        for it in self.items:
            it["b"].copy_(it["bwd"].expand_as(it["b"]))
        self.items, self.sends, self.done = [], [], True


class Mixer:
    """Mixing over a communicator. Example (4 ranks, ring over 4 workers)::

        mixer = Mixer(MPICommunicator(), workers_per_rank=1)
        mixer.mix_([flat_params], topologies.build("ring", 4).W(0))
    """

    def __init__(self, comm: Communicator, workers_per_rank: int = 1):
        if workers_per_rank < 1:
            raise ValueError(f"workers_per_rank must be >= 1, got {workers_per_rank}")
        self.comm = comm
        self.K = workers_per_rank
        self.n_workers = comm.size * workers_per_rank
        self._plans: OrderedDict[object, MixPlan] = OrderedDict()
        # Receive buffers not owned by a step in flight, by (dtype, device, columns). A started
        # step takes its own and gives them back when finished, so two steps in flight (the
        # parameters with overlap, then BatchNorm statistics or optimizer state of the same
        # shape) never receive into the same memory, and buffers are reused across steps.
        self._free_recv: dict[tuple, list[torch.Tensor]] = {}
        # what compressed steps return, in buffers taken back once the caller has let go of them
        self.results = Recycler()
        self._hierarchy: dict[int, tuple] = {}   # ranks per group -> (group communicator, mixer across groups)
        self.recv_allocations = 0
        self._chain_tag = CHAIN_TAGS   # the next free tag of an average in worker order (the same on every rank)
        # Per local worker: bytes it would send if it were its own process (identity 0,
        # average = payload handed to allreduce, sparse = out-degree x row bytes).
        self.worker_bytes_sent = np.zeros(self.K, dtype=np.float64)

    @property
    def stats(self):
        return self.comm.stats

    def state_dict(self) -> dict:
        """What a resumed run must keep counting from: bytes per worker, traffic and time counters."""
        return {"worker_bytes_sent": torch.from_numpy(self.worker_bytes_sent.copy()), "comm_stats": self.stats.as_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.worker_bytes_sent[:] = state["worker_bytes_sent"].numpy()
        self.stats.load(state["comm_stats"])

    def regroup_state(self, g) -> dict:
        """Bytes per worker follow the workers (new ones start at 0); this rank's traffic counters
        start from the old ranks' mean, so the reported per-rank means continue."""
        return {"worker_bytes_sent": g.rows(lambda s: s["worker_bytes_sent"],
                                            lambda: torch.zeros((), dtype=torch.float64)),
                "comm_stats": mean_stats([s["comm_stats"] for s in g.old])}

    def plan(self, W, exchange_only: bool = False) -> MixPlan:
        """This rank's plan for W: a `topologies.steps` step is found by its key, a dense matrix by its bytes.

        exchange_only: plan a hierarchical step as the neighbour exchange of its W (what compressed
        mixing, which sends each worker's own payload, needs)."""
        if is_step(W):
            key = ("step", W.key, exchange_only)
        else:
            W = np.ascontiguousarray(W, dtype=np.float64)
            key = W.tobytes()
        plan = self._plans.get(key)
        if plan is None:
            plan = make_plan(W, self.comm.rank, self.comm.size, self.K, exchange_only=exchange_only)
            self._plans[key] = plan
            if len(self._plans) > PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return plan

    def mix_(self, buffers: Sequence[torch.Tensor], W: np.ndarray) -> None:
        """Blocking mixing step, in place."""
        self.start(buffers, W, blocking=True).wait()

    def start(self, buffers: Sequence[torch.Tensor], W: np.ndarray, blocking: bool = False) -> PendingMix:
        """Start a mixing step; compute may go on until wait(). The buffers must not be written meanwhile."""
        plan = self.plan(W)
        self._check(buffers)
        self.stats.count_step(plan.kind)
        row_bytes = sum(b[0].numel() * b.element_size() for b in buffers)
        with Timer(self.stats):
            if plan.kind == "identity":
                return PendingMix(self, plan, buffers, [Done()], None)
            if plan.kind == "average":
                self.worker_bytes_sent += row_bytes
                return self._start_average(plan, buffers, blocking)
            if plan.kind == "hierarchical":
                return self._hierarchical(plan, W, buffers, row_bytes)
            self._count_sparse(plan, row_bytes)
            return self._start_sparse(plan, buffers)

    def compressed(self, buffers: Sequence[torch.Tensor], W: np.ndarray, codec, seed: int, step: int):
        """(decoded, mixed) per buffer: decode(encode(x)) of this rank's rows and W @ decode(encode(X)),
        with only the codec's payloads on the wire (dsgd.comm.compressed)."""
        from .compressed import compressed_mix
        return compressed_mix(self, buffers, W, codec, seed, step)

    def compressed_many(self, buffers: Sequence[torch.Tensor], Ws: Sequence[np.ndarray], codec, seed: int, step: int):
        """(decoded, [W @ decode(encode(X)) for each W]); the payloads travel once, over the union graph."""
        from .compressed import compressed_mix_many
        return compressed_mix_many(self, buffers, Ws, codec, seed, step)

    def mix_in_worker_order_(self, buffers: Sequence[torch.Tensor], W: np.ndarray) -> None:
        """mix_, except that an average sums the workers as a left fold in worker order,
        ((x_0 + x_1) + x_2) + ..., whatever the layout, so 4 x 1, 2 x 2 and 1 x 4 agree bit for bit
        (an allreduce sums the ranks' shares in the MPI library's own order). Sparse W is already
        summed in a fixed order and goes through mix_."""
        self.start_in_worker_order(buffers, W).wait()

    def start_in_worker_order(self, buffers: Sequence[torch.Tensor], W: np.ndarray):
        """Start mix_in_worker_order_; the returned step's progress() advances it as far as messages
        have arrived (call it now and then while computing), wait() finishes it. The buffers must not
        change until then."""
        plan = self.plan(W)
        if plan.kind != "average":
            return self.start(buffers, W, blocking=False)
        self._check(buffers)
        self.stats.count_step("average")
        self.worker_bytes_sent += sum(b[0].numel() * b.element_size() for b in buffers)
        # Each chain in flight has tags of its own: several (streaming's fragments) may be in flight at
        # once and move on in any order, and a receive must never take another chain's message.
        need = 2 * len(buffers)
        if self._chain_tag + need > MAX_TAG:
            self._chain_tag = CHAIN_TAGS
        first, self._chain_tag = self._chain_tag, self._chain_tag + need
        return PendingChain(self, list(buffers), first)

    def average(self, buffers: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The average over all workers of each buffer, as new (m,) tensors; the buffers are untouched."""
        self._check(buffers)
        sums = [self._local_sum(b, copy=True) for b in buffers]
        with Timer(self.stats):
            for s in sums:
                self.comm.allreduce_sum_(s)
        return [s.div_(self.n_workers) for s in sums]

    # -- average --------------------------------------------------------------------------
    def _local_sum(self, b: torch.Tensor, copy: bool) -> torch.Tensor:
        s = b[0].clone() if (copy or self.K > 1) else b[0]
        for k in range(1, self.K):
            s.add_(b[k])
        return s

    def _start_average(self, plan, buffers, blocking):
        # Non-blocking: reduce a copy, so compute may read the parameters meanwhile.
        sums = [self._local_sum(b, copy=not blocking) for b in buffers]
        if blocking:
            for s in sums:
                self.comm.allreduce_sum_(s)
            return PendingMix(self, plan, buffers, [Done()], sums)
        return PendingMix(self, plan, buffers, [self.comm.iallreduce_sum(s) for s in sums], sums)

    def _finish_average(self, buffers, sums) -> None:
        for b, s in zip(buffers, sums):
            s.div_(self.n_workers)
            if s.data_ptr() != b.data_ptr():  # reduced a copy (K > 1, or non-blocking)
                b.copy_(s.expand_as(b))

    # -- hierarchical -----------------------------------------------------------------------
    def _group_comms(self, group_ranks: int):
        """(the ranks of my group, the ranks at my place in every group): split once per group size."""
        comms = self._hierarchy.get(group_ranks)
        if comms is None:
            r = self.comm.rank
            inside = self.comm.split(r // group_ranks, r % group_ranks)
            across = self.comm.split(r % group_ranks, r // group_ranks)
            comms = self._hierarchy[group_ranks] = (inside, Mixer(across, workers_per_rank=1))
        return comms

    def _hierarchical(self, plan: MixPlan, W, buffers, row_bytes: int) -> "PendingHierarchical":
        """Sum my K rows, allreduce the sums inside the group (exact group mean), then mix the group
        means between groups among the ranks at the same place in each group, one row each.

        Done when it returns (the step does not overlap compute); the buffers are written at wait(),
        so compute between start and wait still reads the values before the step."""
        inside, across = self._group_comms(plan.group_ranks)
        means = [self._local_sum(b, copy=True) for b in buffers]
        for s in means:
            inside.allreduce_sum_(s)
            s.div_(W.group)
        out_degree = 0
        if W.outer.kind != "identity":
            rows = [s.unsqueeze(0) for s in means]
            before = across.worker_bytes_sent.copy()
            timed, kinds = self.stats.comm_s, dict(self.stats.steps)
            across.mix_(rows, W.outer)
            # the stats are shared: this step is one hierarchical step, timed once by start()
            self.stats.comm_s, self.stats.steps = timed, kinds
            out_degree = float((across.worker_bytes_sent - before)[0]) / max(row_bytes, 1)
        # as if each worker were its own process: its row to the group's allreduce, and to each
        # neighbouring group's worker at its place
        self.worker_bytes_sent += (1 + out_degree) * row_bytes
        return PendingHierarchical(buffers, means)

    # -- sparse ---------------------------------------------------------------------------
    def _count_sparse(self, plan: MixPlan, row_bytes: int) -> None:
        self.worker_bytes_sent += np.asarray(plan.out_degree, dtype=np.float64) * row_bytes

    def _take_recv(self, b: torch.Tensor, rows: int) -> torch.Tensor:
        """A (rows, m) receive buffer for b that no step in flight owns."""
        return self._take(rows, b.shape[1], b.dtype, b.device)

    def _take(self, rows: int, cols: int, dtype: torch.dtype, device) -> torch.Tensor:
        """A (rows, cols) scratch buffer that no step in flight owns; _release_recv gives it back."""
        free = self._free_recv.setdefault((dtype, torch.device(device), cols), [])
        for j, buf in enumerate(free):
            if buf.shape[0] == rows:
                return free.pop(j)
        self.recv_allocations += 1
        return host_empty(rows, cols, dtype=dtype, device=device)

    def _release_recv(self, received: Sequence[torch.Tensor]) -> None:
        for buf in received:
            self._free_recv.setdefault((buf.dtype, buf.device, buf.shape[1]), []).append(buf)

    def _chunks(self, buffers) -> list[list[slice]]:
        """Column ranges each buffer moves and sums in, in order.

        Several only for one worker per process on CPU, where a chunk is one contiguous piece of
        the row; one range otherwise. Every rank computes the same ranges (buffers have the same
        shapes everywhere), so chunk c of buffer i travels under the same tag on both ends.
        """
        pipelined = self.K == 1 and len(buffers) * MAX_CHUNKS <= MAX_TAG
        out = []
        for b in buffers:
            m = b.shape[1]
            step = max(m, 1)
            if pipelined and b.device.type == "cpu":
                step = max(CHUNK_BYTES // b.element_size(), -(-m // MAX_CHUNKS))
                step = -(-step // 1024) * 1024  # whole SIMD vectors in every chunk but the last
            out.append([slice(lo, min(lo + step, m)) for lo in range(0, max(m, 1), step)])
        return out

    @staticmethod
    def _wires(buffers) -> list[tuple[torch.Tensor, list[tuple[torch.Tensor, int, int]]]]:
        """What travels: buffers of one dtype and device packed side by side into one (K, sum m) tensor,
        so a step that mixes several (parameters and a rule's tracker) sends one message per
        neighbour (per chunk). A lone buffer travels as itself, without a copy."""
        groups: dict = {}
        for b in buffers:
            groups.setdefault((b.dtype, b.device), []).append(b)
        wires = []
        for group in groups.values():
            if len(group) == 1:
                wires.append((group[0], [(group[0], 0, group[0].shape[1])]))
                continue
            offsets = [0]
            for b in group:
                offsets.append(offsets[-1] + b.shape[1])
            wires.append((torch.cat(group, dim=1), [(b, o, b.shape[1]) for b, o in zip(group, offsets)]))
        return wires

    def _start_sparse(self, plan: MixPlan, buffers) -> PendingMix:
        wires = self._wires(buffers)
        requests, received = [], []
        for i, ((wire, _), chunks) in enumerate(zip(wires, self._chunks([w for w, _ in wires]))):
            recv = self._take_recv(wire, plan.rows_received)
            posted = []
            for c, cols in enumerate(chunks):
                sends = [(peer, _rows(wire, slots)[:, cols]) for peer, slots in plan.send_to]
                recvs, r0 = [], 0
                for peer, workers in plan.recv_from:
                    recvs.append((peer, recv[r0:r0 + len(workers), cols]))
                    r0 += len(workers)
                posted.append((cols, self.comm.iexchange(sends, recvs, tag=c * len(wires) + i)))
            requests.append(posted)
            received.append(recv)
        return PendingMix(self, plan, wires, requests, received)

    def _combine(self, plan: MixPlan, b: torch.Tensor, recv: torch.Tensor, cols: slice) -> None:
        """Columns `cols` of b <- the weighted sum of their sources, in the plan's fixed order."""
        K = self.K
        b, recv = b[:, cols], recv[:, cols]

        def source(s):
            return b[s] if s < K else recv[s - K]
        out = b if K == 1 else torch.empty_like(b)
        for slot, terms in enumerate(plan.rows):
            (_, w_self), rest = terms[0], terms[1:]
            torch.mul(b[slot], w_self, out=out[slot])
            for s, w in rest:
                out[slot].add_(source(s), alpha=w)
        if K > 1:
            b.copy_(out)

    def _check(self, buffers) -> None:
        for b in buffers:
            if b.dim() != 2 or b.shape[0] != self.K:
                raise ValueError(f"mixing buffers must be (workers_per_rank={self.K}, m), got {tuple(b.shape)}")


def _rows(b: torch.Tensor, slots: tuple[int, ...]) -> torch.Tensor:
    """Rows `slots` of b, as a view when they are consecutive (always so for K=1)."""
    lo, hi = slots[0], slots[-1] + 1
    if hi - lo == len(slots):
        return b[lo:hi]
    return b[list(slots)].contiguous()
