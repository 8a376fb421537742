"""SentenceEncoder: offline default, embedding cache miss then hit, trainable mode."""

import pytest
import torch

from hqc.encoder import SentenceEncoder

TEXTS = ["a gripping , funny film", "dull and lifeless", "an utter mess", "a quiet triumph"]


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    return SentenceEncoder(cache_dir=str(tmp_path_factory.mktemp("cache")))


def test_default_model_is_offline_minilm(frozen):
    assert frozen.out_features == 384
    assert list(frozen.parameters()) == []  # frozen transformer stays out of checkpoints


def test_cache_miss_then_hit(tmp_path, frozen, monkeypatch):
    encoder = SentenceEncoder(cache_dir=str(tmp_path))
    encoder.warm(TEXTS)
    files = list(tmp_path.glob("*/*.pt"))
    assert len(files) == 1
    first = encoder(TEXTS)
    assert first.shape == (4, 384)

    again = SentenceEncoder(cache_dir=str(tmp_path))

    def no_encoding(*args, **kwargs):
        raise AssertionError("a cache hit must not run the transformer")

    monkeypatch.setattr(again, "_encode", no_encoding)
    again.warm(list(reversed(TEXTS)))  # same texts, other order: same cache entry
    torch.testing.assert_close(again(TEXTS), first)
    assert list(tmp_path.glob("*/*.pt")) == files


def test_another_draw_of_the_corpus_reuses_the_cache(tmp_path, monkeypatch):
    """Seeds draw other train/val/test splits of one corpus: no split may be encoded twice."""
    encoder = SentenceEncoder(cache_dir=str(tmp_path))
    encoder.warm(TEXTS[:3])  # draw 1: train split
    encoder.warm(TEXTS[3:])  # draw 1: test split
    first = encoder(TEXTS)
    again = SentenceEncoder(cache_dir=str(tmp_path))
    monkeypatch.setattr(again, "_encode", lambda *a, **k: pytest.fail("re-encoded a draw"))
    again.warm(TEXTS[1:])  # draw 2: a split spanning both shards
    again.warm(TEXTS[:1])
    torch.testing.assert_close(again(TEXTS), first)


def test_cache_key_follows_texts_and_settings(tmp_path):
    encoder = SentenceEncoder(cache_dir=str(tmp_path))
    encoder.warm(TEXTS[:2])
    encoder.warm(TEXTS)  # only the two new texts are encoded, into their own entry
    normalized = SentenceEncoder(cache_dir=str(tmp_path), normalize=True)
    assert normalized.identity() != encoder.identity()
    normalized.warm(TEXTS[:2])
    assert len(list(tmp_path.glob("*/*.pt"))) == 3
    torch.testing.assert_close(normalized(TEXTS).norm(dim=1), torch.ones(4))


def test_unwarmed_texts_are_encoded_on_the_fly(frozen):
    direct = frozen._frozen.encode(["never seen before"], convert_to_tensor=True)
    torch.testing.assert_close(frozen(["never seen before"]), direct)


def test_trainable_matches_frozen_and_gets_gradients(frozen):
    encoder = SentenceEncoder(trainable=True).eval()
    out = encoder(TEXTS)
    torch.testing.assert_close(out, frozen(TEXTS), atol=1e-5, rtol=1e-4)
    out.sum().backward()
    grads = [p.grad for p in encoder.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_bad_model_names_the_setting(tmp_path):
    with pytest.raises(ValueError, match=r"encoder\.model="):
        SentenceEncoder(model=str(tmp_path / "no-such-model"))
