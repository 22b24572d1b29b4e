"""Texts/s and fidelity of each embedding option on this machine.

    .venv/bin/python benchmarks/embeddings.py [--texts 2000] [--device cpu]

Texts: the real MIND news in ../shared/mind_real_subset when present, else the generated sample.
Fidelity: cosine of each vector to sentence-transformers fp32 (the reference), min and mean.
Each option runs after a warm-up batch; the figure is the median of --repeats runs.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from news_ai_assets.compute.embeddings import TEXT_FIELDS  # noqa: E402
from news_ai_assets.embedding_model import BACKENDS, PRECISIONS, EmbeddingModelError, Encoder, EncoderSpec  # noqa: E402
from news_ai_assets.mind import sample  # noqa: E402
from news_ai_assets.mind.reader import discover_splits, read_news  # noqa: E402

REAL = ROOT.parent / "shared" / "mind_real_subset"


def news_texts(count: int) -> tuple[list[str], str]:
    if (REAL / "MINDsmall_train" / "news.tsv").exists():
        source, folder = "real MIND news", REAL
    else:
        source, folder = "generated sample news", Path(tempfile.mkdtemp())
        sample.generate(folder, "demo")
    news = read_news(discover_splits(folder))[0]
    texts = news.select(TEXT_FIELDS["title_abstract"]).to_series().to_list()
    return texts[:count], source


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    texts, source = news_texts(args.texts)
    print(f"{len(texts)} {source}, device {args.device}, batch {args.batch_size}\n")
    rows, reference = [], None
    for backend in BACKENDS:
        for precision in PRECISIONS:
            try:
                encoder = Encoder(EncoderSpec(device=args.device, backend=backend, precision=precision))
            except EmbeddingModelError as err:
                rows.append({"option": f"{backend}/{precision}", "texts/s": "refused", "min cosine": str(err)[:80]})
                continue
            list(encoder.encode(texts[:64], args.batch_size))  # warm-up
            seconds = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                vectors = np.concatenate(list(encoder.encode(texts, args.batch_size)))
                seconds.append(time.perf_counter() - started)
            if reference is None:  # torch/fp32 comes first: sentence-transformers as published
                reference = vectors
            cosine = (vectors * reference).sum(axis=1)
            rows.append({
                "option": f"{backend}/{precision}", "texts/s": round(len(texts) / statistics.median(seconds), 1),
                "min cosine": round(float(cosine.min()), 6), "mean cosine": round(float(cosine.mean()), 7),
            })
            print(rows[-1], flush=True)
    table = pl.DataFrame(rows)
    with pl.Config(tbl_formatting="MARKDOWN", tbl_hide_column_data_types=True, tbl_hide_dataframe_shape=True):
        print(table)


if __name__ == "__main__":
    main()
