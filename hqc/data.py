"""Sentence-classification data (SST-2 style): labelled splits from files or the hub.

Batches carry raw sentences, not token ids: the model owns its encoder, and a frozen one
pre-computes every embedding once from :meth:`SentenceDataModule.all_texts`.

Two split protocols:

* ``given``: the source's own train/validation/test files.
* ``paper``: the study's protocol (Kim et al., arXiv 2504.08732): pool every split, draw
  ``per_class`` sentences per class, split them 85/15 (stratified) into train/validation and
  test on everything else (or on ``test_file`` alone, when one is set). SST-2 with
  ``per_class=256`` gives 435/77/9,101.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset

from hqc.errors import UserError

SPLITS = ("train", "validation", "test")
SPLIT_FORMATS = (".jsonl", ".csv")
DEFAULT_SOURCE = "hf:SetFit/sst2"
ENV_VAR = "HQC_DATA_DIR"
_INT = re.compile(r"\s*-?\d+\s*")


@dataclass(frozen=True)
class TextSplit(Dataset):
    """One split: its sentences and, where known, their labels (ints in ``0..K-1``)."""

    texts: list[str]
    labels: list[int] | None = None

    def __len__(self) -> int:
        """Number of sentences."""
        return len(self.texts)

    def __getitem__(self, index: int) -> tuple[str, int | None]:
        """The ``index``-th sentence and its label (``None`` when the split has no labels)."""
        return self.texts[index], None if self.labels is None else self.labels[index]


def collate(items: list[tuple[str, int | None]]) -> dict[str, Any]:
    """Batch ``(text, label)`` pairs as ``{"text": list[str], "label": LongTensor(B)}``.

    ``label`` is left out for unlabelled (predict) data.
    """
    texts = [text for text, _ in items]
    if items[0][1] is None:
        return {"text": texts}
    return {"text": texts, "label": torch.tensor([label for _, label in items], dtype=torch.long)}


@dataclass(frozen=True)
class _Rows:
    """A parsed split that remembers where each row came from, for error messages."""

    origin: str  # a file path, or "hf:<name> (<split>)"
    unit: str  # "line" or "row"
    texts: list[str]
    labels: list[int] | None
    lines: list[int]  # 1-based line (row) number of each sentence

    def where(self, i: int) -> str:
        """Locate sentence ``i`` for a message: ``<origin>, line <n>``."""
        return f"{self.origin}, {self.unit} {self.lines[i]}"


@dataclass(frozen=True)
class _Data:
    num_classes: int
    train: TextSplit
    val: TextSplit
    test: TextSplit
    predict: TextSplit | None


class SentenceDataModule(LightningDataModule):
    """Labelled sentences for text classification, split by the ``given`` or ``paper`` protocol.

    Loading is lazy and cached: :meth:`setup`, or the first use of :attr:`num_classes`,
    :meth:`all_texts` or a split attribute (``train_data``, ``val_data``, ``test_data``,
    ``predict_data``), reads the data. Batches are ``{"text": list[str], "label": LongTensor}``.
    """

    def __init__(
        self,
        source: str | None = None,
        protocol: Literal["given", "paper"] = "paper",
        per_class: int = 256,
        val_fraction: float = 0.15,
        seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
        test_file: str | None = None,
        predict_file: str | None = None,
        group_by_length: bool = False,
    ) -> None:
        """Configure the data; nothing is read until it is needed.

        Args:
            source: A directory holding ``train``, ``validation`` and ``test`` splits (each
                ``.jsonl`` with ``{"text", "label"}`` per line or ``.csv`` with ``text,label``
                header columns), or ``hf:<name>`` for a Hugging Face hub dataset with
                text/label columns. Default: the ``HQC_DATA_DIR`` environment variable, else
                ``hf:SetFit/sst2`` (needs internet).
            protocol: ``given`` uses the source's own splits (all three required); ``paper``
                pools every split present, draws ``per_class`` sentences per class, splits
                them into train/validation (stratified) and tests on all the rest.
            per_class: Sentences drawn per class under ``paper`` (the study used 256).
            val_fraction: Share of the drawn sentences held out for validation under ``paper``.
            seed: Seeds the ``paper`` draw and split and the training-set shuffle.
            batch_size: Sentences per batch.
            num_workers: DataLoader worker processes.
            test_file: A labelled ``.jsonl``/``.csv`` file used as the test split instead of
                the source's own, for sources that have none (e.g. GLUE SST-2). Under
                ``paper`` it is the whole test split: the draw pools only the source's train
                and validation splits, and their undrawn rest is left unused.
            predict_file: New sentences for ``predict``: ``.txt`` (one per line), or
                ``.jsonl``/``.csv`` with a ``text`` field and an optional ``label``.
            group_by_length: Batch validation and test sentences in order of length: a
                fine-tuned transformer pads each batch to its longest sentence, so this cuts
                the padding it evaluates; metrics do not depend on order. With
                ``limit_val_batches`` or ``limit_test_batches`` the kept batches are the
                shortest sentences. Training batches stay shuffled, predictions in file order.
        """
        super().__init__()
        if protocol not in ("given", "paper"):
            raise UserError(f"unknown protocol {protocol!r}: expected 'given' or 'paper'")
        if per_class < 1:
            raise UserError(f"per_class must be at least 1, got {per_class}")
        if not 0.0 < val_fraction < 1.0:
            raise UserError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
        if seed < 0:
            raise UserError(f"seed must be non-negative, got {seed}")
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}")
        if num_workers < 0:
            raise UserError(f"num_workers must be non-negative, got {num_workers}")
        self.source = source or os.environ.get(ENV_VAR) or DEFAULT_SOURCE
        self.protocol = protocol
        self.per_class = per_class
        self.val_fraction = val_fraction
        self.seed = seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.test_file = test_file
        self.predict_file = predict_file
        self.group_by_length = group_by_length
        self._data: _Data | None = None

    # -- what the model uses -------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        """Number of classes K: the labels seen in the train split, which must be ``0..K-1``."""
        return self._loaded().num_classes

    @property
    def train_data(self) -> TextSplit:
        """The training split."""
        return self._loaded().train

    @property
    def val_data(self) -> TextSplit:
        """The validation split (model selection)."""
        return self._loaded().val

    @property
    def test_data(self) -> TextSplit:
        """The test split."""
        return self._loaded().test

    @property
    def predict_data(self) -> TextSplit | None:
        """The sentences of ``predict_file`` (labels only if the file has them), or ``None``."""
        return self._loaded().predict

    def all_texts(self) -> list[str]:
        """Every distinct sentence the run will see (train, val, test, predict; first-seen order).

        Frozen encoders embed these once up front instead of once per batch.
        """
        data = self._loaded()
        splits = [data.train, data.val, data.test] + ([data.predict] if data.predict else [])
        return list(dict.fromkeys(text for split in splits for text in split.texts))

    # -- Lightning hooks -----------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Read and split the data (once; every stage shares it)."""
        self._loaded()

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches, reproducible through ``seed``."""
        return self._loader(self.train_data, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in split order (or by length: ``group_by_length``)."""
        return self._loader(self.val_data, by_length=self.group_by_length)

    def test_dataloader(self) -> DataLoader:
        """Test batches in split order (or by length: ``group_by_length``)."""
        return self._loader(self.test_data, by_length=self.group_by_length)

    def predict_dataloader(self) -> DataLoader:
        """Batches of ``predict_file`` sentences in file order."""
        if self.predict_data is None:
            raise UserError(
                "no sentences to predict: set data.init_args.predict_file "
                "(a .txt with one sentence per line, or a .jsonl/.csv with a 'text' field)"
            )
        return self._loader(self.predict_data)

    # -- internals -----------------------------------------------------------------------------

    def _loader(
        self, split: TextSplit, shuffle: bool = False, by_length: bool = False
    ) -> DataLoader:
        order = sorted(range(len(split)), key=lambda i: len(split.texts[i])) if by_length else None
        return DataLoader(
            split,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=order,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate,
        )

    def _loaded(self) -> _Data:
        if self._data is None:
            self._data = self._load()
        return self._data

    def _load(self) -> _Data:
        splits = _read_source(self.source)
        test_file = None
        if self.test_file is not None:
            test_file = _read_file(Path(self.test_file), require_label=True)
            splits["test"] = test_file
        for split in SPLITS if self.protocol == "given" else ("train",):
            if split not in splits:
                hint = (
                    "; set data.init_args.test_file to a labelled file, or use protocol: paper"
                    if split == "test"
                    else ""
                )
                raise UserError(_missing_split(self.source, split) + hint)
        num_classes = _num_classes(splits["train"])
        for split in ("validation", "test"):
            if split in splits:
                _check_labels(splits[split], num_classes)
        predict = None
        if self.predict_file is not None:
            rows = _read_file(Path(self.predict_file), require_label=False)
            if rows.labels is not None:
                _check_labels(rows, num_classes)
            predict = TextSplit(rows.texts, rows.labels)
        if self.protocol == "given":
            train, val, test = (TextSplit(splits[s].texts, splits[s].labels) for s in SPLITS)
        else:
            # a test_file is the test split, so only the source's own splits are drawn from
            pool = [splits[s] for s in SPLITS if s in splits and splits[s] is not test_file]
            train, val, test = _paper_split(
                pool, num_classes, self.per_class, self.val_fraction, self.seed
            )
            if test_file is not None:
                test = TextSplit(test_file.texts, test_file.labels)
        return _Data(num_classes, train, val, test, predict)


