"""The on-disk episode format, and the streams of data that V and M train on.

One compressed ``.npz`` file per episode, written atomically:

| array   | dtype   | shape          | meaning                                                      |
|---------|---------|----------------|--------------------------------------------------------------|
| frames  | uint8   | (T, 64, 64, 3) | observation before action t                                  |
| actions | float32 | (T, A)         | action taken at t (A = 3 CarRacing, 1 Doom)                  |
| rewards | float32 | (T,)           | reward for action t                                          |
| dones   | bool    | (T,)           | True where the game ended (died / left the track) after t    |
| meta    | str     | ()             | JSON: game, seed, ...                                        |

The encoded series (``series/``) hold ``mu`` and ``logvar`` (float32, (T, N_z)) instead of frames.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .io import atomic_save

EPISODES = "episodes"  # a run directory's folder of episode files
SERIES = "series"  # and of their encodings
EPISODE_KEYS = ("frames", "actions", "rewards", "dones")
SERIES_KEYS = ("mu", "logvar", "actions", "rewards", "dones")


class EpisodeError(ValueError):
    """An episode or series file is missing, truncated or malformed; the message names the file."""


def episodes_dir(data_dir) -> Path:
    return Path(data_dir) / EPISODES


def series_dir(data_dir) -> Path:
    return Path(data_dir) / SERIES


def episode_path(data_dir, index: int) -> Path:
    return episodes_dir(data_dir) / f"ep_{index:06d}.npz"


def list_episodes(data_dir) -> list[Path]:
    return sorted(episodes_dir(data_dir).glob("ep_*.npz"))


def list_series(data_dir) -> list[Path]:
    return sorted(series_dir(data_dir).glob("ep_*.npz"))


def save_arrays(path, meta: dict, **arrays) -> None:
    """Atomically write a compressed npz with a JSON ``meta`` entry."""
    atomic_save(path, lambda f: np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays))


def save_episode(path, frames, actions, rewards, dones, meta: dict) -> None:
    frames = np.asarray(frames, dtype=np.uint8)
    n = len(frames)
    actions = np.asarray(actions, dtype=np.float32).reshape(n, -1)
    save_arrays(path, meta, frames=frames, actions=actions, rewards=np.asarray(rewards, np.float32),
                dones=np.asarray(dones, bool))


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
        raise EpisodeError(f"{path}: frames must be uint8 (T, 64, 64, 3), got {ep['frames'].dtype} "
                           f"{ep['frames'].shape}")
    return ep


def load_series(path) -> dict:
    return load_arrays(path, SERIES_KEYS)


def frame_batches(files, batch_size: int, rng: np.random.Generator, buffer_episodes: int = 8):
    """Yield shuffled (batch, 64, 64, 3) uint8 frame batches over all ``files``, streaming from disk.

    Episodes are visited in a random order; ``buffer_episodes`` of them are held at a time and their frames are
    shuffled together. Memory is bounded by the buffer, not by the number of episodes. Leftover frames that do not
    fill a batch are carried into the next buffer; the last, partial batch is yielded too.
    """
    order = rng.permutation(len(files))
    carry = np.zeros((0, 64, 64, 3), np.uint8)
    for start in range(0, len(order), buffer_episodes):
        chunk = [load_episode(files[i])["frames"] for i in order[start : start + buffer_episodes]]
        pool = np.concatenate([carry, *chunk])
        pool = pool[rng.permutation(len(pool))]
        full = len(pool) - len(pool) % batch_size
        for b in range(0, full, batch_size):
            yield pool[b : b + batch_size]
        carry = pool[full:]
        del chunk, pool
    if len(carry):
        yield carry
