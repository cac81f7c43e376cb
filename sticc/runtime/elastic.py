"""The elastic runtime: choosing a runner's plan per call, and keeping a call's deadline by shedding.

A runner holds one or more plans (`PlanTable`s, most faithful first), each with its predicted
latency by input length (at the planned percentile) and its chunks in the planner's shed order
(`sticc.compile.planner.shed_order`: least importance lost per second of lane work saved first).

Choosing (`choose_plan`): a call of B texts padded to L tokens runs the most faithful plan whose
predicted latency at B x L tokens is within the deadline; with none, the fastest. The length table
is interpolated linearly and never falls with length, so more tokens never get a more faithful
plan. A batch computes like one text of B x L tokens in its matrix products; attention is per
text, so this overestimates a batch (never under). When recent calls ran slower than predicted
(`Adaptation.slowdown`), predictions are scaled by that first.

Keeping the deadline (`DeadlineKeeper`): before each chunk the compute lane asks whether the rest
of the call still fits. It estimates the rest from the plan's chunk costs, scaled to the call's
length and by the pace each lane has shown over its latest chunks in this call (measured over
predicted seconds, from a prior at the pace of recent calls): the pending chunks through the two
lanes in load order (each read after the last, each computed after its read and the chunk
before), plus the remaining joins, times the glue (how far recent calls' rest outran this
estimate). When that, with
a `MARGIN`, passes the deadline it sheds pending chunks in the shed order, each only if it
shortens the estimate (a preloaded chunk saves nothing while the call waits on reads), until the
rest fits. A chunk the IO lane has not claimed is never read; one it has saves only its compute.

Another process on the CPU hurts a multi-threaded compute lane far more than its share: every
parallel op waits at its barrier for the thread the scheduler put aside (measured on 2 cores with a
busy one, MiniLM 40 ms plan, 128 tokens, cold: p90 190 ms on two threads, 25 ms on one; on an idle
machine 20 and 23 ms median). So a call keeping a deadline computes on one thread whenever that
affords the deadline (`Adaptation.single_for`: its prediction scaled by the one-thread pace
measured in earlier calls; the first call runs on one thread to measure it), and always embeds on
one thread (little work, which two threads and a busy core stalled for 45 ms). A call on the
planned threads whose latest chunks run `CONTENDED_PACE` times slower than predicted goes on one
thread for the rest of the call, and the next `CONTENDED_CALLS` calls run on one thread.
"""

import contextlib
import itertools
import threading
import time

import torch

from sticc.runtime.core import PlanTable

PACE_LIMITS = (0.5, 20.0)  # a lane's measured pace is kept within these factors of the prediction
RECENT_CHUNKS = 8  # a lane's pace is measured over its latest chunks: it follows a slowdown that starts mid-call
# predicted seconds at the prior pace each lane's pace starts from: one slow small read is no slowdown
# (a cold read's latency varies by milliseconds), while the compute lane's times are steadier
PACE_PRIOR_S = 2e-3  # the IO lane's
COMPUTE_PRIOR_S = 0.5e-3  # the compute lane's
MARGIN = 1.15  # the rest of a call must fit this many times over: its estimate is a median, the deadline a bound
CONTENDED_PACE = 2.5  # the compute lane this much slower than predicted: another process holds a core
CONTENDED_CALLS = 64  # calls that run on one thread after a call that found another process on its cores


@contextlib.contextmanager
def one_thread(active: bool = True):
    """torch on one thread inside (when `active`): for the little work around a call that keeps a
    deadline (pooling, normalization), which two threads and a busy core stall (see above)."""
    threads = torch.get_num_threads()
    if not active or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def interpolate(rows: tuple, tokens: int, field: str) -> float:
    """`field` of the `LengthRow`s at `tokens`: linear between rows, linear past the last two."""
    if len(rows) == 1 or tokens <= rows[0].seq_len:
        return getattr(rows[0], field)
    for low, high in itertools.pairwise(rows):
        if tokens <= high.seq_len or high is rows[-1]:
            a, b = getattr(low, field), getattr(high, field)
            return a + (b - a) * (tokens - low.seq_len) / (high.seq_len - low.seq_len)
    raise AssertionError("unreachable")


