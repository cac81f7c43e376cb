"""Concurrency and portability of runners: one runner called from several threads, several
processes on one store, concurrent writers of the profile cache, and a runner (and the bench's
reads and evictions) on a platform without posix_fadvise, preadv or O_DIRECT."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from helpers import compile_runner
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from codegen import emit_runner, load_runner, write_output
from solvers.uniform import uniform_plan
from sticc.ir.graph import ShardChoice
from sticc.ir.plan import SolverInfo, make_plan, memory_model
from sticc.model.store import Store, write_store
from sticc.runtime import core

ROOT = Path(__file__).resolve().parent.parent
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "a", "cat", "dog", "sat", "on", "mat", "ran", "."]
THREADS = 4


@pytest.fixture(scope="module")
def text_store(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """The tiny BERT with a word-level tokenizer.json (text input), stored at 4, 8 and 32 bits."""
    model_dir = tmp_path_factory.mktemp("ckpt") / "tiny-bert-text"
    shutil.copytree(tiny_bert, model_dir)
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    tokenizer.save(str(model_dir / "tokenizer.json"))
    out = tmp_path_factory.mktemp("stores") / "tiny-bert-text"
    write_store(model_dir, out, bits=(4, 8, 32))
    return out


def sentences(count: int, seed: int) -> list[str]:
    """`count` texts of different lengths (1 to 30 words) from the tokenizer's words."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS[4:]) for _ in range(rng.randint(1, 30))) for _ in range(count)]


def plans(store: Store) -> dict:
    """A default plan; a plan streaming everything through the smallest ring (it wraps); a plan
    with layer 0 pinned in place at 32 bits and layer 1 streamed at 4 bits."""
    tight = uniform_plan(store, 4, shards_per_chunk=1)
    minimum = memory_model(store, tight.shards, 1, tight.targets.seq_len).minimum_budget_bytes
    mixed = tuple(
        ShardChoice(c.layer, c.index, 32 if c.layer == 0 else 4, preload=c.layer == 0) for c in uniform_plan(store, 4).shards
    )
    return {
        "default": uniform_plan(store, 8),
        "tight": uniform_plan(store, 4, memory_bytes=minimum, shards_per_chunk=1),
        "mixed": make_plan(store, mixed, SolverInfo("hand", "GIVEN")),
    }


