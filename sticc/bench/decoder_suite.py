"""`sticc bench OUT` for a decoder runner: generation against the baselines and peers, side by side.

Cases (docs/benchmarks.md, "Decoders", says what each stands for):
- sticc: the runner in OUT, as compiled;
- preload: sticc's runtime, every weight fp32 and resident (the embedding table pinned too),
  loaded once at construction; nothing is read per token;
- layerwise: sticc's runtime, every weight fp32 streamed: one chunk per layer block, every token
  reads every layer's weights again with direct IO (nothing cached across tokens), in a pool of
  the runner's size, or the least one fp32 layer block needs where that is more (AirLLM / PIPELOAD);
- hf: transformers `AutoModelForCausalLM.from_pretrained` on the fp32 checkpoint (an HF directory,
  or for a GGUF store the fp32 model transformers dequantizes it to, saved once into sticc's cache);
- hf-offload: the same with accelerate offloading to disk (`device_map="auto"`, `max_memory` of CPU
  memory = the runner's weight pool, `offload_folder` in the bench's work directory);
- llama.cpp: llama-cpp-python (the `llama-cpp` extra) on the GGUF file the store was sharded from.

Every run is a fresh `python -m sticc.bench.decoder_cases` process that loads, prefills the prompt
(the plan's prompt length, from the held-out text) and decodes `new_tokens` greedily. A reference
run first (sticc's runtime at fp32, every weight resident: the fp32 model, equal to transformers'
within 1e-4 in logits, docs/decoders.md) gives the greedy continuations every case is scored
against. Each case then has one profile run (the parent samples its /proc/PID/status every
millisecond, and it computes perplexity and greedy agreement after decoding) and `runs` timed runs,
interleaved across cases so drifts of a shared machine spread evenly.
"""

from __future__ import annotations

import gc
import importlib.metadata
import importlib.util
import math
import shutil
import statistics
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from codegen import emit_runner, write_output
from sticc.base.cache import cache_dir
from sticc.base.errors import UserError
from sticc.base.jsonfile import fsync_file, make_staging_dir, replace_dir, write_bytes_atomic, write_json_atomic
from sticc.base.measure import Spread
from sticc.base.progress import Progress
from sticc.bench.suite import Settings, open_output, rss_peaks_in_call, run_child
from sticc.ir.graph import ShardChoice
from sticc.ir.plan import Plan, SolverInfo, make_plan, memory_model, store_positions
from sticc.model.store import Store
from sticc.runtime.core import load_tokenizer

DECODER_CASES = ("sticc", "preload", "layerwise", "hf", "hf-offload", "llama.cpp")
DECODER_BASELINES = DECODER_CASES[1:]
DEFAULT_NEW_TOKENS = 32  # decoded per timed run (time to first token, then new_tokens - 1 calls)
DEFAULT_AGREEMENT_TOKENS = 64  # reference tokens per agreement prompt
AGREEMENT_PROMPTS = 4  # windows of the held-out text, the timing prompt first
RANDOM_TEXT_TOKENS = 128  # a store without a tokenizer (random-weight checkpoints): seeded random ids
HELDOUT_TEXT = Path(__file__).resolve().parents[2] / "examples" / "texts" / "heldout.txt"
# the Python packages each peer needs beyond sticc's own (the `bench` and `llama-cpp` extras)
PEER_MODULES = {"hf": ("transformers", "accelerate"), "hf-offload": ("transformers", "accelerate"), "llama.cpp": ("llama_cpp",)}
MB = 1e6


@dataclass(frozen=True)
class DecoderSubject:
    """What is benchmarked, and the text and prompts every case runs."""

    model: str
    runner: str
    store_dir: str
    source: str | None  # what the store was sharded from (a GGUF file or an HF directory)
    fp32_weight_bytes: int
    random_weights: bool
    prompt_tokens: int  # the plan's prompt length (targets.seq_len): the timing prompt
    context: int  # positions the runner's KV cache holds (targets.context)
    runner_pool_bytes: int  # the runner's weight pool (the plan's predicted peak weight bytes)
    io_bytes_per_token: int | None  # the plan's prediction for the runner
    token_latency_target_s: float | None  # the plan's targets (planned decoders), None for given plans
    first_token_target_s: float | None
    predicted_token_latency_s: float | None  # the plan's predicted medians (planned decoders)
    predicted_first_token_s: float | None
    new_tokens: int
    text: str  # the held-out text file, or "random token ids"
    text_tokens: int  # the perplexity text's length (cut to the context)
    agreement_prompts: int
    agreement_tokens: int
    reference: str
    reference_perplexity: float | None


