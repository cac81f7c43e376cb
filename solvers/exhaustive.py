"""The exhaustive planner: every plan of a tiny instance, simulated; the oracle in tests."""

from __future__ import annotations

import itertools
import math
import time

from solvers.base import Solution, check_reachable, evaluate, meets
from sticc.base.errors import InfeasibleError, UserError
from sticc.ir.graph import ShardChoice
from sticc.ir.lower import Problem
from sticc.ir.plan import SolverInfo

MAX_PLANS = 200_000


def exhaustive_solve(problem: Problem) -> Solution:
    """The feasible plan of highest summed importance (the first found on ties)."""
    start_s = time.perf_counter()
    check_reachable(problem)
    positions = problem.positions
    options = [
        [(bits, bits > 0 and preload) for bits in problem.options(p) for preload in ((False,) if bits == 0 else (False, True))]
        for p in positions
    ]
    count = math.prod(len(o) for o in options)
    if count > MAX_PLANS:
        raise UserError(f"exhaustive search over {count} plans is too large (limit {MAX_PLANS}): use cpsat")
    best = None
    for combo in itertools.product(*options):
        choices = {p: ShardChoice(p[0], p[1], bits, preload) for p, (bits, preload) in zip(positions, combo, strict=True)}
        objective = problem.objective(choices)
        if best is not None and objective <= best[0]:
            continue
        if meets(problem, choices):
            best = (objective, choices, evaluate(problem, choices))
    if best is None:
        raise InfeasibleError("no plan meets the targets")
    objective, choices, simulation = best
    info = SolverInfo("exhaustive", "OPTIMAL", objective, objective, 0.0, time.perf_counter() - start_s)
    return Solution(choices, info, objective, simulation)