def jobs() -> list[tuple]:
    """Calls of every kind: encode on batches of texts of different lengths, forward on token ids
    of different shapes, with a trace and without."""
    found: list[tuple] = [("encode", sentences(n, seed)) for seed, n in enumerate((1, 3, 2, 5))]
    for seed, (batch, length) in enumerate(((1, 4), (2, 17), (3, 9), (1, 38))):
        ids = torch.randint(0, len(WORDS), (batch, length), generator=torch.Generator().manual_seed(seed))
        mask = torch.ones_like(ids)
        mask[0, length // 2 :] = 0 if batch > 1 else 1
        found.append(("forward", (ids, mask), seed % 2 == 0))  # traced or not
    return found


def call(runner, job: tuple) -> tuple:
    """(output, the call's stats) of one job on `runner`."""
    if job[0] == "encode":
        output = runner.encode(job[1], convert_to_tensor=True)
    else:
        trace = [] if job[2] else None
        output = runner.forward(*job[1], trace=trace)
        assert trace is None or trace[0].event == "call_start"
    time.sleep(0.02)  # a caller busy with its output before it reads the stats
    return output, dict(runner.last_stats)


def _run_to_the_end(threads: list, errors: list) -> None:
    """Start `threads`, wait for every one (2 minutes at most), and fail on any error they kept."""
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors


@pytest.mark.parametrize("plan_name", ["default", "tight", "mixed"])
def test_four_threads_on_one_runner_match_serial_calls(text_store, tmp_path, plan_name):
    store = Store.open(text_store)
    plan = plans(store)[plan_name]
    runner = compile_runner(text_store, plan, tmp_path)
    streamed = sum(load.ring_nbytes for load in runner.LOADS)
    if plan_name == "tight":  # the ring is smaller than what a call streams: it wraps every call
        assert 0 < runner.POOL.ring_nbytes < streamed
    if plan_name == "mixed":
        assert runner.pinned_chunks and streamed
    work = jobs()
    before = runner.reader.bytes_read
    serial = [call(runner, job) for job in work]
    serial_bytes = runner.reader.bytes_read - before
    assert serial_bytes == sum(stats["io_bytes"] for _, stats in serial) > 0

    # every thread runs every job once, each thread in its own order, all starting at once
    results: list[tuple] = []  # (job, output, stats)
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def serve(thread: int) -> None:
        order = random.Random(thread).sample(range(len(work)), len(work))
        try:
            start.wait()
            for k in order:
                results.append((k, *call(runner, work[k])))
        except BaseException as error:
            errors.append(error)

    before = runner.reader.bytes_read
    threads = [threading.Thread(target=serve, args=(t,)) for t in range(THREADS)]
    _run_to_the_end(threads, errors)
    assert sorted(k for k, _, _ in results) == sorted(list(range(len(work))) * THREADS)
    for k, output, stats in results:
        assert torch.equal(output, serial[k][0]), (plan_name, work[k][0], k)
        # each thread sees its own call's stats: the bytes are exact, the pool is the same
        assert stats["io_bytes"] == serial[k][1]["io_bytes"], (plan_name, k)
        assert stats["peak_weight_bytes"] == serial[k][1]["peak_weight_bytes"]
    assert runner.reader.bytes_read - before == THREADS * serial_bytes
    assert runner.last_stats == serial[-1][1]  # this thread sees its own last call, not the threads'
    runner.close()


def test_close_waits_for_the_call_in_progress(text_store, tmp_path):
    store = Store.open(text_store)
    out = tmp_path / "out"
    write_output(out, emit_runner(store, uniform_plan(store, 4), text_store))
    ids = torch.randint(0, len(WORDS), (2, 20), generator=torch.Generator().manual_seed(0))
    expected = compile_runner(text_store, uniform_plan(store, 4), tmp_path / "reference").forward(ids)
    runner = load_runner(out / "runner.py").Runner(str(text_store), io_bandwidth_Bps=200e3)  # a call of ~0.3 s
    trace: list = []
    result: list = []
    worker = threading.Thread(target=lambda: result.append(runner.forward(ids, trace=trace)))
    worker.start()
    while not trace and worker.is_alive():  # the call has begun
        time.sleep(0.001)
    runner.close()
    worker.join(timeout=60)
    assert not worker.is_alive() and torch.equal(result[0], expected)


# ----------------------------------------------------------------------------------------------
# Processes: runners on one store, a runner without posix_fadvise, preadv and O_DIRECT
# ----------------------------------------------------------------------------------------------

# loads a runner, says "ready", reads a JSON list of texts, encodes them a few times and prints
# the embeddings and whether the runner reads with O_DIRECT
DRIVER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("runner", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
runner = module.Runner(sys.argv[2], threads=int(sys.argv[3]))
print("ready", flush=True)
texts = json.loads(sys.stdin.readline())
embeddings = [runner.encode(texts).tolist() for _ in range(4)]
print(json.dumps({"direct": runner.reader.direct, "embeddings": embeddings}))
runner.close()
"""
# what macOS lacks, removed before the runner is imported
WITHOUT_LINUX_IO = "import os\nfor name in ('posix_fadvise', 'preadv', 'O_DIRECT'):\n    delattr(os, name)\n"


@pytest.fixture(scope="module")
def compiled(text_store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list]:
    """(runner.py of a streaming plan, texts, their embeddings from an in-process runner)."""
    store = Store.open(text_store)
    out = tmp_path_factory.mktemp("out")
    write_output(out, emit_runner(store, uniform_plan(store, 4), text_store))
    texts = sentences(3, seed=11)
    runner = load_runner(out / "runner.py").Runner(str(text_store))
    reference = runner.encode(texts).tolist()
    runner.close()
    return out / "runner.py", texts, reference


def start_driver(runner_py: Path, store_dir: Path, prelude: str = "") -> subprocess.Popen:
    argv = [sys.executable, "-c", prelude + DRIVER, str(runner_py), str(store_dir), str(torch.get_num_threads())]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_drivers(processes: list[subprocess.Popen], texts: list[str]) -> list[dict]:
    """Wait until every driver is ready, then give them their texts at once: their calls overlap."""
    for process in processes:
        assert process.stdout.readline() == "ready\n", process.communicate(timeout=60)[1]
    for process in processes:
        process.stdin.write(json.dumps(texts) + "\n")
        process.stdin.flush()
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        results.append(json.loads(out))
    return results


def test_two_processes_run_on_one_store_at_once(text_store, compiled):
    runner_py, texts, reference = compiled
    results = finish_drivers([start_driver(runner_py, text_store) for _ in range(2)], texts)
    for result in results:
        assert result["embeddings"] == [reference] * 4


def test_a_runner_without_fadvise_preadv_and_o_direct_gives_the_same_output(text_store, compiled):
    runner_py, texts, reference = compiled
    (result,) = finish_drivers([start_driver(runner_py, text_store, WITHOUT_LINUX_IO)], texts)
    assert result["direct"] is False and result["embeddings"] == [reference] * 4


@pytest.mark.parametrize("failing", ["open", "read"])
def test_a_file_system_refusing_o_direct_falls_back_to_buffered_reads(text_store, compiled, monkeypatch, failing):
    """tmpfs refuses O_DIRECT at open (EINVAL); some file systems only at the first read."""
    if not getattr(os, "O_DIRECT", 0):
        pytest.skip("no O_DIRECT on this platform")
    runner_py, texts, reference = compiled
    real_open, real_preadv = os.open, os.preadv
    direct_fds: set[int] = set()

    def fake_open(path, flags, *args, **kwargs):
        if flags & os.O_DIRECT:
            if failing == "open":
                raise OSError(errno.EINVAL, "Invalid argument")
            fd = real_open(path, flags, *args, **kwargs)
            direct_fds.add(fd)
            return fd
        return real_open(path, flags, *args, **kwargs)

    def fake_preadv(fd, buffers, offset, *args):
        if fd in direct_fds:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_preadv(fd, buffers, offset, *args)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "preadv", fake_preadv)
    runner = load_runner(runner_py).Runner(str(text_store))
    try:
        assert not runner.reader.direct
        assert runner.encode(texts).tolist() == reference
    finally:
        runner.close()
    assert failing == "open" or direct_fds  # the probe read was refused, its descriptor closed
    reader = core.StoreReader(str(Store.open(text_store).data_path))
    assert not reader.direct
    reader.close()


@pytest.mark.parametrize("linux_io", [True, False], ids=["linux", "without-preadv-and-fadvise"])
def test_the_bench_reads_and_evicts_without_preadv_and_fadvise(tmp_path, monkeypatch, linux_io):
    """The bench's throttled reads (`read_throttled`, through the runtime's `pread_into`) and its
    page-cache eviction run where os has no preadv and no posix_fadvise (macOS): the same bytes
    read; eviction says it could not evict."""
    from sticc.base.measure import evict_from_page_cache
    from sticc.bench import hf
    from sticc.bench.hf import Throttle, read_throttled

    data = random.Random(5).randbytes(hf._READ_BLOCK_BYTES + 4097)  # a whole block and a part
    path = tmp_path / "weights.bin"
    path.write_bytes(data)
    if not linux_io:
        monkeypatch.delattr(os, "preadv")
        monkeypatch.delattr(os, "posix_fadvise")
    assert evict_from_page_cache(path) is linux_io
    throttle = Throttle(1e15)
    read_throttled([path], throttle)
    assert throttle.read_bytes == len(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        view = memoryview(bytearray(len(data) + 10))
        assert core.pread_into(fd, view[4096:], 4096) == len(data) - 4096
        assert bytes(view[4096 : len(data)]) == data[4096:]
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------
# The profile cache: concurrent writers
# ----------------------------------------------------------------------------------------------

WRITER = """
import sys
from pathlib import Path
from sticc.base.cache import write_cached_json
for n in range(300):
    write_cached_json(Path(sys.argv[1]), {"writer": sys.argv[2], "n": n, "pad": "x" * 4096})
"""


def test_two_processes_writing_one_cache_entry_leave_a_whole_entry(tmp_path):
    path = tmp_path / "cache" / "0123456789abcdef" / "entry.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name], env=env, stderr=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    from sticc.base.cache import read_cached_json

    reads = 0
    while any(writer.poll() is None for writer in writers):
        if path.exists():  # a reader sees a whole entry, never half of one
            assert read_cached_json(path) is not None
            reads += 1
    for writer in writers:
        assert writer.wait() == 0, writer.stderr.read()
    entry = read_cached_json(path)
    assert entry is not None and entry["n"] == 299 and entry["writer"] in ("a", "b")
    assert os.listdir(path.parent) == [path.name]  # no temporary file left


# what `sticc profile importance` and `sticc compile` run to fill the cache, with one worker
PROFILER = """
import sys
from sticc.profile.measure_importance import cached_importance
from sticc.model.store import Store
cached_importance(Store.open(sys.argv[1]), None, workers=1)
"""


def test_two_profilers_fill_the_cache_at_once(tiny_bert, tmp_path, monkeypatch):
    from sticc.profile.importance import ImportanceProfile
    from sticc.profile.measure_importance import cached_importance

    store_dir = tmp_path / "store"  # the cheapest store to profile: 2 shards at 4 bits against 8
    write_store(tiny_bert, store_dir, bits=(4, 8), shards_per_layer=1)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STICC_CACHE_DIR": str(tmp_path / "cache")}
    profilers = [
        subprocess.Popen([sys.executable, "-c", PROFILER, str(store_dir)], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for profiler in profilers:
        assert profiler.wait(timeout=120) == 0, profiler.stderr.read()
    (folder,) = (tmp_path / "cache").iterdir()
    (entry,) = folder.iterdir()  # one entry, no temporary file left
    monkeypatch.setenv("STICC_CACHE_DIR", env["STICC_CACHE_DIR"])
    profile, path, hit = cached_importance(Store.open(store_dir), None, workers=1)
    assert hit and path == entry and profile == ImportanceProfile.read(entry)


# ----------------------------------------------------------------------------------------------
# Decoders: generations from several threads on one runner (it holds one KV cache)
# ----------------------------------------------------------------------------------------------


def decoder_runner(tiny_decoders, out: Path):
    """The tiny Llama at 8 bits over its 64 positions, never stopping early (random weights)."""
    _, store_dir = tiny_decoders["llama"]
    runner = compile_runner(store_dir, uniform_plan(Store.open(store_dir), 8, seq_len=8, context=64), out)
    runner.SHAPE = runner.SHAPE.__class__(**{**runner.SHAPE.__dict__, "eos_token_ids": ()})
    return runner


def test_four_threads_generating_on_one_decoder_runner_match_serial_generations(tiny_decoders, tmp_path):
    runner = decoder_runner(tiny_decoders, tmp_path)
    prompts = [torch.randint(3, 300, (n,), generator=torch.Generator().manual_seed(n)).tolist() for n in (3, 11, 6, 17)]
    ids = torch.randint(3, 300, (1, 9), generator=torch.Generator().manual_seed(0))
    serial = [(list(runner.generate_ids(prompt, 24)), dict(runner.generation_stats)) for prompt in prompts]
    serial_logits, _ = runner.forward(ids)
    serial_io = runner.last_stats["io_bytes"]

    # four threads generate while a fifth starts new sequences with `forward`, all starting at once
    results: dict = {}
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS + 1)

    def generate(thread: int) -> None:
        try:
            start.wait()
            tokens = []
            for token in runner.generate_ids(prompts[thread], 24):
                tokens.append(token)
                time.sleep(0.002)  # a consumer busy between tokens: another call could come in between
            results[thread] = (tokens, dict(runner.generation_stats))
        except BaseException as error:
            errors.append(error)

    def forward() -> None:
        try:
            start.wait()
            results["forward"] = [(runner.forward(ids)[0], runner.last_stats["io_bytes"]) for _ in range(3)]
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=generate, args=(t,)) for t in range(THREADS)] + [threading.Thread(target=forward)]
    _run_to_the_end(threads, errors)
    for t, prompt in enumerate(prompts):
        tokens, stats = results[t]
        assert tokens == serial[t][0], t
        # each thread sees its own generation's stats
        assert stats["prompt_tokens"] == len(prompt) and stats["tokens"] == 24 and len(stats["token_latency_s"]) == 23
        assert stats["prefill_io_bytes"] == serial[t][1]["prefill_io_bytes"]
        assert stats["io_bytes_per_token"] == serial[t][1]["io_bytes_per_token"]
    for logits, io_bytes in results["forward"]:
        assert torch.equal(logits, serial_logits) and io_bytes == serial_io
    assert runner.generation_stats == serial[-1][1]  # this thread sees its own last generation, not the threads'
    runner.close()


def test_a_generation_holds_the_decoder_runner_until_it_ends_on_any_thread(tiny_decoders, tmp_path):
    runner = decoder_runner(tiny_decoders, tmp_path)
    prompt = [5, 6, 7]
    ids = torch.randint(3, 300, (1, 9), generator=torch.Generator().manual_seed(0))
    expected = list(runner.generate_ids(prompt, 16))
    expected_logits, _ = runner.forward(ids)
    generation = runner.generate_ids(prompt, 16)
    produced = [next(generation)]  # the prefill is done: the generation holds the runner
    waited: list = []
    caller = threading.Thread(target=lambda: waited.append(runner.forward(ids)[0]))
    caller.start()
    time.sleep(0.3)
    assert caller.is_alive() and not waited  # another thread's call waits for the generation
    stepper = threading.Thread(target=lambda: produced.extend(generation))  # the rest of it on another thread
    stepper.start()
    stepper.join(timeout=60)
    caller.join(timeout=60)
    assert not stepper.is_alive() and not caller.is_alive()
    assert produced == expected and torch.equal(waited[0], expected_logits)
    # the generation's own thread is not made to wait (no deadlock): its call starts a new sequence,
    # and the generation it displaced raises at its next step, and gives the runner back
    generation = runner.generate_ids(prompt, 16)
    next(generation)
    assert torch.equal(runner.forward(ids)[0], expected_logits)
    with pytest.raises(ValueError, match="not the state"):
        next(generation)
    caller = threading.Thread(target=lambda: waited.append(runner.forward(ids)[0]))
    caller.start()
    caller.join(timeout=60)
    assert not caller.is_alive() and torch.equal(waited[-1], expected_logits)
    runner.close()
