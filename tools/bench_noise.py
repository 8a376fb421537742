"""Cost of shots and of the noisy Aer validation callback on the paper's hybrid pipeline.

One command::

    HQC_DATA_DIR=../shared/data/sst2 python tools/bench_noise.py [--rounds 3] [--preset P]

Builds ``configs/hybrid.yaml`` (paper protocol: 435 train / 77 validation sentences, batch 64)
and times, in interleaved rounds (the machine is shared: both settings see the same load):

* one training epoch (forward, backward, Adam) exact vs with ``execution.shots = 1024``;
* one ``NoisyAerValidation`` pass over the validation split under ``--preset`` with 1024 shots
  (SamplerV2, density-matrix method) and exact noisy values (EstimatorV2, ``shots: null``),
  the sQEs on their training execution (the default, ``classical_encoders``); the first pass
  also transpiles;
* once, ``classical_encoders=False`` (the sQEs' amplitude loaders on noisy Aer too) on the first
  ``--encoder-sentences`` validation sentences, per sentence.

Records the load average beside the numbers (the machine is shared).

Prints medians as a Markdown table and writes ``tools/results/noise.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from hqc.main import main
from hqc.noise import NoisyAerValidation
from hqc.quantum.execution import Execution

ROOT = Path(__file__).resolve().parents[1]


def train_epoch(model, loader, shots: int | None) -> float:
    """Seconds for one epoch of Adam steps with every quantum layer at ``shots``."""
    model.set_execution(Execution(shots=shots))
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.02)
    start = time.perf_counter()
    for batch in loader:
        loss = torch.nn.functional.cross_entropy(model(batch["text"]), batch["label"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def timed(callback: NoisyAerValidation, model, loaders) -> float:
    """Seconds for one ``callback.evaluate`` (the first call also transpiles, once per fit)."""
    start = time.perf_counter()
    callback.evaluate(model, loaders)
    return time.perf_counter() - start


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--preset", default="ionq_aria")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (shared machine)")
    parser.add_argument(
        "--encoder-sentences",
        type=int,
        default=4,
        help="validation sentences for the classical_encoders=False pass (sQEs on Aer too)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    cli = main(["--config", str(ROOT / "configs/hybrid.yaml")], run=False)
    model, data = cli.model, cli.datamodule
    data.setup("fit")
    model.encoder.warm(data.train_data.texts + data.val_data.texts, "cpu")
    train, val = data.train_dataloader(), data.val_dataloader()
    callbacks = {
        f"{args.preset}, 1024 shots": NoisyAerValidation(args.preset, shots=1024),
        f"{args.preset}, exact noisy": NoisyAerValidation(args.preset, shots=None),
    }
    times: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for shots in (None, 1024):
            times.setdefault(f"train epoch, shots={shots}", []).append(
                train_epoch(model, train, shots)
            )
        model.eval()
        for name, callback in callbacks.items():
            times.setdefault(f"noisy validation pass, {name}", []).append(
                timed(callback, model, [val])
            )
    batch = next(iter(val))
    few = [{key: value[: args.encoder_sentences] for key, value in batch.items()}]
    with_encoders = NoisyAerValidation(args.preset, shots=1024, classical_encoders=False)
    seconds = timed(with_encoders, model, [few])
    times["sQEs on Aer too (classical_encoders=False), per sentence"] = [
        seconds / args.encoder_sentences
    ]
    medians = {name: statistics.median(values) for name, values in times.items()}
    later = {
        name: statistics.median(values[1:])
        for name, values in times.items()
        if name.startswith("noisy") and len(values) > 1
    }
    load_end = os.getloadavg()
    print(f"load average at start {load_start}, at end {load_end}, {args.threads} torch thread(s)")
    print("| what | median s | rounds | median s without the first (transpiling) pass |")
    print("|---|---|---|---|")
    for name, value in medians.items():
        rest = f"{later[name]:.2f}" if name in later else ""
        print(f"| {name} | {value:.3f} | {len(times[name])} | {rest} |")
    out = ROOT / "tools/results/noise.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"times": times, "medians": medians, "later_passes": later}
    record |= {"load_start": load_start, "load_end": load_end, "threads": args.threads}
    record["measured"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main_bench()
