"""The elastic runtime: choosing a runner's plan per call, and keeping a call's deadline by shedding.

A runner holds one or more plans (`PlanTable`s, most faithful first), each with its predicted
latency by input length (at the planned percentile) and its chunks in the planner's shed order
(`sticc.compile.planner.shed_order`: least importance lost per second of lane work saved first).

Choosing (`choose_plan`): a call of B texts padded to L tokens runs the most faithful plan whose
predicted latency at B x L tokens is within the deadline; with none, the fastest. The length table
is interpolated linearly and made non-decreasing, so more tokens never get a more faithful plan.
A batch computes like one text of B x L tokens in its matrix products; attention is per text, so
this overestimates a batch (never under).

Keeping the deadline (`DeadlineKeeper`): before each chunk the compute lane asks whether the rest
of the call still fits. It estimates the rest from the plan's chunk costs, scaled to the call's
length and by the pace each lane has shown over its latest chunks in this call (measured over
predicted seconds, starting from `PACE_PRIOR_S` at the predicted pace): the IO lane's unread work plus the last chunk's compute,
or the compute lane's remaining work, whichever is longer, plus the remaining joins. When that
passes the deadline it sheds pending chunks in the shed order, each only if it shortens the
estimate (a preloaded chunk saves nothing while the call waits on reads), until the rest fits. A
chunk the IO lane has not claimed is never read; one it has saves only its compute.

Another process on the CPU hurts a multi-threaded compute lane far more than its share: every
parallel op waits at its barrier for the thread the scheduler put aside (measured on 2 cores with a
busy one: a 20 ms call took 36 ms median and 196 ms at worst on 2 threads, 29 and 35 ms on one).
When the embedding or the compute lane's latest chunks run `CONTENDED_PACE` times slower than
predicted, the keeper drops torch to one thread for the rest of the call (and restores it after),
then measures the compute pace afresh. Within a call that can come too late (a stalled embedding,
or a Python thread descheduled while it holds the GIL), so the runner remembers it
(`ThreadPolicy`): after a contended call its calls with a deadline run on one thread, and try
their planned threads again after `PROBE_CALLS` calls, then after twice as many while the
contention lasts (measured, MiniLM 40 ms plan, 128 tokens, cold, one busy core: p90 25 ms on one
thread, 190 ms on two).
"""

import itertools
import threading
import time

import torch

from sticc.runtime.core import PlanTable

PACE_LIMITS = (0.5, 20.0)  # a lane's measured pace is kept within these factors of the prediction
RECENT_CHUNKS = 8  # a lane's pace is measured over its latest chunks: it follows a slowdown that starts mid-call
PACE_PRIOR_S = 2e-3  # predicted seconds of "as predicted" a pace starts from: one slow small read is not a slowdown
CONTENDED_PACE = 2.0  # the compute lane this much slower than predicted: another process holds a core
PROBE_CALLS = 8  # calls on one thread after a contended call before the planned threads are tried again
MAX_PROBE_CALLS = 256


def interpolate(rows: tuple, tokens: int, field: str) -> float:
    """`field` of the `LengthRow`s at `tokens`: linear between rows, linear past the last two."""
    if len(rows) == 1 or tokens <= rows[0].seq_len:
        return getattr(rows[0], field)
    for low, high in itertools.pairwise(rows):
        if tokens <= high.seq_len or high is rows[-1]:
            a, b = getattr(low, field), getattr(high, field)
            return a + (b - a) * (tokens - low.seq_len) / (high.seq_len - low.seq_len)
    raise AssertionError("unreachable")


def predicted_latency_s(plan: PlanTable, tokens: int):
    """The plan's latency at the planned percentile for a call of `tokens` (batch x padded length),
    never less than at fewer tokens; None without a length table."""
    if not plan.lengths:
        return None
    below = [row.planned_latency_s for row in plan.lengths if row.seq_len < tokens]
    return max([interpolate(plan.lengths, tokens, "planned_latency_s"), *below])


