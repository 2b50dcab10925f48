"""Small file helpers shared by every writer: checksums, atomic writes, and the check that a
folder takes files before anything is computed."""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import CorruptFileError, OodBenchError


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def require_writable_dir(path: str | Path, what: str, hint: str = "") -> None:
    """One line unless files can be written in the folder ``path``, or, when it does not exist yet,
    in its nearest existing ancestor. Tried with a temporary file, since permission bits do not
    bind root or a read-only mount; nothing that stays is created."""
    path = Path(path).absolute()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OodBenchError(f"{what} {path} is not writable: {probe} is a file, not a folder{hint}")
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".oodbench-write-test-"):
            pass
    except OSError as exc:
        raise OodBenchError(f"{what} {path} is not writable ({exc.strerror}){hint}") from None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename: readers never see half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are meant to be shared
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _opener(path: Path):
    if path.suffix == ".gz":
        return gzip.open
    if path.suffix == ".xz":
        return lzma.open
    return open


def read_json(path: str | Path) -> Any:
    """Read (optionally .gz/.xz compressed) JSON; a broken file is a one-line CorruptFileError."""
    path = Path(path)
    try:
        with _opener(path)(path, "rt", encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
        raise CorruptFileError(f"{path}: not readable JSON ({type(exc).__name__}: {exc})") from None


def dumps_json(obj: Any, compact: bool = False) -> bytes:
    if compact:
        return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode()
    return (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode()


def write_json(path: str | Path, obj: Any, compact: bool = False) -> None:
    """Atomically write JSON, compressed when the name ends in .gz or .xz (deterministic bytes)."""
    path = Path(path)
    raw = dumps_json(obj, compact=compact)
    if path.suffix == ".gz":
        raw = gzip.compress(raw, mtime=0)
    elif path.suffix == ".xz":
        raw = lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)
    atomic_write_bytes(path, raw)
