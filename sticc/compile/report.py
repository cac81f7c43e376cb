"""Plan reports: report.md and the terminal view of a plan.json, and `write_reports`, which writes
report.md with timeline.svg (docs/report.md).

The report is built once as `Section`s (`report_sections.sections`) and rendered twice: as markdown
and as rich tables, so the file and the terminal always say the same thing. The timeline is drawn
twice too: as a text bar of the two lanes in both (`timeline_text`) and as an SVG (`timeline_svg`).
A report reads only the plan.json dict (`plan_view.read_plan_json`), so it can be redrawn later
from the file alone (`sticc report OUT/plan.json`).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape as escape_markup
from rich.table import Table
from rich.text import Text

from sticc.base.jsonfile import write_files_atomic
from sticc.compile.plan_view import runner_plans, timeline_summary, title_of
from sticc.compile.report_sections import headline, sections
from sticc.compile.timeline_svg import TIMELINE_SVG, render_svg
from sticc.compile.timeline_text import BAR_IDLE, timeline_bar_lines

REPORT_MD = "report.md"
MD_BAR_WIDTH = 96


def render_markdown(plan: dict) -> str:
    """report.md: the plan's targets, solver, predictions (a decoder's resident set), shards,
    comparison and timelines (a decoder's prefill and decode step); an elastic runner's plans,
    deadline ranges, shared preload set and every plan's shed order and timeline."""
    lines = [f"# {title_of(plan)}", ""]
    if headline(plan):
        lines += [headline(plan), ""]
    parts = sections(plan)
    plans = runner_plans(plan)
    last_bar = max((n for n, section in enumerate(parts) if section.lane_bar), default=None)
    for n, section in enumerate(parts):
        lines += [f"## {section.title}", ""]
        if section.note:
            lines += [section.note, ""]
        if section.rows:
            lines += [*_markdown_table(section.header, section.rows), ""]
        if section.lane_bar:
            drawn = plans[section.lane_plan]
            lines += ["```", *timeline_bar_lines(drawn, MD_BAR_WIDTH, section.lane_bar), "```", ""]
            if n == last_bar and timeline_summary(drawn, section.lane_bar) is not None:
                lines += [f"![timeline]({TIMELINE_SVG})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _markdown_table(header: tuple[str, ...], rows: tuple[tuple[str, ...], ...]) -> list[str]:
    """A pipe table padded to equal column widths, so it reads as plain text too."""
    def clean(cell: str) -> str:
        return cell.replace("|", "\\|")

    cells = [[clean(c) for c in header], *[[clean(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    widths = [max(w, 3) for w in widths]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    return [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in cells[1:])]


def print_report(plan: dict, console: Console) -> None:
    """The report in the terminal: the same sections as report.md as rich tables, and the lane bars
    (a decoder's headline first: tokens/s, time to first token, the resident set)."""
    console.rule(f"[bold]{escape_markup(title_of(plan))}")
    if headline(plan):
        console.print(Text(headline(plan), style="bold"))
        console.print()
    for section in sections(plan):
        show_header = len(section.header) > 2 or bool(section.header[0])
        table = Table(title=section.title, title_justify="left", title_style="bold", show_header=show_header)
        for n, name in enumerate(section.header):
            table.add_column(name, justify="right" if section.shard_cells and n else "left", no_wrap=section.shard_cells)
        for row in section.rows:
            table.add_row(*(_shard_text(c) if section.shard_cells and 0 < n < len(row) - 2 else Text(c) for n, c in enumerate(row)))
        if section.rows:
            console.print(table)
        else:
            console.print(Text(section.title, style="bold"))
        if section.note:
            console.print(Text(section.note, style="dim"))
        if section.lane_bar:
            width = max(20, min(160, console.width - 12))
            for line in timeline_bar_lines(runner_plans(plan)[section.lane_plan], width, section.lane_bar):
                console.print(_bar_text(line), soft_wrap=True)
        console.print()


_BITS_STYLES = ((3, "red"), (5, "yellow"), (8, "green"))  # wider: cyan


def _shard_text(cell: str) -> Text:
    if cell in ("-", "?", ""):
        return Text(cell, style="dim")
    bits = int(cell.rstrip("*"))
    style = next((s for limit, s in _BITS_STYLES if bits <= limit), "cyan")
    return Text(cell, style=f"bold {style}" if cell.endswith("*") else style)


_BAR_STYLES = {"=": "blue", "#": "green", "+": "magenta", "e": "yellow", "!": "bold red", "w": "bold dark_orange",
               BAR_IDLE: "dim"}


def _bar_text(line: str) -> Text:
    if not line.startswith(("IO ", "compute ")):
        return Text(line, style="dim" if line.startswith("key:") else "")
    text = Text(line[:9])
    for char in line[9:]:
        text.append(char, style=_BAR_STYLES.get(char, ""))
    return text


def write_reports(out_dir: str | Path, plan: dict) -> list[Path]:
    """Write report.md and timeline.svg into `out_dir`; return their paths.

    Each is written under a unique temporary name, fsynced and renamed over the old one
    (`sticc.base.jsonfile.write_files_atomic`): a reader never sees half a file, though a crash between
    the two renames can leave one report new and the other old.
    """
    return write_files_atomic(out_dir, {REPORT_MD: render_markdown(plan), TIMELINE_SVG: render_svg(plan)})
