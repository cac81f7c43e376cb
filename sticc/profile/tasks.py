"""Measurement tasks run in this process or in spawned worker processes (the importance profilers).

A profiler gives `TaskRunner` a module-level `start(*args)` that builds its measurer (spawned
workers call it too, so it must be importable and its arguments plain data: no tensors are
pickled); a measurer answers `run(task) -> result` and `close()`. Every task runs with one torch
thread whichever process runs it, so a profile does not depend on the worker count.

`measure_losses` is both profilers' run: every shard's task, then the additivity check's random plans.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

import torch

from sticc.base.errors import UserError
from sticc.base.progress import Progress
from sticc.model.store import Store
from sticc.profile.importance import ADDITIVITY_SEED, AdditivityRecord, additivity_summary, random_plans
from sticc.runtime.core import StoreError


class Measurer(Protocol):
    def run(self, task: tuple) -> tuple: ...

    def close(self) -> None: ...


_WORKER: Measurer | None = None
_WORKER_ERROR: BaseException | None = None


def _start_worker(start: Callable[..., Measurer], args: tuple) -> None:
    """Pool initializer: one torch thread, the measurer built here."""
    global _WORKER, _WORKER_ERROR
    torch.set_num_threads(1)
    try:
        _WORKER = start(*args)
    except BaseException as error:  # raised by the first task, so the caller sees the real error
        _WORKER_ERROR = error


def _run_task(task: tuple) -> tuple:
    if _WORKER is None:
        raise _WORKER_ERROR or RuntimeError("importance worker was not started")
    return _WORKER.run(task)


class TaskRunner:
    """Runs tasks in `workers` spawned processes, or in this one when workers == 1 (with one torch
    thread too, so results are the same bits either way)."""

    def __init__(self, start: Callable[..., Measurer], args: tuple, workers: int) -> None:
        self._executor: ProcessPoolExecutor | None = None
        self._measurer: Measurer | None = None
        self._threads = torch.get_num_threads()
        if workers == 1:
            torch.set_num_threads(1)
            try:
                self._measurer = start(*args)
            except BaseException:
                torch.set_num_threads(self._threads)
                raise
        else:
            self._executor = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"),  # torch and fork do not mix
                initializer=_start_worker, initargs=(start, args),
            )

    def results(self, tasks: list[tuple]) -> Iterator[tuple]:
        """Each task's result, in the order they finish."""
        if self._executor is None:
            for task in tasks:
                yield self._measurer.run(task)
            return
        futures = [self._executor.submit(_run_task, task) for task in tasks]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BrokenProcessPool:
            raise RuntimeError(
                "an importance worker process died; a script that measures with workers > 1 must call "
                "it under `if __name__ == '__main__':` (processes are spawned)"
            ) from None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        if self._measurer is not None:
            self._measurer.close()
            torch.set_num_threads(self._threads)


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def worker_count(workers: int | None, additivity_plans: int) -> int:
    """The workers to use (None: `default_workers`), after checking both counts."""
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise UserError(f"workers must be at least 1, not {workers}")
    if additivity_plans < 0:
        raise UserError(f"additivity plans must be 0 or more, not {additivity_plans}")
    return workers


def measure_losses(
    store: Store, start: Callable[..., Measurer], args: tuple, tasks: list[tuple], reference: int,
    workers: int | None, additivity_plans: int, progress: Progress, what: str,
) -> tuple[dict[tuple[int, int], dict[int, float]], AdditivityRecord]:
    """({position: {bits: loss}}, the additivity check) from `tasks`, one per shard, each answered
    (kind, position, {bits: loss}) by the measurers `start(*args)` builds (the `reference` bits lose
    nothing), then `additivity_plans` random whole plans measured against the sum of their losses."""
    workers = worker_count(workers, additivity_plans)
    loss: dict[tuple[int, int], dict[int, float]] = {}
    runner = None
    try:
        runner = TaskRunner(start, args, min(workers, len(tasks)))
        for _, position, losses in progress(iter(runner.results(tasks)), len(tasks), what):
            loss[position] = {reference: 0.0, **losses}
        additivity = AdditivityRecord()
        if additivity_plans:
            plans = random_plans(store, additivity_plans, ADDITIVITY_SEED)
            plan_tasks = [("plan", k, plan.bits) for k, plan in enumerate(plans)]
            measured = {}
            for _, k, value in progress(iter(runner.results(plan_tasks)), len(plan_tasks), "measuring random plans"):
                measured[k] = value
            additivity = additivity_summary(plans, [measured[k] for k in range(len(plans))], loss)
    except StoreError as error:
        raise UserError(str(error)) from None
    finally:
        if runner is not None:
            runner.close()
    return loss, additivity
