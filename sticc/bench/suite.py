"""`sticc bench`: a compiled runner against the baselines and peers, measured side by side.

Cases (docs/benchmarks.md says what each stands for):
- sticc: the runner in OUT, as compiled;
- preload: every weight in fp32 held in memory (embedding tables too), then one call;
- load-exec: a cold start: read every fp32 weight from the store, then one call;
- layerwise: full precision, layer by layer, the next layer block loaded while the current one
  computes, each freed after use (PipeSwitch / Hermes PIPELOAD) in sticc's runtime;
- greedy: STI's greedy plan for OUT's targets and profiles, in the same runtime;
- hf, hf-offload: transformers `from_pretrained` + forward, and with `device_map={"": "disk"}`
  (`sticc.bench.hf`), on the checkpoint the store was sharded from;
- ort, ort-int8: ONNX Runtime on that checkpoint exported to ONNX, fp32 and dynamically quantized to
  int8 (`sticc.bench.ort`), the session resident.

Every run is a fresh process (`sticc.bench.cases`); runs are interleaved across cases so drifts of a
shared machine spread evenly. Each case has one more, untimed-for-the-table profile run: the parent
samples its /proc/PID/status every millisecond (peak RSS split into anonymous and file-backed
pages) and it encodes the held-out sentences for fidelity against the fp32 model. Cases with a
cold-start mode (sticc, greedy, ort, ort-int8) also get as many fresh-process cold starts (construction
or session creation inside the timed call), interleaved with the timed runs.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from codegen import check_runner, emit_runner, load_runner, write_output
from codegen.literals import runner_literal
from sticc.base.errors import UserError
from sticc.base.measure import Spread
from sticc.base.progress import Progress
from sticc.base.schema import OPEN, read_bytes, read_file, with_config
from sticc.bench.cases import proc_status_bytes
from sticc.bench.ort import export_fp32, ort_spec, quantize_int8
from sticc.compile.plan_view import read_plan_json
from sticc.compile.planner import plan_for_targets
from sticc.ir.graph import ShardChoice
from sticc.ir.plan import Plan, RuntimeSettings, SolverInfo, make_plan, memory_model
from sticc.model.store import Store
from sticc.model.texts import EVAL_SENTENCES
from sticc.profile.device import DeviceProfile
from sticc.profile.importance import ImportanceProfile
from sticc.runtime.sentence import mean_pool

CASES = ("sticc", "preload", "load-exec", "layerwise", "greedy", "hf", "hf-offload", "ort", "ort-int8")
BASELINES = CASES[1:]
RSS_SAMPLE_PERIOD_S = 0.001



@dataclass(frozen=True)
class Subject:
    """What is benchmarked: the store, its model's facts, and the targets the runner was compiled for."""

    store_dir: Path
    model: str
    fp32_weight_bytes: int  # every weight of the model in fp32, embedding tables included
    random_weights: bool  # a random-weight checkpoint: latency and memory only
    checkpoint_dir: Path | None  # what the store was sharded from (the transformers cases read it)
    seq_len: int
    latency_target_s: float | None
    memory_target_bytes: int | None


@dataclass(frozen=True)
class Settings:
    runs: int
    cold: bool
    io_bandwidth_Bps: float | None  # emulated flash for every case (None: this disk)


@dataclass(frozen=True)
class Case:
    """One case to run: its name, a line on what it is, and the child process's spec."""

    name: str
    description: str
    spec: dict
    deadline_s: float | None = None  # the latency target its runs are checked against
    cold_start: bool = False  # also time Settings.runs cold starts: the spec with mode "cold-start"


@dataclass(frozen=True)
class CaseResult:
    name: str
    description: str
    latency_s: Spread  # over the timed runs
    setup_s: Spread  # untimed construction before the call
    deadline_met: int | None  # timed runs within the latency target (None: no target)
    runs: int
    peak_weight_bytes: int
    weight_bytes_method: str
    disk_read_bytes: int  # median over the timed runs
    peak_rss_bytes: int  # kernel peak RSS during the profile run's call, above the process's baseline
    peak_rss_anon_bytes: int  # sampled peaks during the call, above the baseline
    peak_rss_file_bytes: int
    cosine_mean: float | None  # fidelity against fp32 on the held-out sentences (None: random weights)
    cosine_min: float | None
    # fresh-process cold starts (construction or session creation + the first call), over Settings.runs;
    # None for cases without a separate cold-start mode (load-exec and hf are cold starts themselves)
    cold_start_s: Spread | None = None


