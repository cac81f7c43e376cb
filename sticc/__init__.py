"""sticc: compile transformer inference into a runner that streams quantized shards.

Data flow: HF checkpoint -> `sticc.store` (sharded, quantized) -> profiles (`sticc.profile_device`,
`sticc.profile_importance`) -> `sticc.lower` (shard graph with costs) -> `solvers` -> `sticc.plan`
(predicted by `sticc.simulate`) -> `codegen` (runner.py) and `sticc.report`. See DESIGN.md.
"""

__version__ = "0.1.0"