def choose_plan(plans: tuple, deadline_s, tokens: int) -> int:
    """The index of the most faithful plan predicted to meet `deadline_s` at `tokens`; the fastest
    (the last) when none is; the first without a deadline."""
    if deadline_s is None:
        return 0
    for index, plan in enumerate(plans):
        predicted = predicted_latency_s(plan, tokens)
        if predicted is not None and predicted <= deadline_s:
            return index
    return len(plans) - 1


class ThreadPolicy:
    """How many compute threads a runner's calls with a deadline start on: one while recent calls
    found another process on the CPU, else the planned number (see the module's docstring)."""

    def __init__(self) -> None:
        self.single_calls = 0  # calls left to run on one thread
        self.backoff = PROBE_CALLS
        self._lock = threading.Lock()

    @property
    def single(self) -> bool:
        return self.single_calls > 0

    def after(self, contended: bool, single: bool) -> None:
        """Account a finished call: whether the keeper found contention, whether it ran on one thread."""
        with self._lock:
            self._after(contended, single)

    def _after(self, contended: bool, single: bool) -> None:
        if single:
            self.single_calls -= 1
        elif contended:
            self.single_calls = self.backoff
            self.backoff = min(2 * self.backoff, MAX_PROBE_CALLS)
        else:
            self.backoff = PROBE_CALLS