@dataclass(frozen=True)
class DecoderCase:
    name: str
    description: str
    spec: dict


@dataclass(frozen=True)
class DecoderCaseResult:
    name: str
    description: str
    runs: int
    load_s: Spread  # construction / from_pretrained / Llama(), cold page cache (timed runs)
    ttft_s: Spread  # prefill of the prompt + the first token's argmax, the model loaded
    token_latency_s: Spread  # every decode call of every timed run
    tokens_per_s: float  # decode calls / their total time, median over the timed runs
    weight_bytes: int | None
    weight_bytes_method: str
    kv_cache_bytes: int | None  # at the end of decoding (sticc: allocated for the whole context)
    rss_anon_bytes: int  # resident at the end of decoding, above the process's baseline (profile run)
    rss_file_bytes: int
    weights_file_rss_bytes: int  # of RssFile at the end of decoding, the weights files' mapped pages (the rest: libraries)
    peak_rss_anon_bytes: int  # sampled every 1 ms over loading + decoding (profile run), above the baseline
    peak_rss_file_bytes: int
    peak_rss_bytes: int  # the kernel's VmHWM over loading + decoding, above the baseline
    disk_read_load_bytes: int  # median over the timed runs
    disk_read_prefill_bytes: int
    disk_read_per_token_bytes: int  # median over every decode call of every timed run
    perplexity: float | None
    greedy_agree: int | None  # teacher-forced: positions whose argmax is the reference's greedy token
    greedy_total: int | None
    identical_prefix: int  # of the timed run's greedy tokens, how many lead identical to the reference's

    @property
    def greedy_agreement(self) -> float | None:
        return None if not self.greedy_total else self.greedy_agree / self.greedy_total


@dataclass(frozen=True)
class DecoderBench:
    subject: DecoderSubject
    settings: Settings
    results: list[DecoderCaseResult]
    skipped: dict[str, str] = field(default_factory=dict)  # case -> why it did not run here

    def to_json(self) -> dict:
        return {
            "kind": "decoder", "subject": asdict(self.subject), "settings": asdict(self.settings),
            "cases": [{**asdict(r), "greedy_agreement": r.greedy_agreement} for r in self.results],
            "skipped": dict(self.skipped),
        }


# ----------------------------------------------------------------------------------------------
# The subject, the plans and the peers' inputs
# ----------------------------------------------------------------------------------------------


def is_decoder_output(out_dir: Path, store_dir: Path | None = None) -> bool:
    """Whether the runner in OUT (`sticc compile` output) is a decoder's: `sticc bench` then calls `bench_decoder`."""
    return open_output(out_dir, store_dir)[1].spec.is_decoder


def fp32_shards(store: Store, preload: bool) -> tuple[ShardChoice, ...]:
    """Every shard and LM head slice at 32 bits."""
    if 32 not in store.bits:
        raise UserError(f"{store.path} has no fp32 versions (bits {list(store.bits)}): the reference and the "
                        f"preload and layerwise baselines need them; shard with 32 in --bits")
    return tuple(ShardChoice(layer, index, 32, preload) for layer, index in store_positions(store))


def decoder_preload_plan(store: Store, seq_len: int, context: int) -> Plan:
    """Every shard fp32 and preloaded, pinned in place in whole-layer-block chunks."""
    return make_plan(store, fp32_shards(store, True), SolverInfo("preload", "GIVEN"), seq_len,
                     shards_per_chunk=store.shards_per_layer, context=context)


def decoder_layerwise_plan(store: Store, seq_len: int, context: int, pool_bytes: int) -> Plan:
    """Every shard fp32 and streamed, one chunk per layer block, in a pool of `pool_bytes`, or the
    least that admits one fp32 chunk where that is more (IO and compute then take turns)."""
    shards = fp32_shards(store, False)
    memory = memory_model(store, shards, store.shards_per_layer, seq_len)
    return make_plan(store, shards, SolverInfo("layerwise", "GIVEN"), seq_len, max(pool_bytes, memory.minimum_budget_bytes),
                     shards_per_chunk=store.shards_per_layer, context=context)


