"""sticc: compile transformer inference into a runner that streams quantized shards.

Data flow: HF checkpoint -> `sticc.model.store` (sharded, quantized) -> profiles (`sticc.profile.measure_device`,
`sticc.profile.measure_importance`) -> `sticc.ir.lower` (shard graph with costs) -> `solvers` -> `sticc.ir.plan`
(predicted by `sticc.ir.simulate`) -> `codegen` (runner.py) and `sticc.compile.report`. See DESIGN.md.
"""

__version__ = "0.1.0"
