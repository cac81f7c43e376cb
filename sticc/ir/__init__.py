"""The contracts between stages: the shard graph (the IR that lowering produces and the solvers, the
simulator, the memory model and codegen read), lowering, the simulator, the pool's memory model,
and the Plan."""
