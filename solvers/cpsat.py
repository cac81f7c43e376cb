"""The CP-SAT planner: the plan of highest summed importance, and a bound that every plan's
importance is below, within a time limit.

It chooses for every shard a bitwidth (0: dropped) and, for kept shards, a preload flag, so that
the machine of `sticc.ir.simulate` finishes within the latency target and holds its weights within
the memory budget. The model encodes the simulator's semantics (docs/solver.md has the formulas):

- Decisions. Per shard a one-hot over {0} + bits. Costs are uniform per part and bitwidth, so a
  chunk costs the same whichever of its members are preloaded: per *group* (a layer's fixed index
  group, the members of both its attn and its ffn chunk) the model chooses only how many members
  at each bitwidth are preloaded, and the plan preloads the lowest indices. A one-hot per group
  over (members kept, pinned in place) gives the chunk tables (kernel, scratch) without products.
- Chunk costs are linear in the group's variables. IO lane: overhead when anything streams, a read
  and a checksum per streamed member. Compute lane: the kernel by members kept, and dequantization:
  a call per run (a 0/1 variable per bitwidth for streamed members and one for preloaded members)
  and a share per member; a chunk pinned in place has none; and what the slot's IO work takes from
  the compute lane (`interference` x the IO terms).
- Two lanes as precedences: the IO lane starts when the embedding ends; the IO of slot c starts
  after the IO of slot c-1 ends and lasts its work (with a bandwidth cap, it also ends no earlier
  than (embedding + bytes read through c) / cap plus its checksums, from the first slot the IO
  lane loads on); the compute of c starts after the previous compute step and after c's IO plus
  a hand-over when c streams; every block ends with its join. Slots that stream nothing have no IO
  work and no ring space, so they pass time through unchanged.
- Ring admission: one interval per slot from its IO start to a hand-over after its compute end,
  demanding its streamed members' bytes as stored, in one cumulative constraint whose capacity is the admission
  capacity (budget - pinned - scratch - slack, a variable). With FIFO frees this is exact: the
  simulator's schedule satisfies it, and any schedule satisfying it is no earlier than the
  simulator's, slot by slot (induction over the slots). So the least latency of the model is the
  simulator's latency, up to rounding up.
- Memory: pinned = headers + preloaded members as stored (the whole chunk decoded instead for a
  chunk pinned in place); scratch >= the embedding rows and every chunk decoded; slack >= every
  slot's streamed bytes; admission >= slack.

Cuts (valid inequalities that only tighten the LP relaxation, docs/solver.md says how much): "any
n kept members of a group => size >= n" over every subset, "a member streamed (preloaded) at b
=> a run at b" (without them the LP mixes chunk sizes to spread the per-chunk fixed costs), and
"two adjacent chunks that do not fit the ring together idle the compute lane" (`_add_ring_cuts`).

Integers: `Scale` is the one place where seconds, bytes and importance become integers. Bytes are
exact (in units of the gcd of every byte quantity of the problem); times are in ticks, and every
duration sum is rounded up once per constraint (K * (end - start) >= the sum in 1/K ticks); the
horizon is the latency target plus that rounding (`rounding_ticks`), so every plan the simulator
accepts is in the model (bounds are true bounds) and the plans CP-SAT reports are checked by the
simulator before one is taken; importance is rounded, and bounds add the rounding back.

Solving (`cpsat_solve`): one model per scratch tier (`solvers.tiers`), starting plans from priced
rounding (`solvers.priced`), tiers closed by their capacity bound or cut off at the best plan.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from functools import reduce

from ortools.sat.python import cp_model, cp_model_helper

from solvers.base import Checker, Choices, Solution, check_reachable, dropped_all, meets, solution
from solvers.greedy import keeps_preload
from solvers.priced import Pricing, improve, priced_rounding
from solvers.tiers import ScratchTier, capacity_bound, scratch_of, scratch_tiers, tier_of
from sticc.base.errors import InfeasibleError
from sticc.ir.graph import PartCosts, ShardChoice
from sticc.ir.lower import Problem
from sticc.ir.plan import SolverInfo

TIME_RESOLUTION = 100_000  # ticks per reference latency (the target, or an upper bound without one), at least
ROUNDING_TICKS_PER_SLOT = 4  # duration constraints per slot (IO, cap, compute, a join at most), each rounded up
ROUNDING_SHARE = 1e-4  # the resolution grows with the slots so that rounding adds at most this share of the target
SUB_TICKS = 1_000  # durations are summed in 1/SUB_TICKS ticks and rounded up once per constraint
IMPORTANCE_RESOLUTION = 1_000_000_000  # objective units for the summed importance of every shard at full bits
CAP_RESOLUTION = 100_000  # the bandwidth cap as a fraction num/den with num about this large
TWO_WORKER_SUBSOLVERS = ["max_lp", "lb_tree_search"]
MAX_SUBSET_CUT_MEMBERS = 6  # groups up to this size get every subset cut (2^k - 1 rows)
PRESOLVE = False  # measured: presolve took 0.25 s of each BERT-base tier's run and left the root LP's bound as it was
REPAIR_S = 0.05  # a run's plans past the target get at least this long to be repaired
STOP_MARGIN_S = 0.1  # a run ends this much past its time limit at most, plus STOP_MARGIN_SHARE of the limit
STOP_MARGIN_SHARE = 0.01  # (measured: CP-SAT's stop and the simulator's checks, 0.03-0.08 s on BERT-base, 0.1-0.25 s on BERT-large)
FIRST_SHARE = 0.5  # of the time left, for the first run of the incumbent's tier
AGAIN_S = 0.05  # the incumbent's tier runs again when at least this much time is left
OPTIMAL_GAP = 1e-6  # a gap this small is proven optimality (importance is rounded to 1e-9 of the total per shard)
START_SHARE = 0.25  # of the time limit, at most, for the priced starting plans


# ----------------------------------------------------------------------------------------------
# Scaling: seconds, bytes and importance to integers, in one place
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """How the model's integers map to seconds, bytes and importance."""

    time_unit_s: float  # one tick
    sub_ticks: int  # duration sums are in 1/sub_ticks ticks
    byte_unit: int  # divides every byte quantity of the problem, so bytes are exact
    importance_unit: float  # summed importance per objective unit
    # durations are clamped to this many ticks: far beyond any horizon (about `time_resolution`
    # ticks), so a choice that costs more stays infeasible, and absurd device figures cannot
    # overflow CP-SAT's 64-bit coefficients
    max_ticks: int

    @classmethod
    def for_problem(cls, problem: Problem, time_resolution: int | None = None) -> Scale:
        if time_resolution is None:
            time_resolution = max(TIME_RESOLUTION, math.ceil(rounding_ticks(problem) / ROUNDING_SHARE))
        reference_s = problem.latency_s if problem.latency_s else latency_upper_bound_s(problem)
        quantities = [problem.graph.header_nbytes]
        quantities += [q for phase in problem.phases for q in (phase.graph.embed.scratch_nbytes, phase.graph.embed.io_nbytes)]
        for costs in problem.graph.part_costs.values():
            quantities += [*costs.slot_nbytes.values(), *costs.decoded_nbytes]
        most = sum(max(problem.importance(layer, index, b) for b in problem.bits) for layer, index in problem.positions)
        return cls(
            time_unit_s=max(reference_s, 1e-9) / time_resolution,
            sub_ticks=SUB_TICKS,
            byte_unit=reduce(math.gcd, (q for q in quantities if q), 0) or 1,
            importance_unit=max(most, 1e-30) / IMPORTANCE_RESOLUTION,
            max_ticks=1000 * time_resolution,
        )

    def fine(self, seconds: float) -> int:
        """A duration in 1/sub_ticks ticks, rounded up (1e-12 relative absorbs float noise)."""
        return max(0, math.ceil(min(self.max_ticks * self.sub_ticks, seconds / self.time_unit_s * self.sub_ticks * (1 - 1e-12))))

    def ticks(self, seconds: float) -> int:
        """A duration or an instant in ticks, rounded up."""
        return max(0, math.ceil(min(self.max_ticks, seconds / self.time_unit_s * (1 - 1e-12))))

    def ticks_down(self, seconds: float) -> int:
        """A deadline in ticks, rounded down."""
        return math.floor(seconds / self.time_unit_s * (1 + 1e-12))

    def seconds(self, ticks: float) -> float:
        return ticks * self.time_unit_s

    def units(self, nbytes: int) -> int:
        """A byte quantity of the problem, exactly."""
        assert nbytes % self.byte_unit == 0, (nbytes, self.byte_unit)
        return nbytes // self.byte_unit

    def units_down(self, nbytes: int) -> int:
        """A byte capacity: sums of units fit it exactly when they fit its floor."""
        return nbytes // self.byte_unit

    def nbytes(self, units: int) -> int:
        return units * self.byte_unit

    def points(self, importance: float) -> int:
        return round(importance / self.importance_unit)

    def rounding_slack(self, problem: Problem) -> float:
        """How much more a plan's importance may be than its points say: half a point per shard."""
        return 0.5 * len(problem.positions) * self.importance_unit

    def cap_fraction(self, cap_Bps: float) -> tuple[int, int]:
        """(num, den) with num/den <= byte units per tick at `cap_Bps`: reads never finish early."""
        per_tick = cap_Bps * self.time_unit_s / self.byte_unit
        den = max(1, math.ceil(CAP_RESOLUTION / per_tick))
        return max(1, math.floor(per_tick * den * (1 - 1e-12))), den


