"""The on-disk episode format, and the streams of data that V and M train on.

One compressed ``.npz`` file per episode, written atomically:

| array   | dtype   | shape          | meaning                                                      |
|---------|---------|----------------|--------------------------------------------------------------|
| frames  | uint8   | (T, 64, 64, 3) | observation before action t                                  |
| actions | float32 | (T, A)         | action taken at t (A = 3 CarRacing, 1 Doom)                  |
| rewards | float32 | (T,)           | reward for action t                                          |
| dones   | bool    | (T,)           | True where the game ended (died / left the track) after t    |
| meta    | str     | ()             | JSON: game, seed, ...                                        |

The encoded series (``series/``) hold ``mu`` and ``logvar`` (float32, (T, N_z)) instead of frames. V trains on
frames shuffled across all episodes, read from a :class:`FrameStore` (the same frames, uncompressed in one file).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import rundir
from .io import TMP_SUFFIX, atomic_save, atomic_write_text
from .io import _crash_point as crash_point

EPISODES = rundir.EPISODES  # a run directory's folder of episode files
SERIES = rundir.SERIES  # and of their encodings
EPISODE_KEYS = ("frames", "actions", "rewards", "dones")
SERIES_KEYS = ("mu", "logvar", "actions", "rewards", "dones")


class EpisodeError(ValueError):
    """An episode or series file is missing, truncated or malformed; the message names the file."""


def episodes_dir(data_dir) -> Path:
    return Path(data_dir) / EPISODES


def series_dir(data_dir) -> Path:
    return Path(data_dir) / SERIES


def episode_path(data_dir, index: int) -> Path:
    return rundir.episode_path(data_dir, index)


def list_episodes(data_dir) -> list[Path]:
    return sorted(episodes_dir(data_dir).glob(rundir.EPISODE_GLOB))


def list_series(data_dir) -> list[Path]:
    return sorted(series_dir(data_dir).glob(rundir.EPISODE_GLOB))


def first_frame_pool(data_dir) -> tuple[np.ndarray, np.ndarray] | None:
    """Where dreams start: (mu, logvar) (E, N_z) of the first frame of every encoded episode, or None if there are
    none. A pretrained agent ships them in one file (``memory/initial_z.npz``) instead of its series."""
    pool = rundir.load_initial_z(data_dir)
    if pool is not None:
        return pool
    files = list_series(data_dir)
    if not files:
        return None
    firsts = [load_series(f) for f in files]
    return np.stack([s["mu"][0] for s in firsts]), np.stack([s["logvar"][0] for s in firsts])


def save_arrays(path, meta: dict, **arrays) -> None:
    """Atomically write a compressed npz with a JSON ``meta`` entry."""
    atomic_save(path, lambda f: np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays))


def save_episode(path, frames, actions, rewards, dones, meta: dict) -> None:
    frames = np.asarray(frames, dtype=np.uint8)
    n = len(frames)
    actions = np.asarray(actions, dtype=np.float32).reshape(n, -1)
    save_arrays(
        path,
        meta,
        frames=frames,
        actions=actions,
        rewards=np.asarray(rewards, np.float32),
        dones=np.asarray(dones, bool),
    )


def load_arrays(path, keys) -> dict:
    """Read an npz written by :func:`save_arrays`, checking that it is whole and consistent."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in (*keys, "meta") if k not in data.files]
            if missing:
                raise EpisodeError(f"{path}: not an episode file of this package (missing {', '.join(missing)})")
            out = {k: data[k] for k in keys}
            out["meta"] = json.loads(str(data["meta"]))
    except EpisodeError:
        raise
    except FileNotFoundError:
        raise EpisodeError(f"{path}: file not found") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise EpisodeError(f"{path}: corrupt or truncated episode file ({type(exc).__name__}: {exc})") from exc
    lengths = {k: len(out[k]) for k in keys}
    if len(set(lengths.values())) != 1 or min(lengths.values()) == 0:
        raise EpisodeError(f"{path}: arrays have inconsistent or zero lengths {lengths}")
    return out


def load_episode(path) -> dict:
    ep = load_arrays(path, EPISODE_KEYS)
    if ep["frames"].shape[1:] != (64, 64, 3) or ep["frames"].dtype != np.uint8:
        raise EpisodeError(
            f"{path}: frames must be uint8 (T, 64, 64, 3), got {ep['frames'].dtype} {ep['frames'].shape}"
        )
    return ep


def load_series(path) -> dict:
    return load_arrays(path, SERIES_KEYS)


