"""Sentences per second of the frozen MiniLM encoder against sentence-transformers' settings.

One command::

    HQC_DATA_DIR=../shared/data/sst2 python tools/bench_encode.py [--sentences 1024]

Encodes the first ``--sentences`` sentences of ``test.jsonl`` with ``SentenceTransformer.encode``
(the call ``hqc.encoder.SentenceEncoder`` makes) at several batch sizes and torch thread
counts, in interleaved rounds (the machine is shared: every setting sees the same load), and
reports the median sentences/s and the smallest cosine similarity of each setting's
embeddings to those of hqc's setting (batch 128). ``encode`` always sorts the sentences by
length before batching (sentence-transformers does it internally), so padding is already
minimal; there is no switch to measure it off. Results: ``tools/results/encode.json``,
rendered into ``BENCHMARKS.md`` (block ``encode``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_common import (
    RESULTS_DIR,
    ResultStore,
    default_threads,
    fmt_time,
    machine_info,
    md_table,
    replace_block,
)

HQC_BATCH = 128
"""``SentenceEncoder``'s default batch size: the reference setting."""


def render(store: ResultStore) -> str:
    """Sentences/s per (threads, batch size), ratio to hqc's setting, worst cosine."""
    runs = store.data["runs"]
    ref = runs.get(f"{max(r['threads'] for r in runs.values())}|{HQC_BATCH}")
    rows = [
        [
            r["threads"],
            r["batch_size"],
            f"{r['sentences_per_s']:.0f}",
            f"{r['sentences_per_s'] / ref['sentences_per_s']:.2f}×" if ref else "–",
            fmt_time(r["median_s"]),
            f"{1 - r['min_cosine']:.1e}",
        ]
        for r in sorted(runs.values(), key=lambda r: (r["threads"], r["batch_size"]))
    ]
    text = md_table(
        ["threads", "batch size", "sentences/s", "vs hqc's (batch 128)", "time", "1 - min cos"],
        rows,
    )
    replace_block("encode", text)
    (RESULTS_DIR / "encode.md").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> None:
    """Interleaved rounds over (threads, batch size); medians; cosine to the reference."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sentences", type=int, default=1024)
    parser.add_argument("--batch-sizes", default="16,32,64,128,256")
    parser.add_argument("--threads", default=f"1,{default_threads()}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args(argv)
    store = ResultStore(RESULTS_DIR / "encode.json")
    if not args.render and "HQC_DATA_DIR" not in os.environ:
        parser.error("no data: set HQC_DATA_DIR (e.g. ../shared/data/sst2)")
    if not args.render:
        import torch
        from sentence_transformers import SentenceTransformer

        from hqc.encoder import DEFAULT_MODEL, resolve_model

        data = Path(os.environ["HQC_DATA_DIR"]) / "test.jsonl"
        with data.open() as f:
            texts = [json.loads(line)["text"] for line in itertools.islice(f, args.sentences)]
        model = SentenceTransformer(resolve_model(DEFAULT_MODEL), device="cpu")
        settings = [
            (int(t), int(b)) for t in args.threads.split(",") for b in args.batch_sizes.split(",")
        ]
        times: dict[tuple[int, int], list[float]] = {s: [] for s in settings}
        embeddings = {}
        load = [os.getloadavg()[0]]
        for r in range(args.rounds):
            for threads, batch in settings[r % len(settings) :] + settings[: r % len(settings)]:
                torch.set_num_threads(threads)
                t0 = time.perf_counter()
                emb = model.encode(texts, batch_size=batch, convert_to_tensor=True)
                times[threads, batch].append(time.perf_counter() - t0)
                embeddings[threads, batch] = emb
            load.append(os.getloadavg()[0])
        ref = embeddings[max(t for t, _ in settings), HQC_BATCH]
        store.data["machine"] = machine_info(max(t for t, _ in settings))
        store.data["runs"] = {}
        for (threads, batch), ts in times.items():
            cos = torch.nn.functional.cosine_similarity(embeddings[threads, batch], ref, dim=1)
            median = statistics.median(ts)
            store.data["runs"][f"{threads}|{batch}"] = {
                "threads": threads,
                "batch_size": batch,
                "median_s": median,
                "times_s": ts,
                "sentences_per_s": len(texts) / median,
                "min_cosine": float(cos.min()),
            }
        store.data["settings"] = {"sentences": len(texts), "rounds": args.rounds, "load": load}
        store.save()
    print(render(store))


if __name__ == "__main__":
    main()