def rounding_ticks(problem: Problem) -> int:
    """Ticks the model's least latency of a plan may exceed the simulator's: one per duration
    constraint, each rounded up (IO, cap and compute per slot, a join per block), and two more."""
    return ROUNDING_TICKS_PER_SLOT * len(problem.graph.chunks) + 2 * ROUNDING_TICKS_PER_SLOT


def latency_upper_bound_s(problem: Problem) -> float:
    """Every slot full at its most expensive bitwidth, IO and compute one after the other."""
    total = problem.graph.embed.duration_s + (problem.graph.embed.io_nbytes / problem.lanes.cap_Bps if problem.lanes.cap_Bps else 0.0)
    read_nbytes = 0
    for slot in problem.graph.chunks:
        costs = problem.graph.costs(slot)
        io = max(costs.read_s[b] + costs.check_s[b] for b in problem.bits)
        decode = max(2 * (costs.decode_call_s[b] + costs.decode_piece_s[b]) for b in problem.bits)
        work = problem.lanes.io_chunk_overhead_s + len(slot.indices) * io
        total += (1 + problem.lanes.interference) * work + problem.lanes.handover_s + problem.lanes.chunk_overhead_s
        total += len(slot.indices) * decode + max(costs.compute_s) + problem.graph.join(slot.layer, slot.part).duration_s
        read_nbytes += len(slot.indices) * max(costs.slot_nbytes.values())
    return total + (read_nbytes / problem.lanes.cap_Bps if problem.lanes.cap_Bps else 0.0)


# ----------------------------------------------------------------------------------------------
# What a fixed plan costs in the model's integers (for hints and checks)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupCounts:
    """A group's decisions as the model sees them: members kept and preloaded at each bitwidth."""

    kept: dict[int, int]
    preloaded: dict[int, int]

    @property
    def members(self) -> int:
        return sum(self.kept.values())

    @property
    def in_place(self) -> bool:
        return self.members > 0 and self.preloaded.get(32, 0) == self.members

    def streamed(self, b: int) -> int:
        return self.kept[b] - self.preloaded[b]


def group_counts(problem: Problem, layer: int, indices: tuple[int, ...], choices: Choices) -> GroupCounts:
    kept = {b: 0 for b in problem.bits}
    preloaded = {b: 0 for b in problem.bits}
    for i in indices:
        c = choices[(layer, i)]
        if c.bits:
            kept[c.bits] += 1
            preloaded[c.bits] += int(c.preload)
    return GroupCounts(kept, preloaded)


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """A layer's fixed index group: the members of its attn chunk and of its ffn chunk."""

    layer: int
    indices: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.layer}_{self.indices[0]}"


@dataclass
class Timeline:
    """The variables of one phase's call in the model: both lanes slot by slot, the joins, the
    ring's intervals (`held`), and the call's end (`latency`)."""

    problem: Problem  # the phase's problem (its chunk costs and latency target)
    name: str
    horizon: int
    embed_end: int
    handover: int
    cap: tuple[int, int] | None
    io_start: list = field(default_factory=list)
    io_end: list = field(default_factory=list)
    compute_start: list = field(default_factory=list)
    compute_end: list = field(default_factory=list)
    read_total: list = field(default_factory=list)
    started: list = field(default_factory=list)
    held: list = field(default_factory=list)
    joins: dict = field(default_factory=dict)
    latency: object = None


