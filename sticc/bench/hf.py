"""Hugging Face transformers baselines for `sticc bench`: plain `hf` and disk-offloaded `hf-offload`.

A harness drives one `HFCase` per fresh child process: `setup()` (untimed), `cold_files()` (evicted for cold
runs), `call()` (timed), `encode()` (untimed: fidelity, weight accounting), `peak_weight_bytes()` (hf-offload:
measured in encode(), None before), `close()`.
Both load the class AutoModel resolves to (resolved in `setup()`, which imports the modeling module), without the
pooler (`add_pooling_layer=False`, BERT and RoBERTa): it does not change `last_hidden_state`, sticc's runners have
none, and disk offload fails (KeyError in the hook) on checkpoints saved without one, e.g. from *ForMaskedLM:
transformers leaves the newly initialized pooler on meta with no entry in the offload index. Both load with
`use_safetensors=True`, as the decoder cases do: a checkpoint's pickled weights (pytorch_model.bin) are never
unpickled.

- hf: `call()` is a cold start, `from_pretrained(checkpoint_dir)` plus one forward.
- hf-offload: `setup()` runs `from_pretrained(checkpoint_dir, device_map={"": "disk"},
  offload_folder=work_dir / "hf-offload")`, `call()` one forward. In transformers 5.23 + accelerate 1.15 this works
  as such: every parameter, embedding tables included, stays on meta; every module with parameters gets an
  `AlignDevicesHook` over one shared `OffloadedWeightsLoader` whose index points into the original safetensors
  files (nothing is written to the offload folder; weights needing a conversion would be resaved there as `.dat`,
  which `cold_files()` lists too). `pre_forward` fetches a module's tensors with `safe_open(...).get_tensor`,
  `post_forward` puts them back on meta.

Memory (safetensors 0.8): `from_pretrained` keeps parameters as views into a mmap of model.safetensors, file-backed
pages faulted in by the first forward that touches them (a cold hf call reads in its forward; untouched embedding
rows are never read), not copies in anonymous memory. hf-offload's fetched tensors are such views too.

`io_bandwidth_Bps` emulates slower flash as sticc's runners do: with a clock started at `call()` entry, after n
cumulative bytes read, wait until start + n / cap. hf reads the checkpoint's safetensors files sequentially at that
rate into the page cache before `from_pretrained`; hf-offload copies each tensor the hooks fetch (forcing the read
of the whole mmap view) and then waits. Without a cap nothing is delayed or copied.
"""

from __future__ import annotations

import gc
import inspect
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from sticc.runtime.core import pread_into

_READ_BLOCK_BYTES = 8 << 20


class Throttle:
    """Delays reads so that the bytes read since construction never exceed the cap's rate."""

    def __init__(self, cap_Bps: float) -> None:
        self.cap_Bps = cap_Bps
        self.start_s = time.perf_counter()
        self.read_bytes = 0

    def account(self, nbytes: int) -> None:
        self.read_bytes += nbytes
        delay_s = self.start_s + self.read_bytes / self.cap_Bps - time.perf_counter()
        if delay_s > 0:
            time.sleep(delay_s)


def read_throttled(paths: list[Path], throttle: Throttle) -> None:
    """Read the files sequentially in large blocks at the throttle's rate (brings them into the page cache)."""
    view = memoryview(bytearray(_READ_BLOCK_BYTES))
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            offset_bytes = 0
            while read_bytes := pread_into(fd, view, offset_bytes):  # preadv, or pread where there is none
                offset_bytes += read_bytes
                throttle.account(read_bytes)
        finally:
            os.close(fd)


@contextmanager
def throttled_offload_loads(throttle: Throttle) -> Iterator[None]:
    """Make accelerate's offloaded weight loads materialize each tensor and wait for the throttle."""
    from accelerate.utils import OffloadedWeightsLoader

    original = OffloadedWeightsLoader.__getitem__

    def getitem(loader: OffloadedWeightsLoader, key: str) -> torch.Tensor:
        tensor = original(loader, key).clone()  # the mmap view's pages are read here
        throttle.account(tensor.nbytes)
        return tensor

    OffloadedWeightsLoader.__getitem__ = getitem
    try:
        yield
    finally:
        OffloadedWeightsLoader.__getitem__ = original