class DeadlineKeeper:
    """Sheds a call's pending chunks when the call falls behind its deadline (see the module's
    docstring). Made per call; `RunnerCore.chunks` asks it before each chunk."""

    def __init__(
        self, plan: PlanTable, deadline_s: float, tokens: int, planned_tokens: int, shedding: bool = True, single_thread: bool = False,
    ) -> None:
        self.plan = plan
        self.single_thread = single_thread and shedding  # start on one thread (`ThreadPolicy`)
        self.shedding = shedding and bool(plan.shed_order) and bool(plan.lengths)
        self.deadline_s = deadline_s
        rows = plan.lengths
        compute_factor = 1.0
        self.embed_s = self.joins_s = 0.0
        if rows:
            compute_factor = interpolate(rows, tokens, "compute_s") / max(interpolate(rows, planned_tokens, "compute_s"), 1e-12)
            self.embed_s = interpolate(rows, tokens, "embed_s")
            self.joins_s = interpolate(rows, tokens, "joins_s")
        self.costs = {c.key: c for c in plan.shed_order}
        self.compute_s = {c.key: c.compute_s * compute_factor for c in plan.shed_order}
        self.pending = set(self.costs)  # neither started nor shed
        self.shed: list = []  # (key, IO saved) in the order shed
        self.saved_s = 0.0
        self.predicted_s = predicted_latency_s(plan, tokens)
        self._started_s = {}
        self._computed = []  # (predicted, measured) compute seconds of the chunks computed, in order
        self.checks = 0
        self._threads = None  # torch's threads before the keeper reduced them (None: not reduced)

    def start(self, call, start_s: float) -> None:
        self.start_s = start_s
        self.deadline_at_s = start_s + self.deadline_s
        if self.single_thread and torch.get_num_threads() > 1:
            self._threads = torch.get_num_threads()
            torch.set_num_threads(1)

    @property
    def contended(self) -> bool:
        """Whether the call found another process on its cores (and went on one thread)."""
        return self._threads is not None and not self.single_thread

    # -- the compute lane reports -------------------------------------------------------------

    def computing(self, key: int) -> None:
        self.pending.discard(key)
        self._started_s[key] = time.perf_counter()

    def computed(self, key: int) -> None:
        started = self._started_s.pop(key, None)
        if started is not None and key in self.compute_s:
            self._computed.append((self.compute_s[key], time.perf_counter() - started))

    def end(self) -> None:
        """The call is over: torch's threads as they were."""
        if self._threads is not None:
            torch.set_num_threads(self._threads)

    # -- paces and the estimate ------------------------------------------------------------------

    def _paces(self, read: dict) -> tuple:
        """(IO pace, compute pace): measured over predicted seconds of each lane's latest chunks."""
        reads = [(self.costs[k].io_s, read[k]) for k in sorted(read) if k in self.costs and self.costs[k].io_s > 0]
        low, high = PACE_LIMITS
        paces = []
        for observed in (reads[-RECENT_CHUNKS:], self._computed[-RECENT_CHUNKS:]):
            predicted = sum(p for p, _ in observed) + PACE_PRIOR_S
            paces.append(min(high, max(low, (sum(m for _, m in observed) + PACE_PRIOR_S) / predicted)))
        return tuple(paces)

    def _contended(self, now: float) -> bool:
        """Whether the compute lane shares its cores: the embedding (first check), or the latest
        chunks, ran `CONTENDED_PACE` times slower than predicted."""
        if self.checks == 1:
            return self.embed_s > 0 and now - self.start_s > CONTENDED_PACE * self.embed_s + PACE_PRIOR_S
        latest = self._computed[-RECENT_CHUNKS:]
        return len(latest) >= 2 and sum(m for _, m in latest) > CONTENDED_PACE * sum(p for p, _ in latest) + PACE_PRIOR_S / 4

    def _estimate(self, io_left_s: float, compute_left_s: float, last_s: float, joins_s: float) -> float:
        return max(compute_left_s, io_left_s + last_s) + joins_s

    def before(self, call, key: int) -> None:
        """Before chunk `key`: shed what the rest of the call cannot afford."""
        if not self.shedding:
            return
        self.checks += 1
        now = time.perf_counter()
        left_s = self.deadline_at_s - now
        read = call.read_times()
        io_pace, compute_pace = self._paces(read)
        if self._threads is None and torch.get_num_threads() > 1 and self._contended(now):
            self._threads = torch.get_num_threads()
            torch.set_num_threads(1)
            self._computed.clear()  # measured afresh on one thread
            compute_pace = 1.0
        pending = sorted(self.pending)
        if not pending:
            return
        io_left = sum(self.costs[k].io_s for k in pending if k not in read) * io_pace
        compute_left = sum(self.compute_s[k] for k in pending) * compute_pace
        last = self.compute_s[pending[-1]] * compute_pace
        joins = self.joins_s * len(pending) / max(1, len(self.costs)) * compute_pace
        estimate = self._estimate(io_left, compute_left, last, joins)
        if estimate <= left_s:
            return
        for cost in self.plan.shed_order:
            k = cost.key
            if k not in self.pending:
                continue
            io_saved = k not in read and not call.claimed(k)
            io_after = io_left - (cost.io_s * io_pace if io_saved else 0.0)
            compute_after = compute_left - self.compute_s[k] * compute_pace
            rest = [p for p in pending if p != k and p in self.pending]
            last_after = self.compute_s[rest[-1]] * compute_pace if rest else 0.0
            after = self._estimate(io_after, compute_after, last_after, joins)
            if after >= estimate - 1e-12:
                continue  # shedding it would not shorten the call
            call.shed(k)
            self.pending.discard(k)
            self.shed.append((k, io_saved))
            self.saved_s += estimate - after
            io_left, compute_left, estimate = io_after, compute_after, after
            if estimate <= left_s:
                return

    def stats(self, call) -> dict:
        """What the call's stats add: the deadline, the plan's prediction, what was shed."""
        shed = call.shed_keys
        loss = sum(self.costs[k].loss for k in shed)
        return {
            "deadline_s": self.deadline_s,
            "shedding": self.shedding,
            "predicted_latency_s": self.predicted_s,
            "shed_chunks": len(shed),
            "shed_pieces": sum(self.costs[k].pieces for k in shed),
            "shed_io_saved_chunks": sum(1 for saved in shed.values() if saved),
            "shed_saved_s": self.saved_s,
            "threads": "one (recent calls were contended)" if self.single_thread else "one (contended)" if self.contended else "planned",
            "shed_fidelity_loss": loss,
            "fidelity_loss": None if self.plan.fidelity_loss is None else self.plan.fidelity_loss + loss,
        }
