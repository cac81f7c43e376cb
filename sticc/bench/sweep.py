"""`sticc sweep`: plans over a grid of latency targets x memory budgets, measured, as Pareto plots.

For every (latency, memory) pair, CP-SAT ("sticc") and STI's greedy heuristic ("greedy") plan from
this machine's cached profiles (or the given ones); pairs no plan meets are recorded and skipped.
Every plan's runner and the plan-independent baselines run as in `sticc bench` (fresh processes,
interleaved, cold unless told otherwise). Written into DIR:
- sweep.json: every point, measured;
- fidelity-vs-latency.png/.svg: one panel per memory budget, mean cosine against measured median
  latency, one line per solver, the baselines as labelled points;
- memory-vs-latency.png/.svg: for each case the peak weight memory it needs against the latency it
  reaches, among points whose fidelity reaches the threshold (random weights: every point).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from sticc.base.errors import UserError
from sticc.base.jsonfile import fsync_dir, fsync_file, write_json_atomic
from sticc.bench.suite import (
    Case,
    CaseResult,
    Progress,
    Settings,
    Subject,
    baseline_cases,
    header_json,
    planned_case,
    reference_embeddings,
    run_cases,
    subject_of,
    timing_ids,
    title,
)
from sticc.compile.planner import plan_for_targets
from sticc.ir.plan import RuntimeSettings
from sticc.model.store import Store
from sticc.model.texts import EVAL_SENTENCES

SOLVER_CASES = {"cpsat": "sticc", "greedy": "greedy"}
FIGURES = ("fidelity-vs-latency", "memory-vs-latency")


@dataclass(frozen=True)
class Point:
    """One measured case: a solver's plan at a (latency, memory) pair, or a baseline (no targets)."""

    case: str  # "sticc" | "greedy" | a baseline's name
    latency_target_s: float | None
    memory_target_bytes: int | None
    result: CaseResult | None  # None: no plan meets the targets
    note: str = ""


def _label(latency_s: float, memory_bytes: int) -> str:
    return f"{latency_s * 1e3:g}ms-{memory_bytes / 1e6:g}MB"


def sweep(
    store_dir: Path, latencies_s: list[float], memories_bytes: list[int], settings: Settings, baselines: tuple[str, ...],
    device_profile, importance_profile, seq_len: int, time_limit_s: float, out_dir: Path, progress: Progress,
    fidelity_threshold: float = 0.99,
) -> tuple[Subject, list[Point]]:
    """Plan, run and measure the grid; write sweep.json and the plots into `out_dir`."""
    store = Store.open(store_dir)
    plan_json = {"targets": {"seq_len": seq_len, "latency_s": None, "memory_bytes": None}}
    subject = subject_of(store, plan_json)
    points: list[Point] = []
    cases: list[tuple[Point, Case]] = []
    with tempfile.TemporaryDirectory(prefix="sticc-sweep-") as work:
        work_dir = Path(work)
        grid = [(lat, mem, solver) for lat in latencies_s for mem in memories_bytes for solver in SOLVER_CASES]
        for latency_s, memory_bytes, solver in progress(iter(grid), len(grid), "planning"):
            point = Point(SOLVER_CASES[solver], latency_s, memory_bytes, None)
            try:
                plan, _ = plan_for_targets(store, device_profile, importance_profile, seq_len, latency_s, memory_bytes,
                                           solver, time_limit_s)
            except UserError as error:  # no plan meets these targets
                points.append(replace(point, note=str(error)))
                continue
            name = f"{point.case}@{_label(latency_s, memory_bytes)}"
            case = planned_case(name, f"{solver} plan for {_label(latency_s, memory_bytes)}", plan, store, subject, settings, work_dir)
            cases.append((point, replace(case, deadline_s=latency_s)))
        runtime = RuntimeSettings(settings.io_bandwidth_Bps, device_profile.compute_threads)
        for case in baseline_cases(store, subject, settings, baselines, runtime, work_dir):
            cases.append((Point(case.name, None, None, None), case))
        fidelity_inputs, reference = reference_embeddings(work_dir / "preload" / "runner.py", store, EVAL_SENTENCES)
        ids = timing_ids(store.spec.vocab, seq_len)
        runnable = [replace(c, spec={**c.spec, "input_ids": ids, "fidelity_inputs": fidelity_inputs}) for _, c in cases]
        results = run_cases(runnable, settings, None if subject.random_weights else reference, progress)
    points += [replace(point, result=result) for (point, _), result in zip(cases, results, strict=True)]
    write_outputs(out_dir, subject, settings, points, fidelity_threshold)
    return subject, points


# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------


def to_json(subject: Subject, settings: Settings, points: list[Point]) -> dict:
    return {**header_json(subject, settings), "points": [asdict(point) for point in points]}


