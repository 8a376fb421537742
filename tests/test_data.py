"""Tests for hqc.data: split protocols, sources, batches, and clear errors on bad input."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

import datasets
import pytest
import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer

from hqc.data import ENV_VAR, SentenceDataModule, TextSplit
from hqc.errors import UserError

SST2 = Path(__file__).parents[2] / "shared/data/sst2"


def _pooled(rows: dict[str, list[dict]]) -> list[str]:
    return [row["text"] for split in rows.values() for row in split]


def _split_texts(dm: SentenceDataModule) -> tuple[list[str], list[str], list[str]]:
    return dm.train_data.texts, dm.val_data.texts, dm.test_data.texts


# -- protocols ---------------------------------------------------------------------------------


def test_given_protocol_keeps_the_files_splits(tiny_data_dir: Path, tiny_rows: dict) -> None:
    dm = SentenceDataModule(str(tiny_data_dir), protocol="given")
    dm.setup("fit")
    assert dm.num_classes == 2
    for split, data in zip(tiny_rows, (dm.train_data, dm.val_data, dm.test_data), strict=True):
        assert data.texts == [row["text"] for row in tiny_rows[split]]
        assert data.labels == [row["label"] for row in tiny_rows[split]]


@pytest.mark.parametrize("per_class", [4, 8])
def test_paper_protocol_sizes_partition_and_stratification(
    tiny_data_dir: Path, tiny_rows: dict, per_class: int
) -> None:
    dm = SentenceDataModule(str(tiny_data_dir), per_class=per_class)
    train, val, test = dm.train_data, dm.val_data, dm.test_data
    n_val = {4: 2, 8: 3}[per_class]  # ceil(0.15 * 2 * per_class), as scikit-learn rounds
    assert (len(train), len(val), len(test)) == (2 * per_class - n_val, n_val, 40 - 2 * per_class)
    # every pooled sentence lands in exactly one split (the tiny texts are distinct)
    assert sorted(train.texts + val.texts + test.texts) == sorted(_pooled(tiny_rows))
    # the draw is per_class of each class; the validation part holds both classes
    assert Counter(train.labels + val.labels) == {0: per_class, 1: per_class}
    assert set(val.labels) == {0, 1}
    # labels travel with their sentences
    truth = {row["text"]: row["label"] for split in tiny_rows.values() for row in split}
    for split in (train, val, test):
        assert split.labels == [truth[text] for text in split.texts]


def test_paper_split_is_a_function_of_the_seed(tiny_data_dir: Path) -> None:
    def split(seed: int) -> tuple[list[str], list[str], list[str]]:
        return _split_texts(SentenceDataModule(str(tiny_data_dir), per_class=4, seed=seed))

    assert split(0) == split(0)
    assert split(0) != split(1)
    assert split(0)[0] != split(1)[0]  # a different draw, not only a reordering


def test_paper_protocol_pools_only_the_splits_present(tiny_data_dir: Path) -> None:
    (tiny_data_dir / "test.jsonl").unlink()
    dm = SentenceDataModule(str(tiny_data_dir), per_class=4)
    assert (len(dm.train_data), len(dm.val_data), len(dm.test_data)) == (6, 2, 24)


@pytest.mark.skipif(
    not SST2.is_dir() and not os.environ.get(ENV_VAR),
    reason=f"real SST-2 not found at {SST2} and {ENV_VAR} is unset",
)
def test_real_sst2_paper_split_is_435_77_9101() -> None:
    source = str(SST2) if SST2.is_dir() else os.environ[ENV_VAR]
    given = SentenceDataModule(source, protocol="given")
    assert (len(given.train_data), len(given.val_data), len(given.test_data)) == (6920, 872, 1821)
    dm = SentenceDataModule(source)
    assert (len(dm.train_data), len(dm.val_data), len(dm.test_data)) == (435, 77, 9101)
    assert Counter(dm.train_data.labels + dm.val_data.labels) == {0: 256, 1: 256}
    # Pins the seed-0 draw itself: a numpy/scikit-learn change that moved it would make
    # results incomparable across machines, so it must fail loudly here.
    digest = hashlib.sha256("\n".join([*dm.train_data.texts, "--", *dm.val_data.texts]).encode())
    assert digest.hexdigest() == "b7b20ed6a7df609d7b73182b09cede104bda61fe090582c80d9ac9c60990111d"


# -- sources -----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["given", "paper"])
def test_csv_and_jsonl_sources_agree(
    tiny_data_dir: Path, tiny_csv_dir: Path, protocol: str
) -> None:
    jsonl = SentenceDataModule(str(tiny_data_dir), protocol=protocol, per_class=4)
    csv = SentenceDataModule(str(tiny_csv_dir), protocol=protocol, per_class=4)
    assert _split_texts(jsonl) == _split_texts(csv)
    assert jsonl.train_data.labels == csv.train_data.labels


def test_source_defaults_to_the_env_var(
    tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, str(tiny_data_dir))
    dm = SentenceDataModule(protocol="given")
    assert dm.source == str(tiny_data_dir)
    assert len(dm.train_data) == 24
    assert SentenceDataModule("elsewhere").source == "elsewhere"  # an explicit source wins


def _fake_hub(rows: dict[str, list[dict]], calls: list[str]):
    def load_dataset(name: str) -> datasets.DatasetDict:
        calls.append(name)
        return datasets.DatasetDict(
            {split: datasets.Dataset.from_list(split_rows) for split, split_rows in rows.items()}
        )

    return load_dataset


def test_source_defaults_to_setfit_sst2_on_the_hub(
    tiny_rows: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    calls: list[str] = []
    monkeypatch.setattr(datasets, "load_dataset", _fake_hub(tiny_rows, calls))
    dm = SentenceDataModule(protocol="given")
    assert dm.source == "hf:SetFit/sst2"
    assert (len(dm.train_data), len(dm.val_data), len(dm.test_data)) == (24, 8, 8)
    assert calls == ["SetFit/sst2"]
    assert dm.train_data.texts == [row["text"] for row in tiny_rows["train"]]


def test_hub_source_follows_the_paper_protocol(
    tiny_rows: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datasets, "load_dataset", _fake_hub(tiny_rows, []))
    dm = SentenceDataModule("hf:someone/tiny", per_class=4)
    assert (len(dm.train_data), len(dm.val_data), len(dm.test_data)) == (6, 2, 32)


def test_hub_failure_says_how_to_work_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(name: str) -> None:
        raise ConnectionError("no internet")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError, match="SetFit/sst2") as info:
        SentenceDataModule("hf:SetFit/sst2").setup("fit")
    assert "data.init_args.source" in str(info.value)
    assert ENV_VAR in str(info.value)


def test_hub_bad_rows_are_named(tiny_rows: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny_rows["train"][4]["label"] = 7
    monkeypatch.setattr(datasets, "load_dataset", _fake_hub(tiny_rows, []))
    with pytest.raises(ValueError, match=r"hf:x/y \(train\), row 5: label 7"):
        SentenceDataModule("hf:x/y").setup("fit")
    renamed = {
        s: [{"sentence": r["text"], "label": r["label"]} for r in v] for s, v in tiny_rows.items()
    }
    monkeypatch.setattr(datasets, "load_dataset", _fake_hub(renamed, []))
    with pytest.raises(ValueError, match=r"no column \['text'\]"):
        SentenceDataModule("hf:x/y").setup("fit")


def test_test_file_supplies_a_missing_test_split(tiny_data_dir: Path) -> None:
    test_file = tiny_data_dir / "test.jsonl"
    glue_like = tiny_data_dir.parent / "glue_like"
    glue_like.mkdir()
    for split in ("train", "validation"):
        (glue_like / f"{split}.jsonl").write_bytes((tiny_data_dir / f"{split}.jsonl").read_bytes())
    with pytest.raises(UserError, match="test_file"):
        SentenceDataModule(str(glue_like), protocol="given").setup("fit")
    dm = SentenceDataModule(str(glue_like), protocol="given", test_file=str(test_file))
    assert (len(dm.train_data), len(dm.val_data), len(dm.test_data)) == (24, 8, 8)


# -- batches and predict -----------------------------------------------------------------------


def test_batches_are_dicts_of_text_and_long_labels(tiny_data_dir: Path) -> None:
    dm = SentenceDataModule(str(tiny_data_dir), protocol="given", batch_size=5)
    dm.setup("fit")
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        batch = next(iter(loader))
        assert set(batch) == {"text", "label"}
        assert isinstance(batch["text"], list) and all(isinstance(t, str) for t in batch["text"])
        assert batch["label"].dtype == torch.long and batch["label"].shape == (5,)


def test_only_the_train_loader_shuffles_and_it_follows_the_seed(tiny_data_dir: Path) -> None:
    def order(seed: int, loader: str) -> list[str]:
        dm = SentenceDataModule(str(tiny_data_dir), protocol="given", seed=seed, batch_size=4)
        return [text for batch in getattr(dm, loader)() for text in batch["text"]]

    dm = SentenceDataModule(str(tiny_data_dir), protocol="given")
    assert order(0, "train_dataloader") == order(0, "train_dataloader")
    assert order(0, "train_dataloader") != order(1, "train_dataloader")
    assert sorted(order(0, "train_dataloader")) == sorted(dm.train_data.texts)
    assert order(0, "train_dataloader") != dm.train_data.texts
    assert order(0, "val_dataloader") == dm.val_data.texts
    assert order(0, "test_dataloader") == dm.test_data.texts


def test_group_by_length_batches_val_and_test_by_length_and_keeps_their_sentences(
    tiny_data_dir: Path,
) -> None:
    dm = SentenceDataModule(
        str(tiny_data_dir), protocol="given", batch_size=3, group_by_length=True
    )
    for loader, split in ((dm.val_dataloader(), dm.val_data), (dm.test_dataloader(), dm.test_data)):
        batches = list(loader)
        texts = [t for batch in batches for t in batch["text"]]
        assert [len(t) for t in texts] == sorted(len(t) for t in split.texts)
        assert sorted(texts) == sorted(split.texts)
        labels = dict(zip(split.texts, split.labels, strict=True))
        assert [int(y) for b in batches for y in b["label"]] == [labels[t] for t in texts]
    assert texts != split.texts  # the tiny test split is not already in length order


@pytest.mark.parametrize(
    ("name", "content", "labels"),
    [
        ("new.txt", "a great film\nan awful film\n", None),
        ("new.jsonl", '{"text": "a great film"}\n{"text": "an awful film"}\n', None),
        (
            "new.jsonl",
            '{"text": "a great film", "label": 1}\n{"text": "an awful film", "label": 0}\n',
            [1, 0],
        ),
        ("new.csv", "text\na great film\nan awful film\n", None),
        ("new.csv", "text,label\na great film,1\nan awful film,0\n", [1, 0]),
    ],
)
def test_predict_file(
    tiny_data_dir: Path, tmp_path: Path, name: str, content: str, labels: list[int] | None
) -> None:
    path = tmp_path / name
    path.write_text(content)
    dm = SentenceDataModule(str(tiny_data_dir), per_class=4, predict_file=str(path))
    assert dm.predict_data == TextSplit(["a great film", "an awful film"], labels)
    batch = next(iter(dm.predict_dataloader()))
    assert batch["text"] == ["a great film", "an awful film"]
    if labels is None:
        assert set(batch) == {"text"}
    else:
        assert batch["label"].tolist() == labels and batch["label"].dtype == torch.long


def test_all_texts_covers_every_split_and_predict_once(
    tiny_data_dir: Path, tiny_rows: dict, tmp_path: Path
) -> None:
    predict = tmp_path / "new.txt"
    predict.write_text(f"a brand new sentence\n{tiny_rows['test'][0]['text']}\n")
    dm = SentenceDataModule(str(tiny_data_dir), per_class=4, predict_file=str(predict))
    texts = dm.all_texts()
    assert len(texts) == len(set(texts)) == 41
    assert set(texts) == {*_pooled(tiny_rows), "a brand new sentence"}


def test_predict_without_a_file_says_what_to_set(tiny_data_dir: Path) -> None:
    dm = SentenceDataModule(str(tiny_data_dir), per_class=4)
    assert dm.predict_data is None
    with pytest.raises(ValueError, match="predict_file"):
        dm.predict_dataloader()


def test_builds_from_a_lightning_cli_style_config(tiny_data_dir: Path) -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data")
    config = parser.parse_object(
        {
            "data": {
                "class_path": "hqc.data.SentenceDataModule",
                "init_args": {"source": str(tiny_data_dir), "per_class": 4, "batch_size": 2},
            }
        }
    )
    dm = parser.instantiate_classes(config).data
    assert isinstance(dm, SentenceDataModule)
    assert (dm.per_class, dm.batch_size, dm.protocol) == (4, 2, "paper")


class _LengthModel(LightningModule):
    """A toy text classifier (sentence length and word count -> logits) to drive every loader."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)

    def forward(self, texts: list[str]) -> torch.Tensor:
        features = torch.tensor([[len(t) / 50, len(t.split()) / 10] for t in texts])
        return self.linear(features)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = torch.nn.functional.cross_entropy(self(batch["text"]), batch["label"])
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.log("val_loss", torch.nn.functional.cross_entropy(self(batch["text"]), batch["label"]))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self(batch["text"]).argmax(-1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_trainer_runs_every_stage(tiny_data_dir: Path, tmp_path: Path) -> None:
    predict = tmp_path / "new.txt"
    predict.write_text("a great film\nan awful film\nfine\n")
    dm = SentenceDataModule(
        str(tiny_data_dir), per_class=4, batch_size=4, predict_file=str(predict)
    )
    trainer = Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    model = _LengthModel()
    trainer.fit(model, datamodule=dm)
    assert trainer.num_training_batches == 2  # 6 train sentences, batch_size 4
    (result,) = trainer.test(model, datamodule=dm, verbose=False)
    assert "val_loss" in result
    predictions = trainer.predict(model, datamodule=dm)
    assert torch.cat(predictions).shape == (3,)


# -- bad input ---------------------------------------------------------------------------------


def _corrupt(directory: Path, split: str, line: str, line_no: int = 3) -> Path:
    """Replace line ``line_no`` of ``directory/split.jsonl`` with ``line``; return the file."""
    path = directory / f"{split}.jsonl"
    lines = path.read_text().splitlines()
    lines[line_no - 1] = line
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("split", "line", "problem"),
    [
        ("train", '{"text": "good", "label": 1', "malformed JSON"),
        ("train", '["good", 1]', "expected an object"),
        ("train", '{"label": 1}', "missing 'text'"),
        ("train", '{"text": "good"}', "missing 'label'"),
        ("train", '{"text": "", "label": 1}', "empty text"),
        ("train", '{"text": "   ", "label": 1}', "empty text"),
        ("train", '{"text": 5, "label": 1}', "'text' must be a string"),
        ("train", '{"text": "good", "label": "pos"}', "label 'pos' is not an integer"),
        ("train", '{"text": "good", "label": 1.5}', "label 1.5 is not an integer"),
        ("train", '{"text": "good", "label": true}', "label True is not an integer"),
        ("train", '{"text": "good", "label": 5}', "label 5 breaks the 0..K-1 rule"),
        ("validation", '{"text": "good", "label": 2}', r"label 2 is not in the class set \[0, 1\]"),
        ("test", '{"text": "good", "label": -1}', r"label -1 is not in the class set \[0, 1\]"),
    ],
)
@pytest.mark.parametrize("protocol", ["given", "paper"])
def test_bad_jsonl_lines_are_named(
    tiny_data_dir: Path, split: str, line: str, problem: str, protocol: str
) -> None:
    path = _corrupt(tiny_data_dir, split, line)
    with pytest.raises(ValueError, match=problem) as info:
        SentenceDataModule(str(tiny_data_dir), protocol=protocol, per_class=4).setup("fit")
    assert f"{path}, line 3:" in str(info.value)
    error = info.value  # no chained traceback from json internals
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