def _paper_split(
    pool: list[_Rows], num_classes: int, per_class: int, val_fraction: float, seed: int
) -> tuple[TextSplit, TextSplit, TextSplit]:
    """Draw ``per_class`` per class from the pooled splits, split 85/15, test on the rest.

    numpy's ``default_rng`` and scikit-learn's ``train_test_split`` make the split a pure
    function of (data, seed), the same on every machine.
    """
    texts = [text for rows in pool for text in rows.texts]
    labels = np.array([label for rows in pool for label in rows.labels or ()])
    origins = ", ".join(rows.origin for rows in pool)
    rng = np.random.default_rng(seed)
    drawn = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if per_class > len(members):
            raise UserError(
                f"per_class={per_class} but class {c} has only {len(members)} sentences "
                f"in the pooled splits ({origins})"
            )
        drawn.append(rng.choice(members, size=per_class, replace=False))
    sample = np.concatenate(drawn)
    try:
        train_idx, val_idx = train_test_split(
            sample, test_size=val_fraction, stratify=labels[sample], random_state=seed
        )
    except ValueError as exc:
        raise UserError(
            f"cannot split {len(sample)} drawn sentences into a stratified train/validation "
            f"split with val_fraction={val_fraction} ({exc}); raise per_class or val_fraction"
        ) from None
    rest = np.setdiff1d(np.arange(len(texts)), sample)  # sorted: pool order
    if len(rest) == 0:
        raise UserError(f"per_class={per_class} draws every pooled sentence: no test split left")

    def take(idx: np.ndarray) -> TextSplit:
        return TextSplit([texts[i] for i in idx], [int(labels[i]) for i in idx])

    return take(train_idx), take(val_idx), take(rest)