def write_outputs(out_dir: Path, subject: Subject, settings: Settings, points: list[Point], threshold: float = 0.99) -> list[Path]:
    """sweep.json and the figures, each written atomically and durably (staged in `out_dir`,
    fsynced, then renamed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".sticc-sweep-", dir=out_dir))
    try:
        write_json_atomic(staging / "sweep.json", to_json(subject, settings, points))
        written = ["sweep.json"]
        for name, figure in plot(subject, settings, points, threshold).items():
            for extension in ("png", "svg"):
                figure.savefig(staging / f"{name}.{extension}", dpi=150, bbox_inches="tight")
                written.append(f"{name}.{extension}")
        for name in written:
            fsync_file(staging / name)
        for name in written:
            os.replace(staging / name, out_dir / name)
        fsync_dir(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out_dir / name for name in written]


def plot(subject: Subject, settings: Settings, points: list[Point], threshold: float) -> dict:
    """The two figures (matplotlib, Agg): {name: figure}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    measured = [p for p in points if p.result is not None]
    planned = [p for p in measured if p.latency_target_s is not None]
    fixed = [p for p in measured if p.latency_target_s is None]
    memories = sorted({p.memory_target_bytes for p in planned})
    colors = {"sticc": "tab:blue", "greedy": "tab:orange"}
    markers = {"preload": "s", "load-exec": "D", "layerwise": "^", "hf": "v", "hf-offload": "P"}
    figures = {}

    panels = max(1, len(memories))
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.8), sharey=True, squeeze=False)
    for ax, memory in zip(axes[0], memories or [None], strict=True):
        for case, color in colors.items():
            line = sorted((p.result.latency_s.median * 1e3, p.result.cosine_mean) for p in planned
                          if p.case == case and p.memory_target_bytes == memory and p.result.cosine_mean is not None)
            if line:
                ax.plot(*zip(*line, strict=True), marker="o", color=color, label=case)
            for p in planned:  # each point labelled with its latency target
                if p.case == case and p.memory_target_bytes == memory and p.result.cosine_mean is not None:
                    ax.annotate(f"{p.latency_target_s * 1e3:g}", (p.result.latency_s.median * 1e3, p.result.cosine_mean),
                                textcoords="offset points", xytext=(4, -9), fontsize=6, color=color)
        for p in fixed:
            if p.result.cosine_mean is not None:
                ax.scatter(p.result.latency_s.median * 1e3, p.result.cosine_mean, marker=markers.get(p.case, "x"), color="gray",
                           label=f"{p.case} ({p.result.peak_weight_bytes / 1e6:.0f} MB)")
        _log_ms_axis(ax.xaxis)
        ax.set_title(f"memory {memory / 1e6:g} MB" if memory else "no plans", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        if subject.random_weights:
            ax.text(0.5, 0.5, "random weights:\nno fidelity", transform=ax.transAxes, ha="center", va="center")
    axes[0][0].set_ylabel("fidelity: mean cosine vs fp32")
    fig.supxlabel("measured median latency (ms); each plan's point labelled with its latency target (ms)", fontsize=9)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("fidelity vs latency at fixed memory\n" + title(subject, settings), fontsize=8, y=1.06)
    figures[FIGURES[0]] = fig

    fig, ax = plt.subplots(figsize=(6, 4.2))
    good = [p for p in measured if subject.random_weights or (p.result.cosine_mean or 0) >= threshold]
    for case, color in colors.items():
        frontier = {}  # memory budget -> the lowest median latency a plan within it reached
        for p in good:
            if p.case == case:
                latency = p.result.latency_s.median * 1e3
                frontier[p.memory_target_bytes] = min(latency, frontier.get(p.memory_target_bytes, latency))
        if frontier:
            line = sorted((latency, memory / 1e6) for memory, latency in frontier.items())
            ax.plot(*zip(*line, strict=True), marker="o", color=color, label=case)
    for p in good:
        if p.latency_target_s is None:
            ax.scatter(p.result.latency_s.median * 1e3, p.result.peak_weight_bytes / 1e6, marker=markers.get(p.case, "x"),
                       color="gray", label=p.case)
    _log_ms_axis(ax.xaxis)
    _log_ms_axis(ax.yaxis)
    ax.set_xlabel("measured median latency (ms)")
    ax.set_ylabel("weight memory (MB)")
    reach = "every point (random weights)" if subject.random_weights else f"points with mean cosine >= {threshold}"
    ax.set_title(f"memory vs latency, {reach}; plans: their budget, baselines: measured peak\n"
                 + title(subject, settings), fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    figures[FIGURES[1]] = fig
    return figures


def _log_ms_axis(axis) -> None:
    """A log-scaled axis with plain numbers for tick labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    axis.axes.set_xscale("log") if axis.axis_name == "x" else axis.axes.set_yscale("log")
    axis.set_major_locator(LogLocator(subs=(1, 1.5, 2, 3, 5, 7)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_locator(NullLocator())
