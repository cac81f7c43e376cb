"""codegen: Plan + store manifest -> a standalone runner.py (jinja2 templates render; Python decides)."""

from codegen.emit import RunnerSource, check_runner, emit_runner, load_runner, write_output

__all__ = ["RunnerSource", "check_runner", "emit_runner", "load_runner", "write_output"]
