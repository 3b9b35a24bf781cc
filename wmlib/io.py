"""Atomic file writing: write to a temporary file in the same folder, then rename over the target.

A crash or a kill never leaves a half-written file under the real name: the old file (if any) stays whole until
the new one is complete.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save(path, write) -> None:
    """Atomically save whatever ``write(fileobj)`` writes (torch.save, np.savez, savefig, ...)."""
    buf = io.BytesIO()
    write(buf)
    atomic_write_bytes(path, buf.getvalue())


def atomic_torch_save(path, obj) -> None:
    import torch

    atomic_save(path, lambda f: torch.save(obj, f))


def load_checkpoint(path, what: str = "checkpoint") -> dict:
    """Load a torch checkpoint with ``weights_only=True``; a missing or unreadable file gets a clear error."""
    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found (run the stage that writes it first)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable {what} ({type(exc).__name__}: {exc})") from exc


def append_csv(path: Path, row: dict) -> None:
    """Append one row to a CSV log (header written with the first row)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)