def _plan_runner(plan: Plan, store: Store, work_dir: Path, name: str) -> Path:
    return write_output(work_dir / name, emit_runner(store, plan, store.path))


def hf_checkpoint(store: Store) -> Path:
    """The fp32 checkpoint the transformers cases load: the HF directory the store was sharded from,
    or for a GGUF file the fp32 model transformers dequantizes it to (`from_pretrained(...,
    gguf_file=...)`), saved once as safetensors into sticc's cache beside the store's profiles."""
    source = store.source_dir
    if source is None or not source.exists():
        raise UserError(f"the checkpoint {store.spec.name} was sharded from is not at {source}")
    if source.is_dir():
        if not (source / "config.json").is_file():
            raise UserError(f"{source} has no config.json")
        return source
    out = cache_dir(store.store_id) / "hf-fp32"
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    import transformers
    from safetensors.torch import save_file

    transformers.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    model = transformers.AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    staging = make_staging_dir(out)
    try:
        # save_pretrained refuses a model loaded from a GGUF file ("quantized with gguf"), though its
        # weights are plain fp32 tensors: the config and the weights are written as it would write
        # them, a tied LM head once, under the embedding's name (accelerate's offload index needs it)
        model.config.save_pretrained(staging)
        tensors, seen = {}, set()
        for name, tensor in model.state_dict().items():
            if tensor.data_ptr() not in seen:
                seen.add(tensor.data_ptr())
                tensors[name] = tensor.contiguous()
        save_file(tensors, str(staging / "model.safetensors"), metadata={"format": "pt"})
        del model
        gc.collect()
        for path in staging.iterdir():
            fsync_file(path)
        replace_dir(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _missing_modules(name: str) -> list[str]:
    return [module for module in PEER_MODULES.get(name, ()) if importlib.util.find_spec(module) is None]


def peer_skip_reason(name: str, store: Store) -> str | None:
    """Why peer `name` cannot run here (one line), or None."""
    missing = _missing_modules(name)
    if missing:
        extra = "pip install 'sticc[llama-cpp]' (builds llama.cpp from source: many minutes)" if name == "llama.cpp" \
            else "pip install 'sticc[bench]'"
        return f"{name} skipped: {', '.join(missing)} not installed ({extra})"
    source = store.source_dir
    if source is None or not source.exists():
        return f"{name} skipped: the checkpoint the store was sharded from is not at {source}"
    if name == "llama.cpp" and source.suffix.lower() != ".gguf":
        return f"llama.cpp skipped: it reads GGUF files, and {store.spec.name} was sharded from {source}"
    return None


def _texts(store: Store, text_path: Path | None, context: int) -> tuple[list[int], str]:
    """The held-out text's token ids, and what they are."""
    if not store.has_tokenizer:
        generator = torch.Generator().manual_seed(0)
        return torch.randint(0, store.spec.vocab, (RANDOM_TEXT_TOKENS,), generator=generator).tolist(), "random token ids"
    path = Path(text_path) if text_path is not None else HELDOUT_TEXT
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read the held-out text {path}: {error}") from None
    ids = load_tokenizer(str(store.path)).encode(text).ids
    if len(ids) < 2:
        raise UserError(f"the held-out text {path} has fewer than 2 tokens")
    return ids, str(path)


def _windows(ids: list[int], length: int, count: int) -> list[list[int]]:
    """`count` windows of `length` tokens, evenly spaced over `ids` (cycled when `ids` is shorter)."""
    if len(ids) < length:
        ids = (ids * (length // len(ids) + 1))[: max(length, len(ids))]
    last = len(ids) - length
    starts = sorted({round(i * last / max(1, count - 1)) for i in range(count)})
    return [ids[start : start + length] for start in starts]


def _describe_bytes(nbytes: int) -> str:
    return f"{nbytes / MB:.2f} MB"


def build_cases(
    out_dir: Path, store: Store, plan_json: dict, settings: Settings, baselines: tuple[str, ...], work_dir: Path,
) -> tuple[list[DecoderCase], DecoderCase, dict[str, str]]:
    """The cases (specs without prompt and fidelity inputs), the reference's case, and the peers skipped here."""
    seq_len, context = plan_json["targets"]["seq_len"], plan_json["targets"]["context"]
    pool = plan_json["predicted"]["peak_weight_bytes"]
    common = {"cold": settings.cold, "io_bandwidth_Bps": settings.io_bandwidth_Bps}

    def runner_spec(name: str, runner: Path, **extra) -> dict:
        return {"name": name, "kind": "runner", "runner": str(runner), "store": str(store.path), **common, **extra}

    io_token = plan_json["predicted"].get("io_bytes_per_token")
    cases = [DecoderCase(
        "sticc", f"the runner in {out_dir} as compiled: {_describe_bytes(pool)} weight pool"
        + (f", reads {_describe_bytes(io_token)} a token (direct IO)" if io_token is not None else ""),
        runner_spec("sticc", Path(out_dir) / "runner.py"),
    )]
    preload = decoder_preload_plan(store, seq_len, context)
    preload_runner = _plan_runner(preload, store, work_dir, "preload")
    reference = DecoderCase("reference", "sticc's runtime at fp32, every weight resident",
                            runner_spec("reference", preload_runner, pin_embeddings=True, mode="reference"))
    skipped: dict[str, str] = {}
    for name in baselines:
        if name == "preload":
            cases.append(DecoderCase(
                "preload", "sticc's runtime, every shard and LM head slice fp32, pinned in whole-layer-block chunks, and the "
                "embedding table pinned, all read at construction; nothing read per token (a tied LM head is held twice: "
                "as the table and as LM head slices)", runner_spec("preload", preload_runner, pin_embeddings=True)))
        elif name == "layerwise":
            plan = decoder_layerwise_plan(store, seq_len, context, pool)
            held = plan.predicted.peak_weight_bytes
            shards = fp32_shards(store, False)
            memory = memory_model(store, shards, store.shards_per_layer, seq_len)
            overlap = "the next block read while one computes" if plan.memory_budget_bytes >= memory.default_budget_bytes \
                else "IO and compute take turns (the pool admits one block)"
            size = (f"the runner's {_describe_bytes(pool)} pool" if held <= pool else
                    f"{_describe_bytes(held)}, the least one fp32 layer block needs (the runner's pool is {_describe_bytes(pool)})")
            cases.append(DecoderCase(
                "layerwise", f"sticc's runtime, uniform 32-bit plan, one chunk per layer block (attention, FFN, "
                f"{store.shards_per_layer} LM head slices): every token reads all {_describe_bytes(plan.predicted.io_bytes_per_token)} "
                f"of fp32 weights again with direct IO, nothing cached across tokens; pool {size}; {overlap}",
                runner_spec("layerwise", _plan_runner(plan, store, work_dir, "layerwise"))))
        elif name in ("hf", "hf-offload", "llama.cpp"):
            reason = peer_skip_reason(name, store)
            if reason is not None:
                skipped[name] = reason
                continue
            if name == "llama.cpp":
                version = importlib.metadata.version("llama-cpp-python") if importlib.util.find_spec("llama_cpp") else "?"
                cases.append(DecoderCase(
                    "llama.cpp", f"llama-cpp-python {version} on {store.source_dir.name} (its own quantized blocks), "
                    f"memory-mapped, n_ctx {context}, every core",
                    {"name": name, "kind": "llama.cpp", "gguf": str(store.source_dir), "context": context, **common}))
                continue
            checkpoint = hf_checkpoint(store)
            offload = name == "hf-offload"
            what = ("transformers + accelerate, device_map auto with max_memory cpu = the runner's pool "
                    f"({_describe_bytes(pool)}), offload_folder on disk: offloaded modules' weights fetched from the "
                    "safetensors file at every forward (the page cache is not evicted between tokens)") if offload else \
                "transformers AutoModelForCausalLM.from_pretrained, fp32, resident (safetensors mmap views), DynamicCache"
            cases.append(DecoderCase(name, f"{what}; checkpoint {checkpoint}", {
                "name": name, "kind": "hf", "checkpoint": str(checkpoint), "offload": offload, "max_memory_bytes": pool,
                "work_dir": str(work_dir), **common}))
        else:
            raise UserError(f"unknown decoder baseline {name!r}; choose from {', '.join(DECODER_BASELINES)}")
    return cases, reference, skipped


# ----------------------------------------------------------------------------------------------
# Running cases
# ----------------------------------------------------------------------------------------------


def run_decoder_child(spec: dict, sample_rss: bool) -> tuple[dict, list[tuple[float, int, int]]]:
    """Run one case in a fresh `python -m sticc.bench.decoder_cases` process (`run_child`)."""
    return run_child(spec, sample_rss, "sticc.bench.decoder_cases")


def _median_int(values: list[int]) -> int:
    return int(statistics.median(values)) if values else 0


def _identical_prefix(generated: list[int], reference: list[int]) -> int:
    count = 0
    for a, b in zip(generated, reference, strict=False):
        if a != b:
            break
        count += 1
    return count


def summarize(case: DecoderCase, profile: tuple[dict, list], timed: list[dict], reference_tokens: list[int]) -> DecoderCaseResult:
    profiled, samples = profile
    base = profiled["rss_baseline"]
    anon, file = rss_peaks_in_call(profiled, samples)
    latencies = [t for run in timed for t in run["token_latency_s"]]
    rates = [len(run["token_latency_s"]) / sum(run["token_latency_s"]) for run in timed if run["token_latency_s"]]
    weight_bytes = next((r["weight_bytes"] for r in [profiled, *timed] if r["weight_bytes"] is not None), None)
    perplexity = math.exp(profiled["nll_sum"] / profiled["nll_count"]) if profiled.get("nll_count") else None
    return DecoderCaseResult(
        case.name, case.description, len(timed),
        Spread.of([r["load_s"] for r in timed]), Spread.of([r["ttft_s"] for r in timed]),
        Spread.of(latencies) if latencies else Spread(math.nan, math.nan, math.nan),
        statistics.median(rates) if rates else math.nan,
        weight_bytes, profiled["weight_bytes_method"], profiled["kv_cache_bytes"],
        max(0, profiled["rss_end"]["anon"] - base["anon"]), max(0, profiled["rss_end"]["file"] - base["file"]),
        profiled["weights_file_rss_bytes"],
        # the sampled peaks, and at least the largest seen at the end of any call
        max(anon, profiled["rss_steps_max"]["anon"] - base["anon"]), max(file, profiled["rss_steps_max"]["file"] - base["file"]),
        max(0, profiled["peak_rss_bytes"] - base["total"]),
        _median_int([r["disk_read_load_bytes"] for r in timed]), _median_int([r["disk_read_prefill_bytes"] for r in timed]),
        _median_int([b for r in timed for b in r["disk_read_token_bytes"]]),
        perplexity, profiled.get("agree"), profiled.get("agree_total"),
        min(_identical_prefix(r["generated"], reference_tokens) for r in timed),
    )


def bench_decoder(
    out_dir: Path, store_dir: Path | None, settings: Settings, baselines: tuple[str, ...], progress: Progress,
    new_tokens: int = DEFAULT_NEW_TOKENS, agreement_tokens: int = DEFAULT_AGREEMENT_TOKENS, text_path: Path | None = None,
) -> DecoderBench:
    """Benchmark the decoder runner in `out_dir` beside `baselines` (names from DECODER_BASELINES); see
    the module docstring. `settings.io_bandwidth_Bps` None: the plan's emulated bandwidth, if any.
    Peers that cannot run here (a package missing, no GGUF for llama.cpp) are skipped, each with one
    line in `DecoderBench.skipped`."""
    if new_tokens < 1 or agreement_tokens < 1:
        raise UserError("the token counts must be at least 1")
    plan_json, store = open_output(out_dir, store_dir)
    if not store.spec.is_decoder:
        raise UserError(f"{store.spec.name} is an encoder: `sticc bench` benchmarks it with sticc.bench.suite.bench")
    unknown = [name for name in baselines if name not in DECODER_BASELINES]
    if unknown:
        raise UserError(f"unknown decoder baseline {unknown[0]!r}; choose from {', '.join(DECODER_BASELINES)}")
    if settings.io_bandwidth_Bps is None:
        settings = replace(settings, io_bandwidth_Bps=plan_json.get("runtime", {}).get("io_bandwidth_cap_Bps"))
    seq_len, context = plan_json["targets"]["seq_len"], plan_json["targets"]["context"]
    longest = max(new_tokens, agreement_tokens)
    if seq_len + longest > context:
        raise UserError(f"a {seq_len}-token prompt and {longest} generated tokens exceed the runner's context of {context} "
                        f"(compile with a larger --context, or generate fewer tokens)")
    text, text_name = _texts(store, text_path, context)
    prompts = _windows(text, seq_len, AGREEMENT_PROMPTS)
    perplexity_text = text[:context]
    with tempfile.TemporaryDirectory(prefix="sticc-bench-decoder-") as work:
        work_dir = Path(work)
        cases, reference_case, skipped = build_cases(out_dir, store, plan_json, settings, baselines, work_dir)
        reference_spec = {**reference_case.spec, "prompts": prompts, "reference_tokens": longest, "text": perplexity_text}
        reference, _ = run_decoder_child(reference_spec, sample_rss=False)
        continuations = reference["continuations"]
        fidelity = {"text": perplexity_text,
                    "agreement": [[prompt, tokens[:agreement_tokens]] for prompt, tokens in zip(prompts, continuations, strict=True)]}
        specs = {c.name: {**c.spec, "prompt_ids": prompts[0], "new_tokens": new_tokens} for c in cases}
        order = [(c, "profile") for c in cases] + [(c, "timed") for _ in range(settings.runs) for c in cases]
        profiled: dict[str, tuple[dict, list]] = {}
        timed: dict[str, list[dict]] = {c.name: [] for c in cases}
        for case, kind in progress(iter(order), len(order), "decoder benchmark runs"):
            if kind == "profile":
                profiled[case.name] = run_decoder_child({**specs[case.name], "profile": True, "fidelity": fidelity}, sample_rss=True)
            else:
                timed[case.name].append(run_decoder_child(specs[case.name], sample_rss=False)[0])
    results = [summarize(c, profiled[c.name], timed[c.name], continuations[0]) for c in cases]
    reference_ppl = math.exp(reference["nll_sum"] / reference["nll_count"])
    subject = DecoderSubject(
        store.spec.name, str(Path(out_dir) / "runner.py"), str(store.path), None if store.source_dir is None else str(store.source_dir),
        store.spec.fp32_weight_nbytes, not store.has_tokenizer, seq_len, context, plan_json["predicted"]["peak_weight_bytes"],
        plan_json["predicted"].get("io_bytes_per_token"), plan_json["targets"].get("latency_s"),
        plan_json["targets"].get("first_token_s"), plan_json["predicted"].get("latency_s"),
        plan_json["predicted"].get("first_token_s"), new_tokens, text_name, len(perplexity_text), len(prompts),
        agreement_tokens, reference_case.description, reference_ppl,
    )
    return DecoderBench(subject, settings, results, skipped)


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------

COLUMNS = ("case", "load s (med)", "first token s min / med / max", "token ms min / med / max", "tokens/s",
           "weight MB (% fp32)", "RSS MB anon / file (weights file) / peak anon / file", "disk read MB load / token", "perplexity",
           "greedy agreement", "identical")


def title(bench: DecoderBench) -> str:
    s, settings = bench.subject, bench.settings
    flash = f"emulated {settings.io_bandwidth_Bps / MB:.0f} MB/s flash" if settings.io_bandwidth_Bps else "this disk"
    weights = "RANDOM weights: fidelity is not meaningful" if s.random_weights else "real weights"
    return (f"{s.model} ({weights}), {s.prompt_tokens}-token prompt, {s.new_tokens} tokens greedy, context {s.context}, "
            f"{flash}, {'cold' if settings.cold else 'warm'} page cache, {settings.runs} fresh processes per case; "
            f"fp32 weights {s.fp32_weight_bytes / MB:.1f} MB")


def _spread(spread: Spread, scale: float, digits: int) -> str:
    return f"{spread.min * scale:.{digits}f} / {spread.median * scale:.{digits}f} / {spread.max * scale:.{digits}f}"


def rows(bench: DecoderBench) -> list[list[str]]:
    fp32 = bench.subject.fp32_weight_bytes
    out = []
    for r in bench.results:
        weights = "n/a" if r.weight_bytes is None else f"{r.weight_bytes / MB:.2f} ({100 * r.weight_bytes / fp32:.1f}%)"
        agreement = "n/a" if r.greedy_agreement is None else f"{100 * r.greedy_agreement:.1f}% ({r.greedy_agree}/{r.greedy_total})"
        out.append([
            r.name, f"{r.load_s.median:.2f}", _spread(r.ttft_s, 1, 3), _spread(r.token_latency_s, 1e3, 1), f"{r.tokens_per_s:.2f}",
            weights,
            f"{r.rss_anon_bytes / MB:.1f} / {r.rss_file_bytes / MB:.1f} ({r.weights_file_rss_bytes / MB:.1f}) / "
            f"{r.peak_rss_anon_bytes / MB:.1f} / {r.peak_rss_file_bytes / MB:.1f}",
            f"{r.disk_read_load_bytes / MB:.1f} / {r.disk_read_per_token_bytes / MB:.1f}",
            "n/a" if r.perplexity is None else f"{r.perplexity:.3f}", agreement, f"{r.identical_prefix}/{bench.subject.new_tokens}",
        ])
    return out


def notes(bench: DecoderBench) -> list[str]:
    s = bench.subject
    lines = [
        f"reference: {s.reference} (perplexity {s.reference_perplexity:.3f} on {s.text_tokens} tokens of {s.text}); greedy "
        f"agreement is teacher-forced over the reference's greedy continuations ({s.agreement_prompts} prompts x "
        f"{s.agreement_tokens} tokens); identical: leading tokens of the timed run's greedy decoding equal to the reference's",
        "load: construction from a cold page cache; first token: the prompt's prefill and the first argmax, the model "
        "loaded; RSS above the process's baseline after its imports, at the end of decoding, file-backed split into the "
        "weights files' mapped pages (in brackets) and the rest (libraries' pages), then the peaks sampled every 1 ms over "
        "loading and decoding",
    ]
    planned = [(what, target, predicted) for what, target, predicted in (
        ("per-token latency", s.token_latency_target_s, s.predicted_token_latency_s),
        ("time to first token", s.first_token_target_s, s.predicted_first_token_s)) if target or predicted]
    runner = next((r for r in bench.results if r.name == "sticc"), None)
    for what, target, predicted in planned:
        measured = None if runner is None else runner.token_latency_s.median if what == "per-token latency" else runner.ttft_s.median
        lines.append(f"plan's {what}: target {'none' if target is None else f'{target * 1e3:.1f} ms'}, predicted "
                     f"{'n/a' if predicted is None else f'{predicted * 1e3:.1f} ms'} (median), measured "
                     f"{'n/a' if measured is None else f'{measured * 1e3:.1f} ms'} (median)")
    lines += [f"{r.name}: {r.description}; weight bytes: {r.weight_bytes_method}" for r in bench.results]
    lines += list(bench.skipped.values())
    return lines


def print_decoder_table(bench: DecoderBench, console) -> None:
    """The results as one rich table, the notes under it (what each case is, the skipped peers)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title(bench)))
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "case" else "right")
    for row in rows(bench):
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)
    for line in notes(bench):
        console.print(f"  {escape(line)}")


def decoder_markdown(bench: DecoderBench) -> str:
    """The results as a markdown table (the docs' tables), with the notes as a list under it."""
    lines = [title(bench), "", "| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] + ["---:"] * (len(COLUMNS) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows(bench)]
    lines += [""] + [f"- {line}" for line in notes(bench)]
    return "\n".join(lines) + "\n"


def decoder_figure(bench: DecoderBench, path: Path) -> Path | None:
    """Median per-token latency against weight bytes held, one point per case, log-log (matplotlib,
    SVG at `path`); None without matplotlib."""
    if importlib.util.find_spec("matplotlib") is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in bench.results:
        if r.weight_bytes is None or not math.isfinite(r.token_latency_s.median):
            continue
        x, y = r.token_latency_s.median * 1e3, r.weight_bytes / MB
        ax.errorbar([x], [y], xerr=[[x - r.token_latency_s.min * 1e3], [r.token_latency_s.max * 1e3 - x]], marker="o", capsize=3)
        label = r.name if r.perplexity is None else f"{r.name} (ppl {r.perplexity:.1f})"
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("per-token latency, ms (median, min-max)")
    ax.set_ylabel("weight MB held")
    ax.set_title(f"{bench.subject.model}: decoding, {bench.subject.prompt_tokens}-token prompt", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_decoder_results(bench: DecoderBench, json_path: Path) -> list[Path]:
    """The JSON at `json_path`, the markdown table beside it (.md) and the figure (.svg, with matplotlib)."""
    json_path = Path(json_path)
    write_json_atomic(json_path, bench.to_json())
    markdown = json_path.with_suffix(".md")
    write_bytes_atomic(markdown, decoder_markdown(bench).encode("utf-8"))
    figure = decoder_figure(bench, json_path.with_suffix(".svg"))
    return [json_path, markdown] + ([figure] if figure is not None else [])