class PlanModel:
    """The CP-SAT model of one problem: decision variables, the timeline, memory, the objective."""

    def __init__(self, problem: Problem, scale: Scale, latency_target: bool = True) -> None:
        self.problem = problem
        self.scale = scale
        self.model = cp_model.CpModel()
        self.options = (0, *problem.bits)
        self.groups = list(dict.fromkeys(Group(s.layer, s.indices) for s in problem.graph.chunks))
        self.slot_groups = [Group(s.layer, s.indices) for s in problem.graph.chunks]
        self.leader: Choices | None = None  # the plan whose preload set this one shares (`share_preload`)
        self._add_decisions()
        self._add_groups()
        # one timeline per phase (a decoder's decode step and prefill), on the same decisions
        self.timelines = [self._add_timeline(phase, latency_target) for phase in problem.phases]
        self._add_memory()
        self._add_objective()

    @property
    def latency(self):
        """The first phase's latency variable (an encoder's call, a decoder's decode step)."""
        return self.timelines[0].latency

    @property
    def horizon(self) -> int:
        return self.timelines[0].horizon

    # -- decisions: one bitwidth per shard, preloaded counts per group --------------------------

    def _add_decisions(self) -> None:
        m = self.model
        self.pick = {}  # (layer, index) -> {bits: bool}
        for layer, index in self.problem.positions:
            self.pick[(layer, index)] = {b: m.new_bool_var(f"pick_{layer}_{index}_{b}") for b in self.options}
            m.add_exactly_one(self.pick[(layer, index)].values())
            if not self.problem.droppable((layer, index)):
                m.add(self.pick[(layer, index)][0] == 0)

    def _add_groups(self) -> None:
        """Per group: counts by bitwidth, preloaded counts, run flags, the (kept, pinned) one-hot."""
        m, bits = self.model, self.problem.bits
        self.kept, self.preloaded, self.call, self.pre_call, self.streams, self.size, self.in_place = {}, {}, {}, {}, {}, {}, {}
        for g in self.groups:
            k = len(g.indices)
            kept = {b: sum(self.pick[(g.layer, i)][b] for i in g.indices) for b in bits}
            pre = {b: m.new_int_var(0, k, f"pre_{g.name}_{b}") for b in bits}
            for b in bits:
                m.add(pre[b] <= kept[b])
            # call[b] = [streamed count at b > 0], pre_call[b] = [preloaded count at b > 0]: one
            # dequantization run each
            call, pre_call = {}, {}
            for b in bits:
                call[b] = m.new_bool_var(f"call_{g.name}_{b}")
                m.add(kept[b] - pre[b] <= k * call[b])
                m.add(kept[b] - pre[b] >= call[b])
                pre_call[b] = m.new_bool_var(f"precall_{g.name}_{b}")
                m.add(pre[b] <= k * pre_call[b])
                m.add(pre[b] >= pre_call[b])
            # streams = [anything streamed]: the IO lane loads the slot
            streams = m.new_bool_var(f"streams_{g.name}")
            for b in bits:
                m.add(streams >= call[b])
            m.add(streams <= sum(call.values()))
            # size[n]: n members kept, not pinned in place; in_place[n]: n members, all preloaded at 32
            size = {n: m.new_bool_var(f"size_{g.name}_{n}") for n in range(k + 1)}
            in_place = {}
            if 32 in bits:
                in_place = {n: m.new_bool_var(f"inplace_{g.name}_{n}") for n in range(1, k + 1)}
            m.add_exactly_one([*size.values(), *in_place.values()])
            m.add(sum(n * v for n, v in size.items()) + sum(n * v for n, v in in_place.items()) == sum(kept.values()))
            if in_place:
                # in place => every member preloaded at 32 (pre[32] <= kept[32] <= members);
                # not in place and n > 0 => at least one member is not a preloaded fp32 piece
                m.add(pre[32] >= sum(n * v for n, v in in_place.items()))
                m.add(pre[32] <= sum((n - 1) * v for n, v in size.items() if n) + sum(n * v for n, v in in_place.items()))
            self.kept[g], self.preloaded[g], self.call[g], self.pre_call[g] = kept, pre, call, pre_call
            self.streams[g], self.size[g], self.in_place[g] = streams, size, in_place
            self._add_group_cuts(g)

    def _add_group_cuts(self, g: Group) -> None:
        """Cuts that make the size one-hot and the run flags integral whenever the picks are."""
        m = self.model
        kept = {i: 1 - self.pick[(g.layer, i)][0] for i in g.indices}
        at_least = {
            n: sum(v for sizes in (self.size[g], self.in_place[g]) for size, v in sizes.items() if size >= n)
            for n in range(1, len(g.indices) + 1)
        }
        if len(g.indices) <= MAX_SUBSET_CUT_MEMBERS:
            # any n kept members => at least n members
            for n in at_least:
                for subset in itertools.combinations(g.indices, n):
                    m.add(at_least[n] >= sum(kept[i] for i in subset) - (n - 1))
        else:
            for i in g.indices:
                m.add(at_least[1] >= kept[i])
        # a member at b => a streamed run at b unless a member at b is preloaded, and a preloaded run
        # at b unless one at b is streamed
        for b in self.problem.bits:
            for i in g.indices:
                m.add(self.call[g][b] + self.pre_call[g][b] >= self.pick[(g.layer, i)][b])

    # -- chunk costs: linear in the group's variables (durations in 1/sub_ticks ticks) -----------

    def _streamed(self, g: Group, b: int):
        return self.kept[g][b] - self.preloaded[g][b]

    def ring_units(self, g: Group, costs: PartCosts):
        """Ring bytes of the slot: its streamed members as stored."""
        return sum(self.scale.units(costs.slot_nbytes[b]) * self._streamed(g, b) for b in self.problem.bits)

    def scratch_units(self, g: Group, costs: PartCosts):
        """The slot's chunk dequantized (0 when empty or pinned in place)."""
        return sum(self.scale.units(costs.decoded_nbytes[n]) * v for n, v in self.size[g].items() if n)

    def compute_fine(self, g: Group, costs: PartCosts):
        """The compute lane's work on the slot: dequantization runs, then the kernel."""
        f, bits = self.scale.fine, self.problem.bits
        size, in_place = self.size[g], self.in_place[g]
        kernel = sum(f(self.problem.lanes.chunk_overhead_s + costs.compute_s[n]) * (v + in_place.get(n, 0)) for n, v in size.items() if n)
        calls = sum(f(costs.decode_call_s[b]) * (self.call[g][b] + self.pre_call[g][b]) for b in bits)
        pieces = sum(f(costs.decode_piece_s[b]) * self.kept[g][b] for b in bits)
        # a chunk pinned in place is decoded at construction: take back its run at 32 bits
        pinned = 0
        if in_place:
            pinned = sum((f(costs.decode_call_s[32]) + n * f(costs.decode_piece_s[32])) * v for n, v in in_place.items())
        # what the slot's IO work takes from the compute lane
        g_ = self.problem.lanes.interference
        interference = f(g_ * self.problem.lanes.io_chunk_overhead_s) * self.streams[g] + sum(
            f(g_ * (costs.read_s[b] + costs.check_s[b])) * self._streamed(g, b) for b in bits
        )
        return kernel + calls + pieces - pinned + interference

    def io_fine(self, g: Group, costs: PartCosts):
        """The IO lane's work on the slot: overhead when it streams, reads, checksums."""
        f = self.scale.fine
        overhead = f(self.problem.lanes.io_chunk_overhead_s) * self.streams[g]
        return overhead + sum(f(costs.read_s[b]) * self._streamed(g, b) for b in self.problem.bits) + self.check_fine(g, costs)

    def check_fine(self, g: Group, costs: PartCosts):
        """The checksums of the streamed members, which follow the reads."""
        return sum(self.scale.fine(costs.check_s[b]) * self._streamed(g, b) for b in self.problem.bits)

    def pinned_units(self, g: Group, costs: PartCosts):
        u = self.scale.units
        preloaded = sum(u(costs.slot_nbytes[b]) * self.preloaded[g][b] for b in self.problem.bits)
        if not self.in_place[g]:
            return preloaded
        # pinned in place: the whole chunk decoded instead of its members as stored
        return preloaded + sum((u(costs.decoded_nbytes[n]) - n * u(costs.slot_nbytes[32])) * v for n, v in self.in_place[g].items())

    # -- the timeline: two lanes, reads capped, joins ---------------------------------------------

    def _add_timeline(self, p: Problem, latency_target: bool) -> Timeline:
        """The two lanes of one call of phase `p` (its own chunk costs, the shared decisions)."""
        m, s = self.model, self.scale
        k = s.sub_ticks
        h = s.ticks(latency_upper_bound_s(p)) + 2 * len(p.graph.chunks) + 2
        if latency_target and p.latency_s is not None:
            # the target plus what rounding may add to a plan's latency: every plan the simulator
            # accepts is in the model (its bound is a true bound); the model's plans are checked
            # by the simulator before one is taken
            h = min(h, s.ticks_down(p.latency_s) + rounding_ticks(p))
        cap = s.cap_fraction(p.lanes.cap_Bps) if p.lanes.cap_Bps else None
        embed_end = s.ticks(max(p.graph.embed.duration_s, p.graph.embed.io_nbytes / p.lanes.cap_Bps if p.lanes.cap_Bps else 0.0))
        t = Timeline(p, f"{p.graph.info.phase}", h, embed_end, s.ticks(p.lanes.handover_s), cap)
        name = t.name
        embed_read = s.units(p.graph.embed.io_nbytes)
        most_read = sum(len(g.indices) * max(s.units(n) for n in p.graph.costs(slot).slot_nbytes.values()) for slot, g in zip(p.graph.chunks, self.slot_groups, strict=True))
        read_so_far, started = 0, 0
        previous_io, previous_step = t.embed_end, t.embed_end  # the IO lane starts when the embedding ends
        for c, (slot, g) in enumerate(zip(p.graph.chunks, self.slot_groups, strict=True)):
            costs = p.graph.costs(slot)
            io_start = m.new_int_var(0, h, f"{name}_io_start_{c}")
            io_end = m.new_int_var(0, h, f"{name}_io_end_{c}")
            start = m.new_int_var(0, h, f"{name}_compute_start_{c}")
            end = m.new_int_var(0, h, f"{name}_compute_end_{c}")
            # IO lane, in slot order: io_end - io_start >= the slot's IO work
            m.add(io_start >= previous_io)
            m.add(k * (io_end - io_start) >= self.io_fine(g, costs))
            if cap is not None:
                # reads done >= (embedding + bytes read through this slot) / cap, the checksums
                # follow; the IO lane's first loaded slot is where the embedding's bytes start to
                # count (a slot before it streams nothing and is not loaded at all)
                num, den = cap
                total = m.new_int_var(0, most_read, f"{name}_read_total_{c}")
                m.add(total == read_so_far + self.ring_units(g, costs))
                loaded = self.streams[g]
                now_started = m.new_bool_var(f"{name}_started_{c}")
                m.add(now_started >= loaded)
                m.add(now_started >= started)
                m.add(now_started <= started + loaded)
                m.add(num * (k * io_end - self.check_fine(g, costs)) >= k * den * (total + embed_read * now_started))
                read_so_far, started = total, now_started
                t.read_total.append(total)
                t.started.append(now_started)
            # compute lane: after the previous step and after this slot's IO; a loaded chunk
            # reaches the compute lane a hand-over later (others pass at once)
            m.add(start >= previous_step)
            m.add(start >= io_end + t.handover * self.streams[g])
            m.add(k * (end - start) >= self.compute_fine(g, costs))
            t.io_start.append(io_start)
            t.io_end.append(io_end)
            t.compute_start.append(start)
            t.compute_end.append(end)
            previous_io, previous_step = io_end, end
            if _block_ends(p, c):
                join = m.new_int_var(0, h, f"{name}_join_{slot.layer}_{slot.part}")
                m.add(k * (join - end) >= s.fine(p.graph.join(slot.layer, slot.part).duration_s))
                t.joins[(slot.layer, slot.part)] = join
                previous_step = join
        t.latency = previous_step
        return t

    # -- memory: pinned + scratch + slack + admission within the budget; ring admission -----------

    def _add_memory(self) -> None:
        m, p, s = self.model, self.problem, self.scale
        slots = list(zip(p.graph.chunks, self.slot_groups, strict=True))
        self.pinned = s.units(p.graph.header_nbytes) + sum(self.pinned_units(g, p.graph.costs(slot)) for slot, g in slots)
        self.most_scratch = max([s.units(p.graph.embed.scratch_nbytes), *(s.units(max(c.decoded_nbytes)) for c in p.graph.part_costs.values())])
        self.scratch = m.new_int_var(s.units(p.graph.embed.scratch_nbytes), self.most_scratch, "scratch")
        self.most_slack = max(len(g.indices) * max(s.units(n) for n in p.graph.costs(slot).slot_nbytes.values()) for slot, g in slots)
        self.slack = m.new_int_var(0, self.most_slack, "slack")
        for slot, g in slots:
            costs = p.graph.costs(slot)
            m.add(self.scratch >= self.scratch_units(g, costs))
            m.add(self.slack >= self.ring_units(g, costs))
        self.arena = None
        if p.memory_bytes is None:
            return  # the budget then holds every chunk of the call at once: memory never delays IO
        budget = s.units_down(p.memory_bytes)
        self.arena = m.new_int_var(0, max(budget, 0), "admit")
        m.add(self.arena == budget - self.pinned - self.scratch - self.slack)
        # the ring admits the largest streamed chunk (`Simulation.fits`)
        m.add(self.arena >= self.slack)
        self.demand = []
        for c, (slot, g) in enumerate(slots):
            demand = m.new_int_var(0, self.most_slack, f"ring_held_{c}")
            m.add(demand == self.ring_units(g, p.graph.costs(slot)))
            self.demand.append(demand)
        for t in self.timelines:  # every phase's calls run in the same ring
            intervals = []
            for c in range(len(slots)):
                # the space is back a hand-over after the compute ends (the waiting IO lane wakes up)
                held = m.new_int_var(0, t.horizon + t.handover, f"{t.name}_held_{c}")
                freed = t.compute_end[c] + t.handover
                intervals.append(m.new_interval_var(t.io_start[c], held, freed, f"{t.name}_ring_{c}"))
                t.held.append(held)
            m.add_cumulative(intervals, self.demand, self.arena)
            self._add_ring_cuts(t)

    def _add_ring_cuts(self, t: Timeline) -> None:
        """Valid inequalities the LP cannot draw from the cumulative: when two adjacent chunks do
        not fit the ring together (R[c-1] + R[c] > admission), c's reads wait for c-1's compute to
        end, so the compute lane idles at least c's IO work, at least `rho` x R[c] (`rho`: the
        least IO seconds per stored byte of c's part). `rho` x (R[c-1] + R[c] - admission) is at
        most that (R[c-1] <= admission) and at most 0 when they fit: the convex envelope of the
        idle time over the two chunks' bytes, for the LP."""
        m, s, p = self.model, self.scale, t.problem
        for c in range(1, len(p.graph.chunks)):
            costs = p.graph.costs(p.graph.chunks[c])
            rho_s = min((costs.read_s[b] + costs.check_s[b]) / costs.slot_nbytes[b] for b in p.bits)
            rho = math.floor(rho_s * s.byte_unit / s.time_unit_s * s.sub_ticks * (1 - 1e-9))  # fine ticks per byte unit, down
            if rho > 0:
                idle = s.sub_ticks * (t.compute_start[c] - t.compute_end[c - 1])
                m.add(idle >= rho * (self.demand[c - 1] + self.demand[c] - self.arena))

    # -- objective --------------------------------------------------------------------------------

    def _add_objective(self) -> None:
        p, s = self.problem, self.scale
        self.objective = sum(
            s.points(p.importance(layer, index, b)) * var
            for (layer, index), picks in self.pick.items() for b, var in picks.items() if b
        )
        # every shard at its best version: the bound of a model not solved
        self.most_points = sum(
            max([0] + [s.points(p.importance(layer, index, b)) for b in picks if b]) for (layer, index), picks in self.pick.items()
        )

    # -- fixing, hinting, reading back ------------------------------------------------------------

    def decision_values(self, choices: Choices) -> dict[int, int]:
        """{variable index: value} of the decisions (picks, preloaded counts) encoding `choices`."""
        values = {}
        for position, picks in self.pick.items():
            for b, var in picks.items():
                values[var.index] = int(choices[position].bits == b)
        for g in self.groups:
            counts = group_counts(self.problem, g.layer, g.indices, choices)
            for b, var in self.preloaded[g].items():
                values[var.index] = counts.preloaded[b]
        return values

    def fix(self, choices: Choices) -> None:
        for index, value in self.decision_values(choices).items():
            self.model.add(self.model.get_int_var_from_proto_index(index) == value)

    def share_preload(self, leader: Choices) -> None:
        """Constrain the plan to preload exactly the shards `leader` preloads, at its bits, and to
        pin every group as the leader does (an elastic runner's plans share one pinned region):
        a group the leader pins in place keeps only those members; any other group with
        preloaded members is not pinned in place. `choices` then names the leader's shards as the
        preloaded ones (costs are uniform within a group and bitwidth, so which members carry the
        flag changes neither time nor memory)."""
        m = self.model
        for g in self.groups:
            counts = group_counts(self.problem, g.layer, g.indices, leader)
            for b, var in self.preloaded[g].items():
                m.add(var == counts.preloaded[b])
            for i in g.indices:
                choice = leader[(g.layer, i)]
                if choice.preload:
                    m.add(self.pick[(g.layer, i)][choice.bits] == 1)
                elif counts.in_place:
                    m.add(self.pick[(g.layer, i)][0] == 1)
            if not counts.in_place:
                for var in self.in_place[g].values():
                    m.add(var == 0)
        self.leader = leader

    def hint(self, choices: Choices) -> None:
        """Hint every variable: the plan's decisions and its earliest schedule in the model."""
        for index, value in self.values(choices).items():
            self.model.add_hint(self.model.get_int_var_from_proto_index(index), value)

    def values(self, choices: Choices) -> dict[int, int]:
        """{variable index: value} of every variable for `choices` and its earliest schedule: a
        complete assignment, model-feasible when the plan meets the targets in the model's integers."""
        p, s = self.problem, self.scale
        values = self.decision_values(choices)
        counts = {g: group_counts(p, g.layer, g.indices, choices) for g in self.groups}
        for g, gc in counts.items():
            for b, var in self.call[g].items():
                values[var.index] = int(gc.streamed(b) > 0)
            for b, var in self.pre_call[g].items():
                values[var.index] = int(gc.preloaded[b] > 0)
            values[self.streams[g].index] = int(any(gc.streamed(b) for b in p.bits))
            for n, var in self.size[g].items():
                values[var.index] = int(gc.members == n and not gc.in_place)
            for n, var in self.in_place[g].items():
                values[var.index] = int(gc.members == n and gc.in_place)

        def value(expr) -> int:
            return _evaluate(expr, values)

        slots = list(zip(p.graph.chunks, self.slot_groups, strict=True))
        scratch = max([s.units(p.graph.embed.scratch_nbytes), *(value(self.scratch_units(g, p.graph.costs(slot))) for slot, g in slots)])
        slack = max(value(self.ring_units(g, p.graph.costs(slot))) for slot, g in slots)
        values[self.scratch.index] = scratch
        values[self.slack.index] = slack
        arena, demands = None, []
        if self.arena is not None:
            arena = s.units_down(p.memory_bytes) - value(self.pinned) - scratch - slack
            values[self.arena.index] = arena
            for c, var in enumerate(self.demand):
                values[var.index] = value(self.ring_units(self.slot_groups[c], p.graph.part_costs[p.graph.chunks[c].part]))
                demands.append(values[var.index])
        for t in self.timelines:
            self._schedule_values(t, values, arena, demands)
        return values

    def _schedule_values(self, t: Timeline, values: dict[int, int], arena: int | None, demands: list[int]) -> None:
        """The earliest schedule of timeline `t` into `values`: the simulator's rules in ticks,
        FIFO ring admission."""
        p, s, k = t.problem, self.scale, self.scale.sub_ticks

        def value(expr) -> int:
            return _evaluate(expr, values)

        slots = list(zip(p.graph.chunks, self.slot_groups, strict=True))
        live: list[tuple[int, int]] = []  # (demand, freed at), in allocation order
        previous_io, previous_step = t.embed_end, t.embed_end  # the IO lane starts when the embedding ends
        read_so_far, started = 0, 0
        for c, (slot, g) in enumerate(slots):
            costs = p.graph.costs(slot)
            loaded = values[self.streams[g].index]
            io_start = previous_io
            if arena is not None and demands[c]:
                live = [(d, free) for d, free in live if free > io_start]
                while live and sum(d for d, _ in live) + demands[c] > arena:
                    io_start = live[0][1]
                    live = [(d, free) for d, free in live if free > io_start]
            io_end = io_start + _ceil_div(value(self.io_fine(g, costs)), k)
            if t.cap is not None:
                num, den = t.cap
                read_so_far += value(self.ring_units(g, costs))
                started = max(started, loaded)
                values[t.read_total[c].index] = read_so_far
                values[t.started[c].index] = started
                total = read_so_far + s.units(p.graph.embed.io_nbytes) * started
                io_end = max(io_end, _ceil_div(k * den * total + num * value(self.check_fine(g, costs)), num * k))
            start = max(previous_step, io_end + t.handover * loaded)
            end = start + _ceil_div(value(self.compute_fine(g, costs)), k)
            for var, v in ((t.io_start[c], io_start), (t.io_end[c], io_end), (t.compute_start[c], start), (t.compute_end[c], end)):
                values[var.index] = v
            if arena is not None:
                values[t.held[c].index] = end + t.handover - io_start
                if demands[c]:
                    live.append((demands[c], end + t.handover))
            previous_io, previous_step = io_end, end
            if _block_ends(p, c):
                previous_step = end + _ceil_div(s.fine(p.graph.join(slot.layer, slot.part).duration_s), k)
                values[t.joins[(slot.layer, slot.part)].index] = previous_step

    def choices(self, solver: cp_model.CpSolver) -> Choices:
        out = {}
        for g in self.groups:
            for i in g.indices:
                bits = next(b for b, var in self.pick[(g.layer, i)].items() if solver.boolean_value(var))
                out[(g.layer, i)] = ShardChoice(g.layer, i, bits)
            if self.leader is not None:
                for i in g.indices:
                    if self.leader[(g.layer, i)].preload:
                        out[(g.layer, i)] = self.leader[(g.layer, i)]
                continue
            for b, var in self.preloaded[g].items():
                for i in [i for i in g.indices if out[(g.layer, i)].bits == b][: solver.value(var)]:
                    out[(g.layer, i)] = ShardChoice(g.layer, i, b, True)
        return out


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _block_ends(problem: Problem, c: int) -> bool:
    """Whether chunk c is the last of its block (its join follows)."""
    return problem.graph.chunks[c].key in problem.graph.last_chunks


