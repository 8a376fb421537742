"""Shared fixtures: a tiny SST-like dataset that tests write to ``tmp_path`` (no real data needed).

``tiny_data_dir`` is the directory to pass as ``SentenceDataModule(source=...)``, or as
``--data.init_args.source`` in end-to-end CLI tests. Splits: 24 train / 8 validation / 8 test,
balanced labels 0 (negative) / 1 (positive), 40 distinct lowercase sentences. With
``protocol="paper"`` and ``per_class=4`` it gives 6 train / 2 validation / 32 test.

Also: ``make_tiny_dir`` (makes that folder anywhere, for module-scoped fixtures),
``tiny_csv_dir`` (the same data as ``.csv``), ``tiny_rows`` (the data as dicts) and
``write_split`` (writes rows to a ``.jsonl``/``.csv`` file, e.g. to make a broken split).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest

POSITIVE = [
    "a warm , funny and moving film",
    "the cast is wonderful and the script is sharp",
    "one of the best movies of the year",
    "a delightful and charming comedy",
    "beautifully shot and superbly acted",
    "i loved every minute of it",
    "a smart , touching story",
    "the performances are terrific",
    "an exciting and clever thriller",
    "a joyful , uplifting experience",
    "brilliant direction and a great score",
    "it is a pleasure to watch",
    "a gripping and heartfelt drama",
    "the film is fresh and inventive",
    "a triumph of storytelling",
    "funny , sweet and full of life",
    "an engaging and memorable ride",
    "the best performance of her career",
    "a rich and rewarding movie",
    "genuinely moving and well made",
]
NEGATIVE = [
    "a dull , lifeless and boring film",
    "the plot is a mess and the acting is worse",
    "one of the worst movies of the year",
    "a tedious and unfunny comedy",
    "badly shot and poorly acted",
    "i hated every minute of it",
    "a stupid , pointless story",
    "the performances are awful",
    "a predictable and clumsy thriller",
    "a grim , depressing slog",
    "lazy direction and a forgettable score",
    "it is a chore to watch",
    "a shallow and sentimental drama",
    "the film is stale and derivative",
    "a failure of storytelling",
    "loud , ugly and empty",
    "a tiresome and forgettable ride",
    "the weakest performance of her career",
    "a thin and disappointing movie",
    "clumsy , confused and badly made",
]
SPLIT_SIZES = {"train": 24, "validation": 8, "test": 8}
Row = dict[str, str | int]


def _tiny_splits() -> dict[str, list[Row]]:
    rows: list[Row] = [
        row
        for pos, neg in zip(POSITIVE, NEGATIVE, strict=True)
        for row in ({"text": pos, "label": 1}, {"text": neg, "label": 0})
    ]
    splits, start = {}, 0
    for split, size in SPLIT_SIZES.items():
        splits[split] = rows[start : start + size]
        start += size
    return splits


def _write_split(path: Path, rows: list[Row]) -> Path:
    """Write ``rows`` as ``.jsonl`` (one object per line) or ``.csv`` (``text,label`` header)."""
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["text", "label"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def tiny_rows() -> dict[str, list[Row]]:
    """The tiny dataset as ``{split: [{"text": ..., "label": 0|1}, ...]}``, labels alternating."""
    return _tiny_splits()


@pytest.fixture
def write_split() -> Callable[[Path, list[Row]], Path]:
    """A writer ``write_split(path, rows) -> path`` for custom (e.g. broken) split files."""
    return _write_split


def _tiny_dir(root: Path, suffix: str) -> Path:
    root.mkdir()
    for split, rows in _tiny_splits().items():
        _write_split(root / f"{split}{suffix}", rows)
    return root


@pytest.fixture(scope="session")
def make_tiny_dir() -> Callable[[Path], Path]:
    """A maker ``make_tiny_dir(root) -> root`` of ``tiny_data_dir``'s folder, for any scope."""
    return lambda root: _tiny_dir(root, ".jsonl")


@pytest.fixture
def tiny_data_dir(tmp_path: Path) -> Path:
    """A directory with ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl`` (24/8/8)."""
    return _tiny_dir(tmp_path / "tiny_sst", ".jsonl")


@pytest.fixture
def tiny_csv_dir(tmp_path: Path) -> Path:
    """The tiny dataset of ``tiny_data_dir`` as ``.csv`` files with a ``text,label`` header."""
    return _tiny_dir(tmp_path / "tiny_sst_csv", ".csv")