# --------------------------------------------------------------------------------------------------------------
# V's frames, shuffled across the whole data set
# --------------------------------------------------------------------------------------------------------------


def format_bytes(n: float) -> str:
    """A size for people: GiB from 1 GiB up, MiB from 1 MiB, KiB from 1 KiB, else bytes (never a rounded 0.0)."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def check_room(path, needed: int, free: int) -> None:
    """OSError naming ``path`` when V's ``needed`` bytes of frames do not fit in the ``free`` bytes there."""
    if needed > free:
        raise OSError(
            f"{path}: V's {format_bytes(needed)} of uncompressed frames do not fit in the "
            f"{format_bytes(free)} free there; train V on fewer episodes (--vae_episodes)"
        )


def stream_to_file(path, write) -> None:
    """Write a file too big to hold in memory atomically: ``write(fileobj)`` fills a temporary file
    (``.NAME.XXXX.tmp`` beside ``path``) that is then renamed over ``path``. A failed write (a full disk, say)
    removes the temporary file and raises an OSError naming ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            crash_point(path, "create")
            write(out)
            out.flush()
            os.fsync(out.fileno())
        crash_point(path, "write")
        os.replace(tmp, path)
        crash_point(path, "rename")
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:  # ENOSPC and friends name no file of their own
            raise OSError(exc.errno, f"{path}: cannot write ({exc.strerror or exc})") from exc
        raise


FRAME_SHAPE = (64, 64, 3)
FRAME_BYTES = 64 * 64 * 3


class FrameStore:
    """Every frame of a list of episode files, uncompressed, one after another in one flat file.

    The compressed episode files cannot be read at a random frame, so V's frames are written out once, in order,
    to ``path`` (with ``path.json`` naming the episodes and their lengths); a batch is then read frame by frame
    with ``os.pread`` at shuffled positions: the whole data set shuffled, as the original implementation did, with
    only one batch in memory. The store is rebuilt when the list of episodes changes.
    """

    def __init__(self, path):
        self.path = Path(path)
        index = json.loads(self.path.with_suffix(".json").read_text())
        self.episodes, self.lengths = index["episodes"], index["lengths"]
        self.size = int(sum(self.lengths))
        if self.path.stat().st_size != self.size * FRAME_BYTES:
            raise EpisodeError(
                f"{self.path}: holds {self.path.stat().st_size} bytes, expected {self.size} frames "
                f"of {FRAME_BYTES}; delete it to write it again"
            )

    def __len__(self) -> int:
        return self.size

    @classmethod
    def build(cls, files, path, progress: bool = False) -> FrameStore:
        """The store of ``files`` at ``path``: the one already there if it holds the same episodes, else written
        anew. The frames go to a temporary file renamed into place, then the index: a build stopped at any moment
        leaves no store that looks whole (an index naming other episodes, or none), and the next build writes it
        again, the same bytes."""
        path = Path(path)
        names = [Path(f).name for f in files]
        index_path = path.with_suffix(".json")
        if path.exists() and index_path.exists():
            try:
                if json.loads(index_path.read_text())["episodes"] == names:
                    return cls(path)
            except (ValueError, KeyError, EpisodeError):
                pass  # a broken store is written again
        path.parent.mkdir(parents=True, exist_ok=True)
        needed = sum(len(load_arrays(f, ("dones",))["dones"]) for f in files) * FRAME_BYTES
        check_room(path, needed, shutil.disk_usage(path.parent).free)
        lengths = []

        def write(out) -> None:
            for f in tqdm(files, desc="V's frames", unit="ep", disable=not progress):
                frames = load_episode(f)["frames"]
                out.write(np.ascontiguousarray(frames).tobytes())
                lengths.append(len(frames))

        index_path.unlink(missing_ok=True)  # the old index must not describe the new frames
        stream_to_file(path, write)
        atomic_write_text(index_path, json.dumps(dict(episodes=names, lengths=lengths)))
        return cls(path)

    def read(self, indices) -> np.ndarray:
        """Frames at ``indices`` (in that order): (len(indices), 64, 64, 3) uint8."""
        indices = np.asarray(indices, np.int64)
        out = np.empty((len(indices), *FRAME_SHAPE), np.uint8)
        order = np.argsort(indices, kind="stable")  # ascending offsets: kinder to the disk
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for j in order:
                data = os.pread(fd, FRAME_BYTES, int(indices[j]) * FRAME_BYTES)
                out[j] = np.frombuffer(data, np.uint8).reshape(FRAME_SHAPE)
        finally:
            os.close(fd)
        return out

    def batch_indices(self, batch_size: int, rng: np.random.Generator):
        """One pass over every frame in a random order: the indices of ``batch_size`` frames at a time (the last
        batch may be short). Read them with :meth:`read`; a resumed pass skips indices without reading."""
        order = rng.permutation(self.size)
        for b in range(0, self.size, batch_size):
            yield order[b : b + batch_size]

    def batches(self, batch_size: int, rng: np.random.Generator):
        """The frames of :meth:`batch_indices`: (batch_size, 64, 64, 3) uint8 arrays."""
        for indices in self.batch_indices(batch_size, rng):
            yield self.read(indices)


class SeriesStream:
    """All series concatenated into one stream, cut into training windows of seq_len + 1 steps.

    With a restart flag (Doom), windows start anywhere, as in one long stream of play; without one (CarRacing),
    inside an episode (uniformly, early enough to fit when it can). A window that runs past an episode's end
    continues into the next one, where the restart flag is 1 and the z loss is masked.
    """

    def __init__(self, files, z_dim: int):
        if not files:
            raise FileNotFoundError("no encoded series; run the encoding step (`wm memory`) first")
        parts = {k: [] for k in ("mu", "logvar", "actions", "dones", "restart")}
        self.starts, self.lengths, self.rounds = [], [], []
        total = 0
        for f in files:
            s = load_series(f)
            if s["mu"].shape[1] != z_dim:
                raise ValueError(f"{f}: series have z_dim={s['mu'].shape[1]} but the model expects {z_dim}")
            n = len(s["mu"])
            restart = np.zeros(n, np.float32)
            restart[0] = 1.0
            for k in ("mu", "logvar", "actions", "dones"):
                parts[k].append(s[k])
            parts["restart"].append(restart)
            self.starts.append(total)
            self.lengths.append(n)
            self.rounds.append(int(s["meta"].get("round", 0)))  # wm iterate's episodes carry their round
            total += n
        self.data = {k: torch.as_tensor(np.concatenate(v)) for k, v in parts.items()}
        self.data["dones"] = self.data["dones"].float()
        self.total = total
        self.starts, self.lengths, self.rounds = np.array(self.starts), np.array(self.lengths), np.array(self.rounds)

    def episode_weights(self, recent_share: float = 0.0) -> np.ndarray | None:
        """Probabilities of drawing a window from each episode: the latest round's episodes (``wm iterate``)
        together get ``recent_share``, the rest ``1 - recent_share``, each in proportion to its length. None (every
        episode in proportion to its length) when ``recent_share`` is 0 or there is no earlier round to weigh
        against."""
        if recent_share <= 0:
            return None
        recent = self.rounds == self.rounds.max()
        if self.rounds.max() == 0 or recent.all():
            return None
        length = self.lengths.astype(np.float64)
        return np.where(
            recent, length / length[recent].sum() * recent_share, length / length[~recent].sum() * (1.0 - recent_share)
        )

    def batch(
        self,
        rng: np.random.Generator,
        batch_size: int,
        seq_len: int,
        anywhere: bool = False,
        weights: np.ndarray | None = None,
    ) -> dict:
        """A dict of (B, seq_len + 1, ...) tensors; z is re-sampled from mu, logvar every call.

        ``anywhere``: windows start at any step of the stream (for a model with the restart flag, which sees where
        episodes begin; this is also how the done head sees episode ends in a fair share of windows). Otherwise a
        window starts inside an episode, early enough to fit in it when it can.
        ``weights``: :meth:`episode_weights`, the chance that a window starts in each episode (None: in proportion
        to the episodes' lengths).
        """
        if anywhere and weights is None:
            start = rng.integers(0, self.total, size=batch_size)
        elif anywhere:
            ep = rng.choice(len(self.starts), size=batch_size, p=weights)
            start = self.starts[ep] + (rng.random(batch_size) * self.lengths[ep]).astype(np.int64)
        else:
            p = self.lengths / self.lengths.sum() if weights is None else weights
            ep = rng.choice(len(self.starts), size=batch_size, p=p)
            room = np.maximum(self.lengths[ep] - seq_len - 1, 0)
            start = self.starts[ep] + (rng.random(batch_size) * (room + 1)).astype(np.int64)
        idx = torch.as_tensor((start[:, None] + np.arange(seq_len + 1)[None, :]) % self.total)
        out = {k: v[idx] for k, v in self.data.items()}
        eps = torch.as_tensor(rng.standard_normal(out["mu"].shape, dtype=np.float32))
        out["z"] = out.pop("mu") + torch.exp(0.5 * out.pop("logvar")) * eps
        return out
