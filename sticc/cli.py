"""The `sticc` command line (typer). Every user error is one line on stderr and a non-zero exit."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from typer import Abort, Exit

try:  # recent typer vendors click and raises its own usage errors; older releases use click's
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import ClickException
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sticc.errors import UserError
from sticc.runtime import parse_quantity

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="sticc: compile transformer inference into a runner that streams quantized shards.",
)
stderr = Console(stderr=True)


def progress_bar(items: Iterator, total: int, what: str) -> Iterator:
    """A progress bar on stderr (plain lines when stderr is not a terminal)."""
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=stderr, transient=not stderr.is_terminal,
    ) as progress:
        task = progress.add_task(what, total=total)
        for item in items:
            yield item
            progress.advance(task)


def _quantity(text: str | None, unit: str, flag: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_quantity(text, unit)
    except ValueError as error:
        raise UserError(f"{flag}: {error}") from None


def _bits_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(f"--bits {text!r} must be a comma-separated list of integers, e.g. 2,4,8,32") from None


@app.command()
def shard(
    model_dir: Annotated[Path, typer.Argument(help="HF checkpoint directory (config.json + safetensors)")],
    out: Annotated[Path, typer.Option("-o", "--out", help="store directory to write")],
    bits: Annotated[str, typer.Option(help="bitwidths to store every shard at")] = "2,3,4,5,6,8,16,32",
    shards_per_layer: Annotated[int | None, typer.Option(help="shards per layer (default: one per head)")] = None,
    group_size: Annotated[int, typer.Option(help="weights per quantization group")] = 64,
) -> None:
    """Cut a checkpoint into shards, quantize each at every bitwidth, and write a store."""
    from sticc.store import write_store

    store = write_store(model_dir, out, _bits_list(bits), shards_per_layer, group_size, progress_bar)
    size = store.data_path.stat().st_size
    print(f"wrote {out}: {store.spec.name}, {store.spec.layers} layers x {store.shards_per_layer} shards, "
          f"bits {list(store.bits)}, {size / 1e6:.1f} MB")


@app.command(name="compile")
def compile_(
    store_dir: Annotated[Path, typer.Argument(help="a store written by `sticc shard`")],
    out: Annotated[Path, typer.Option("-o", "--out", help="output directory for runner.py and plan.json")],
    bits: Annotated[int | None, typer.Option(help="uniform plan: every shard at this bitwidth, nothing preloaded")] = None,
    plan: Annotated[Path | None, typer.Option(help="a hand-written plan JSON (see docs/plan-schema.md)")] = None,
    memory: Annotated[str | None, typer.Option(help="weight memory budget the runner enforces, e.g. 8MB")] = None,
    seq_len: Annotated[int | None, typer.Option(help="sequence length the plan is sized for (default 128)")] = None,
    shards_per_chunk: Annotated[
        int | None, typer.Option(help="kept shards loaded and computed together (default: a quarter of a layer; fewer need less memory)")
    ] = None,
) -> None:
    """Generate a runner for a uniform or hand-written plan."""
    from codegen import emit_runner, write_output
    from solvers.uniform import uniform_plan
    from sticc.plan import read_plan
    from sticc.store import Store

    if (bits is None) == (plan is None):
        raise UserError("give exactly one of --bits N or --plan FILE")
    memory_bytes = _quantity(memory, "B", "--memory")
    memory_bytes = None if memory_bytes is None else int(memory_bytes)
    store = Store.open(store_dir)
    if bits is not None:
        the_plan = uniform_plan(store, bits, seq_len, memory_bytes, shards_per_chunk)
    else:
        the_plan = read_plan(store, plan, seq_len, memory_bytes, shards_per_chunk)
    source = emit_runner(store, the_plan, store_dir)
    runner = write_output(out, source)
    predicted = the_plan.predicted
    print(f"wrote {runner} (plan {source.plan_hash[:12]}): pool budget {the_plan.memory_budget_bytes / 1e6:.2f} MB, "
          f"IO {predicted.io_bytes / 1e6:.2f} MB/call, preload {predicted.preload_bytes / 1e6:.2f} MB")


@app.command()
def verify(store_dir: Annotated[Path, typer.Argument(help="a store written by `sticc shard`")]) -> None:
    """Check every blob of a store against its checksum."""
    from sticc.store import Store, verify_store

    store = Store.open(store_dir)
    problems = verify_store(store, progress_bar)
    if problems:
        for problem in problems[:20]:
            print(f"corrupt: {problem}", file=sys.stderr)
        more = " (first 20 shown)" if len(problems) > 20 else ""
        raise UserError(f"{store_dir}: {len(problems)} corrupt blobs{more}")
    print(f"{store_dir}: {len(store.versions)} shard versions, headers and embedding rows all match their checksums")


def main(argv: list[str] | None = None) -> int:
    """Entry point: usage and user errors become one line and a non-zero exit."""
    try:
        app(args=argv, standalone_mode=False)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except ClickException as error:  # usage errors: unknown flags, missing arguments
        if type(error).__name__ == "NoArgsIsHelpError":  # bare `sticc`: the help was printed
            return 0
        print(f"error: {error.format_message()}", file=sys.stderr)
        return 1
    except Abort:
        print("error: aborted", file=sys.stderr)
        return 1
    except Exit as done:
        return done.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
