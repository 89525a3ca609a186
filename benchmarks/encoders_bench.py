"""Encoder benchmark: items/s per encoder, our TextEncoder against sentence-transformers, cache speed-up.

In one process run, on this machine's CPU:

1. **Text vs sentence-transformers** -- the packaged all-MiniLM-L6-v2 through our ``TextEncoder`` and
   through ``SentenceTransformer(model_dir).encode`` with the same settings (max_seq_length 256 from
   the model's config, the same batch size, the same torch thread count, both sorting by length).
   Agreement is checked first (row cosine >= 0.9999), then the two are timed on the same chunks of
   ``--chunk`` texts, back to back in alternating order, for ``--repeats`` rounds over the whole
   catalogue; the throughput ratio of the summed times is the headline.
2. **Cache** -- the same catalogue with ``cache_dir``: first run (encode + write) against a second
   run in a fresh encoder (shards read from disk, every row a hit).
3. **Image** -- EfficientNet-Lite0 (timm) on crops of scikit-learn's two photographs, decode included.
4. **Audio** -- Whisper tiny.en (faster-whisper) embeddings and greedy transcripts of espeak-ng speech.

Timings are only comparable within one run (the machine may be shared); ratios are what to read.

Usage::

    python benchmarks/encoders_bench.py                    # 1,000 texts, 3 repeats
    python benchmarks/encoders_bench.py --texts 300 --repeats 2 --skip image audio
    python benchmarks/encoders_bench.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WORDS = [
    "wool",
    "cotton",
    "linen",
    "denim",
    "leather",
    "silk",
    "red",
    "blue",
    "green",
    "black",
    "white",
    "navy",
    "grey",
    "warm",
    "light",
    "soft",
    "classic",
    "slim",
    "relaxed",
    "fit",
    "jacket",
    "sweater",
    "shirt",
    "dress",
    "scarf",
    "boots",
    "sneakers",
    "bag",
    "belt",
    "hat",
    "gloves",
    "coat",
    "for",
    "men",
    "women",
    "kids",
    "winter",
    "summer",
    "autumn",
    "spring",
    "running",
    "hiking",
    "office",
    "party",
    "travel",
    "rain",
    "snow",
    "waterproof",
    "breathable",
    "handmade",
    "organic",
    "recycled",
    "vintage",
    "modern",
    "pocket",
    "zip",
    "button",
    "collar",
    "sleeve",
    "machine",
    "washable",
    "size",
    "small",
    "medium",
    "large",
    "extra",
    "comfortable",
    "durable",
    "lightweight",
    "stylish",
]


def make_texts(n: int, seed: int = 0) -> list[str]:
    """Product-description-like texts of varied length (4..150 words), like a real catalogue."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(mean=3.0, sigma=0.8, size=n).astype(int), 4, 150)
    return [" ".join(rng.choice(WORDS, size=k)).capitalize() + f". Item {i}." for i, k in enumerate(lengths)]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bench_text(args, report):
    import torch
    from sentence_transformers import SentenceTransformer

    from mmrec_fast.encoders import TextEncoder

    torch.set_num_threads(args.threads)
    texts = make_texts(args.texts)
    ours = TextEncoder(batch_size=args.batch_size, num_threads=args.threads, progress=False)
    st = SentenceTransformer(str(ours.model_dir), device="cpu")
    assert st.max_seq_length == ours.max_length, (st.max_seq_length, ours.max_length)

    # Agreement before timing (this also warms both paths up).
    a = ours.encode(texts)
    b = st.encode(texts, batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    report["text_agreement"] = {
        "min_cosine": float(cos.min()),
        "mean_cosine": float(cos.mean()),
        "max_abs_diff": float(np.abs(a - b).max()),
    }
    print(f"text agreement: min cosine {cos.min():.7f}, max |diff| {np.abs(a - b).max():.2e}")

    # Timing: the catalogue in chunks of --chunk texts; for every chunk both encoders run back to
    # back, alternating which goes first. On a shared machine the load drifts over seconds, so
    # fine-grained interleaving exposes both to the same conditions; the ratio of summed times is
    # the headline, the median of per-chunk ratios its check.
    chunks = [texts[i : i + args.chunk] for i in range(0, len(texts), args.chunk)]
    pairs = []
    totals = []
    for r in range(args.repeats):
        t_o = t_s = 0.0
        for c, chunk in enumerate(chunks):
            run_ours = lambda: ours.encode(chunk)  # noqa: E731
            run_st = lambda: st.encode(
                chunk,
                batch_size=args.batch_size,
                convert_to_numpy=True,  # noqa: E731
                show_progress_bar=False,
            )
            if (r + c) % 2 == 0:
                a, _ = timed(run_ours)
                b, _ = timed(run_st)
            else:
                b, _ = timed(run_st)
                a, _ = timed(run_ours)
            pairs.append((a, b))
            t_o, t_s = t_o + a, t_s + b
        totals.append((t_o, t_s))
        print(
            f"  round {r + 1}: ours {len(texts) / t_o:7.1f} texts/s, sentence-transformers "
            f"{len(texts) / t_s:7.1f} texts/s, ratio {t_s / t_o:.3f}"
        )
    ratios = [b / a for a, b in pairs]
    sum_ours, sum_st = sum(t[0] for t in totals), sum(t[1] for t in totals)
    best_ours, best_st = min(t[0] for t in totals), min(t[1] for t in totals)
    report["text_vs_sentence_transformers"] = {
        "texts": len(texts),
        "chunk": args.chunk,
        "rounds": args.repeats,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "max_length": ours.max_length,
        "ours_items_per_s": len(texts) * args.repeats / sum_ours,
        "st_items_per_s": len(texts) * args.repeats / sum_st,
        "ratio_total": sum_st / sum_ours,
        "ratio_median_per_chunk": statistics.median(ratios),
        "ratio_per_round": [b / a for a, b in totals],
        "ratio_best_round_vs_best_round": best_st / best_ours,
    }
    print(
        f"text: ours/sentence-transformers throughput ratio {sum_st / sum_ours:.3f} over all rounds "
        f"(median per chunk {statistics.median(ratios):.3f}, best round vs best round {best_st / best_ours:.3f})"
    )

    # Cache: first run writes, a fresh encoder (new session) reads every row back.
    cache_dir = tempfile.mkdtemp(prefix="mmrec_cache_bench_")
    try:
        cold = TextEncoder(batch_size=args.batch_size, num_threads=args.threads, cache_dir=cache_dir, progress=False)
        t_cold, r1 = timed(lambda: cold.encode_with_report(texts))
        warm = TextEncoder(batch_size=args.batch_size, num_threads=args.threads, cache_dir=cache_dir, progress=False)
        t_warm, r2 = timed(lambda: warm.encode_with_report(texts))
        assert r2.cache_hits == len(texts) and np.array_equal(r1.embeddings, r2.embeddings)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    report["text_cache"] = {"texts": len(texts), "first_s": t_cold, "cached_s": t_warm, "speedup": t_cold / t_warm}
    print(
        f"text cache: first run {t_cold:.2f} s, unchanged catalogue again {t_warm * 1e3:.1f} ms "
        f"(x{t_cold / t_warm:.0f})"
    )


def bench_image(args, report):
    from PIL import Image
    from sklearn.datasets import load_sample_image

    from mmrec_fast.encoders import ImageEncoder

    folder = Path(tempfile.mkdtemp(prefix="mmrec_img_bench_"))
    try:
        photos = [load_sample_image("china.jpg"), load_sample_image("flower.jpg")]
        paths = []
        for i in range(args.images):  # distinct JPEG files: decoding is part of the cost
            arr = photos[i % 2]
            top, left = (i * 7) % 100, (i * 11) % 200
            path = folder / f"img{i}.jpg"
            Image.fromarray(arr[top : top + 320, left : left + 420]).save(path, quality=90)
            paths.append(path)
        enc = ImageEncoder(batch_size=32, num_threads=args.threads, progress=False)
        enc.encode(paths[:4])  # warm-up
        t, v = timed(lambda: enc.encode(paths))
        assert v.shape == (len(paths), 1280)
        t_lab, _ = timed(lambda: enc.predict_labels(paths[:32], top_k=3))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report["image"] = {
        "model": enc.name,
        "images": len(paths),
        "items_per_s": len(paths) / t,
        "labels_items_per_s": 32 / t_lab,
    }
    print(
        f"image ({enc.name}): {len(paths) / t:.1f} images/s (decode+preprocess+forward), "
        f"labels {32 / t_lab:.1f} images/s"
    )


def bench_audio(args, report):
    from mmrec_fast.encoders import AudioEncoder
    from mmrec_fast.encoders.testing import speak

    if shutil.which("espeak-ng") is None:
        print("audio: skipped (espeak-ng not installed: apt-get install -y espeak-ng)")
        report["audio"] = "skipped: espeak-ng missing"
        return
    folder = Path(tempfile.mkdtemp(prefix="mmrec_audio_bench_"))
    sentences = [
        "Please play some relaxing piano music tonight.",
        "I would like to watch a funny movie about dogs.",
        "Turn on the kitchen lights please.",
        "This jacket is warm and waterproof for winter hiking.",
    ]
    try:
        clips = [
            speak(sentences[i % len(sentences)], folder / f"c{i}.wav", speed=130 + 5 * i) for i in range(args.clips)
        ]
        seconds = 0.0
        import soundfile as sf

        for c in clips:
            info = sf.info(c)
            seconds += info.frames / info.samplerate
        enc = AudioEncoder(batch_size=8, num_threads=args.threads, progress=False)
        enc.encode(clips[:1])
        t, v = timed(lambda: enc.encode(clips))
        t_tr, texts = timed(lambda: enc.transcribe(clips))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report["audio"] = {
        "model": enc.name,
        "clips": len(clips),
        "audio_seconds": seconds,
        "embed_items_per_s": len(clips) / t,
        "transcribe_items_per_s": len(clips) / t_tr,
        "example_transcript": texts[0],
    }
    print(
        f"audio ({enc.name}): embed {len(clips) / t:.2f} clips/s, transcribe {len(clips) / t_tr:.2f} clips/s "
        f"({seconds / len(clips):.1f} s per clip); e.g. {texts[0]!r}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds over the whole catalogue")
    parser.add_argument("--chunk", type=int, default=200, help="texts per interleaved timing pair")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=min(os.cpu_count() or 1, 8))
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--skip", nargs="*", default=[], choices=["text", "image", "audio"])
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    report = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    print(f"threads {args.threads}, cpu_count {os.cpu_count()}, load average {report['loadavg_start']}")
    if "text" not in args.skip:
        bench_text(args, report)
    if "image" not in args.skip:
        bench_image(args, report)
    if "audio" not in args.skip:
        bench_audio(args, report)
    report["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
