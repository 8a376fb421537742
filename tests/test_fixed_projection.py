"""hqc.fixed_projection: an untrained PCA / random map fit on the training split only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from sklearn.decomposition import PCA
from sklearn.random_projection import GaussianRandomProjection

from hqc.classifier import Classifier
from hqc.data import SentenceDataModule
from hqc.encoder import SentenceEncoder
from hqc.errors import UserError
from hqc.fixed_projection import FitFixedProjection, FixedProjection
from hqc.mlp import MLP


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return SentenceEncoder(cache_dir=str(tmp_path_factory.mktemp("cache")))


def fitted_classifier(encoder, data, tmp_path, k=4):
    model = Classifier(encoder=encoder, projection=FixedProjection(k), core=MLP(hidden=3))
    trainer = Trainer(
        max_epochs=3,
        callbacks=[FitFixedProjection()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=data)
    return model


def test_pca_is_fit_on_the_training_split_only_and_stays_fixed(encoder, tiny_data_dir, tmp_path):
    data = SentenceDataModule(source=str(tiny_data_dir), protocol="paper", per_class=6, seed=1)
    model = fitted_classifier(encoder, data, tmp_path)
    train = encoder(data.train_data.texts).numpy()
    expected = PCA(4, whiten=True, svd_solver="full").fit(train).transform(train)
    got = model.projection(torch.as_tensor(train)).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)  # after 3 epochs of Adam: unchanged
    np.testing.assert_allclose(got.std(0, ddof=1), 1.0, atol=1e-4)  # whitened on train
    everything = encoder(data.all_texts()).numpy()
    leaked = PCA(4, whiten=True, svd_solver="full").fit(everything).transform(train)
    assert np.abs(got - leaked).max() > 0.1  # would match had val/test been used


def test_parameter_table_lists_the_projection_as_frozen(encoder, tiny_data_dir, tmp_path):
    data = SentenceDataModule(source=str(tiny_data_dir), protocol="paper", per_class=6, seed=0)
    model = fitted_classifier(encoder, data, tmp_path)
    rows = {line.split()[0]: line.split()[1:] for line in model.parameter_table().splitlines()}
    assert rows["projection"] == ["FixedProjection", "0", f"{4 * 384 + 384:,}"]
    assert rows["core"] == ["MLP", str(4 * 3 + 3 + 3 * 2 + 2), "0"]
    assert rows["total"] == ["23"]  # only the MLP is trained


def test_fitted_map_travels_in_the_state_dict(encoder, tiny_data_dir, tmp_path):
    data = SentenceDataModule(source=str(tiny_data_dir), protocol="paper", per_class=6, seed=0)
    model = fitted_classifier(encoder, data, tmp_path)
    fresh = Classifier(encoder=encoder, projection=FixedProjection(4), core=MLP(hidden=3))
    fresh.load_state_dict(model.state_dict())
    x = encoder(data.test_data.texts)
    torch.testing.assert_close(fresh(data.test_data.texts), model(data.test_data.texts))
    assert fresh.projection(x).shape == (len(x), 4)


def test_unfitted_pca_names_the_callback(encoder):
    model = Classifier(encoder=encoder, projection=FixedProjection(4), core=MLP(hidden=3))
    with pytest.raises(UserError, match="FitFixedProjection"):
        model(["a good film"])


def test_random_projection_is_seeded_and_needs_no_data():
    projection = FixedProjection(8, method="random", seed=3)
    projection.build(64, 2)
    expected = GaussianRandomProjection(8, random_state=3).fit(np.zeros((1, 64))).components_
    np.testing.assert_allclose(projection.weight.numpy(), expected, rtol=1e-6)
    x = torch.randn(5, 64)
    torch.testing.assert_close(projection(x), x @ projection.weight.T)
    other = FixedProjection(8, method="random", seed=4)
    other.build(64, 2)
    assert not torch.equal(other.weight, projection.weight)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"out_features": 0}, "out_features"),
        ({"out_features": 4, "method": "svd"}, "method"),
        ({"out_features": 500}, "embedding width"),
    ],
)
def test_bad_settings_are_user_errors(kwargs, match):
    with pytest.raises(UserError, match=match):
        FixedProjection(**kwargs).build(384, 2)
