"""A fixed (untrained) projection to k features: the fair small classical head's front end.

A parameter-matched classical head on a 768-dim embedding cannot afford a trained first layer
(768 → 1 → 2 already has 773 parameters and dies at chance on some seeds). Like the sQE's
amplitude loader, a fixed map shrinks the embedding without training: principal components
of the training split, or a seeded Gaussian random projection. Its numbers are frozen
parameters (``requires_grad=False``), so the parameter table lists them as frozen, apart from
the trained head behind it.

PCA must see the training split only. :class:`FitFixedProjection` is the Lightning callback
that fits it at the start of ``fit`` from ``trainer.datamodule.train_data`` (the embeddings
the classifier's ``setup`` has just cached); the fitted map is saved in checkpoints, so
test/predict from a checkpoint and resumed fits reuse it.

    model.init_args.projection: {class_path: hqc.fixed_projection.FixedProjection,
                                 init_args: {out_features: 8, method: pca}}
    trainer.callbacks: [{class_path: hqc.fixed_projection.FitFixedProjection}]
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from sklearn.decomposition import PCA
from sklearn.random_projection import GaussianRandomProjection
from torch import nn

from hqc.errors import UserError
from hqc.stages import Projection


class FixedProjection(Projection):
    """``d → k`` affine map ``(x − offset) · Wᵀ`` that training never changes.

    Args:
        out_features: k, the number of features kept.
        method: ``pca`` (top-k principal components of the training embeddings; needs
            :class:`FitFixedProjection`) or ``random`` (Gaussian entries of variance 1/k,
            drawn from ``seed`` at build time, no data needed).
        whiten: PCA only: scale each component to unit variance on the training split, so the
            small head behind it sees features of equal scale.
        seed: random only: the draw of the matrix.
    """

    def __init__(
        self,
        out_features: int,
        method: Literal["pca", "random"] = "pca",
        whiten: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if out_features < 1:
            raise UserError(f"projection.out_features must be >= 1, got {out_features}")
        if method not in ("pca", "random"):
            raise UserError(f"projection.method must be 'pca' or 'random', got {method!r}")
        self.out_features = out_features
        self.method = method
        self.whiten = whiten
        self.seed = seed

    def build(self, in_features: int, num_classes: int) -> int:
        """Create the frozen matrix (drawn now for ``random``; fitted later for ``pca``)."""
        if self.method == "pca" and self.out_features > in_features:
            raise UserError(
                f"projection.out_features={self.out_features} exceeds the embedding width "
                f"{in_features}: PCA keeps at most that many components"
            )
        self.weight = nn.Parameter(torch.zeros(self.out_features, in_features), False)
        self.offset = nn.Parameter(torch.zeros(in_features), False)
        self.register_buffer("fitted", torch.tensor(False))
        if self.method == "random":
            projection = GaussianRandomProjection(self.out_features, random_state=self.seed)
            projection.fit(np.zeros((1, in_features)))
            self._set(projection.components_, np.zeros(in_features))
        return self.out_features

    def fit(self, embeddings: torch.Tensor) -> None:
        """Fit the PCA on the training split's embeddings ``(n, d)``."""
        if self.out_features > len(embeddings):
            raise UserError(
                f"projection.out_features={self.out_features} exceeds the {len(embeddings)} "
                "training sentences: PCA keeps at most that many components"
            )
        pca = PCA(self.out_features, whiten=self.whiten, svd_solver="full")
        pca.fit(embeddings.detach().cpu().double().numpy())
        scale = np.sqrt(pca.explained_variance_)[:, None] if self.whiten else 1.0
        self._set(pca.components_ / scale, pca.mean_)

    def _set(self, weight: np.ndarray, offset: np.ndarray) -> None:
        with torch.no_grad():
            self.weight.copy_(torch.as_tensor(weight))
            self.offset.copy_(torch.as_tensor(offset))
            self.fitted.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``(B, d)`` to ``(B, k)``."""
        if not self.fitted:
            raise UserError(
                "projection FixedProjection(method='pca') is not fitted: add "
                "trainer.callbacks: [{class_path: hqc.fixed_projection.FitFixedProjection}]"
            )
        return (x - self.offset) @ self.weight.T


class FitFixedProjection(Callback):
    """Fits an unfitted PCA :class:`FixedProjection` on the training split when ``fit`` starts."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Embed the training sentences with the model's encoder and fit the projection."""
        projection = getattr(pl_module, "projection", None)
        if not isinstance(projection, FixedProjection) or projection.fitted:
            return
        datamodule = trainer.datamodule
        if datamodule is None or getattr(datamodule, "train_data", None) is None:
            raise UserError("FitFixedProjection needs a datamodule with a training split")
        with torch.no_grad():
            embeddings = pl_module.encoder(datamodule.train_data.texts)
        projection.fit(embeddings)