# ----------------------------------------------------------------------------------------------
# The subject and the baseline plans
# ----------------------------------------------------------------------------------------------


@with_config(OPEN)
@dataclass(frozen=True)
class SourceConfigMark:
    """The one key of a checkpoint's config.json the benchmark reads: random weights are marked."""

    sticc_random_weights: bool = False


def subject_of(store: Store, plan_json: dict) -> Subject:
    source = store.source_dir
    checkpoint = source if source is not None and (source / "config.json").is_file() else None
    # the checkpoint's config, kept in the store: examples/random_checkpoint.py marks random weights
    config_path = store.path / "source_config.json"
    random_weights = config_path.is_file() and read_file(SourceConfigMark, config_path, "checkpoint config").sticc_random_weights
    targets = plan_json["targets"]
    return Subject(
        store.path, store.spec.name, store.spec.fp32_weight_nbytes, random_weights, checkpoint,
        targets["seq_len"], targets.get("latency_s"), targets.get("memory_bytes"),
    )


def _full_precision(store: Store, preload: bool) -> tuple[ShardChoice, ...]:
    if 32 not in store.bits:
        raise UserError(f"{store.path} has no fp32 versions (bits {list(store.bits)}): the baselines need them; shard with 32 in --bits")
    return tuple(
        ShardChoice(layer, index, 32, preload) for layer in range(store.spec.layers) for index in range(store.shards_per_layer)
    )


def preload_plan(store: Store, seq_len: int) -> Plan:
    """Every shard fp32 and preloaded, one chunk per layer block: no reads per call but embedding rows."""
    return make_plan(store, _full_precision(store, True), SolverInfo("preload", "GIVEN"), seq_len, shards_per_chunk=store.shards_per_layer)


def layerwise_plan(store: Store, seq_len: int, runtime: RuntimeSettings) -> Plan:
    """Every shard fp32 and streamed, a chunk per layer block, the ring admitting two blocks: one
    computed while the next is loaded."""
    shards = _full_precision(store, False)
    memory = memory_model(store, shards, store.shards_per_layer, seq_len)
    plan = make_plan(
        store, shards, SolverInfo("layerwise", "GIVEN"), seq_len, memory.default_budget_bytes,
        shards_per_chunk=store.shards_per_layer,
    )
    return replace(plan, runtime=runtime)


def greedy_plan(store: Store, out_dir: Path, subject: Subject) -> Plan:
    """STI's greedy plan for the targets and profiles OUT was compiled with."""
    device_path, importance_path = out_dir / "device.json", out_dir / "importance.json"
    if not device_path.is_file() or not importance_path.is_file():
        raise UserError(f"the greedy case needs {out_dir} compiled for targets (it has no device.json / importance.json)")
    device, importance = DeviceProfile.read(device_path), ImportanceProfile.read(importance_path)
    plan, _ = plan_for_targets(
        store, device, importance, subject.seq_len, subject.latency_target_s, subject.memory_target_bytes, "greedy",
    )
    return plan


# ----------------------------------------------------------------------------------------------
# Running cases
# ----------------------------------------------------------------------------------------------


def timing_ids(vocab: int, seq_len: int) -> list[int]:
    """`seq_len` distinct token ids (batch 1), the same for every case: every embedding row is a read."""
    first = min(999, max(0, vocab - seq_len))
    ids = torch.randperm(vocab - first, generator=torch.Generator().manual_seed(seq_len))[:seq_len] + first
    return ids.tolist()


def _sample_rss(pid: int, samples: list[tuple[float, int, int]], stop: threading.Event) -> None:
    """Append (monotonic s, RssAnon, RssFile) of process `pid` every RSS_SAMPLE_PERIOD_S until `stop`."""
    try:
        with open(f"/proc/{pid}/status", "rb", buffering=0) as status:
            while not stop.is_set():
                fields = proc_status_bytes(status.read().decode("ascii", "replace"))
                status.seek(0)
                if "RssAnon" in fields:
                    samples.append((time.monotonic(), fields["RssAnon"], fields["RssFile"]))
                time.sleep(RSS_SAMPLE_PERIOD_S)
    except (FileNotFoundError, ProcessLookupError):
        pass  # the process has exited


