"""solvers: planners that choose a bitwidth (or drop) and a preload flag per shard.

`cpsat` (exact, OR-Tools CP-SAT), `greedy` (STI's heuristic: the baseline and CP-SAT's hint) and
`exhaustive` (tiny instances, the test oracle) take a lowered `sticc.ir.lower.Problem` and return a
`solvers.base.Solution`; `uniform` makes a given plan (every shard at one bitwidth).
"""