@pytest.mark.parametrize(
    ("content", "line_no", "problem"),
    [
        ("text,sentiment\ngood,1\n", 1, r"lacks \['label'\]"),
        ("label\n1\n", 1, r"lacks \['text'\]"),
        ("text,label\ngood,1\nbad,0\nmeh,positive\n", 4, "label 'positive' is not an integer"),
        ("text,label\ngood,1\nbad\n", 3, "missing 'label'"),
        ("text,label\ngood,1\n,0\n", 3, "empty text"),
        ("text,label\ngood,1\n" + "a" * 200_000 + ",0\n", 3, "malformed CSV"),
    ],
)
def test_bad_csv_lines_are_named(
    tiny_csv_dir: Path, content: str, line_no: int, problem: str
) -> None:
    path = tiny_csv_dir / "train.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=problem) as info:
        SentenceDataModule(str(tiny_csv_dir), protocol="given").setup("fit")
    assert f"{path}, line {line_no}:" in str(info.value)


def test_invalid_utf8_is_named_with_its_line(tiny_data_dir: Path) -> None:
    path = tiny_data_dir / "train.jsonl"
    path.write_bytes(b'{"text": "good", "label": 1}\n{"text": "caf\xe9", "label": 0}\n')
    with pytest.raises(ValueError, match=f"{path}, line 2: not valid UTF-8"):
        SentenceDataModule(str(tiny_data_dir)).setup("fit")


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"{tmp_path / 'nope'} not found.*HQC_DATA_DIR"):
        SentenceDataModule(str(tmp_path / "nope")).setup("fit")


