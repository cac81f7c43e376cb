"""A `SentenceTransformer` whose forward is a sticc runner (the optional extra
`sticc[sentence-transformers]`: sentence-transformers 6 or later, whose input modules implement
`preprocess`; 5.x requires `tokenize` and is not supported).

    runner = load_runner("OUT/runner.py").Runner()            # or `from runner import Runner`
    model = sentence_transformer(runner)
    model.encode(texts, normalize_embeddings=True)            # sentence-transformers' own encode

The model is sentence-transformers' own pipeline with its first module, the Transformer, replaced
by `SticcTransformer`: it tokenizes as the runner does (the store's tokenizer, truncated at the
checkpoint's `max_seq_length`) and runs the runner's `forward`, under the runner's weight budget.
Pooling and Normalize are sentence-transformers' own modules, configured from the pipeline the
store recorded (`runner.PIPELINE`), and the checkpoint's prompts come along; so everything
sentence-transformers does around the forward (length-sorted batching, prompts, `precision`,
`similarity`) is its own. The runner's `encode` gives the same embeddings without this extra.

It imports nothing of sticc: it needs only a runner object (a generated `Runner`).
"""

from __future__ import annotations

from typing import Any

try:
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer
except ImportError as error:
    raise ImportError(
        "the sentence-transformers adapter needs the optional extra: pip install 'sticc[sentence-transformers]'"
    ) from error
try:
    from sentence_transformers.sentence_transformer.modules import InputModule, Normalize, Pooling
except ImportError as error:  # 5.x: its modules live elsewhere and its input modules implement `tokenize`
    raise ImportError(
        f"the sentence-transformers adapter needs sentence-transformers 6 or later, not {sentence_transformers.__version__}: "
        "pip install 'sticc[sentence-transformers]'"
    ) from error


class SticcTransformer(InputModule):
    """sentence-transformers' input module backed by a sticc runner: text in, token embeddings out."""

    save_in_root = True

    def __init__(self, runner) -> None:
        super().__init__()
        self.runner = runner

    @property
    def max_seq_length(self) -> int:
        return self.runner.max_seq_length

    @property
    def modalities(self) -> list[str]:
        return ["text"]

    def preprocess(self, inputs, prompt: str | None = None, **kwargs) -> dict[str, Any]:
        """Token ids, attention mask and token types of the texts (each prefixed by `prompt`), and
        the prompt's length in tokens, which Pooling leaves out when `include_prompt` is false."""
        texts = list(inputs)
        if not all(isinstance(text, str) for text in texts):
            raise ValueError("a sticc runner embeds texts (str), not pairs or other modalities")
        if prompt:
            texts = [prompt + text for text in texts]
        ids, mask, types = self.runner.tokenize(texts)
        features: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        if prompt:
            features["prompt_length"] = self.runner.prompt_length(prompt)
        return features

    def forward(self, features: dict[str, Any], **kwargs) -> dict[str, Any]:
        features["token_embeddings"] = self.runner.forward(
            features["input_ids"], features["attention_mask"], features.get("token_type_ids"),
        )
        return features

    def save(self, output_path: str, *args, **kwargs) -> None:
        raise NotImplementedError(
            "a sticc-backed SentenceTransformer is not saved: its model is the compiled runner and its store "
            "(`sticc compile` writes them)"
        )


def _pooling(hidden: int, modes: tuple, include_prompt: bool) -> Pooling:
    return Pooling(hidden, pooling_mode=modes[0] if len(modes) == 1 else tuple(modes), include_prompt=include_prompt)


def sentence_transformer(runner) -> SentenceTransformer:
    """A `SentenceTransformer` (on the CPU) that runs `runner` and the pipeline its store recorded."""
    pipeline = runner.PIPELINE
    modules: list[torch.nn.Module] = [SticcTransformer(runner), _pooling(runner.SHAPE.hidden, pipeline.pooling, pipeline.include_prompt)]
    if pipeline.normalize:
        modules.append(Normalize())
    return SentenceTransformer(
        modules=modules, device="cpu", prompts=dict(pipeline.prompts), default_prompt_name=pipeline.default_prompt_name,
    )