def run_child(spec: dict, sample_rss: bool, module: str = "sticc.bench.cases") -> tuple[dict, list[tuple[float, int, int]]]:
    """Run one case in a fresh `python -m module` process (spec on stdin): its result, and
    (monotonic s, anon, file) samples of its RSS when `sample_rss`."""
    command = [sys.executable, "-m", module]
    samples: list[tuple[float, int, int]] = []
    stop = threading.Event()
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        sampler = threading.Thread(target=_sample_rss, args=(child.pid, samples, stop), daemon=True)
        if sample_rss:
            sampler.start()
        try:
            stdout, stderr = child.communicate(json.dumps(spec))
        finally:
            stop.set()
            if sample_rss:
                sampler.join()
    if child.returncode != 0 or not stdout.strip():
        lines = stderr.strip().splitlines()
        raise UserError(f"case {spec['name']} failed: {lines[-1] if lines else f'exit code {child.returncode}'}")
    return json.loads(stdout.strip().splitlines()[-1]), samples


def rss_peaks_in_call(result: dict, samples: list[tuple[float, int, int]]) -> tuple[int, int]:
    """Peak anonymous and file-backed RSS above the child's baseline, over samples taken during its call."""
    start_s, end_s = result["call_window_s"]
    base = result["rss_baseline"]
    inside = [(anon, file) for t, anon, file in samples if start_s <= t <= end_s]
    if not inside and samples:  # a call shorter than the sampling period: the sample nearest its end
        inside = [min(samples, key=lambda sample: abs(sample[0] - end_s))[1:]]
    if not inside:
        return 0, 0
    return max(0, max(a for a, _ in inside) - base["anon"]), max(0, max(f for _, f in inside) - base["file"])


