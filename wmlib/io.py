"""Files: atomic writing (a temporary file in the same folder, then a rename over the target), checkpoints and CSV logs.

A crash or a kill never leaves a half-written file under the real name: the old file (if any) stays whole until
the new one is complete. Checkpoints load with ``weights_only=True``.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import torch


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
    atomic_save(path, lambda f: torch.save(obj, f))


def load_checkpoint(path, what: str = "checkpoint") -> dict:
    """Load a torch checkpoint with ``weights_only=True``; a missing or unreadable file gets a clear error."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found (run the stage that writes it first)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable {what} ({type(exc).__name__}: {exc})") from exc


def load_model(path, what: str, build):
    """The model a checkpoint holds, in eval mode, and the checkpoint record (with its ``path``).

    ``build(ckpt)`` makes the untrained model from the record (its architecture); the weights are ``ckpt["model"]``.
    V and M are loaded this way.
    """
    path = Path(path)
    ckpt = load_checkpoint(path, what)
    model = build(ckpt)
    model.load_state_dict(ckpt["model"])
    model.eval()
    ckpt["path"] = str(path)
    return model, ckpt


def append_csv(path: Path, row: dict) -> None:
    """Append one row to a CSV log (header written with the first row)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def read_csv(path) -> dict[str, np.ndarray]:
    """Columns of a CSV log as float arrays (empty cells become NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows]) for k in rows[0]}
