"""sticc: compile transformer inference into a runner that streams quantized shards.

Data flow: HF checkpoint -> `sticc.store` (sharded, quantized) -> `sticc.plan` -> `sticc.graph`
(shard dependency graph) -> `codegen` (runner.py). See DESIGN.md for the architecture.
"""

__version__ = "0.1.0"