def cosines(embeddings: list[list[float]], reference: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(torch.tensor(embeddings, dtype=torch.float32), reference)


def run_cases(cases: list[Case], settings: Settings, reference: torch.Tensor | None, progress: Progress) -> list[CaseResult]:
    """Every case's timed runs and cold starts (interleaved) and its profile run; results in the cases' order."""
    timed: dict[str, list[dict]] = {case.name: [] for case in cases}
    cold_starts: dict[str, list[dict]] = {case.name: [] for case in cases}
    profiled: dict[str, tuple[dict, list]] = {}
    order = [(case, "profile") for case in cases] + [
        (case, kind) for _ in range(settings.runs) for case in cases
        for kind in (("timed", "cold-start") if case.cold_start else ("timed",))
    ]
    for case, kind in progress(iter(order), len(order), "benchmark runs"):
        if kind == "profile":
            profiled[case.name] = run_child(case.spec, sample_rss=True)
            continue
        spec = {key: value for key, value in case.spec.items() if key != "fidelity_inputs"}
        if kind == "cold-start":
            cold_starts[case.name].append(run_child({**spec, "mode": "cold-start"}, sample_rss=False)[0])
        else:
            timed[case.name].append(run_child(spec, sample_rss=False)[0])
    results = []
    for case in cases:
        runs = timed[case.name]
        profile, samples = profiled[case.name]
        anon, file = rss_peaks_in_call(profile, samples)
        latencies = [r["latency_s"] for r in runs]
        scores = cosines(profile["embeddings"], reference) if reference is not None and "embeddings" in profile else None
        deadline = case.deadline_s
        results.append(CaseResult(
            case.name, case.description, Spread.of(latencies), Spread.of([r["setup_s"] for r in runs]),
            None if deadline is None else sum(1 for t in latencies if t <= deadline), len(runs),
            max(r["peak_weight_bytes"] for r in [profile, *runs] if r["peak_weight_bytes"] is not None),
            profile["weight_bytes_method"],
            int(Spread.of([r["disk_read_bytes"] for r in runs]).median),
            max(0, profile["peak_rss_bytes"] - profile["rss_baseline"]["total"]), anon, file,
            None if scores is None else float(scores.mean()), None if scores is None else float(scores.min()),
            Spread.of([r["latency_s"] for r in cold_starts[case.name]]) if cold_starts[case.name] else None,
        ))
    return results


def runner_spec(name: str, runner: Path, store_dir: Path, settings: Settings, mode: str = "call", **extra) -> dict:
    """The child's spec for a generated runner (`sticc.bench.cases.RunnerCase`); input ids are added by the caller."""
    return {
        "name": name, "kind": "runner", "runner": str(runner), "store": str(store_dir), "mode": mode,
        "io_bandwidth_Bps": settings.io_bandwidth_Bps, "cold": settings.cold, **extra,
    }


def planned_case(name: str, description: str, plan: Plan, store: Store, subject: Subject, settings: Settings, work_dir: Path) -> Case:
    """A case running `plan`'s runner, generated into `work_dir / name`."""
    runner = write_output(work_dir / name, emit_runner(store, plan, store.path))
    return Case(name, description, runner_spec(name, runner, subject.store_dir, settings))


# the Python packages each peer needs beyond sticc's own (the `bench` extra)
PEER_MODULES = {
    "hf": ("transformers", "accelerate"), "hf-offload": ("transformers", "accelerate"),
    "ort": ("onnx", "onnxruntime", "transformers"), "ort-int8": ("onnx", "onnxruntime", "transformers"),
}


def check_peers(store: Store, subject: Subject, names: tuple[str, ...]) -> None:
    """One line (UserError) for the first peer among `names` that cannot run: a package missing, or no checkpoint."""
    for name in names:
        if name not in PEER_MODULES:
            continue
        missing = [m for m in PEER_MODULES[name] if importlib.util.find_spec(m) is None]
        if missing:
            raise UserError(f"the {name} case needs {' and '.join(missing)}: pip install 'sticc[bench]', or leave {name} out of --baselines")
        if subject.checkpoint_dir is None:
            raise UserError(f"the {name} case needs the checkpoint {store.path} was sharded from; it is gone")


def baseline_cases(
    store: Store, subject: Subject, settings: Settings, names: tuple[str, ...], runtime: RuntimeSettings, work_dir: Path,
) -> list[Case]:
    """The plan-independent baselines among `names` (preload, load-exec, layerwise, hf, hf-offload, ort, ort-int8);
    `runtime`: the sticc runner's settings, which layerwise shares. The ONNX models are exported here, into `work_dir`."""
    check_peers(store, subject, names)
    cases = []
    fp32_onnx = None
    preload = planned_case("preload", "every weight fp32 in memory (embedding tables too), then one call",
                           preload_plan(store, subject.seq_len), store, subject, settings, work_dir)
    for name in names:
        if name == "preload":
            cases.append(replace(preload, spec={**preload.spec, "pin_embeddings": True}))
        elif name == "load-exec":
            spec = {**preload.spec, "name": name, "mode": "cold-start", "pin_embeddings": True}
            cases.append(Case(name, "read every fp32 weight from the store, then one call (a cold start)", spec))
        elif name == "layerwise":
            cases.append(planned_case(
                name, "fp32 layer by layer, the next block loaded while one computes, each freed after use",
                layerwise_plan(store, subject.seq_len, runtime), store, subject, settings, work_dir,
            ))
        elif name in ("hf", "hf-offload"):
            offload = name == "hf-offload"
            spec = {
                "name": name, "kind": "hf", "checkpoint": str(subject.checkpoint_dir), "offload": offload,
                "work_dir": str(work_dir / name), "io_bandwidth_Bps": settings.io_bandwidth_Bps, "cold": settings.cold,
            }
            what = ('transformers with device_map={"": "disk"}: forward, weights streamed by accelerate' if offload
                    else "transformers: from_pretrained + forward (a cold start)")
            cases.append(Case(name, what, spec))
        elif name in ("ort", "ort-int8"):
            if fp32_onnx is None:
                fp32_onnx = export_fp32(subject.checkpoint_dir, work_dir / "ort" / "model.onnx")
            quantized = name == "ort-int8"
            model = quantize_int8(fp32_onnx, work_dir / name / "model.onnx") if quantized else fp32_onnx
            spec = ort_spec(name, model, "call", settings.io_bandwidth_Bps, settings.cold)
            what = ("ONNX Runtime, dynamic int8 quantization (quantize_dynamic, QInt8), session resident: one inference" if quantized
                    else "ONNX Runtime, fp32 export of the checkpoint, session resident: one inference")
            cases.append(Case(name, f"{what}; {spec['threads']} intra-op threads", spec, cold_start=True))
    return cases


def reference_embeddings(preload_runner: Path, store: Store, texts: tuple[str, ...]) -> tuple[dict, torch.Tensor]:
    """The inputs every case encodes for fidelity, and the fp32 model's pooled embeddings of them:
    `texts` tokenized, or, for a store without a tokenizer, as many seeded random token sequences."""
    runner = load_runner(preload_runner).Runner(str(store.path), warm_up=False)
    try:
        if store.has_tokenizer:
            ids, mask, types = runner.tokenize(list(texts))
        else:
            length = min(16, store.spec.max_positions)
            ids = torch.randint(0, store.spec.vocab, (len(texts), length), generator=torch.Generator().manual_seed(0))
            mask, types = torch.ones_like(ids), torch.zeros_like(ids)
        with torch.inference_mode():
            reference = mean_pool(runner.forward(ids, mask, types), mask)
    finally:
        runner.close()
    inputs = {"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "token_type_ids": types.tolist()}
    return inputs, reference


def open_output(out_dir: Path, store_dir: Path | None) -> tuple[dict, Store]:
    """OUT's plan.json (as a dict) and the store its runner reads (`store_dir`, or the runner's
    default); one line for anything amiss, a runner.py that is not as sticc writes it included
    (`check_output_runner`: the bench imports and runs it)."""
    out_dir = Path(out_dir)
    runner = out_dir / "runner.py"
    plan_json = read_plan_json(out_dir / "plan.json")
    if not runner.is_file():
        raise UserError(f"{out_dir} has no runner.py: give a directory written by `sticc compile`")
    store = Store.open(store_dir or runner_literal(runner, "DEFAULT_STORE", str))
    if plan_json["store_id"] != store.store_id:
        raise UserError(f"{store.path} is not the store {out_dir} was compiled for (store_id differs)")
    check_output_runner(runner, store.spec.is_decoder)
    return plan_json, store


def check_output_runner(path: Path, decoder: bool) -> None:
    """Refuse (one UserError line) a runner.py that is not exactly what codegen writes (its checker,
    `codegen.check_runner`: this sticc's runtime verbatim, literal data, a schedule
    of kernel calls), before anything imports it: an edited runner is code from an input."""
    try:
        text = read_bytes(path, f"{path} does not exist").decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a runner sticc wrote: it is not UTF-8 text") from None
    try:
        check_runner(text, decoder)
    except UserError as error:
        reason = str(error).removeprefix("refusing to write the runner: ").removesuffix(" (data from an input reached the runner as code)")
        raise UserError(f"refusing to run {path}: it is not the runner sticc writes ({reason}); compile it again") from None


def bench(
    out_dir: Path, store_dir: Path | None, settings: Settings, baselines: tuple[str, ...], progress: Progress,
) -> tuple[Subject, Settings, list[CaseResult]]:
    """Run `sticc bench` (see the module docstring); the settings as applied (the plan's emulated
    bandwidth when none was given)."""
    plan_json, store = open_output(out_dir, store_dir)
    if store.spec.is_decoder:
        raise UserError(
            f"{store.spec.name} is a decoder: its runner is benchmarked by "
            f"sticc.bench.decoder_suite.bench_decoder (`sticc bench` picks it)"
        )
    if settings.io_bandwidth_Bps is None:
        settings = replace(settings, io_bandwidth_Bps=plan_json.get("runtime", {}).get("io_bandwidth_cap_Bps"))
    subject = subject_of(store, plan_json)
    check_peers(store, subject, baselines)  # before any planning or export
    ids = timing_ids(store.spec.vocab, subject.seq_len)
    with tempfile.TemporaryDirectory(prefix="sticc-bench-") as work:
        work_dir = Path(work)
        cases = [Case("sticc", f"the runner in {out_dir}", runner_spec("sticc", out_dir / "runner.py", subject.store_dir, settings),
                      cold_start=True)]
        if "greedy" in baselines:
            greedy = planned_case("greedy", "STI's greedy plan for the same targets, same runtime",
                                  greedy_plan(store, out_dir, subject), store, subject, settings, work_dir)
            cases.append(replace(greedy, cold_start=True))
        runtime = RuntimeSettings(**plan_json.get("runtime", {}))
        cases += baseline_cases(store, subject, settings, baselines, runtime, work_dir)
        fidelity_inputs, reference = reference_embeddings(work_dir / "preload" / "runner.py", store, EVAL_SENTENCES)
        cases = [replace(c, spec={**c.spec, "input_ids": ids, "fidelity_inputs": fidelity_inputs}) for c in cases]
        cases = [replace(c, deadline_s=subject.latency_target_s) for c in cases]
        results = run_cases(cases, settings, None if subject.random_weights else reference, progress)
    return subject, settings, results


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------


def header_json(subject: Subject, settings: Settings) -> dict:
    """What was benchmarked and how: the head of `bench` and `sweep` JSON files."""
    def plain(value):
        return {k: plain(v) for k, v in value.items()} if isinstance(value, dict) else str(value) if isinstance(value, Path) else value

    return {"subject": plain(asdict(subject)), "settings": asdict(settings)}


def to_json(subject: Subject, settings: Settings, results: list[CaseResult]) -> dict:
    return {**header_json(subject, settings), "cases": [asdict(result) for result in results]}


def title(subject: Subject, settings: Settings) -> str:
    flash = f"emulated {settings.io_bandwidth_Bps / 1e6:.0f} MB/s flash" if settings.io_bandwidth_Bps else "this disk"
    weights = "RANDOM weights: latency and memory only, no fidelity" if subject.random_weights else "real weights"
    target = f"; deadline {subject.latency_target_s * 1e3:.0f} ms" if subject.latency_target_s else ""
    memory = f", budget {subject.memory_target_bytes / 1e6:.2f} MB" if subject.memory_target_bytes else ""
    return (f"{subject.model} ({weights}), {subject.seq_len} tokens, {flash}, "
            f"{'cold' if settings.cold else 'warm'} page cache, {settings.runs} fresh processes per case{target}{memory}")


def print_table(subject: Subject, settings: Settings, results: list[CaseResult], console) -> None:
    from rich.table import Table

    table = Table(title=title(subject, settings))
    for column in ("case", "latency ms min / med / max", "cold start ms (med)", "vs sticc", "deadline met", "peak weight MB (% fp32)",
                   "peak RSS MB anon / file", "disk read MB", "cosine mean / min"):
        table.add_column(column, justify="right" if column != "case" else "left")
    sticc_median = next((r.latency_s.median for r in results if r.name == "sticc"), None)
    for r in results:
        latency = r.latency_s
        table.add_row(
            r.name,
            f"{latency.min * 1e3:.1f} / {latency.median * 1e3:.1f} / {latency.max * 1e3:.1f}",
            "n/a" if r.cold_start_s is None else f"{r.cold_start_s.median * 1e3:.1f}",
            f"{latency.median / sticc_median:.2f}x" if sticc_median else "",
            "n/a" if r.deadline_met is None else f"{r.deadline_met}/{r.runs}",
            f"{r.peak_weight_bytes / 1e6:.2f} ({100 * r.peak_weight_bytes / subject.fp32_weight_bytes:.1f}%)",
            f"{r.peak_rss_anon_bytes / 1e6:.1f} / {r.peak_rss_file_bytes / 1e6:.1f}",
            f"{r.disk_read_bytes / 1e6:.1f}",
            "n/a" if r.cosine_mean is None else f"{r.cosine_mean:.4f} / {r.cosine_min:.4f}",
        )
    console.print(table)
    if any(r.cold_start_s is not None for r in results):
        console.print("  cold start: a fresh process builds the runner or ONNX Runtime session and runs the first call, "
                      "all timed (load-exec and hf are cold starts in their latency)")
    for r in results:
        console.print(f"  {r.name}: {r.description}; weight bytes: {r.weight_bytes_method}")
