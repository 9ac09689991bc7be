"""Files in and out. In: a folder that must exist and a text file read, each failing with one
line that names the path. Out: one check that a path can take a new file, and atomic writes (a
temporary file in the same folder, fsync, then a rename, so a kill mid-write leaves the previous
file intact), used for weights, training state, logs, images, trace bundles and reports."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import InterIRError


def require_folder(path: str | os.PathLike, what: str, expected: str = "a folder") -> Path:
    """``path`` as a Path if it is an existing folder, else a one-line InterIRError:
    "P: WHAT folder does not exist" or "P: not a folder (expected EXPECTED)"."""
    p = Path(path)
    if not p.exists():
        raise InterIRError(f"{p}: {what} folder does not exist")
    if not p.is_dir():
        raise InterIRError(f"{p}: not a folder (expected {expected})")
    return p


def read_text_file(path: str | os.PathLike, what: str) -> str:
    """The UTF-8 text of ``path``, else a one-line InterIRError naming ``what`` the file is:
    "WHAT not found: P" or "cannot read WHAT P: reason"."""
    p = Path(path)
    if not p.is_file():
        raise InterIRError(f"{what} not found: {p}")
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InterIRError(f"cannot read {what} {p}: {exc}") from None


def check_output_path(path: str | os.PathLike, suffixes: tuple[str, ...] | None = None,
                      flag: str | None = None) -> Path:
    """``path`` as a Path if a file can be written there, else a one-line InterIRError.

    ``suffixes``: allowed extensions (lower case, with the dot); ``flag``: the option that named
    the path (e.g. ``--json``), put in front of the message.
    """
    p = Path(path)
    where = f"{flag} {p}" if flag else str(p)
    if suffixes and p.suffix.lower() not in suffixes:
        raise InterIRError(f"{where}: output must end with {' or '.join(suffixes)}")
    if p.is_dir():
        raise InterIRError(f"{where}: is a folder, expected a file name")
    if not p.parent.exists():
        raise InterIRError(f"{where}: output folder {p.parent} does not exist")
    return p


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename inside ``path`` durable (best effort; not every filesystem supports it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_with(path: str | os.PathLike, write: Callable[[Path], object],
                      durable: bool = True) -> Path:
    """Replace ``path`` with the file ``write(tmp)`` creates at a temporary path beside it.

    The temporary name keeps ``path``'s extension (some writers add one otherwise). With
    ``durable`` the data and the rename are fsynced. On any failure the temporary file is
    removed, ``path`` is left as it was and the exception propagates.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably; raises OSError on failure."""
    atomic_write_with(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_savez(path: str | os.PathLike, arrays: dict[str, np.ndarray],
                 compressed: bool = True) -> Path:
    """Write ``arrays`` as an ``.npz`` archive atomically (``np.savez[_compressed]``)."""
    save = np.savez_compressed if compressed else np.savez

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: numpy adds no extension
            save(fh, **arrays)

    return atomic_write_with(path, write)
