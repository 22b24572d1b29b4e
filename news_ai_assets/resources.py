"""Resources: where the raw MIND data comes from."""

import shutil
import tempfile
from pathlib import Path

import dagster as dg

from news_ai_assets.mind import sample
from news_ai_assets.mind.reader import SplitDir, discover_splits


class MindSource(dg.ConfigurableResource):
    """MIND split folders under `mind_dir`, or, when it is unset, a generated sample under `sample_dir`."""

    mind_dir: str | None = None
    sample_dir: str
    sample_scale: str = "demo"

    def split_dirs(self, log) -> list[SplitDir]:
        if self.mind_dir:
            return discover_splits(Path(self.mind_dir))
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