# -- reading ----------------------------------------------------------------------------------


def _read_source(source: str) -> dict[str, _Rows]:
    """The splits a source has, by name (``train``/``validation``/``test``)."""
    if source.startswith("hf:"):
        return _read_hub(source.removeprefix("hf:"))
    root = Path(source).expanduser()
    if not root.is_dir():
        raise UserError(
            f"data directory {root} not found; set data.init_args.source or {ENV_VAR} to a "
            "directory of train/validation/test .jsonl or .csv files"
        )
    splits = {}
    for split in SPLITS:
        found = [path for ext in SPLIT_FORMATS if (path := root / f"{split}{ext}").exists()]
        if len(found) > 1:
            raise UserError(f"ambiguous split {split!r}: both {found[0]} and {found[1]} exist")
        if found:
            splits[split] = _read_file(found[0], require_label=True)
    return splits


def _missing_split(source: str, split: str) -> str:
    if source.startswith("hf:"):
        return f"{source} has no {split!r} split"
    return f"{Path(source).expanduser() / split}.jsonl (or .csv) not found"


def _read_hub(name: str) -> dict[str, _Rows]:
    import datasets  # heavy import, needed only for hub sources

    try:
        dataset = datasets.load_dataset(name)
    except Exception as exc:
        raise UserError(
            f"could not load the Hugging Face dataset {name!r} ({type(exc).__name__}: {exc}). "
            f"Offline? Set data.init_args.source (or the {ENV_VAR} environment variable) to a "
            "directory of train/validation/test .jsonl or .csv files, e.g. ../shared/data/sst2"
        ) from exc
    splits = {}
    for split in SPLITS:
        if split not in dataset:
            continue
        table = dataset[split]
        origin = f"hf:{name} ({split})"
        missing = sorted({"text", "label"} - set(table.column_names))
        if missing:
            raise UserError(f"{origin}: no column {missing}; columns are {table.column_names}")
        records = (
            {"text": t, "label": y} for t, y in zip(table["text"], table["label"], strict=True)
        )
        splits[split] = _parse(origin, "row", enumerate(records, 1), require_label=True)
    return splits


