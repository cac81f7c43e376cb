"""ONNX Runtime peers for `sticc bench`: `ort` (fp32) and `ort-int8` (dynamic int8 quantization).

The parent (`sticc.bench.suite`, building the cases) prepares the models once, into the bench's work directory:
- `export_fp32`: the checkpoint the store was sharded from, loaded as the class transformers' AutoModel maps its
  config to (`add_pooling_layer=False` where the class takes it and `use_safetensors=True`, as `sticc.bench.hf`
  does; eager attention, the smallest traced graph), exported by torch's TorchScript exporter
  (`torch.onnx.export(..., dynamo=False)`, opset 17: the dynamo exporter needs onnxscript) with inputs input_ids,
  attention_mask (and token_type_ids where the model takes them), dynamic batch and sequence axes, one output
  last_hidden_state;
- `quantize_int8`: `onnxruntime.quantization.quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8)`, as is
  (no pre-processing pass): int8 MatMul weights and uint8 embedding tables (Gather takes the activation type), each
  with a per-tensor scale and zero point, activations quantized per call.
Each is described by an `ORTModel` record (its files and its exact initializer bytes, read with `onnx` once).

A harness (`sticc.bench.cases`) drives one `ORTCase` per fresh child process, like `sticc.bench.hf.HFCase`:
- mode "call" (the model resident): `setup()` creates the InferenceSession (CPUExecutionProvider, intra-op threads
  = every core, inter-op 1, ORT_ENABLE_ALL) and runs 2 warm-up inferences on the timing input's shape; `call()`
  runs one inference;
- mode "cold-start": `setup()` only imports onnxruntime (as the hf case imports its modeling module), `cold_files()`
  are the model's files (evicted for cold runs), `call()` creates the session (which reads and optimizes the model)
  and runs the first inference. Under an emulated flash cap the files are first read sequentially at that rate, as
  the hf case reads its checkpoint.
`encode()` runs the session on the fidelity inputs and returns the last hidden state as a float32 torch tensor.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from sticc.bench.hf import Throttle, read_throttled

OPSET = 17
OUTPUT = "last_hidden_state"
WARM_UP_CALLS = 2
REQUIRED_MODULES = ("onnx", "onnxruntime", "transformers")


@dataclass(frozen=True)
class ORTModel:
    """An ONNX model on disk, as the bench runs it."""

    path: str  # the .onnx file
    files: tuple[str, ...]  # every file the session reads: the .onnx and any external data
    weight_bytes: int  # exact: the initializers' bytes (dims x element size)
    quantized: bool

    def to_json(self) -> dict:
        return {**asdict(self), "files": list(self.files)}

    @classmethod
    def from_json(cls, data: dict) -> ORTModel:
        return cls(data["path"], tuple(data["files"]), int(data["weight_bytes"]), bool(data["quantized"]))


def weight_bytes_method(quantized: bool) -> str:
    what = "int8 MatMul weights, uint8 embedding tables, their scales and zero points, the fp32 rest" if quantized else "fp32"
    return f"exact: the ONNX initializers' bytes ({what}), read with onnx; ORT's own copies (prepacked weights) are in RSS only"


# ----------------------------------------------------------------------------------------------
# The parent: export and quantize
# ----------------------------------------------------------------------------------------------


def describe(path: Path, quantized: bool) -> ORTModel:
    """The record of the model at `path`: its files and exact initializer bytes (no tensor data is loaded)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    files = [str(path)]
    weight_bytes = 0
    for tensor in model.graph.initializer:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        weight_bytes += math.prod(tensor.dims) * itemsize
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next(entry.value for entry in tensor.external_data if entry.key == "location")
            if str(path.parent / location) not in files:
                files.append(str(path.parent / location))
    return ORTModel(str(path), tuple(files), weight_bytes, quantized)