@pytest.mark.parametrize(
    ("protocol", "missing"), [("given", "validation"), ("given", "test"), ("paper", "train")]
)
def test_missing_split_file_is_named(tiny_data_dir: Path, protocol: str, missing: str) -> None:
    (tiny_data_dir / f"{missing}.jsonl").unlink()
    with pytest.raises(UserError, match=f"{tiny_data_dir / missing}.jsonl"):
        SentenceDataModule(str(tiny_data_dir), protocol=protocol, per_class=4).setup("fit")


def test_empty_split_is_named(tiny_data_dir: Path) -> None:
    path = tiny_data_dir / "validation.jsonl"
    path.write_text("\n")
    with pytest.raises(ValueError, match=f"{path}: empty split"):
        SentenceDataModule(str(tiny_data_dir), protocol="given").setup("fit")


def test_a_split_in_two_formats_is_ambiguous(
    tiny_data_dir: Path, write_split, tiny_rows: dict
) -> None:
    write_split(tiny_data_dir / "train.csv", tiny_rows["train"])
    with pytest.raises(ValueError, match="ambiguous split 'train'"):
        SentenceDataModule(str(tiny_data_dir)).setup("fit")


def test_a_single_class_is_refused(tiny_data_dir: Path, write_split, tiny_rows: dict) -> None:
    path = write_split(tiny_data_dir / "train.jsonl", [r for r in tiny_rows["train"] if r["label"]])
    with pytest.raises(ValueError, match=rf"{path}: needs at least 2 classes, found only \[1\]"):
        SentenceDataModule(str(tiny_data_dir)).setup("fit")


