"""Markdown tables from `sticc bench --json` files (the tables of docs/benchmarks.md).

Run: python examples/bench_markdown.py docs/figures/bench-*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def table(data: dict) -> str:
    subject, settings, cases = data["subject"], data["settings"], data["cases"]
    flash = f"emulated {settings['io_bandwidth_Bps'] / 1e6:.0f} MB/s flash" if settings["io_bandwidth_Bps"] else "this disk"
    weights = "**random weights: latency and memory only**" if subject["random_weights"] else "real weights"
    deadline = f"{subject['latency_target_s'] * 1e3:g} ms" if subject["latency_target_s"] else "none"
    budget = f"{subject['memory_target_bytes'] / 1e6:.2f} MB" if subject["memory_target_bytes"] else "none"
    lines = [
        f"{subject['model']} ({weights}), {subject['seq_len']} tokens, {flash}, "
        f"{'cold' if settings['cold'] else 'warm'} page cache, {settings['runs']} fresh processes per case; "
        f"deadline {deadline}, memory budget {budget} "
        f"({100 * (subject['memory_target_bytes'] or 0) / subject['fp32_weight_bytes']:.1f}% of fp32 {subject['fp32_weight_bytes'] / 1e6:.1f} MB)",
        "",
        "| case | latency ms min / med / max | median vs sticc | cold start ms (med) | deadline met | peak weight MB (% fp32) "
        "| peak RSS MB anon / file | disk read MB | cosine mean / min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    sticc = next(c["latency_s"]["median"] for c in cases if c["name"] == "sticc")
    for c in cases:
        t = c["latency_s"]
        cosine = "n/a" if c["cosine_mean"] is None else f"{c['cosine_mean']:.4f} / {c['cosine_min']:.4f}"
        met = "n/a" if c["deadline_met"] is None else f"{c['deadline_met']}/{c['runs']}"
        cold = "n/a" if c.get("cold_start_s") is None else f"{c['cold_start_s']['median'] * 1e3:.1f}"
        lines.append(
            f"| {c['name']} | {t['min'] * 1e3:.1f} / {t['median'] * 1e3:.1f} / {t['max'] * 1e3:.1f} "
            f"| {t['median'] / sticc:.2f}x | {cold} | {met} "
            f"| {c['peak_weight_bytes'] / 1e6:.2f} ({100 * c['peak_weight_bytes'] / subject['fp32_weight_bytes']:.1f}%) "
            f"| {c['peak_rss_anon_bytes'] / 1e6:.1f} / {c['peak_rss_file_bytes'] / 1e6:.1f} "
            f"| {c['disk_read_bytes'] / 1e6:.1f} | {cosine} |"
        )
    return "\n".join(lines)


def main(paths: list[str]) -> None:
    for path in paths:
        print(f"`{path}`:\n")
        print(table(json.loads(Path(path).read_text(encoding="utf-8"))))
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