def _evaluate(expr, values: dict[int, int]) -> int:
    """The value of a linear expression under {variable index: value}."""
    if isinstance(expr, int):
        return expr
    flat = cp_model_helper.FlatIntExpr(expr)
    return flat.offset + sum(coeff * values[var.index] for var, coeff in zip(flat.vars, flat.coeffs, strict=True))


# ----------------------------------------------------------------------------------------------
# Solving
# ----------------------------------------------------------------------------------------------


def _solver(time_limit_s: float, workers: int, seed: int) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    # measured on the benchmark instances: the bound comes from LP tree search, so both workers
    # keep the full LP (the default pairs one with heuristics)
    if workers == 2:
        solver.parameters.subsolvers.extend(TWO_WORKER_SUBSOLVERS)
        # measured (BERT-base at 2 s, two seeds): without probing and symmetry detection in
        # presolve the LP workers start sooner and find better plans (15 of 16 runs no worse);
        # the bounds and BERT-large at 10 s are unchanged
        solver.parameters.cp_model_probing_level = 0
        solver.parameters.symmetry_level = 0
    return solver


def cpsat_solve(
    problem: Problem,
    time_limit_s: float = 10.0,
    workers: int = 2,
    seed: int = 0,
    hint: Choices | None = None,
    shared_preload: Choices | None = None,
) -> Solution:
    """The plan of highest summed importance that meets the problem's targets (CP-SAT), with a
    bound on every plan's importance, within `time_limit_s`.

    With a memory target the plan space is cut into scratch tiers (`solvers.tiers`), one model
    each: every tier starts from the best plan known, and a tier that cannot beat it is closed
    (its model asks for more). The bound is the largest of the tiers' bounds. `hint` (a plan,
    typically the greedy one) and, without `shared_preload`, one priced rounding per tier
    (`solvers.priced`) are the starting plans: the result is never worse than a feasible hint.
    With `shared_preload` (a plan of the same problem's shards) the plan preloads and pins
    exactly what that plan does (`PlanModel.share_preload`); the hint must then share it too."""
    start_s = time.perf_counter()
    deadline_s = start_s + time_limit_s - STOP_MARGIN_S - STOP_MARGIN_SHARE * time_limit_s
    check_reachable(problem)
    scale = Scale.for_problem(problem)
    plan = PlanModel(problem, scale)
    if shared_preload is not None:
        plan.share_preload(shared_preload)
    plan.model.maximize(plan.objective)
    tiers: list[ScratchTier | None] = list(scratch_tiers(problem)) if problem.memory_bytes is not None else [None]
    candidates = [hint]
    search = _TierSearch(problem, plan, tiers, _best_start(problem, candidates, shared_preload is None), workers, seed)
    if shared_preload is None and not search.proven():  # the heuristics cannot share a preload set
        candidates += _priced_starts(problem, tiers, search.capacity, hint, start_s + START_SHARE * time_limit_s)
        search.incumbent = _best_start(problem, candidates)
    incumbent = search.incumbent
    starts = [c for c in candidates if c is not None and meets(problem, c)]
    # the incumbent's tier first, with half the time: a better plan there closes more of the
    # others; then the others, cut off at the incumbent; then the incumbent's tier again with
    # whatever time the others left
    first = _tier_of(problem, tiers, incumbent)
    search.run(first, FIRST_SHARE * (deadline_s - time.perf_counter()), starts)
    others = [t for t in range(len(tiers)) if t != first]
    for n, t in enumerate(others):
        search.run(t, (deadline_s - time.perf_counter()) / (len(others) - n), starts)
    again = _tier_of(problem, tiers, search.incumbent)
    if not search.proven() and deadline_s - time.perf_counter() > AGAIN_S:
        search.run(again, deadline_s - time.perf_counter(), starts)
    found, objective = search.incumbent, problem.objective(search.incumbent)
    status = "OPTIMAL" if search.proven() else "FEASIBLE"  # every tier's bound is known from here on
    bound = max([*search.bounds.values(), objective])
    gap = (bound - objective) / max(abs(bound), 1e-12)
    info = SolverInfo("cpsat", status, objective, bound, gap, time.perf_counter() - start_s)
    return solution(problem, found, info)


