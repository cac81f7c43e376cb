"""An elastic runner (several plans, one preload set) on emulated slower devices: does it keep its deadlines,
and what does keeping them cost in fidelity?

    sticc compile STORE -o OUT --latency 20ms,40ms,80ms --memory 4MB --device D --importance I
    python examples/bench_elastic.py OUT [--store STORE] [--texts 30] [--deadlines 20ms,40ms,80ms] \\
        [--slowdowns profiled,slow-reads,...] [--json docs/figures/elastic.json]
    python examples/bench_elastic.py OUT --lengths [--lengths-tokens 16,64,128] [--deadline 40ms] [--calls 5]

Slowdowns (`sticc.bench.slowdown`, every one but "profiled" an emulation on this machine): reads 30%
slower than the device profile's (slow-reads), a CPU hog process started 2 ms into the call
(busy-core), both, and reads falling to half the profiled bandwidth at 30% of the deadline
(read-drop).

Default mode: for every slowdown x shedding (on: `keep_deadline=True`; off: the plan is chosen for
the deadline but nothing is shed) x deadline (default: each plan's latency target), one fresh
process (this script with `--worker`) runs `Runner.encode(text, deadline_s=...)` on each of `--texts`
held-out texts of mixed lengths (windows of 1 to 6 sentences of examples/texts/heldout.txt), every
call cold (the store's data file evicted from the page cache first). Per call it records the
deadline, tokens, the plan chosen, latency, whether the deadline was met, the chunks shed, the
runner's `peak_weight_bytes`, the predicted fidelity loss (the plan's plus what was shed) and the
measured one: 1 - cosine against a 32-bit runner of the same store (`--reference`, compiled there
with `--bits 32` if absent), the importance profile's metric. Writes every call and a summary per
(slowdown, shedding) to `--json`, the summary as a markdown table to stdout and beside the JSON
(.md), with the peak weight bytes against the plans' budget (plan.json's `memory_budget_bytes`),
and the met-deadline rate per slowdown with and without shedding to an SVG beside it (matplotlib,
the `bench` extra).

`--lengths`: inputs of exactly 16, 64 and 128 tokens (a held-out text's tokens repeated or cut, its
special tokens kept) through `Runner.forward` at one deadline, one fresh process per (slowdown,
shedding, length): which plan each call picks, whether it met the deadline, and the check that more
tokens never get a more faithful plan than fewer (`runner.PLANS` is ordered most faithful first).
Writes docs/figures/elastic-lengths.json (.md beside it) unless `--json` says otherwise.

Timings depend on this machine and on what else runs on it: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELDOUT = ROOT / "examples" / "texts" / "heldout.txt"
SENTENCES_PER_TEXT = (1, 2, 3, 6)  # the mixed lengths: texts of this many consecutive sentences
EMULATION_NOTE = (
    "Every slowdown but 'profiled' is emulated on this machine: slower reads by the runner's read cap "
    "(StoreReader.bandwidth_cap_Bps / drop_bandwidth), a busy core by a CPU hog process started during the call."
)
WORKER_TIMEOUT_S = 1800


# -- inputs ----------------------------------------------------------------------------------------


def heldout_texts(count: int, path: Path = HELDOUT) -> list[str]:
    """`count` texts of mixed lengths: windows of consecutive sentences of the held-out paragraphs
    (1, 2, 3 or 6 sentences, starting at each sentence in turn)."""
    paragraphs = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    sentences = [s for p in paragraphs for s in re.split(r"(?<=[.!?])\s+", p) if s]
    texts = []
    for i in range(count):
        start = i % len(sentences)
        size = SENTENCES_PER_TEXT[(i + i // len(sentences)) % len(SENTENCES_PER_TEXT)]
        texts.append(" ".join(sentences[(start + j) % len(sentences)] for j in range(size)))
    return texts


def exact_length_ids(runner, text: str, tokens: int) -> list[int]:
    """Token ids of exactly `tokens` tokens: `text`'s first and last (special) tokens around its other
    tokens, repeated or cut to fit."""
    if tokens > runner.max_seq_length:
        raise SystemExit(f"{tokens} tokens: the runner truncates at {runner.max_seq_length}")
    ids = runner.text_tokenizer().encode(text).ids
    if tokens < 3 or len(ids) < 3:
        raise SystemExit("exact-length inputs need at least 3 tokens and a text of at least one word")
    inner = ids[1:-1]
    body = (inner * (tokens // len(inner) + 1))[: tokens - 2]
    return [ids[0], *body, ids[-1]]


# -- the worker: one cell in this fresh process ---------------------------------------------------


def worker() -> None:
    """Run one cell (a JSON spec on stdin); print one JSON line of its calls."""
    spec = json.loads(sys.stdin.read())
    import contextlib

    import torch

    from codegen import load_runner
    from sticc.base.measure import evict_from_page_cache
    from sticc.bench.slowdown import CpuHog, Slowdown, apply_slowdown, hog_began_after_s, slowed_call

    slowdown = Slowdown(**spec["slowdown"])
    runner = load_runner(spec["runner"]).Runner(spec["store"])
    runner.text_tokenizer()  # loaded once, untimed (it loads lazily on the first call otherwise)
    data_file = Path(spec["store"]) / runner.DATA_FILE
    deadline_s, shedding = spec["deadline_s"], spec["shedding"]
    apply_slowdown(runner, slowdown, spec["profiled_read_Bps"], deadline_s)
    calls = []
    try:
        with CpuHog() if slowdown.hog_after_s is not None else contextlib.nullcontext() as hog:
            for index, item in zip(spec["indices"], spec["inputs"], strict=True):
                evict_from_page_cache(data_file)
                call_start_s = time.monotonic()
                with slowed_call(slowdown, hog):
                    if spec["kind"] == "texts":
                        embedding = runner.encode(item, deadline_s=deadline_s, keep_deadline=shedding)
                    else:
                        hidden = runner.forward(torch.tensor([item]), deadline_s=deadline_s, keep_deadline=shedding)
                stats = runner.last_stats
                if spec["kind"] == "texts":
                    batch = stats["batches"][0] if len(stats["batches"]) == 1 else None
                    record = {
                        "tokens": stats["tokens"], "plan": "+".join(stats["plans"]),
                        "predicted_latency_s": batch and batch["predicted_latency_s"],
                        "predicted_loss": batch and batch["fidelity_loss"], "threads": batch and batch.get("threads"),
                    }
                    embedding = [float(v) for v in embedding]
                else:
                    record = {
                        "tokens": len(item), "plan": stats["plan"], "predicted_latency_s": stats["predicted_latency_s"],
                        "predicted_loss": stats["fidelity_loss"], "threads": stats.get("threads"),
                    }
                    embedding = hidden[0].mean(0).tolist()
                calls.append({
                    "input": index, **record, "latency_s": stats["latency_s"], "met_deadline": stats["met_deadline"],
                    "shed_chunks": stats["shed_chunks"], "shed_pieces": stats["shed_pieces"],
                    "shed_fidelity_loss": stats["shed_fidelity_loss"], "io_bytes": stats["io_bytes"],
                    "peak_weight_bytes": stats["peak_weight_bytes"],
                    "hog_began_after_s": hog_began_after_s(hog, call_start_s), "embedding": embedding,
                })
    finally:
        runner.close()
    print(json.dumps({"calls": calls}))


def run_worker(spec: dict) -> list[dict]:
    """One cell in a fresh process: its calls."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker"], input=json.dumps(spec), capture_output=True,
        text=True, timeout=WORKER_TIMEOUT_S, check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(f"worker for {spec['cell']} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["calls"]


# -- the reference ---------------------------------------------------------------------------------


def reference_runner(reference: Path, store: Path):
    """The 32-bit runner of `store` in `reference` (compiled there first if absent), constructed."""
    from codegen import load_runner

    if not (reference / "runner.py").exists():
        print(f"compiling the 32-bit reference runner into {reference}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "sticc.cli", "compile", str(store), "-o", str(reference), "--bits", "32"], check=True)
    return load_runner(reference / "runner.py").Runner(str(store))


def cosine(a: list[float], b) -> float:
    import torch

    return float(torch.nn.functional.cosine_similarity(torch.tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), dim=0))


# -- summaries -------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q))


def mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def summarize(calls: list[dict], band: dict | None) -> dict:
    """Deadlines met, latency over deadline, shedding and fidelity of a group of calls."""
    over = [c["latency_s"] / c["deadline_s"] for c in calls]
    predicted, measured = mean([c["predicted_loss"] for c in calls]), mean([c["measured_loss"] for c in calls])
    ratio = measured / predicted if predicted and measured is not None else None
    plans: dict[str, int] = {}
    for call in calls:
        plans[call["plan"]] = plans.get(call["plan"], 0) + 1
    return {
        "calls": len(calls),
        "met_deadline_share": sum(c["met_deadline"] for c in calls) / len(calls),
        "latency_over_deadline_median": statistics.median(over),
        "latency_over_deadline_p90": percentile(over, 90),
        "mean_shed_chunks": statistics.fmean(c["shed_chunks"] for c in calls),
        "calls_shedding_share": sum(c["shed_chunks"] > 0 for c in calls) / len(calls),
        "mean_predicted_loss": predicted,
        "mean_measured_loss": measured,
        "measured_over_predicted": ratio,
        "within_additivity_band": None if ratio is None or band is None else band["min_ratio"] <= ratio <= band["max_ratio"],
        "plans": plans,
    }


def shed_pairs(calls: list[dict]) -> list[tuple[dict, dict]]:
    """Every call of one slowdown that shed, paired with the same text at the same deadline and plan
    without shedding."""
    unshed = {(c["deadline_s"], c["input"], c["plan"]): c for c in calls if not c["shedding"]}
    return [(c, unshed[(c["deadline_s"], c["input"], c["plan"])]) for c in calls
            if c["shedding"] and c["shed_chunks"] and (c["deadline_s"], c["input"], c["plan"]) in unshed]


def shed_loss(pairs: list[tuple[dict, dict]], band: dict | None) -> dict:
    """The fidelity shedding lost, measured against predicted (`shed_pairs`): the shed call's
    measured loss minus the unshed call's, against the shed chunks' predicted loss."""
    predicted = mean([c["shed_fidelity_loss"] for c, _ in pairs])
    measured = mean([c["measured_loss"] - off["measured_loss"] for c, off in pairs])
    ratio = measured / predicted if predicted and measured is not None else None
    return {
        "pairs": len(pairs), "mean_predicted_shed_loss": predicted, "mean_measured_shed_loss": measured,
        "measured_over_predicted": ratio,
        "within_additivity_band": None if ratio is None or band is None else band["min_ratio"] <= ratio <= band["max_ratio"],
    }


def _fmt(value, spec: str = ".3f") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, spec)