class _LastHiddenState(torch.nn.Module):
    """The model with positional inputs (the TorchScript exporter's form) and one output."""

    def __init__(self, model: torch.nn.Module, input_names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs, strict=True))).last_hidden_state


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No progress bars or load reports (the skipped pooler weights) while exporting; restored after."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization warns through the root logger, which would also install a stderr handler
    (logging.basicConfig) for the rest of the process; this drops its warnings and leaves the root as it was."""
    root = logging.getLogger()
    level, placeholder = root.level, logging.NullHandler()
    root.addHandler(placeholder)
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        root.removeHandler(placeholder)


def export_fp32(checkpoint_dir: Path, path: Path) -> ORTModel:
    """Export the checkpoint to ONNX at `path` (see the module docstring)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_transformers():
        config = AutoConfig.from_pretrained(checkpoint_dir)
        model_class = MODEL_MAPPING[type(config)]
        kwargs = {"add_pooling_layer": False} if "add_pooling_layer" in inspect.signature(model_class.__init__).parameters else {}
        model = model_class.from_pretrained(checkpoint_dir, attn_implementation="eager", use_safetensors=True, **kwargs).eval()
    names = ("input_ids", "attention_mask")
    if "token_type_ids" in inspect.signature(model_class.forward).parameters:
        names += ("token_type_ids",)  # DistilBERT has none
    length = 8
    ids = torch.arange(2 * length, dtype=torch.int64).reshape(2, length) % config.vocab_size
    mask = torch.ones_like(ids)
    mask[1, length // 2 :] = 0  # a padded row: the traced graph applies the mask
    sample = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    wrapper = _LastHiddenState(model, names).eval()  # the exporter restores this mode after tracing
    axes = {name: {0: "batch", 1: "sequence"} for name in (*names, OUTPUT)}
    # torch >= 2.9 defaults to the dynamo exporter (it needs onnxscript); before 2.5 there is no choice to make
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and tracer warnings
        torch.onnx.export(
            wrapper, tuple(sample[name] for name in names), str(path), input_names=list(names), output_names=[OUTPUT],
            dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True, **legacy,
        )
    return describe(path, quantized=False)


def quantize_int8(fp32: ORTModel, path: Path) -> ORTModel:
    """`quantize_dynamic(fp32, path, weight_type=QInt8)`: int8 weights, dynamically quantized activations."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_root_logger():
        quantize_dynamic(fp32.path, str(path), weight_type=QuantType.QInt8)
    return describe(path, quantized=True)


def ort_spec(name: str, model: ORTModel, mode: str, io_bandwidth_Bps: float | None, cold: bool) -> dict:
    """The child's spec for an ORT case (`sticc.bench.cases` dispatches kind "ort"); input ids are added by the caller."""
    return {
        "name": name, "kind": "ort", "model": model.to_json(), "mode": mode, "threads": os.cpu_count() or 1,
        "io_bandwidth_Bps": io_bandwidth_Bps, "cold": cold,
    }


# ----------------------------------------------------------------------------------------------
# The child: one case
# ----------------------------------------------------------------------------------------------


class ORTCase:
    """One ONNX Runtime case; `mode` "call" keeps the session resident, "cold-start" creates it in `call()`."""

    def __init__(
        self, model: ORTModel, mode: str, input_ids: list[int], threads: int, io_bandwidth_Bps: float | None = None,
    ) -> None:
        if mode not in ("call", "cold-start"):
            raise ValueError(f"unknown ORT case mode {mode!r}")
        self.model = model
        self.mode = mode
        self.timing_shape = (1, len(input_ids))
        self.threads = threads
        self.io_bandwidth_Bps = io_bandwidth_Bps
        self.weight_bytes_method = weight_bytes_method(model.quantized)
        self._ort = None  # the onnxruntime module, imported in setup(): a cold start times no import, as hf's
        self._session = None
        self._inputs: tuple[str, ...] = ()

    @classmethod
    def from_spec(cls, spec: dict) -> ORTCase:
        return cls(ORTModel.from_json(spec["model"]), spec["mode"], spec["input_ids"], spec["threads"],
                   spec.get("io_bandwidth_Bps"))

    def setup(self) -> None:
        import onnxruntime

        self._ort = onnxruntime
        if self.mode == "call":
            self._create_session()
            ids = np.ones(self.timing_shape, dtype=np.int64)
            for _ in range(WARM_UP_CALLS):
                self._run(ids, np.ones_like(ids), np.zeros_like(ids))

    def cold_files(self) -> list[Path]:
        return [Path(path) for path in self.model.files]

    def call(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        if self.mode == "cold-start":
            if self.io_bandwidth_Bps is not None:
                read_throttled(self.cold_files(), Throttle(self.io_bandwidth_Bps))
            self._create_session()
        ids = input_ids.numpy().astype(np.int64, copy=False)
        self._run(ids, attention_mask.numpy().astype(np.int64, copy=False), np.zeros_like(ids))

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        hidden = self._run(*(t.numpy().astype(np.int64, copy=False) for t in (input_ids, attention_mask, token_type_ids)))
        return torch.from_numpy(np.ascontiguousarray(hidden, dtype=np.float32))

    def peak_weight_bytes(self) -> int:
        return self.model.weight_bytes

    def close(self) -> None:
        self._session = None

    def _create_session(self) -> None:
        ort = self._ort
        if ort is None:
            raise RuntimeError("setup() imports onnxruntime before any session is created")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(self.model.path, options, providers=["CPUExecutionProvider"])
        self._inputs = tuple(i.name for i in self._session.get_inputs())

    def _run(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray) -> np.ndarray:
        if self._session is None:
            raise RuntimeError("no session: mode 'call' creates it in setup(), 'cold-start' in call()")
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self._session.run([OUTPUT], {name: given[name] for name in self._inputs})[0]