def _read_file(path: Path, require_label: bool) -> _Rows:
    """Parse a ``.jsonl`` or ``.csv`` split (or, for unlabelled data, a ``.txt``) file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path} not found") from None
    except OSError as exc:  # a folder, no permission, ...
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UserError(f"{path}, line {line}: not valid UTF-8") from None
    suffixes = (".jsonl", ".csv") if require_label else (".jsonl", ".csv", ".txt")
    if path.suffix == ".jsonl":
        records = _jsonl_records(path, content)
    elif path.suffix == ".csv":
        records = _csv_records(path, content, ("text", "label") if require_label else ("text",))
    elif path.suffix == ".txt" and not require_label:
        records = _txt_records(content)
    else:
        raise UserError(f"{path}: unsupported file type; expected one of {', '.join(suffixes)}")
    return _parse(str(path), "line", records, require_label)


def _jsonl_records(path: Path, content: str) -> Iterator[tuple[int, Any]]:
    # split on "\n" only: str.splitlines would also break at U+2028 inside JSON strings
    for n, line in enumerate(content.split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{path}, line {n}: malformed JSON ({exc.msg}, column {exc.colno})"
            ) from None


def _csv_records(path: Path, content: str, columns: tuple[str, ...]) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(content, newline=""))
    try:
        if reader.fieldnames is None:
            return  # empty file: _parse reports the empty split
        missing = [column for column in columns if column not in reader.fieldnames]
        if missing:
            raise UserError(
                f"{path}, line {reader.line_num}: header {reader.fieldnames} lacks {missing}"
            )
        for row in reader:
            yield reader.line_num, row
    except csv.Error as exc:
        raise UserError(f"{path}, line {reader.reader.line_num}: malformed CSV ({exc})") from None


def _txt_records(content: str) -> Iterator[tuple[int, Any]]:
    body = content.rstrip("\r\n")
    for n, line in enumerate(body.split("\n") if body else [], 1):
        yield n, {"text": line.rstrip("\r")}


def _parse(
    origin: str, unit: str, records: Iterable[tuple[int, Any]], require_label: bool
) -> _Rows:
    """Check each record's text and label. Without ``require_label``, labels are all-or-none."""
    texts: list[str] = []
    labels: list[int] = []
    lines: list[int] = []
    has_label: bool | None = True if require_label else None
    for n, record in records:
        where = f"{origin}, {unit} {n}"
        if not isinstance(record, dict):
            raise UserError(f"{where}: expected an object with 'text' and 'label', got {record!r}")
        text = record.get("text")
        if text is None:
            raise UserError(f"{where}: missing 'text'")
        if not isinstance(text, str):
            raise UserError(f"{where}: 'text' must be a string, got {text!r}")
        if not text.strip():
            raise UserError(f"{where}: empty text")
        label = record.get("label")
        if has_label is None:
            has_label = label is not None
        if (label is not None) != has_label:
            problem = "missing 'label'" if has_label else "has a 'label'; earlier lines have none"
            raise UserError(f"{where}: {problem}")
        if label is not None:
            labels.append(_as_int(label, where))
        texts.append(text)
        lines.append(n)
    if not texts:
        raise UserError(f"{origin}: empty split (no sentences)")
    return _Rows(origin, unit, texts, labels if has_label else None, lines)


def _as_int(value: object, where: str) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and _INT.fullmatch(value):
        return int(value)
    raise UserError(f"{where}: label {value!r} is not an integer")


def _num_classes(train: _Rows) -> int:
    """K, from the train split's labels, which must be exactly ``0..K-1`` with K >= 2."""
    assert train.labels is not None
    seen = sorted(set(train.labels))
    k = len(seen)
    if k < 2:
        raise UserError(f"{train.origin}: needs at least 2 classes, found only {seen}")
    if seen != list(range(k)):
        i = next(i for i, label in enumerate(train.labels) if not 0 <= label < k)
        raise UserError(
            f"{train.where(i)}: label {train.labels[i]} breaks the 0..K-1 rule "
            f"(train labels are {seen}; expected {list(range(k))})"
        )
    return k


def _check_labels(rows: _Rows, num_classes: int) -> None:
    assert rows.labels is not None
    for i, label in enumerate(rows.labels):
        if not 0 <= label < num_classes:
            raise UserError(
                f"{rows.where(i)}: label {label} is not in the class set "
                f"{list(range(num_classes))} (the labels seen in the train split)"
            )