class _TierSearch:
    """The tiers' CP-SAT runs, one after another, sharing the best plan found (the incumbent);
    `bounds` holds every tier's bound on the importance of its plans (the least of its runs')."""

    def __init__(self, problem: Problem, plan: PlanModel, tiers: list[ScratchTier | None], incumbent: Choices, workers: int,
                 seed: int) -> None:
        self.problem, self.plan, self.tiers, self.workers, self.seed = problem, plan, tiers, workers, seed
        self.incumbent = incumbent
        self.checker = Checker(problem)
        self.bounds: dict[int, float] = {}
        self.closed: set[int] = set()
        # every tier's bound before any run: its capacity bound (no tiers: every shard at its best)
        self.capacity = [capacity_bound(problem, t) if t is not None else self.importance(plan.most_points) for t in tiers]

    def points(self, choices: Choices) -> int:
        return _evaluate(self.plan.objective, self.plan.decision_values(choices))

    def importance(self, points: int) -> float:
        """The most importance a plan of `points` objective points can have (rounding included)."""
        scale = self.plan.scale
        return points * scale.importance_unit + scale.rounding_slack(self.problem)

    def bound(self, t: int, value: float) -> None:
        self.bounds[t] = min(self.bounds.get(t, math.inf), value)

    def proven(self) -> bool:
        """Whether no tier can hold a plan better than the incumbent (every tier's bound known)."""
        for t, most in enumerate(self.capacity):
            self.bound(t, most)
        return max(self.bounds.values()) - self.problem.objective(self.incumbent) <= OPTIMAL_GAP * max(self.bounds.values())

    def run(self, t: int, time_limit_s: float, starts: list[Choices]) -> None:
        """Tier `t` for up to `time_limit_s` (0: its capacity bound alone)."""
        problem, plan, tier = self.problem, self.plan, self.tiers[t]
        end_s = time.perf_counter() + max(0.0, time_limit_s)
        most = self.capacity[t]
        self.bound(t, most)
        if most <= problem.objective(self.incumbent):
            self.closed.add(t)  # no plan of the tier beats the incumbent
        if t in self.closed or time_limit_s <= 0 or self.proven():
            return
        model = plan.model.clone()
        if tier is not None:
            _restrict(plan, model, tier)
        inside = [c for c in (self.incumbent, *starts) if tier is None or _in_tier(problem, tier, c)]
        cutoff = None
        if not inside or inside[0] is not self.incumbent:  # only a plan better than the incumbent matters here
            cutoff = self.points(self.incumbent) + 1
            model.add(_on(model, plan.objective) >= cutoff)
        if inside:
            for index, value in plan.values(max(inside, key=problem.objective)).items():
                model.add_hint(model.get_int_var_from_proto_index(index), value)
        solver = _solver(max(0.0, end_s - time.perf_counter()), self.workers, self.seed)
        solver.parameters.cp_model_presolve = PRESOLVE
        reported: list[float] = []
        solver.best_bound_callback = reported.append
        plans = _Plans(plan)
        status = solver.solve(model, plans)
        best = self._take(plans.found, max(end_s, time.perf_counter() + REPAIR_S))
        if status == cp_model.INFEASIBLE:
            # nothing in the tier beats the cutoff (without one: the tier is empty)
            self.bound(t, self.importance(cutoff - 1) if cutoff is not None else 0.0)
            self.closed.add(t)
            return
        points = plan.most_points
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            points = min(points, math.ceil(solver.best_objective_bound))
        elif reported:  # UNKNOWN: no plan yet, but the bound CP-SAT proved before the time ran out
            points = min(points, math.ceil(reported[-1]))
        self.bound(t, self.importance(points))
        if status == cp_model.OPTIMAL and best is not None and self.points(best) >= points:
            self.closed.add(t)

    def _take(self, found: list[Choices], deadline_s: float) -> Choices | None:
        """The best of a run's plans the simulator accepts (the model admits plans up to its
        rounding past the latency target: those get one step down, `_repair`); the incumbent
        takes it when better."""
        problem = self.problem
        leader = self.plan.leader
        for choices in reversed(found):  # CP-SAT reports improving plans: the best last
            if not meets(problem, choices):
                choices = _repair(problem, self.checker, choices, deadline_s)
            if choices is not None and (leader is None or keeps_preload(problem, leader, choices)):
                if problem.objective(choices) > problem.objective(self.incumbent):
                    self.incumbent = choices
                return choices
        return None


