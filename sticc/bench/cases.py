"""One benchmark case, run in this fresh process: `python -m sticc.bench.cases < SPEC_JSON`.

(Spec kind "trace" instead runs a runner's traced calls for the device profile's lane fit,
`trace_calls`.)

The spec (written by `sticc.bench.suite`) names the case: a generated runner ("runner", timed per call or
as a cold start that includes construction) or a transformers model ("hf", `sticc.bench.hf`).
This process sets the case up, evicts the files it reads (cold runs), times one call on the given
token ids, and prints one JSON line of measurements:

- `latency_s`, `setup_s` (untimed construction before the call);
- `peak_weight_bytes` and how it was measured (`weight_bytes_method`); None where only the
  untimed fidelity pass can measure it (hf-offload) and the spec has no fidelity inputs;
- `disk_read_bytes`: bytes this process read from storage during the call (/proc/self/io
  read_bytes: page-cache misses, readahead included);
- `rss_baseline`, and `peak_rss_bytes`: the kernel's peak resident set (VmHWM, reset just before
  the call with /proc/self/clear_refs), covering the call;
- `call_window_s`: the call's start and end on the monotonic clock, so the parent, which samples
  /proc/PID/status, can split the call's peak RSS into anonymous and file-backed pages;
- `embeddings`: mean-pooled outputs for the fidelity inputs, when the spec has them (untimed,
  after the timed call).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

from codegen import load_runner
from sticc.base.measure import evict_from_page_cache
from sticc.bench.hf import HFCase
from sticc.bench.modes import with_pinned_embeddings
from sticc.bench.ort import ORTCase
from sticc.runtime.sentence import mean_pool


def proc_status_bytes(text: str, keys: tuple[str, ...] = ("RssAnon", "RssFile", "VmHWM", "VmRSS")) -> dict[str, int]:
    """The `keys` fields of a /proc/PID/status text, in bytes."""
    values = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in keys:
            values[name] = int(rest.split()[0]) * 1024
    return values


def proc_self_status() -> dict[str, int]:
    with open("/proc/self/status", encoding="ascii") as handle:
        return proc_status_bytes(handle.read())


def proc_read_bytes() -> int:
    with open("/proc/self/io", encoding="ascii") as handle:
        return int(next(line for line in handle if line.startswith("read_bytes:")).split()[1])


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
        handle.write("5")  # resets VmHWM to the current RSS


def runner_class(spec: dict) -> type:
    """The generated runner class of a case's `runner`, with the embedding tables pinned when the
    spec says `pin_embeddings` (the preload baseline)."""
    loaded = load_runner(spec["runner"]).Runner
    return with_pinned_embeddings(loaded) if spec.get("pin_embeddings", False) else loaded


class RunnerCase:
    """A generated runner; `mode` "call" times one call of a constructed runner, "cold-start"
    times construction (every preload read, the kernels' warm-up) plus the call, as an app's
    first call after start does."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.runner_class = runner_class(spec)
        self.runner = None
        self.weight_bytes_method = "exact: the runner's weight pool (ring + scratch + pinned), made at construction"

    def _construct(self) -> None:
        self.runner = self.runner_class(
            self.spec["store"], io_bandwidth_Bps=self.spec.get("io_bandwidth_Bps"), threads=self.spec.get("threads"),
        )

    def setup(self) -> None:
        if self.spec["mode"] == "call":
            self._construct()

    def cold_files(self) -> list[Path]:
        return [Path(self.spec["store"]) / self.runner_class.DATA_FILE]

    def call(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        if self.spec["mode"] == "cold-start":
            self._construct()
        self.runner.forward(input_ids, attention_mask)
        self.call_stats = dict(self.runner.last_stats)  # encode() calls forward again

    def encode(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        return self.runner.forward(input_ids, attention_mask, token_type_ids)

    def peak_weight_bytes(self) -> int:
        return self.call_stats["peak_weight_bytes"]  # the timed call's; pinned bytes are live when it starts

    def close(self) -> None:
        self.runner.close()


def run_case(spec: dict) -> dict:
    """Set up, evict, time one call, measure; see the module docstring for the result's keys."""
    baseline = proc_self_status()
    if spec["kind"] == "runner":
        case = RunnerCase(spec)
    elif spec["kind"] == "ort":
        case = ORTCase.from_spec(spec)
    else:
        case = HFCase(Path(spec["checkpoint"]), spec["offload"], spec.get("io_bandwidth_Bps"), Path(spec["work_dir"]))
    ids = torch.tensor([spec["input_ids"]], dtype=torch.int64)
    mask = torch.ones_like(ids)
    setup_start_s = time.perf_counter()
    case.setup()
    setup_s = time.perf_counter() - setup_start_s
    if spec["cold"]:
        for path in case.cold_files():
            evict_from_page_cache(path)
    reset_peak_rss()
    read_before = proc_read_bytes()
    window_start_s = time.monotonic()
    start_s = time.perf_counter()
    case.call(ids, mask)
    latency_s = time.perf_counter() - start_s
    window_end_s = time.monotonic()
    disk_read_bytes = proc_read_bytes() - read_before
    after = proc_self_status()
    result = {
        "latency_s": latency_s,
        "setup_s": setup_s,
        "disk_read_bytes": disk_read_bytes,
        "rss_baseline": {"anon": baseline["RssAnon"], "file": baseline["RssFile"], "total": baseline["VmRSS"]},
        "peak_rss_bytes": after["VmHWM"],
        "call_window_s": [window_start_s, window_end_s],
    }
    fidelity = spec.get("fidelity_inputs")
    if fidelity is not None:
        ids, mask, types = (torch.tensor(fidelity[key], dtype=torch.int64) for key in ("input_ids", "attention_mask", "token_type_ids"))
        with torch.inference_mode():
            result["embeddings"] = mean_pool(case.encode(ids, mask, types), mask).tolist()
    result["peak_weight_bytes"] = case.peak_weight_bytes()
    result["weight_bytes_method"] = case.weight_bytes_method
    case.close()
    return result


def trace_calls(spec: dict) -> dict:
    """A generated runner, constructed as an app constructs it, then `calls` cold calls on the spec's
    token ids, each traced (`forward(trace=...)`): the device profile's lane fit runs this. Each
    trace's `TraceEvent`s go out as JSON lists [event, key, time_s] (`sticc.bench.lane_fit.trace_from_json`
    reads them back)."""
    case = RunnerCase({**spec, "mode": "call"})
    case.setup()
    ids = torch.tensor([spec["input_ids"]], dtype=torch.int64)
    traces, latencies = [], []
    if spec.get("decoder", False):
        return _trace_generation(case, ids, spec["calls"])
    for _ in range(spec["calls"]):
        for path in case.cold_files():
            evict_from_page_cache(path)
        trace: list = []
        case.runner.forward(ids, trace=trace)
        traces.append(trace)
        latencies.append(case.runner.last_stats["latency_s"])
    case.close()
    return {"traces": traces, "latencies": latencies}


def _trace_generation(case: RunnerCase, ids: torch.Tensor, calls: int) -> dict:
    """A decoder's traced generation: the prompt `ids` (prefill), then `calls` one-token calls,
    each on the greedy token of the one before, cold; `past` gives each call's cached positions."""
    traces, latencies, past = [], [], []
    state, tokens = None, ids
    for _ in range(calls + 1):
        for path in case.cold_files():
            evict_from_page_cache(path)
        trace: list = []
        past.append(0 if state is None else state.length)
        logits, state = case.runner.forward(tokens, state, all_logits=False, trace=trace)
        tokens = logits[0, -1:].argmax(-1)[None]
        traces.append(trace)
        latencies.append(case.runner.last_stats["latency_s"])
    case.close()
    return {"traces": traces, "latencies": latencies, "past": past}


def main() -> int:
    spec = json.loads(sys.stdin.read())
    result = trace_calls(spec) if spec["kind"] == "trace" else run_case(spec)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown (thread pools, torch): its time is nobody's latency


if __name__ == "__main__":
    raise SystemExit(main())
