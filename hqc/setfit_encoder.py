"""A SetFit-tuned body: the sentence transformer contrastively fine-tuned on the training split.

The public reproductions attribute the paper's margin to the body rather than the quantum
head: SetFit-style contrastive tuning on the same 435 sentences lifted logistic regression
from ≈ 89 % to 92.56 %. This encoder makes that body a swappable stage, so any head (classical
or quantum) can sit on it. The ``setfit`` library tunes it (pairs of same-label sentences
pulled together, different-label pushed apart, cosine-similarity loss; SetFit's defaults:
20 pair iterations per sentence, one epoch, batch 16, body learning rate 2e-5); the head it
also fits is discarded. Afterwards the body is frozen and behaves exactly like
:class:`hqc.encoder.SentenceEncoder`: embeddings are cached on disk under the tuned weights'
own identity.

Tuning sees the training split only and is itself cached: the tuned body is saved under
``<cache>/setfit/<key>``, the key covering the base model's weights, the recipe, the seed and
the exact training sentences and labels, so a rerun (or test/predict in a new process) loads
it instead of training again. :class:`TuneSetFitBody` is the Lightning callback that tunes
at ``setup`` from ``trainer.datamodule.train_data``, before the classifier caches embeddings.

    encoder: {class_path: hqc.setfit_encoder.SetFitEncoder, init_args: {seed: 0}}
    trainer.callbacks: [{class_path: hqc.setfit_encoder.TuneSetFitBody}]
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from hqc.encoder import DEFAULT_MODEL, SentenceEncoder, resolve_model, texts_digest
from hqc.errors import UserError


class SetFitEncoder(SentenceEncoder):
    """A frozen sentence encoder whose body is first tuned with SetFit on labelled sentences.

    Args:
        model: the base sentence-transformers model (as for :class:`SentenceEncoder`).
        num_iterations: SetFit's pair iterations: each training sentence gets this many
            positive and this many negative partners.
        epochs: passes over the pairs.
        pair_batch_size: pairs per optimisation step.
        body_lr: learning rate of the body.
        seed: seed of the pair sampling and the training order; ``None`` (the default) takes
            the datamodule's ``seed`` at tuning, so each draw of the protocol gets its own body
            and an ablation matrix's seeds drive it with no extra setting.
        cache_dir: embedding and tuned-body cache (default ``$HQC_CACHE_DIR`` or ``~/.cache/hqc``).
        batch_size: sentences per encoding batch.
        normalize: L2-normalise embeddings.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        num_iterations: int = 20,
        epochs: int = 1,
        pair_batch_size: int = 16,
        body_lr: float = 2e-5,
        seed: int | None = None,
        cache_dir: str | None = None,
        batch_size: int = 128,
        normalize: bool = False,
    ) -> None:
        super().__init__(
            model=model, cache_dir=cache_dir, batch_size=batch_size, normalize=normalize
        )
        if num_iterations < 1 or epochs < 1 or pair_batch_size < 1:
            raise UserError(
                "encoder.num_iterations, encoder.epochs and encoder.pair_batch_size must be >= 1"
            )
        self.recipe = {
            "num_iterations": num_iterations,
            "num_epochs": epochs,
            "batch_size": pair_batch_size,
            "body_learning_rate": body_lr,
            "seed": seed,
        }
        self.tuned = False

    def body_dir(self, texts: Sequence[str], labels: Sequence[int]) -> Path:
        """Cache folder of the body tuned on ``texts``/``labels`` with this recipe."""
        h = hashlib.sha256(f"{self.identity()}|{sorted(self.recipe.items())}".encode())
        h.update(texts_digest(texts).encode())
        h.update(",".join(map(str, labels)).encode())
        return self.cache_dir / "setfit" / h.hexdigest()[:24]

    def tune(self, texts: Sequence[str], labels: Sequence[int], seed: int | None = None) -> None:
        """Tune the body on the training split (or load that tuned body from the cache).

        ``seed`` fills the recipe's seed when the encoder was built without one.
        """
        from sentence_transformers import SentenceTransformer

        if self.tuned:
            return
        if self.recipe["seed"] is None:
            if seed is None:
                raise UserError("encoder.seed is unset and no datamodule seed was given to tune()")
            self.recipe["seed"] = seed
        folder = self.body_dir(texts, labels)
        if not (folder / "modules.json").exists():
            self._train(texts, labels, folder)
        body = SentenceTransformer(str(folder), device="cpu")
        body.requires_grad_(False)
        object.__setattr__(self, "_frozen", body)
        self._table.clear()
        self._identity = None  # the tuned weights get their own embedding cache entries
        self.tuned = True

    def _train(self, texts: Sequence[str], labels: Sequence[int], folder: Path) -> None:
        from datasets import Dataset
        from setfit import SetFitModel, TrainingArguments
        from setfit import Trainer as SetFitTrainer

        model = SetFitModel.from_pretrained(resolve_model(self.model_name), device="cpu")
        with tempfile.TemporaryDirectory(prefix="hqc-setfit-") as work:
            args = TrainingArguments(
                output_dir=work,
                **self.recipe,
                show_progress_bar=False,
                report_to="none",
                save_strategy="no",
                eval_strategy="no",
                logging_strategy="no",
            )
            data = Dataset.from_dict({"text": list(texts), "label": list(labels)})
            SetFitTrainer(model=model, args=args, train_dataset=data).train()
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            model.model_body.save(str(staging))
            try:
                os.replace(staging, folder)  # atomic: a killed tuning never leaves a torn body
            except OSError:
                if not (folder / "modules.json").exists():
                    raise
                # a parallel run tuned the same body first; its copy is the same recipe's
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _require_tuned(self) -> None:
        if not self.tuned:
            raise UserError(
                "encoder SetFitEncoder is not tuned yet: add trainer.callbacks: "
                "[{class_path: hqc.setfit_encoder.TuneSetFitBody}] (or call tune() first)"
            )

    def warm(self, texts: Sequence[str], device: torch.device | str = "cpu") -> None:
        """Cache the tuned body's embeddings of ``texts``."""
        self._require_tuned()
        super().warm(texts, device)

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed a batch with the tuned body: ``(B, out_features)``."""
        self._require_tuned()
        return super().forward(texts)


class TuneSetFitBody(Callback):
    """Tunes a :class:`SetFitEncoder` on the datamodule's training split at ``setup``.

    Lightning runs callbacks' ``setup`` after the datamodule's and before the model's, so the
    classifier then caches embeddings of the tuned body.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Tune (or load the cached tuned body) before any embedding is computed."""
        encoder = getattr(pl_module, "encoder", None)
        if not isinstance(encoder, SetFitEncoder) or encoder.tuned:
            return
        train = getattr(trainer.datamodule, "train_data", None)
        if train is None or train.labels is None:
            raise UserError("TuneSetFitBody needs a datamodule with a labelled training split")
        encoder.tune(train.texts, train.labels, seed=getattr(trainer.datamodule, "seed", None))
