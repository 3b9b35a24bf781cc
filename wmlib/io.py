"""Files: atomic writing (a temporary file in the same folder, then a rename over the target), checkpoints and CSV logs.

A crash or a kill never leaves a half-written file under the real name: the old file (if any) stays whole until
the new one is complete, and a leftover temporary file (``.NAME.XXXX.tmp``) is removed the next time a command
takes the run directory (:func:`remove_stale_tmp`). Checkpoints load with ``weights_only=True``.

Every checkpoint written here (:func:`atomic_torch_save`) ends with its checksum, the sha256 of all the bytes
before it, kept in the file itself (the comment of torch's zip archive, which zip readers skip) so that the two are
written in one atomic step. :func:`load_checkpoint` checks it before loading: any changed byte (zeroed, flipped,
cut off) is an error naming the file, never a silent load. A checkpoint without a checksum (written by an older
version) still loads, unchecked, and gets one the next time it is saved.

Logs are not appended to: a stage keeps its log rows in its checkpoint and rewrites ``log.csv`` whole from them
(:func:`write_csv`), so the log never holds a row the checkpoint does not, nor misses one it does.

For tests of crash consistency, ``WM_CRASH_AT=PHASE:N:TEXT`` kills the process (SIGKILL, as ``kill -9`` would) at
the N-th atomic write whose path contains TEXT, at PHASE: ``create`` (the temporary file exists, empty),
``write`` (it is written, not yet renamed) or ``rename`` (the new file is in place).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import signal
import tempfile
from pathlib import Path

import numpy as np
import torch

CRASH_ENV = "WM_CRASH_AT"
TMP_SUFFIX = ".tmp"
_crash_counts: dict[str, int] = {}


def _crash_point(path: Path, phase: str) -> None:
    """Kill this process here if ``WM_CRASH_AT`` asks for it (tests of crash consistency only)."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    want, n, text = spec.split(":", 2)
    if want != phase or text not in str(path):
        return
    _crash_counts[spec] = _crash_counts.get(spec, 0) + 1
    if _crash_counts[spec] == int(n):
        os.kill(os.getpid(), signal.SIGKILL)


def atomic_write_bytes(path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # (mkstemp makes it readable by its owner only)
            _crash_point(path, "create")
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _crash_point(path, "write")
        os.replace(tmp, path)
        _crash_point(path, "rename")
    except OSError as exc:
        _unlink(tmp)
        if exc.filename is None:  # ENOSPC and friends say no path of their own: name the file being written
            raise OSError(exc.errno, f"{path}: cannot write ({exc.strerror or exc})") from exc
        raise
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_stale_tmp(folder) -> list[Path]:
    """Remove the temporary files (``.NAME.XXXX.tmp``) that a killed atomic write left under ``folder``; call it only
    while holding the folder's run lock (nobody else is writing there). Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.rglob(f".*{TMP_SUFFIX}") if p.is_file() and not p.is_symlink()]
    for p in stale:
        _unlink(p)
    return stale


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save(path, write) -> None:
    """Atomically save whatever ``write(fileobj)`` writes (torch.save, np.savez, savefig, ...)."""
    buf = io.BytesIO()
    write(buf)
    atomic_write_bytes(path, buf.getvalue())


def atomic_torch_save(path, obj) -> None:
    """Atomically write ``obj`` with ``torch.save``, its checksum recorded at the end of the file
    (:func:`with_checksum`); :func:`load_checkpoint` checks it."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, with_checksum(buf.getvalue()))


CHECKSUM_PREFIX = b"sha256:"
_TRAILER = len(CHECKSUM_PREFIX) + 64  # "sha256:" and 64 hex digits
_ZIP_END = b"PK\x05\x06"  # signature of a zip archive's end record (22 bytes and a comment of the length it says)


def with_checksum(data: bytes) -> bytes:
    """``torch.save``'s bytes (a zip archive that ends with its end record, no comment) with their checksum as the
    archive's comment: ``sha256:HEX``, the sha256 of every byte before it. Zip readers, torch's included, skip the
    comment; the same content gives the same bytes."""
    if len(data) < 22 or data[-22:-18] != _ZIP_END or data[-2:] != b"\0\0":
        raise ValueError("torch.save wrote no zip archive without a comment; cannot record a checksum")
    body = data[:-2] + _TRAILER.to_bytes(2, "little")
    return body + CHECKSUM_PREFIX + hashlib.sha256(body).hexdigest().encode("ascii")


def verify_checksum(path, data: bytes, what: str = "checkpoint") -> str | None:
    """The checksum ``data`` (the bytes of the checkpoint ``path``) records, checked: ValueError naming ``path`` when
    it does not match; None for a checkpoint written before checksums were kept (nothing to check in it)."""
    if data[-22:-18] == _ZIP_END and data[-2:] == b"\0\0":
        return None  # torch.save's archive as it wrote it: no comment, so no checksum
    body, stored = data[:-_TRAILER], data[-_TRAILER:]
    if not stored.startswith(CHECKSUM_PREFIX) and body[-22:-18] != _ZIP_END:
        raise ValueError(f"{path}: not a readable {what} (not an archive written by torch.save)")
    if stored != CHECKSUM_PREFIX + hashlib.sha256(body).hexdigest().encode("ascii"):
        raise ValueError(
            f"{path}: checksum mismatch (the file is corrupt: it changed after it was written); "
            "restore it from a copy or run again the stage that writes it"
        )
    return stored.decode("ascii")


def one_line(exc: BaseException, limit: int = 240) -> str:
    """``TYPE: message`` of an exception on one line, shortened (torch's weights-only refusal: its reason alone)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # the reason, without torch's advice on how to load it anyway
        text = text.split("WeightsUnpickler error:", 1)[1].split(". ", 1)[0]
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"


def load_checkpoint(path, what: str = "checkpoint") -> dict:
    """Load a torch checkpoint with ``weights_only=True``, its checksum checked first (:func:`verify_checksum`); a
    missing, corrupt or unreadable file is an error naming it. The file is read once: what is checked is what loads."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found (run the stage that writes it first)")
    data = path.read_bytes()
    verify_checksum(path, data, what)
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable {what} ({one_line(exc)})") from exc


