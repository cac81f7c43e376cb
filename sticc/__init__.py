"""sticc: compile transformer inference into a runner that streams quantized shards.

Data flow (docs/architecture.md), one stage package each, imports only downward:
HF checkpoint -> `sticc.model.store.write_store` (sharded; quantized by `sticc.model.quant`)
-> profiles: `sticc.profile.measure_device` and `sticc.bench.lane_fit` (device.json),
`sticc.profile.measure_importance` (importance.json)
-> `sticc.ir.lower` (the shard graph with costs) -> `solvers` -> `sticc.ir.plan.Plan`, planned by
`sticc.compile.planner` and predicted by `sticc.ir.simulate`
-> `codegen` (runner.py, inlining `sticc.runtime`) and `sticc.compile.report` (report.md, timeline.svg, drawn
from plan.json by `sticc.compile.plan_view` and `sticc.compile.timeline_svg`);
`sticc.bench` runs compiled runners; `sticc.cli` is the command line.
"""

__version__ = "0.1.0"
