"""Components defined outside hqc, used from YAML/CLI by class path as a user would."""

import hashlib
import os
import time
from collections.abc import Sequence

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from hqc.stages import Encoder, Projection


class SignProjection(Projection):
    """A user's own stage: keep the first ``width`` features, squashed by a learned gain."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.width = width

    def build(self, in_features: int, num_classes: int) -> int:
        self.gain = torch.nn.Parameter(torch.ones(self.width))
        return self.width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.gain * x[:, : self.width] * 10)


class StallAt(Callback):
    """Signals (marker file) and then hangs at the start of ``epoch``, waiting to be killed.

    Once per marker: a run resumed after the kill finds the marker and goes on.
    """

    def __init__(self, epoch: int, marker: str) -> None:
        self.epoch = epoch
        self.marker = marker

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.current_epoch == self.epoch and not os.path.exists(self.marker):
            with open(self.marker, "w") as f:
                f.write(str(os.getpid()))
            time.sleep(600)


class RecordLoss(Callback):
    """Keeps every training-step loss, to compare runs step by step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


class HashEncoder(Encoder):
    """A cheap stand-in for a sentence transformer: a fixed random vector per word, averaged.

    CLI tests that start ``python -m hqc`` as a subprocess use it to skip loading a transformer.
    """

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.out_features = dim

    def _word(self, word: str) -> torch.Tensor:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
        return torch.randn(self.out_features, generator=torch.Generator().manual_seed(seed))

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.stack([torch.stack([self._word(w) for w in t.split()]).mean(0) for t in texts])
