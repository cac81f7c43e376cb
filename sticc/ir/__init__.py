"""The contracts between stages: the shard graph (the IR lowering produces and every planner, the simulator, reports and codegen read), lowering, the simulator, and the Plan."""