def load_model(path, what: str, build):
    """The model a checkpoint holds, in eval mode, and the checkpoint record (with its ``path``).

    ``build(ckpt)`` makes the untrained model from the record (its architecture); the weights are ``ckpt["model"]``.
    V and M are loaded this way. A checkpoint of another structure (another kind of checkpoint, or one from a
    version that recorded other things) is a ValueError naming the file (:func:`checkpoint_structure`).
    """
    path = Path(path)
    ckpt = load_checkpoint(path, what)
    with checkpoint_structure(path, what):
        if not isinstance(ckpt, dict):
            raise TypeError(f"holds a {type(ckpt).__name__}, not a dict")
        model = build(ckpt)
        model.load_state_dict(ckpt["model"])
    model.eval()
    ckpt["path"] = str(path)
    return model, ckpt


@contextlib.contextmanager
def checkpoint_structure(path, what: str):
    """Read a loaded checkpoint's contents within this: a missing key, a value of the wrong type or shape (KeyError,
    TypeError, ValueError, RuntimeError, IndexError, AttributeError) becomes one line, a ValueError
    ``PATH: not a WHAT of this version (...)``."""
    try:
        yield
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
        raise ValueError(f"{path}: not a {what} of this version ({one_line(exc)})") from exc


def append_csv(path: Path, row: dict) -> None:
    """Append one row to a CSV log (header written with the first row)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def write_csv(path, rows: list[dict]) -> None:
    """Write a whole CSV log atomically from its rows (the header from the first row's keys); no rows, no file
    is written (and an old one is removed)."""
    path = Path(path)
    if not rows:
        _unlink(path)
        return
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\r\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def read_csv(path) -> dict[str, np.ndarray]:
    """Columns of a CSV log as float arrays (empty cells become NaN); a garbled row is an error naming the file and
    its line."""
    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    columns = {k: [] for k in rows[0]}
    for line, r in enumerate(rows, start=2):
        for k in columns:
            cell = r.get(k)
            try:
                columns[k].append(float(cell) if cell not in ("", None) else np.nan)
            except (TypeError, ValueError):
                raise ValueError(f"{path}, line {line}: column {k!r} holds {cell!r}, not a number") from None
    return {k: np.array(v) for k, v in columns.items()}