class _Plans(cp_model.CpSolverSolutionCallback):
    """Every plan CP-SAT reports during a run, in order."""

    def __init__(self, plan: PlanModel) -> None:
        super().__init__()
        self.plan = plan
        self.found: list[Choices] = []

    def on_solution_callback(self) -> None:
        self.found.append(self.plan.choices(self))


def _repair(problem: Problem, checker: Checker, choices: Choices, deadline_s: float) -> Choices | None:
    """A plan past a target by the model's rounding, made feasible by one streamed shard one
    bitwidth down (or dropped), losing the least importance; None when no such step is enough."""
    steps = []
    for position, choice in choices.items():
        lower = [b for b in problem.options(position) if b < choice.bits and not choice.preload]
        if lower:
            bits = max(lower)
            loss = problem.importance(*position, choice.bits) - problem.importance(*position, bits)
            steps.append((loss, position, bits))
    for _, position, bits in sorted(steps):
        if time.perf_counter() > deadline_s:
            return None
        trial = dict(choices)
        trial[position] = ShardChoice(position[0], position[1], bits)
        if checker.feasible(trial):
            return trial
    return None


def _restrict(plan: PlanModel, model: cp_model.CpModel, tier: ScratchTier) -> None:
    """The tier's constraints on a copy of the plan's model: the scratch is the tier's, and no
    group keeps more members than its cap unless pinned in place."""
    scratch = model.get_int_var_from_proto_index(plan.scratch.index)
    model.add(scratch == plan.scale.units(tier.scratch_nbytes))
    for g, cap in zip(plan.groups, tier.caps, strict=True):
        for n, var in plan.size[g].items():
            if n > cap:
                model.add(model.get_int_var_from_proto_index(var.index) == 0)