def latency_at(rows: tuple, tokens: int) -> float:
    """The planned-percentile latency of `LengthRow`s (by increasing length) at `tokens`:
    interpolated, never less than at fewer tokens."""
    below = [row.planned_latency_s for row in rows if row.seq_len < tokens]
    return max([interpolate(rows, tokens, "planned_latency_s"), *below])


def predicted_latency_s(plan: PlanTable, tokens: int):
    """The plan's latency at the planned percentile for a call of `tokens` (batch x padded length),
    never less than at fewer tokens (`latency_at`); None without a length table."""
    return latency_at(plan.lengths, tokens) if plan.lengths else None


def choose_plan(plans: tuple, deadline_s, tokens: int, slowdown: float = 1.0) -> int:
    """The index of the most faithful plan predicted to meet `deadline_s` at `tokens` (predictions
    times `slowdown`: recent calls' latency over prediction, `Adaptation.slowdown`); the fastest
    (the last) when none is; the first without a deadline."""
    if deadline_s is None:
        return 0
    for index, plan in enumerate(plans):
        predicted = predicted_latency_s(plan, tokens)
        if predicted is not None and predicted * slowdown <= deadline_s:
            return index
    return len(plans) - 1


class Adaptation:
    """What a runner learned from its recent calls with a deadline (see the module's docstring):
    each lane's pace and the keeper's glue, by thread count, which the next call's keeper starts
    from; `slowdown`, the calls' latency (plus what shedding saved) over their plan's prediction,
    which the plan choice scales predictions by; and whether another process shares the cores."""

    def __init__(self) -> None:
        self.contended_calls = 0  # calls left that run on one thread because of a contended call
        self.paces = {}  # (lane, on one thread) -> the lane's pace over recent calls; ("glue", ...) the estimate's
        self.ratio = None  # recent calls' latency over prediction
        self._lock = threading.Lock()

    @property
    def slowdown(self) -> float:
        """What to scale the plans' predicted latencies by when choosing one (never below 1)."""
        with self._lock:
            return 1.0 if self.ratio is None else max(1.0, self.ratio)

    def single_for(self, predicted_s, deadline_s: float) -> bool:
        """Whether a call predicted at `predicted_s` (planned threads) runs on one thread: after a
        contended call, or while the compute lane's pace on one thread is unknown (this call
        measures it), or when that pace still meets `deadline_s` with the margin."""
        with self._lock:
            pace = self.paces.get(("compute", True))
            if self.contended_calls > 0 or pace is None or predicted_s is None:
                return True
            return predicted_s * max(1.0, pace) * MARGIN <= deadline_s

    def prior(self, single: bool) -> tuple:
        """(IO pace, compute pace, glue) a call's keeper starts from."""
        with self._lock:
            return tuple(self.paces.get((lane, single and lane != "io"), 1.0) for lane in ("io", "compute", "glue"))

    def after(self, keeper, latency_s: float) -> None:
        """Learn from a finished call: its keeper, its latency."""
        with self._lock:
            if keeper.contended:
                self.contended_calls = CONTENDED_CALLS
            elif keeper.single_thread and self.contended_calls > 0:
                self.contended_calls -= 1
            io_pace, compute_pace, glue = keeper.call_paces()
            one = keeper.on_one_thread
            for key, pace in ((("io", False), io_pace), (("compute", one), compute_pace), (("glue", one), glue)):
                if pace is not None:
                    self.paces[key] = pace if key not in self.paces else (self.paces[key] + pace) / 2
            if keeper.predicted_s:
                ratio = (latency_s + keeper.saved_s) / keeper.predicted_s
                self.ratio = ratio if self.ratio is None else (self.ratio + ratio) / 2


