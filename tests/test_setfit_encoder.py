"""hqc.setfit_encoder: a SetFit-tuned body, trained on the training split only, cached."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer

from hqc.classifier import Classifier
from hqc.data import SentenceDataModule
from hqc.encoder import SentenceEncoder
from hqc.errors import UserError
from hqc.mlp import MLP
from hqc.setfit_encoder import SetFitEncoder, TuneSetFitBody

pytest.importorskip("setfit", reason="the SetFit body needs `pip install -e .[setfit]`")

RECIPE = {"num_iterations": 1, "pair_batch_size": 4, "body_lr": 1e-4}


def test_callback_tunes_on_the_training_split_before_embeddings_are_cached(
    tiny_data_dir, tmp_path, monkeypatch
):
    cache = str(tmp_path / "cache")
    encoder = SetFitEncoder(cache_dir=cache, **RECIPE)
    data = SentenceDataModule(source=str(tiny_data_dir), protocol="paper", per_class=4, seed=0)
    tuned_on = []
    train = SetFitEncoder._train

    def spy(self, texts, labels, folder):
        tuned_on.append(list(texts))
        train(self, texts, labels, folder)

    monkeypatch.setattr(SetFitEncoder, "_train", spy)
    model = Classifier(encoder=encoder, core=MLP(hidden=0))
    trainer = Trainer(
        max_epochs=1,
        callbacks=[TuneSetFitBody()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=data)
    assert tuned_on == [data.train_data.texts]  # the 6 training sentences, nothing else
    assert encoder.recipe["seed"] == data.seed == 0  # unset seed: the draw's
    frozen = SentenceEncoder(cache_dir=cache)
    test = data.test_data.texts
    assert encoder.identity() != frozen.identity()  # tuned weights: their own cache key
    moved = (encoder(test) - frozen(test)).abs().max()
    assert moved > 1e-3  # the body really changed
    assert encoder.out_features == frozen.out_features == 384

    # A second encoder with the same recipe and split loads the tuned body, never retrains.
    monkeypatch.setattr(SetFitEncoder, "_train", lambda *a: pytest.fail("retrained"))
    again = SetFitEncoder(cache_dir=cache, **RECIPE)
    again.tune(data.train_data.texts, data.train_data.labels, seed=0)
    torch.testing.assert_close(again(test), encoder(test))
    other_split = SentenceDataModule(source=str(tiny_data_dir), per_class=4, seed=1).train_data
    assert again.body_dir(other_split.texts, other_split.labels) != again.body_dir(
        data.train_data.texts, data.train_data.labels
    )


def test_untuned_encoder_names_the_callback(tmp_path):
    encoder = SetFitEncoder(cache_dir=str(tmp_path), **RECIPE)
    with pytest.raises(UserError, match="TuneSetFitBody"):
        encoder(["a good film"])
    with pytest.raises(UserError, match="TuneSetFitBody"):
        encoder.warm(["a good film"])


def test_bad_recipe_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="num_iterations"):
        SetFitEncoder(cache_dir=str(tmp_path), num_iterations=0)
    with pytest.raises(UserError, match=r"encoder\.seed is unset"):
        SetFitEncoder(cache_dir=str(tmp_path), **RECIPE).tune(["a good film"], [1])
