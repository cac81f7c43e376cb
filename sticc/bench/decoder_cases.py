"""One decoder benchmark case, run in this fresh process: `python -m sticc.bench.decoder_cases < SPEC_JSON`.

The spec (written by `sticc.bench.decoder_suite`) names what generates:
- kind "runner": a generated decoder runner: the runner as compiled, and the `preload` and
  `layerwise` baselines, which are runners of other plans (`pin_embeddings`: the embedding table is
  read at construction and held, `sticc.bench.modes.with_pinned_embeddings`);
- kind "hf": transformers' causal LM on the fp32 checkpoint, resident (`offload` false) or with
  accelerate offloading its weights to disk (`offload` true: `device_map="auto"`,
  `max_memory={"cpu": max_memory_bytes}`, `offload_folder` in the bench's work directory);
- kind "llama.cpp": llama-cpp-python on the GGUF file (memory-mapped, every core).

Every kind is driven the same way (`DecoderCase`): `load()` (construction: what an app does
before its first prompt), `prefill(ids)` (a new sequence: the last position's logits),
`step(token)` (one more token: its logits), `all_logits(ids)` (untimed, a new sequence: every
position's logits, for fidelity), greedy decoding by argmax here for every kind.

Mode "timed" (the default). The files the case reads are evicted from the page cache first (cold)
unless `cold` is false, then it loads (timed: `load_s`), prefills the prompt and takes the argmax
(`ttft_s`: time to first token, the model loaded), and decodes `new_tokens - 1` more tokens one call
each (`token_latency_s`; end-of-sequence tokens are not special, so every case decodes as many).
It prints one JSON line:
- `load_s`, `ttft_s`, `token_latency_s` (a list), `generated` (the greedy token ids);
- `disk_read_load_bytes`, `disk_read_prefill_bytes`, `disk_read_token_bytes` (a list): what the
  kernel fetched from storage (/proc/self/io read_bytes: direct reads and page-cache misses);
- `rss_baseline` (RssAnon, RssFile, VmRSS after the case's imports, before loading), `rss_end`
  (RssAnon and RssFile at the end of decoding), `rss_steps_max` (the largest of each at the end of
  every call), `weights_file_rss_bytes` (at the end of decoding, the resident pages of the mappings
  of the weights files the case reads: its share of RssFile that is weights, not libraries), `peak_rss_bytes` (VmHWM, reset before loading), `call_window_s` (loading's start and
  decoding's end on the monotonic clock: the parent's 1 ms samples of /proc/PID/status within it
  give the sampled peaks, `sticc.bench.suite.rss_peaks_in_call`);
- `weight_bytes` and `weight_bytes_method`, `kv_cache_bytes` (None where not known);
- with `profile` true, weight bytes that need an instrumented pass (hf-offload) are measured after
  the window; with `fidelity` ({"text": ids, "agreement": [[prompt, reference tokens], ...]}),
  after the window: `nll_sum` / `nll_count` over the text (one forward of it), and the greedy
  agreement, teacher-forced: `agree` / `agree_total` positions where the case's argmax is the
  reference's token.

Mode "reference" (a runner): greedy continuations of `reference_tokens` tokens after each of
`prompts` (free-running) and the text's perplexity terms: the fp32 reference every case is held to.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from sticc.base.measure import evict_from_page_cache
from sticc.bench.cases import proc_read_bytes, proc_self_status, reset_peak_rss, runner_class
from sticc.bench.hf import ResidentParamBytes, Throttle, read_throttled, throttled_offload_loads


def mapped_rss_bytes(paths: list[Path]) -> int:
    """Resident bytes of this process's mappings of `paths` (/proc/self/smaps): the weights files'
    pages a memory-mapping case holds (llama.cpp's GGUF, safetensors views), apart from libraries'."""
    names = {str(Path(path).resolve()) for path in paths}
    total, current = 0, False
    with open("/proc/self/smaps", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            head = line.split(maxsplit=5)
            if len(head) >= 5 and "-" in head[0] and ":" not in head[0]:  # a mapping's header line
                current = len(head) == 6 and head[5].strip() in names
            elif current and line.startswith("Rss:"):
                total += int(line.split()[1]) * 1024
    return total


class RunnerDecoderCase:
    """A generated decoder runner, constructed in `load()` (pinning, kernel warm-up)."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.runner_class = runner_class(spec)
        self.runner = None
        self.past = None
        self.peak_weight_bytes = 0
        self.weight_bytes_method = "exact: the runner's weight pool (ring + scratch + pinned), made at construction" + (
            ", plus the pinned embedding table" if spec.get("pin_embeddings", False) else "")

    def cold_files(self) -> list[Path]:
        return [Path(self.spec["store"]) / self.runner_class.DATA_FILE]

    def load(self) -> None:
        self.runner = self.runner_class(
            self.spec["store"], io_bandwidth_Bps=self.spec.get("io_bandwidth_Bps"), threads=self.spec.get("threads"),
        )

    def _call(self, ids, past, all_logits: bool) -> torch.Tensor:
        logits, self.past = self.runner.forward(ids, past, all_logits=all_logits)
        self.peak_weight_bytes = max(self.peak_weight_bytes, self.runner.last_stats["peak_weight_bytes"])
        return logits[0]

    def prefill(self, ids: list[int]) -> torch.Tensor:
        return self._call([ids], None, False)[-1]

    def step(self, token: int) -> torch.Tensor:
        return self._call([[token]], self.past, False)[-1]

    def all_logits(self, ids: list[int]) -> torch.Tensor:
        return self._call([ids], None, True)

    def weight_bytes(self, profile: bool) -> int:
        return self.peak_weight_bytes

    def kv_cache_bytes(self) -> int:
        return self.runner.kv_cache_bytes

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()


class HFDecoderCase:
    """transformers' causal LM on an fp32 checkpoint directory; `offload`: weights on disk (accelerate)."""

    def __init__(self, spec: dict) -> None:
        import transformers
        from transformers import AutoConfig
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

        transformers.logging.disable_progress_bar()
        transformers.logging.set_verbosity_error()
        if spec["offload"]:
            import accelerate  # noqa: F401  (imported before the baseline, as it will be used)
        self.spec = spec
        self.checkpoint = Path(spec["checkpoint"])
        self.offload = spec["offload"]
        # the class lookup imports the modeling module (seconds): here, so load() times loading only
        self.model_class = MODEL_FOR_CAUSAL_LM_MAPPING[type(AutoConfig.from_pretrained(self.checkpoint))]
        self.cache_keyword = "cache" if "cache" in inspect.signature(self.model_class.forward).parameters else "past_key_values"
        self.model = None
        self.cache = None
        self.throttle = None
        self._offloaded_peak = None
        self.weight_bytes_method = (
            "max over torch function calls of non-meta parameter bytes (TorchFunctionMode), in an untimed prefill"
            if self.offload else "sum of parameter nbytes after from_pretrained (all resident; mmap views of the safetensors file)"
        )

    def cold_files(self) -> list[Path]:
        return sorted(self.checkpoint.glob("*.safetensors"))

    def load(self) -> None:
        cap = self.spec.get("io_bandwidth_Bps")
        self.throttle = None if cap is None else Throttle(cap)
        if self.offload:
            self.model = self.model_class.from_pretrained(
                self.checkpoint, dtype=torch.float32, use_safetensors=True, device_map="auto",
                max_memory={"cpu": int(self.spec["max_memory_bytes"])}, offload_folder=Path(self.spec["work_dir"]) / "hf-offload",
            ).eval()
        else:
            if self.throttle is not None:
                read_throttled(self.cold_files(), self.throttle)
            self.model = self.model_class.from_pretrained(self.checkpoint, dtype=torch.float32, use_safetensors=True).eval()

    def _forward(self, ids: list[int], cache) -> torch.Tensor:
        throttled = throttled_offload_loads(self.throttle) if self.offload and self.throttle is not None else nullcontext()
        with torch.inference_mode(), throttled:
            out = self.model(input_ids=torch.tensor([ids]), use_cache=True, **{self.cache_keyword: cache})
        self.cache = getattr(out, "past_key_values", None) or getattr(out, "cache", None)
        return out.logits[0]

    def prefill(self, ids: list[int]) -> torch.Tensor:
        return self._forward(ids, None)[-1]

    def step(self, token: int) -> torch.Tensor:
        return self._forward([token], self.cache)[-1]

    def all_logits(self, ids: list[int]) -> torch.Tensor:
        return self._forward(ids, None)

    def weight_bytes(self, profile: bool) -> int | None:
        if not self.offload:
            return sum(p.nbytes for p in self.model.parameters())
        if profile and self._offloaded_peak is None:
            with ResidentParamBytes(self.model) as mode:
                self._forward([0, 1], None)
            self._offloaded_peak = mode.peak_bytes
        return self._offloaded_peak

    def kv_cache_bytes(self) -> int | None:
        """The DynamicCache's tensors at the end of decoding (it grows with the sequence)."""
        layers = getattr(self.cache, "layers", None)
        if not layers:
            return None
        return sum(t.nbytes for layer in layers for t in (getattr(layer, "keys", None), getattr(layer, "values", None))
                   if isinstance(t, torch.Tensor))

    def close(self) -> None:
        self.model = self.cache = None


class LlamaCppCase:
    """llama-cpp-python on a GGUF file, mapped (`use_mmap`), every core."""

    def __init__(self, spec: dict) -> None:
        import llama_cpp
        import numpy as np

        self.llama_cpp, self.np = llama_cpp, np
        self.spec = spec
        self.gguf = Path(spec["gguf"])
        self.threads = int(spec.get("threads") or os.cpu_count() or 1)
        self.llm = None
        self.logits_all = False
        self.weight_bytes_method = "exact: the GGUF file's tensor data as stored (quantized blocks), the whole file memory-mapped"

    def cold_files(self) -> list[Path]:
        return [self.gguf]

    def _open(self, logits_all: bool):
        """A `Llama` on the file. `repack` false (the default) is llama.cpp's `--no-repack`: its extra
        buffer types (weights repacked for AMX or interleaved SIMD layouts, copied out of the mapping)
        stay off. llama-cpp-python has no argument for it, so its default model parameters are
        wrapped for the construction."""
        self.logits_all = logits_all
        module = self.llama_cpp.llama_cpp
        defaults = module.llama_model_default_params
        repack = bool(self.spec.get("repack", False))

        def model_params():
            params = defaults()
            params.use_extra_bufts = repack
            return params

        module.llama_model_default_params = model_params
        try:
            return self.llama_cpp.Llama(
                model_path=str(self.gguf), n_ctx=int(self.spec["context"]), n_batch=int(self.spec["context"]),
                n_threads=self.threads, n_threads_batch=self.threads, logits_all=logits_all, use_mmap=True,
                verbose=False, seed=0,
            )
        finally:
            module.llama_model_default_params = defaults

    def load(self) -> None:
        cap = self.spec.get("io_bandwidth_Bps")
        if cap is not None:
            read_throttled([self.gguf], Throttle(cap))  # mmap faults cannot be paced: the file is read at the cap first
        self.llm = self._open(logits_all=False)

    def _last(self) -> torch.Tensor:
        """The last evaluated position's logits, read from the context (without logits_all, llama-cpp-python
        0.3 keeps none in `scores`)."""
        logits = self.llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return torch.from_numpy(self.np.ctypeslib.as_array(logits, shape=(self.llm.n_vocab(),)).copy())

    def prefill(self, ids: list[int]) -> torch.Tensor:
        self.llm.reset()
        self.llm.eval(ids)
        return self._last()

    def step(self, token: int) -> torch.Tensor:
        self.llm.eval([token])
        return self._last()

    def all_logits(self, ids: list[int]) -> torch.Tensor:
        if not self.logits_all:  # fidelity runs after the measured window: a context keeping every position's logits
            self.llm.close()
            self.llm = self._open(logits_all=True)
        self.llm.reset()
        self.llm.eval(ids)
        return torch.from_numpy(self.np.array(self.llm.scores[: len(ids)], dtype=self.np.float32))

    def weight_bytes(self, profile: bool) -> int:
        from gguf import GGUFReader

        return int(sum(int(tensor.n_bytes) for tensor in GGUFReader(self.gguf).tensors))

    def kv_cache_bytes(self) -> None:
        return None

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
            self.llm = None


def make_case(spec: dict):
    kinds = {"runner": RunnerDecoderCase, "hf": HFDecoderCase, "llama.cpp": LlamaCppCase}
    return kinds[spec["kind"]](spec)


def _argmax(logits: torch.Tensor) -> int:
    return int(torch.argmax(logits))


def fidelity_terms(case, fidelity: dict) -> dict:
    """Perplexity terms over the text and teacher-forced greedy agreement with the reference tokens."""
    text = fidelity["text"]
    logp = torch.log_softmax(case.all_logits(text).double(), -1)
    nll = -logp[:-1].gather(1, torch.tensor(text[1:])[:, None])
    agree = total = 0
    for prompt, reference in fidelity["agreement"]:
        logits = case.all_logits(prompt + reference[:-1])
        argmax = logits[len(prompt) - 1 :].argmax(-1).tolist()
        agree += sum(a == r for a, r in zip(argmax, reference, strict=True))
        total += len(reference)
    return {"nll_sum": float(nll.sum()), "nll_count": int(nll.numel()), "agree": agree, "agree_total": total}


def run_case(spec: dict) -> dict:
    """Load, prefill, decode, measure; see the module docstring for the result's keys."""
    case = make_case(spec)  # imports its libraries before the baseline
    baseline = proc_self_status()
    if spec["cold"]:
        for path in case.cold_files():
            evict_from_page_cache(path)
    reset_peak_rss()
    steps_max = {"anon": baseline["RssAnon"], "file": baseline["RssFile"]}

    def note_rss() -> None:
        status = proc_self_status()
        steps_max["anon"] = max(steps_max["anon"], status["RssAnon"])
        steps_max["file"] = max(steps_max["file"], status["RssFile"])

    read_start = proc_read_bytes()
    window_start_s = time.monotonic()
    start_s = time.perf_counter()
    case.load()
    load_s = time.perf_counter() - start_s
    read_load = proc_read_bytes() - read_start
    note_rss()

    read_before = proc_read_bytes()
    start_s = time.perf_counter()
    token = _argmax(case.prefill(list(spec["prompt_ids"])))
    ttft_s = time.perf_counter() - start_s
    read_prefill = proc_read_bytes() - read_before
    note_rss()
    generated, latencies, reads = [token], [], []
    for _ in range(spec["new_tokens"] - 1):
        read_before = proc_read_bytes()
        start_s = time.perf_counter()
        token = _argmax(case.step(token))
        latencies.append(time.perf_counter() - start_s)
        reads.append(proc_read_bytes() - read_before)
        generated.append(token)
        note_rss()
    window_end_s = time.monotonic()
    end = proc_self_status()
    result = {
        "load_s": load_s, "ttft_s": ttft_s, "token_latency_s": latencies, "generated": generated,
        "disk_read_load_bytes": read_load, "disk_read_prefill_bytes": read_prefill, "disk_read_token_bytes": reads,
        "rss_baseline": {"anon": baseline["RssAnon"], "file": baseline["RssFile"], "total": baseline["VmRSS"]},
        "rss_end": {"anon": end["RssAnon"], "file": end["RssFile"]},
        "rss_steps_max": steps_max, "weights_file_rss_bytes": mapped_rss_bytes(case.cold_files()), "peak_rss_bytes": end["VmHWM"], "call_window_s": [window_start_s, window_end_s],
        "kv_cache_bytes": case.kv_cache_bytes(),
    }
    result["weight_bytes"] = case.weight_bytes(bool(spec.get("profile")))
    result["weight_bytes_method"] = case.weight_bytes_method
    if spec.get("fidelity") is not None:
        result.update(fidelity_terms(case, spec["fidelity"]))
    case.close()
    return result


def run_reference(spec: dict) -> dict:
    """The reference's greedy continuations (free-running, `reference_tokens` each) and its perplexity terms."""
    case = make_case(spec)
    case.load()
    continuations = []
    for prompt in spec["prompts"]:
        token = _argmax(case.prefill(list(prompt)))
        produced = [token]
        for _ in range(spec["reference_tokens"] - 1):
            token = _argmax(case.step(token))
            produced.append(token)
        continuations.append(produced)
    result = {"continuations": continuations, **fidelity_terms(case, {"text": spec["text"], "agreement": []})}
    case.close()
    return result


def main() -> int:
    spec = json.loads(sys.stdin.read())
    result = run_reference(spec) if spec.get("mode") == "reference" else run_case(spec)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown (thread pools, torch, llama.cpp): its time is nobody's latency


if __name__ == "__main__":
    raise SystemExit(main())