def test_per_class_larger_than_a_class_names_it(tiny_data_dir: Path) -> None:
    with pytest.raises(ValueError, match="per_class=21 but class 0 has only 20 sentences"):
        SentenceDataModule(str(tiny_data_dir), per_class=21).setup("fit")


@pytest.mark.parametrize(
    ("per_class", "problem"),
    [(1, "cannot split 2 drawn sentences"), (20, "no test split left")],
)
def test_paper_draws_that_cannot_be_split(
    tiny_data_dir: Path, per_class: int, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        SentenceDataModule(str(tiny_data_dir), per_class=per_class).setup("fit")


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"protocol": "kfold"}, "unknown protocol 'kfold'"),
        ({"per_class": 0}, "per_class"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"seed": -1}, "seed"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_workers": -1}, "num_workers"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SentenceDataModule("unused", **kwargs)


@pytest.mark.parametrize(
    ("name", "content", "error", "problem"),
    [
        ("new.txt", "good\n\nbad\n", ValueError, "line 2: empty text"),
        (
            "new.jsonl",
            '{"text": "a", "label": 1}\n{"text": "b"}\n',
            ValueError,
            "line 2: missing 'label'",
        ),
        (
            "new.jsonl",
            '{"text": "a"}\n{"text": "b", "label": 1}\n',
            ValueError,
            "line 2: has a 'label'",
        ),
        (
            "new.jsonl",
            '{"text": "a", "label": 3}\n',
            ValueError,
            "line 1: label 3 is not in the class set",
        ),
        ("new.json", '[{"text": "a"}]', ValueError, "unsupported file type"),
        ("missing.txt", None, UserError, "not found"),
    ],
)
def test_bad_predict_files_are_named(
    tiny_data_dir: Path,
    tmp_path: Path,
    name: str,
    content: str | None,
    error: type[Exception],
    problem: str,
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(error, match=problem) as info:
        SentenceDataModule(str(tiny_data_dir), per_class=4, predict_file=str(path)).setup("predict")
    assert str(path) in str(info.value)


def test_test_file_is_the_whole_test_split_under_paper(tiny_data_dir: Path, tmp_path: Path) -> None:
    """Under ``paper`` a test_file is the test split; the draw never sees its sentences."""
    test_file = tmp_path / "held_out.jsonl"
    test_file.write_bytes((tiny_data_dir / "test.jsonl").read_bytes())
    (tiny_data_dir / "test.jsonl").unlink()
    dm = SentenceDataModule(str(tiny_data_dir), per_class=4, test_file=str(test_file))
    held_out = SentenceDataModule(str(tiny_data_dir), protocol="given", test_file=str(test_file))
    assert dm.test_data == held_out.test_data  # exactly the file, in file order
    assert not set(dm.train_data.texts + dm.val_data.texts) & set(dm.test_data.texts)


def test_a_txt_split_file_is_not_a_labelled_split(tiny_data_dir: Path) -> None:
    train = tiny_data_dir / "train.txt"
    train.write_text("good\n")
    with pytest.raises(ValueError, match=f"{train}: unsupported file type"):
        SentenceDataModule(str(tiny_data_dir), test_file=str(train)).setup("fit")