def _on(model: cp_model.CpModel, expr):
    """A linear expression of the plan's model, on a copy of that model."""
    flat = cp_model_helper.FlatIntExpr(expr)
    return flat.offset + sum(c * model.get_int_var_from_proto_index(v.index) for v, c in zip(flat.vars, flat.coeffs, strict=True))


def _in_tier(problem: Problem, tier: ScratchTier, choices: Choices) -> bool:
    return scratch_of(problem, choices) == tier.scratch_nbytes


def _tier_of(problem: Problem, tiers: list[ScratchTier | None], choices: Choices) -> int:
    """The index of the tier `choices` lies in (0 without tiers)."""
    if tiers == [None]:
        return 0
    return tier_of(problem, tiers, choices)


def _priced_starts(
    problem: Problem, tiers: list[ScratchTier | None], capacity: list[float], hint: Choices | None, deadline_s: float,
) -> list[Choices | None]:
    """Starting plans (`solvers.priced`): a priced rounding per tier in the first half of the time
    to `deadline_s`, then upgrades of the best ones in turn. Tiers whose capacity bound (`capacity`,
    per tier) is below the best plan known are skipped, and so is the one tier of a problem without
    a memory target."""
    pricing, checker = Pricing(problem), Checker(problem)
    known = problem.objective(hint) if hint is not None and meets(problem, hint) else 0.0
    useful = [t for t, tier in enumerate(tiers) if tier is not None and capacity[t] > known]
    rounding_s = (deadline_s - time.perf_counter()) / 2
    out: list[Choices | None] = [None] * len(tiers)
    for n, t in enumerate(useful):
        now = time.perf_counter()
        out[t] = priced_rounding(problem, tiers[t], pricing, checker, now + rounding_s / (len(useful) - n))
    known = max([known, *(problem.objective(c) for c in out if c is not None)])
    for t in sorted(useful, key=lambda t: -problem.objective(out[t]) if out[t] is not None else math.inf):
        if out[t] is None or time.perf_counter() > deadline_s or capacity[t] <= known:
            continue
        out[t] = improve(problem, tiers[t], checker, out[t], deadline_s)
        known = max(known, problem.objective(out[t]))
    return out