class DeadlineKeeper:
    """Sheds a call's pending chunks when the call falls behind its deadline (see the module's
    docstring). Made per call; `RunnerCore.chunks` asks it before each chunk."""

    def __init__(
        self, plan: PlanTable, deadline_s: float, tokens: int, planned_tokens: int, shedding: bool = True,
        adaptation: Adaptation | None = None,
    ) -> None:
        self.plan = plan
        self.shedding = shedding and bool(plan.shed_order) and bool(plan.lengths)
        self.predicted_s = predicted_latency_s(plan, tokens)
        # on one thread when it can afford it, and from the paces of recent calls (`Adaptation`)
        adapting = adaptation is not None and self.shedding
        self.single_thread = adapting and adaptation.single_for(self.predicted_s, deadline_s)
        self.prior = adaptation.prior(self.single_thread) if adapting else (1.0, 1.0, 1.0)
        self.glue = self.prior[2]  # measured over estimated rest of a call, in recent calls (`call_paces`)
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
        self.saved_s = 0.0
        self._started_s = {}
        self._computed = []  # (predicted, measured) compute seconds of the chunks computed, in order
        self.checks = 0
        self._threads = None  # torch's threads before the keeper reduced them (None: not reduced)
        self._reads = {}
        self._first = None  # (time, the estimated rest of the call) at the first check, after shedding
        self._end_s = None
        self._late = False  # the call ran CONTENDED_PACE times longer than estimated at its first check

    def start(self, call, start_s: float) -> None:
        self.start_s = start_s
        self.deadline_at_s = start_s + self.deadline_s
        if self.single_thread and torch.get_num_threads() > 1:
            self._threads = torch.get_num_threads()
            torch.set_num_threads(1)

    @property
    def on_one_thread(self) -> bool:
        """Whether the call's chunks ran (or ended) on one thread."""
        return self._threads is not None

    @property
    def contended(self) -> bool:
        """Whether the call, on the planned threads, found another process on its cores: its chunks
        ran `CONTENDED_PACE` times slower than predicted (it went on one thread), or the whole call
        did (a plan of few chunks can end before the chunks tell)."""
        return not self.single_thread and (self._threads is not None or self._late)

    # -- the compute lane reports -------------------------------------------------------------

    def computing(self, key: int) -> None:
        self.pending.discard(key)
        self._started_s[key] = time.perf_counter()

    def computed(self, key: int) -> None:
        started = self._started_s.pop(key, None)
        if started is not None and key in self.compute_s:
            self._computed.append((self.compute_s[key], time.perf_counter() - started))

    def end(self, call) -> None:
        """The call is over: torch's threads as they were; what it read and when it ended, and
        whether it ran `CONTENDED_PACE` times over its first estimate."""
        if self._threads is not None:
            torch.set_num_threads(self._threads)
        self._reads = call.read_times()
        self._end_s = time.perf_counter()
        if self._first is not None:
            first_s, rest_s = self._first
            self._late = self._end_s - self.start_s > CONTENDED_PACE * (first_s - self.start_s + rest_s) + 2 * PACE_PRIOR_S

    # -- paces and the estimate ------------------------------------------------------------------

    def _paces(self, read: dict) -> tuple:
        """(IO pace, compute pace): measured over predicted seconds of each lane's latest chunks,
        starting from `PACE_PRIOR_S` (`COMPUTE_PRIOR_S`) at the pace of recent calls (`prior`)."""
        reads = [(self.costs[k].io_s, read[k]) for k in sorted(read) if k in self.costs and self.costs[k].io_s > 0]
        low, high = PACE_LIMITS
        paces = []
        lanes = ((reads[-RECENT_CHUNKS:], PACE_PRIOR_S), (self._computed[-RECENT_CHUNKS:], COMPUTE_PRIOR_S))
        for (observed, weight_s), prior in zip(lanes, self.prior[:2], strict=True):
            predicted = sum(p for p, _ in observed) + weight_s
            paces.append(min(high, max(low, (sum(m for _, m in observed) + weight_s * prior) / predicted)))
        return tuple(paces)

    def call_paces(self) -> tuple:
        """(IO pace, compute pace, glue) over the whole call, each None with under `PACE_PRIOR_S`
        of predicted work seen (the compute lane's: since it went on one thread, if it did). The
        glue is the rest of the call after the first check, measured over estimated: what the lane
        model leaves out (Python between the chunks, a descheduled thread, the tail)."""
        reads = [(self.costs[k].io_s, s) for k, s in self._reads.items() if k in self.costs and self.costs[k].io_s > 0]
        paces = []
        for observed in (reads, self._computed):
            predicted = sum(p for p, _ in observed)
            paces.append(sum(m for _, m in observed) / predicted if predicted >= PACE_PRIOR_S else None)
        glue = None
        if self._first is not None and self._end_s is not None and self._first[1] >= PACE_PRIOR_S and not self.contended:
            low, high = PACE_LIMITS
            glue = min(high, max(low, (self._end_s - self._first[0]) / self._first[1]))
        return (*paces, glue)

    def _contended(self) -> bool:
        """Whether the compute lane shares its cores: its latest chunks ran `CONTENDED_PACE` times
        slower than predicted (chunk compute only: the embedding's time is mostly its cold reads)."""
        latest = self._computed[-RECENT_CHUNKS:]
        # two chunks at least, and a millisecond lost: one slow chunk (the other thread waking up) is no contention
        return len(latest) >= 2 and sum(m for _, m in latest) > CONTENDED_PACE * sum(p for p, _ in latest) + 2 * COMPUTE_PRIOR_S

    def _rest_s(self, items: list, joins_s: float) -> float:
        """The rest of the call: `items`, (IO seconds, compute seconds) of each chunk left in load
        order, through the two lanes (the IO lane reads them one after another; a chunk computes
        after its read and the previous chunk), then the joins; times the glue."""
        io_end = compute_end = 0.0
        for io_s, compute_s in items:
            io_end += io_s
            compute_end = max(compute_end, io_end if io_s else 0.0) + compute_s
        return (compute_end + joins_s) * self.glue

    def before(self, call, key: int) -> None:
        """Before chunk `key`: shed what the rest of the call cannot afford."""
        if not self.shedding:
            return
        self.checks += 1
        now = time.perf_counter()
        left_s = self.deadline_at_s - now
        read = call.read_times()
        io_pace, compute_pace = self._paces(read)
        if self._threads is None and torch.get_num_threads() > 1 and self._contended():
            self._threads = torch.get_num_threads()
            torch.set_num_threads(1)
            self._computed.clear()  # measured afresh on one thread
            compute_pace = 1.0
        pending = sorted(self.pending)
        if not pending:
            return
        # each pending chunk's lanes' work: no IO once read; a shed chunk already claimed still reads
        work = {k: ((0.0 if k in read else self.costs[k].io_s * io_pace), self.compute_s[k] * compute_pace) for k in pending}
        claimed_shed = [k for k, saved in call.shed_keys.items() if not saved and k not in read]
        for k in claimed_shed:
            work[k] = (self.costs[k].io_s * io_pace, 0.0)
        joins = self.joins_s * len(pending) / max(1, len(self.costs)) * compute_pace
        estimate = self._rest_s([work[k] for k in sorted(work)], joins)
        if self.checks == 1:
            self._first = (now, estimate / self.glue)  # the lane model alone; lowered below by what is shed
        if estimate * MARGIN <= left_s:
            return
        for cost in self.plan.shed_order:
            k = cost.key
            if k not in self.pending:
                continue
            io_saved = k not in read and not call.claimed(k)
            trial = dict(work)
            if io_saved:
                del trial[k]
            else:
                trial[k] = (trial[k][0], 0.0)
            after = self._rest_s([trial[j] for j in sorted(trial)], joins)
            if after >= estimate - 1e-12:
                continue  # shedding it would not shorten the call
            if call.shed(k) != io_saved:  # the IO lane claimed it meanwhile: it is read after all
                trial[k] = (work[k][0], 0.0)
                after = self._rest_s([trial[j] for j in sorted(trial)], joins)
            self.pending.discard(k)
            self.saved_s += estimate - after
            work, estimate = trial, after
            if self.checks == 1:
                self._first = (now, estimate / self.glue)
            if estimate * MARGIN <= left_s:
                return

    def _threads_used(self) -> str:
        if self.single_thread:
            return "one"
        if self._threads is not None:
            return "one (contended mid-call)"
        return "planned (contended)" if self._late else "planned"

    def stats(self, call) -> dict:
        """What the call's stats add (after `end`): the deadline, the plan's prediction, what was shed."""
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
            "threads": self._threads_used(),
            "shed_fidelity_loss": loss,
            "fidelity_loss": None if self.plan.fidelity_loss is None else self.plan.fidelity_loss + loss,
        }
