"""Cost of shots and of the noisy Aer validation callback on the paper's hybrid pipeline.

One command::

    HQC_DATA_DIR=../shared/data/sst2 python tools/bench_noise.py [--rounds 3] [--preset P]

Builds ``configs/hybrid.yaml`` (paper protocol: 435 train / 77 validation sentences, batch 64)
and times, in interleaved rounds (the machine is shared: both settings see the same load):

* one training epoch (forward, backward, Adam) exact vs with ``execution.shots = 1024``;
* one ``NoisyAerValidation`` pass over the validation split under ``--preset`` with 1024 shots
  (SamplerV2, density-matrix method) and exact noisy values (EstimatorV2, ``shots: null``).

Prints medians as a Markdown table and writes ``tools/results/noise.json``.
"""

from __future__ import annotations

import argparse
import json
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


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--preset", default="ionq_aria")
    args = parser.parse_args()
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
            start = time.perf_counter()
            callback.evaluate(model, [val])
            times.setdefault(f"noisy validation pass, {name}", []).append(
                time.perf_counter() - start
            )
    medians = {name: statistics.median(values) for name, values in times.items()}
    print("| what | median s | rounds |\n|---|---|---|")
    for name, value in medians.items():
        print(f"| {name} | {value:.2f} | {len(times[name])} |")
    out = ROOT / "tools/results/noise.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"times": times, "medians": medians}, indent=1))


if __name__ == "__main__":
    main_bench()