def _best_start(problem: Problem, candidates: list[Choices | None], dropping: bool = True) -> Choices:
    """The feasible candidate of highest objective, or (with `dropping`) the plan that drops every
    shard; without `dropping` the first candidate must be feasible."""
    best = dropped_all(problem) if dropping else candidates[0]
    if best is None or not meets(problem, best):
        raise InfeasibleError("CP-SAT needs a feasible hint that shares the preload set (the greedy planner's)")
    for choices in candidates:
        better = choices is not None and problem.objective(choices) > problem.objective(best)
        if better and meets(problem, choices):
            best = choices
    return best


@dataclass(frozen=True)
class ModelCheck:
    """What the model predicts for a fixed plan: its least latency and its memory terms."""

    latency_s: float
    pinned_nbytes: int
    scratch_nbytes: int
    slack_nbytes: int
    status: str


def model_check(problem: Problem, choices: Choices, time_limit_s: float = 10.0, scale: Scale | None = None) -> ModelCheck:
    """The model with `choices` fixed and the latency minimized (the target ignored): for checking
    the model against the simulator."""
    scale = scale or Scale.for_problem(problem)
    plan = PlanModel(problem, scale, latency_target=False)
    plan.fix(choices)
    pinned = plan.model.new_int_var(0, 1 << 50, "pinned_total")
    plan.model.add(pinned == plan.pinned)
    # scratch and slack are only bounded below in the model; minimize them second, after the latency
    plan.model.minimize(plan.latency * (plan.most_scratch + plan.most_slack + 1) + plan.scratch + plan.slack)
    solver = _solver(time_limit_s, 1, 0)
    status = solver.solve(plan.model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return ModelCheck(math.inf, 0, 0, 0, solver.status_name(status))
    return ModelCheck(
        scale.seconds(solver.value(plan.latency)), scale.nbytes(solver.value(pinned)),
        scale.nbytes(solver.value(plan.scratch)), scale.nbytes(solver.value(plan.slack)), solver.status_name(status),
    )