class ResidentParamBytes(TorchFunctionMode):
    """At every torch function call, sums the bytes of the model's parameters that are not on meta; keeps the max."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self._modules = [module for module in model.modules() if module._parameters]
        self.peak_bytes = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        resident = {
            param.data_ptr(): param.nbytes
            for module in self._modules
            for param in module._parameters.values()
            if param is not None and not param.is_meta
        }
        self.peak_bytes = max(self.peak_bytes, sum(resident.values()))
        return func(*args, **(kwargs or {}))


class HFCase:
    """One baseline case: `offload=False` is hf, `offload=True` is hf-offload (see the module docstring)."""

    def __init__(self, checkpoint_dir: Path, offload: bool, io_bandwidth_Bps: float | None, work_dir: Path) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.offload = offload
        self.io_bandwidth_Bps = io_bandwidth_Bps
        self.offload_dir = Path(work_dir) / "hf-offload"
        self.weight_bytes_method = (
            "max over torch function calls of non-meta parameter bytes (TorchFunctionMode) in the untimed encode pass"
            if offload
            else "sum of parameter nbytes after from_pretrained (all resident, as mmap views of the safetensors file)"
        )
        self._model_class: type | None = None
        self._model_kwargs: dict[str, bool] = {}
        self._model: torch.nn.Module | None = None
        self._peak_weight_bytes: int | None = None

    def setup(self) -> None:
        from transformers import AutoConfig
        from transformers.models.auto.modeling_auto import MODEL_MAPPING
        from transformers.utils import logging

        logging.disable_progress_bar()
        logging.set_verbosity_error()  # the load report lists the skipped pooler weights as unexpected
        # AutoModel's class lookup imports the modeling module (seconds): done here, so call() times loading only.
        self._model_class = MODEL_MAPPING[type(AutoConfig.from_pretrained(self.checkpoint_dir))]
        if "add_pooling_layer" in inspect.signature(self._model_class.__init__).parameters:
            self._model_kwargs = {"add_pooling_layer": False}
        if self.offload:
            self._model = self._model_class.from_pretrained(
                self.checkpoint_dir, device_map={"": "disk"}, offload_folder=self.offload_dir, use_safetensors=True,
                **self._model_kwargs,
            ).eval()

    def cold_files(self) -> list[Path]:
        if not self.offload:
            return sorted(self.checkpoint_dir.glob("*.safetensors"))
        files = {
            Path(info["safetensors_file"])
            for loader in self._offload_loaders()
            for info in loader.index.values()
            if info.get("safetensors_file")
        }
        if self.offload_dir.exists():
            files.update(path for path in self.offload_dir.rglob("*") if path.is_file())
        return sorted(files)

    def call(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        throttle = None if self.io_bandwidth_Bps is None else Throttle(self.io_bandwidth_Bps)
        if not self.offload:
            if throttle is not None:
                read_throttled(self.cold_files(), throttle)
            self._model = self._model_class.from_pretrained(self.checkpoint_dir, use_safetensors=True, **self._model_kwargs).eval()
        with nullcontext() if throttle is None or not self.offload else throttled_offload_loads(throttle):
            return self._forward(input_ids, attention_mask, token_type_ids)

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        if not self.offload:
            return self._forward(input_ids, attention_mask, token_type_ids)
        with ResidentParamBytes(self._loaded_model()) as mode:
            hidden = self._forward(input_ids, attention_mask, token_type_ids)
        self._peak_weight_bytes = mode.peak_bytes
        return hidden

    def peak_weight_bytes(self) -> int | None:
        """hf: every parameter; hf-offload: the peak seen by the last encode() (None without one: the
        timed call is never instrumented)."""
        if not self.offload:
            return sum(param.nbytes for param in self._loaded_model().parameters())
        return self._peak_weight_bytes

    def close(self) -> None:
        self._model = None
        gc.collect()
        shutil.rmtree(self.offload_dir, ignore_errors=True)

    def _forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> torch.Tensor:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and "token_type_ids" in inspect.signature(self._model_class.forward).parameters:
            inputs["token_type_ids"] = token_type_ids  # DistilBERT has none
        with torch.inference_mode():
            return self._loaded_model()(**inputs).last_hidden_state

    def _loaded_model(self) -> torch.nn.Module:
        if self._model is None:
            raise RuntimeError("no model loaded: hf loads in call(), hf-offload in setup()")
        return self._model

    def _offload_loaders(self) -> list:
        """The distinct accelerate weight maps (OffloadedWeightsLoader) behind the model's offload hooks."""
        loaders = {}
        for module in self._loaded_model().modules():
            weights_map = getattr(getattr(module, "_hf_hook", None), "weights_map", None)
            if weights_map is not None:
                loader = getattr(weights_map, "dataset", weights_map)
                loaders[id(loader)] = loader
        return list(loaders.values())