def peak_weights(result: dict) -> str:
    """The runner's `peak_weight_bytes` (its pool, plus any temporary it counted past the scratch)
    over every call, against the plans' budget."""
    peaks = [c.get("peak_weight_bytes") for c in result["calls"]]
    if not peaks or None in peaks:
        return "Peak weight bytes: not recorded in these calls."
    budget = result.get("memory_budget_bytes")
    if budget is None:
        return f"Peak weight bytes: at most {max(peaks):,} B over {len(peaks)} calls (no budget recorded)."
    over = sum(peak > budget for peak in peaks)
    return (f"Peak weight bytes (the runner's pool, plus any temporary it counted): at most {max(peaks):,} B over "
            f"{len(peaks)} calls, against the budget of {budget:,} B (plan.json's `memory_budget_bytes`): {over} of them over it.")


def markdown(result: dict) -> str:
    band = result["additivity_band"]
    band_text = f"[{band['min_ratio']:.2f}, {band['max_ratio']:.2f}]" if band else "none (no importance profile)"
    lines = [
        f"Elastic runner {result['runner']}: {result['settings']['texts']} held-out texts x deadlines "
        f"{', '.join(f'{1e3 * d:g} ms' for d in result['settings']['deadlines_s'])}; cold calls, one fresh process "
        f"per (slowdown, shedding, deadline). {EMULATION_NOTE} Measured loss: 1 - cosine against the 32-bit runner; "
        f"the importance profile's additivity band (measured / predicted): {band_text}.",
        "",
        "| slowdown | shedding | calls | met deadline | latency / deadline median | p90 | mean shed chunks | "
        "predicted loss | measured loss | measured / predicted | in band |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in result["summary"]:
        s = row["stats"]
        lines.append(
            f"| {row['label']} | {'on' if row['shedding'] else 'off'} | {s['calls']} | {s['met_deadline_share']:.0%} | "
            f"{s['latency_over_deadline_median']:.2f} | {s['latency_over_deadline_p90']:.2f} | {s['mean_shed_chunks']:.1f} | "
            f"{_fmt(s['mean_predicted_loss'], '.4f')} | {_fmt(s['mean_measured_loss'], '.4f')} | "
            f"{_fmt(s['measured_over_predicted'], '.2f')} | {_fmt(s['within_additivity_band'])} |"
        )
    lines += [
        "",
        peak_weights(result),
        "",
        "The fidelity shedding lost: each call that shed against the same text, deadline and plan without shedding "
        "(measured: the difference of their losses; predicted: the shed chunks' importance):",
        "",
        "| slowdown | pairs | predicted shed loss | measured shed loss | measured / predicted | in band |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in result["shed_loss"]:
        s = row["stats"]
        lines.append(
            f"| {row['slowdown']} | {s['pairs']} | {_fmt(s['mean_predicted_shed_loss'], '.4f')} | "
            f"{_fmt(s['mean_measured_shed_loss'], '.4f')} | {_fmt(s['measured_over_predicted'], '.2f')} | "
            f"{_fmt(s['within_additivity_band'])} |"
        )
    lines += [
        "",
        "By deadline:",
        "",
        "| slowdown | shedding | deadline | met deadline | latency / deadline median | p90 | mean shed chunks | plans | "
        "predicted loss | measured loss |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in result["by_deadline"]:
        s = row["stats"]
        lines.append(
            f"| {_cell_label(row)} | {1e3 * row['deadline_s']:g} ms | {s['met_deadline_share']:.0%} | "
            f"{s['latency_over_deadline_median']:.2f} | {s['latency_over_deadline_p90']:.2f} | {s['mean_shed_chunks']:.1f} | "
            f"{_plans_cell(s)} | {_losses_cells(s)} |"
        )
    return "\n".join(lines) + "\n"


def _cell_label(row: dict) -> str:
    """A table row's slowdown (marked when emulated) and shedding columns."""
    return f"{row['slowdown']}{' (emulated)' if row['emulated'] else ''} | {'on' if row['shedding'] else 'off'}"


def _plans_cell(stats: dict) -> str:
    return ", ".join(f"{name} x{n}" for name, n in sorted(stats["plans"].items()))


def _losses_cells(stats: dict) -> str:
    return f"{_fmt(stats['mean_predicted_loss'], '.4f')} | {_fmt(stats['mean_measured_loss'], '.4f')}"


def lengths_markdown(result: dict) -> str:
    lines = [
        f"Elastic runner {result['runner']}: inputs of exactly {', '.join(map(str, result['settings']['lengths']))} tokens, "
        f"deadline {1e3 * result['settings']['deadline_s']:g} ms, {result['settings']['calls']} cold calls per length, one fresh "
        f"process per (slowdown, shedding, length). {EMULATION_NOTE}",
        "",
        "| slowdown | shedding | tokens | plans | met deadline | latency / deadline median | mean shed chunks | "
        "predicted loss | measured loss |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["by_length"]:
        s = row["stats"]
        lines.append(
            f"| {_cell_label(row)} | {row['tokens']} | {_plans_cell(s)} | {s['met_deadline_share']:.0%} | "
            f"{s['latency_over_deadline_median']:.2f} | {s['mean_shed_chunks']:.1f} | {_losses_cells(s)} |"
        )
    lines += ["", peak_weights(result), "", "More tokens never get a more faithful plan than fewer:", ""]
    for check in result["monotone"]:
        verdict = "holds" if check["holds"] else f"VIOLATED: {check['violations']}"
        lines.append(f"- {check['slowdown']}, shedding {'on' if check['shedding'] else 'off'}: {verdict}")
    return "\n".join(lines) + "\n"


def draw(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(row["slowdown"] for row in result["summary"]))
    emulated = {row["slowdown"]: row["emulated"] for row in result["summary"]}
    fig, (met_ax, late_ax) = plt.subplots(1, 2, figsize=(10, 4))
    sheddings = [shedding for shedding in (True, False) if any(row["shedding"] == shedding for row in result["summary"])]
    width = 0.8 / len(sheddings)
    worst = 1.0
    for n, shedding in enumerate(sheddings):
        offset = (n - (len(sheddings) - 1) / 2) * width
        rows = {row["slowdown"]: row["stats"] for row in result["summary"] if row["shedding"] == shedding}
        shown = [name for name in names if name in rows]
        xs = [names.index(name) + offset for name in shown]
        label = f"shedding {'on' if shedding else 'off'}"
        color = "tab:blue" if shedding else "tab:orange"
        met = [100 * rows[name]["met_deadline_share"] for name in shown]
        bars = met_ax.bar(xs, met, width, label=label, color=color)
        met_ax.bar_label(bars, [f"{m:.0f}%" for m in met], fontsize=7)
        medians = [rows[name]["latency_over_deadline_median"] for name in shown]
        p90s = [rows[name]["latency_over_deadline_p90"] for name in shown]
        worst = max(worst, *p90s)
        late_ax.bar(xs, medians, width, label=f"{label} (median; whisker: p90)", color=color,
                    yerr=[[0] * len(medians), [max(0.0, p - m) for p, m in zip(p90s, medians, strict=True)]], capsize=3)
    if worst > 4:
        late_ax.set_yscale("log")
    ticks = [f"{n}\n(emulated)" if emulated[n] else f"{n}\n(not emulated)" for n in names]
    for ax in (met_ax, late_ax):
        ax.set_xticks(range(len(names)), ticks, fontsize=7)
    met_ax.set_ylabel("calls meeting the deadline (%)")
    met_ax.set_ylim(0, 105)
    met_ax.legend(fontsize=8)
    late_ax.axhline(1.0, color="red", linestyle=":", label="deadline")
    late_ax.set_ylabel("latency / deadline")
    late_ax.legend(fontsize=8)
    deadlines = ", ".join(f"{1e3 * d:g}" for d in result["settings"]["deadlines_s"])
    fig.suptitle(f"Elastic runner under emulated slowdowns: {result['settings']['texts']} cold calls x deadlines {deadlines} ms",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)


# -- the benchmark ---------------------------------------------------------------------------------


def command_line() -> str:
    def short(path: Path) -> str:
        return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)

    return shlex.join([short(Path(sys.executable)), short(Path(sys.argv[0]).absolute()), *sys.argv[1:]])


def _seconds_list(text: str) -> list[float]:
    from sticc.runtime.core import parse_quantity

    return [parse_quantity(part.strip(), "s") for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, nargs="?", help="a `sticc compile` output of an elastic runner (runner.py, device.json, importance.json)")
    parser.add_argument("--store", type=Path, help="the store (default: the one the runner names)")
    parser.add_argument("--reference", type=Path, help="the 32-bit runner's directory (default: OUT-ref32; compiled if absent)")
    parser.add_argument("--texts", type=int, default=30, help="held-out texts per cell (default 30)")
    parser.add_argument("--texts-file", type=Path, default=HELDOUT, help="paragraphs, one per line")
    parser.add_argument("--deadlines", help="e.g. 20ms,40ms,80ms (default: each plan's latency target)")
    parser.add_argument("--slowdowns", help="names, comma-separated (default: all; --lengths: profiled)")
    parser.add_argument("--shedding", choices=("both", "on", "off"), default="both")
    parser.add_argument("--json", type=Path, help="default docs/figures/elastic.json (--lengths: elastic-lengths.json)")
    parser.add_argument("--svg", type=Path, help="default: beside the JSON")
    parser.add_argument("--lengths", action="store_true", help="the exact-length mode (see above)")
    parser.add_argument("--lengths-tokens", default="16,64,128", help="--lengths: input lengths (default 16,64,128)")
    parser.add_argument("--deadline", default="40ms", help="--lengths: the deadline (default 40ms)")
    parser.add_argument("--calls", type=int, default=5, help="--lengths: calls per length, distinct texts (default 5)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return
    if args.out is None:
        parser.error("give the elastic runner's directory OUT")
    from sticc.bench.slowdown import STANDARD_SLOWDOWNS, slowdown_named

    default_slowdowns = (STANDARD_SLOWDOWNS[0],) if args.lengths else STANDARD_SLOWDOWNS
    slowdowns = [slowdown_named(n.strip()) for n in args.slowdowns.split(",")] if args.slowdowns else list(default_slowdowns)
    sheddings = {"both": (True, False), "on": (True,), "off": (False,)}[args.shedding]
    (lengths_mode if args.lengths else texts_mode)(args, slowdowns, sheddings)


def _setting(args) -> dict:
    """What every mode reads from OUT: the runner, the store, its plans, their memory budget, the
    profiled bandwidth, the band."""
    from codegen import load_runner
    from codegen.literals import runner_literal

    runner_path = args.out / "runner.py"
    store = args.store or Path(runner_literal(runner_path, "DEFAULT_STORE", str))
    plans = load_runner(runner_path).Runner.PLANS
    device = json.loads((args.out / "device.json").read_text())
    budget = json.loads((args.out / "plan.json").read_text()).get("memory_budget_bytes")  # shared by every plan
    importance_path = args.out / "importance.json"
    band = None
    if importance_path.exists():
        additivity = json.loads(importance_path.read_text()).get("additivity")
        if additivity:
            band = {k: additivity[k] for k in ("min_ratio", "max_ratio", "median_ratio")}
    return {
        "runner_path": runner_path, "store": store, "plans": plans, "profiled_read_Bps": device["read_bandwidth_Bps"],
        "band": band, "reference": args.reference or args.out.with_name(args.out.name + "-ref32"), "memory_budget_bytes": budget,
    }


def _header(args, setting: dict, slowdowns: list) -> dict:
    return {
        "command": command_line(),
        "emulation_note": EMULATION_NOTE,
        "runner": str(setting["runner_path"]),
        "store": str(setting["store"]),
        "reference": f"{setting['reference']}/runner.py (every shard at 32 bits, same store)",
        "profiled_read_Bps": setting["profiled_read_Bps"],
        "memory_budget_bytes": setting["memory_budget_bytes"],
        "additivity_band": setting["band"],
        "plans": [{"name": p.name, "latency_target_s": p.latency_target_s, "fidelity_loss": p.fidelity_loss} for p in setting["plans"]],
        "slowdowns": [{**asdict(s), "label": s.label, "emulated": s.emulated} for s in slowdowns],
        "loss_metric": "1 - cosine of the pooled output against the 32-bit runner's (the importance profile's metric)",
    }


def _write(result: dict, text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    path.with_suffix(".md").write_text(text)
    print(text)
    print(f"wrote {path} and {path.with_suffix('.md')}", file=sys.stderr)


def _cells_calls(cells: list[tuple[dict, dict]], references: list) -> list[dict]:
    """Run every cell (its spec, the fields its calls get): the calls, each with its measured loss."""
    from sticc.base.progress import progress_bar

    calls = []
    for spec, fields in progress_bar(iter(cells), len(cells), "cells (fresh processes)"):
        for call in run_worker(spec):
            embedding = call.pop("embedding")
            call["measured_loss"] = 1.0 - cosine(embedding, references[call["input"]])
            calls.append({**fields, **call})
    return calls


def _cell(setting: dict, kind: str, label: str, slowdown, shedding: bool, deadline_s: float, indices: list, inputs: list) -> tuple[dict, dict]:
    """One cell (a fresh process): its spec for the worker, and the fields its calls get."""
    spec = {
        "cell": f"{slowdown.name}, shedding {'on' if shedding else 'off'}, {label}",
        "kind": kind, "runner": str(setting["runner_path"]), "store": str(setting["store"]),
        "slowdown": asdict(slowdown), "shedding": shedding, "deadline_s": deadline_s,
        "profiled_read_Bps": setting["profiled_read_Bps"], "indices": indices, "inputs": inputs,
    }
    return spec, {"slowdown": slowdown.name, "emulated": slowdown.emulated, "shedding": shedding, "deadline_s": deadline_s}


def texts_mode(args, slowdowns: list, sheddings: tuple) -> None:
    setting = _setting(args)
    deadlines = _seconds_list(args.deadlines) if args.deadlines else sorted(p.latency_target_s for p in setting["plans"] if p.latency_target_s)
    if not deadlines:
        raise SystemExit("the runner's plans have no latency targets: give --deadlines")
    texts = heldout_texts(args.texts, args.texts_file)
    reference = reference_runner(setting["reference"], setting["store"])
    try:
        references = [list(map(float, v)) for v in reference.encode(texts)]
    finally:
        reference.close()
    cells = []
    for deadline_s in deadlines:
        for slowdown in slowdowns:
            for shedding in sheddings:
                cells.append(_cell(
                    setting, "texts", f"{1e3 * deadline_s:g} ms", slowdown, shedding, deadline_s, list(range(len(texts))), texts,
                ))
    calls = _cells_calls(cells, references)
    for call in calls:
        call["latency_over_deadline"] = call["latency_s"] / call["deadline_s"]
    band = setting["band"]
    summary, by_deadline, shed, every_pair = [], [], [], []
    for slowdown in slowdowns:
        pairs = shed_pairs([c for c in calls if c["slowdown"] == slowdown.name])
        every_pair += pairs
        shed.append({"slowdown": slowdown.name, "stats": shed_loss(pairs, band)})
    shed.append({"slowdown": "all", "stats": shed_loss(every_pair, band)})
    for slowdown in slowdowns:
        for shedding in sheddings:
            group = [c for c in calls if c["slowdown"] == slowdown.name and c["shedding"] == shedding]
            summary.append({"slowdown": slowdown.name, "label": slowdown.label, "emulated": slowdown.emulated, "shedding": shedding,
                            "stats": summarize(group, band)})
            for deadline_s in deadlines:
                cell = [c for c in group if c["deadline_s"] == deadline_s]
                by_deadline.append({"slowdown": slowdown.name, "emulated": slowdown.emulated, "shedding": shedding,
                                    "deadline_s": deadline_s, "stats": summarize(cell, band)})
    result = {
        **_header(args, setting, slowdowns),
        "settings": {"texts": len(texts), "deadlines_s": deadlines, "shedding": list(sheddings), "cold": True,
                     "process": "one fresh process per (slowdown, shedding, deadline); its calls in text order"},
        "texts": texts, "summary": summary, "shed_loss": shed, "by_deadline": by_deadline, "calls": calls,
    }
    path = args.json or ROOT / "docs" / "figures" / "elastic.json"
    _write(result, markdown(result), path)
    svg = args.svg or path.with_suffix(".svg")
    draw(result, svg)
    print(f"wrote {svg}", file=sys.stderr)


def lengths_mode(args, slowdowns: list, sheddings: tuple) -> None:
    setting = _setting(args)
    lengths = sorted(int(n) for n in args.lengths_tokens.split(","))
    (deadline_s,) = _seconds_list(args.deadline)
    texts = heldout_texts(args.calls, args.texts_file)
    reference = reference_runner(setting["reference"], setting["store"])
    inputs, references = {}, []
    try:
        import torch

        for tokens in lengths:
            inputs[tokens] = []
            for text in texts:
                ids = exact_length_ids(reference, text, tokens)
                with torch.inference_mode():
                    references.append(reference.forward(torch.tensor([ids]))[0].mean(0).tolist())
                inputs[tokens].append((len(references) - 1, ids))
    finally:
        reference.close()
    cells = []
    for tokens in lengths:
        for slowdown in slowdowns:
            for shedding in sheddings:
                cells.append(_cell(
                    setting, "ids", f"{tokens} tokens", slowdown, shedding, deadline_s,
                    [i for i, _ in inputs[tokens]], [ids for _, ids in inputs[tokens]],
                ))
    calls = _cells_calls(cells, references)
    order = {plan.name: n for n, plan in enumerate(setting["plans"])}  # 0: the most faithful
    by_length, monotone = [], []
    for slowdown in slowdowns:
        for shedding in sheddings:
            group = [c for c in calls if c["slowdown"] == slowdown.name and c["shedding"] == shedding]
            violations = []
            for i, shorter in enumerate(lengths):
                for longer in lengths[i + 1 :]:
                    least_faithful_shorter = max(order[c["plan"]] for c in group if c["tokens"] == shorter)
                    most_faithful_longer = min(order[c["plan"]] for c in group if c["tokens"] == longer)
                    if most_faithful_longer < least_faithful_shorter:
                        violations.append(f"{longer} tokens got {setting['plans'][most_faithful_longer].name}, "
                                          f"{shorter} tokens {setting['plans'][least_faithful_shorter].name}")
            monotone.append({"slowdown": slowdown.name, "shedding": shedding, "holds": not violations, "violations": violations})
            for tokens in lengths:
                by_length.append({"slowdown": slowdown.name, "emulated": slowdown.emulated, "shedding": shedding, "tokens": tokens,
                                  "stats": summarize([c for c in group if c["tokens"] == tokens], setting["band"])})
    result = {
        **_header(args, setting, slowdowns),
        "settings": {"lengths": lengths, "deadline_s": deadline_s, "calls": len(texts), "shedding": list(sheddings), "cold": True,
                     "process": "one fresh process per (slowdown, shedding, length); its calls in text order"},
        "by_length": by_length, "monotone": monotone, "calls": calls,
    }
    path = args.json or ROOT / "docs" / "figures" / "elastic-lengths.json"
    _write(result, lengths_markdown(result), path)
    if not all(check["holds"] for check in monotone):
        raise SystemExit("more tokens got a more faithful plan than fewer (see above)")


if __name__ == "__main__":
    main()
