"""Compiling for targets: solve the lowered graph, predict with the simulator, and render the reports."""
