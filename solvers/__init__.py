"""solvers: planners that choose a bitwidth (or drop) and a preload flag per shard.

Each returns a `sticc.plan.Plan`. Today: `uniform` (every shard at one bitwidth). The CP-SAT,
greedy and exhaustive planners of DESIGN.md build on the same contract.
"""
