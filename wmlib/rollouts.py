"""Random-policy episodes from the real game (the paper's data for V and M).

The random policy holds each random action for hold_min..hold_max frames (paper: 1-10 frames for Doom; the same
for CarRacing is our choice, so that the car actually drives and skids instead of jittering in place). Doom episodes
shorter than ``min_frames`` are dropped and replaced (paper: 100). Every episode is seeded from (run seed, index,
attempt) and written atomically to its own file; a re-run skips the episodes already on disk.

The episodes are played in this process, in local worker processes or on a Dask cluster (:class:`wmlib.farm.Farm`),
always by the same task, :func:`play_episode`, which returns the episode file's bytes (:func:`episode_bytes`); the
process that holds the run directory's lock writes them. So the files are byte-identical wherever and by whichever
worker an episode was played, and workers need no shared filesystem. Local worker processes die with the process
that started them (:func:`wmlib.farm.exit_with_parent`, importable from here too).
"""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import episodes
from .config import Config
from .farm import PARENT_POLL_SECONDS, Farm, exit_orphaned, exit_with_parent  # noqa: F401 (importable from here)
from .games import make_env
from .io import atomic_write_bytes
from .runlock import holds_run_lock
from .seeding import ROLLOUT, episode_seed


def random_action(game: str, rng: np.random.Generator) -> np.ndarray:
    """One random action in the game's action space."""
    if game == "CarRacing-v3":
        brake = rng.uniform(0.0, 1.0) if rng.uniform() < 0.1 else 0.0
        return np.array([rng.uniform(-1.0, 1.0), rng.uniform(0.0, 1.0), brake], np.float32)
    return np.array([rng.integers(-1, 2)], np.float32)  # left, stay or right


def play_random_episode(
    env, game: str, seed: int, max_frames: int, hold_min: int, hold_max: int, screens_at=()
) -> dict:
    """Play one episode with held random actions; returns the episode's arrays (and, for the steps in
    ``screens_at``, the game's own screens behind those frames, as ``screens`` {step: (H, W, 3)})."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    frames, actions, rewards, dones, screens = [], [], [], [], {}
    hold, action = 0, None
    for t in range(max_frames):
        if hold == 0:
            action, hold = random_action(game, rng), int(rng.integers(hold_min, hold_max + 1))
        hold -= 1
        if t in screens_at:
            screens[t] = env.screen()
        frames.append(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        actions.append(action)
        rewards.append(reward)
        dones.append(terminated)
        if terminated or truncated:
            break
    episode = dict(
        frames=np.stack(frames),
        actions=np.stack(actions),
        rewards=np.array(rewards, np.float32),
        dones=np.array(dones, bool),
    )
    if screens_at:
        episode["screens"] = screens
    return episode


def episode_bytes(frames, actions, rewards, dones, meta: dict) -> bytes:
    """The bytes of the episode file that :func:`wmlib.episodes.save_episode` writes for these arrays: the same
    dtypes and shapes, the same compressed npz (numpy's zip entries carry a fixed date, so the same episode always
    gives the same bytes)."""
    frames = np.asarray(frames, dtype=np.uint8)
    n = len(frames)
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        meta=np.array(json.dumps(meta)),
        frames=frames,
        actions=np.asarray(actions, dtype=np.float32).reshape(n, -1),
        rewards=np.asarray(rewards, np.float32),
        dones=np.asarray(dones, bool),
    )
    return buf.getvalue()


_ENVS = threading.local()  # per worker thread: (game, max_frames, renderer) and the game made for them


def _env(cfg: Config):
    """This thread's game for ``cfg``, made once and kept for the next episodes (a different one is closed)."""
    key = (cfg.game, cfg.max_frames, cfg.renderer)
    held = getattr(_ENVS, "held", None)
    if held is not None and held[0] != key:
        close_env()
        held = None
    if held is None:
        held = _ENVS.held = (key, make_env(cfg.game, max_steps=cfg.max_frames, renderer=cfg.renderer))
    return held[1]


def close_env() -> None:
    """Close the calling thread's game (if it has one)."""
    held = getattr(_ENVS, "held", None)
    _ENVS.held = None
    if held is not None:
        held[1].close()


def play_episode(cfg_dict: dict, index: int) -> tuple[bytes, dict, int]:
    """The rollout task: play episode ``index`` of the run ``cfg_dict`` (a Config's dict), retrying with the next
    attempt's seed while it is shorter than min_frames. Returns the episode file's bytes, its meta and its length.
    Writes nothing: the process that holds the run directory's lock writes the bytes."""
    cfg = Config.from_dict(cfg_dict)
    env = _env(cfg)
    for attempt in range(1000):
        seed = episode_seed(cfg.seed, 0, index, attempt, ROLLOUT)
        ep = play_random_episode(env, cfg.game, seed, cfg.max_frames, cfg.hold_min, cfg.hold_max)
        if len(ep["frames"]) >= cfg.min_frames:
            break
    meta = dict(
        game=cfg.game,
        seed=seed,
        index=index,
        attempt=attempt,
        renderer=cfg.renderer,
        policy="random",
        score=float(ep["rewards"].sum()),
    )
    return episode_bytes(meta=meta, **ep), meta, len(ep["frames"])


@holds_run_lock("wm rollouts (wmlib.rollouts.collect_rollouts)")
def collect_rollouts(
    cfg: Config,
    data_dir,
    workers: int | None = None,
    progress: bool = True,
    *,
    kind: str | None = None,
    client=None,
    scheduler: str | None = None,
    tls: bool | None = None,
    farm: Farm | None = None,
) -> list[Path]:
    """Make sure episodes 0..num_rollouts-1 exist under ``data_dir/episodes``; returns their paths.

    Where the missing episodes are played (:class:`wmlib.farm.Farm`): ``kind`` 'inprocess', 'processes' (``workers``
    local processes, default cfg.workers) or 'dask'; a Dask ``client`` (left open), a ``scheduler`` address or a
    ``tls`` setting means 'dask', and 'dask' without either starts a local cluster of ``workers`` processes on
    127.0.0.1 (mutual TLS unless ``tls=False``). Default: local processes with more than one worker and more than
    one episode to play, else this process. Or ``farm``, an open Farm (left open), instead of all these. Every
    kind writes the same bytes.
    """
    todo = [i for i in range(cfg.num_rollouts) if not episodes.episode_path(data_dir, i).exists()]
    bar = tqdm(
        total=cfg.num_rollouts,
        initial=cfg.num_rollouts - len(todo),
        desc=f"rollouts {cfg.game}",
        unit="ep",
        disable=not progress,
    )
    where = dict(kind=kind, client=client, scheduler=scheduler, tls=tls)
    if farm is not None and any(v is not None for v in where.values()):
        raise ValueError(
            f"give a farm or where to play ({', '.join(k for k, v in where.items() if v is not None)}), not both"
        )
    if todo:
        own = farm is None
        if own:
            workers = cfg.workers if workers is None else int(workers)
            if len(todo) == 1 and all(v is None for v in where.values()):
                where["kind"] = "inprocess"  # one episode: not worth starting a worker
            farm = Farm(workers=workers, **where)
        try:
            if farm.kind == "dask" and progress:
                link = farm.dashboard_link or "off (install bokeh for it)"
                bar.write(f"dask: scheduler {farm.address}, {farm.n_workers} workers, dashboard {link}")
            _play_and_write(farm, cfg, data_dir, todo, bar)
        finally:
            if own:
                farm.close()
    bar.close()
    return [episodes.episode_path(data_dir, i) for i in range(cfg.num_rollouts)]


def _play_and_write(farm: Farm, cfg: Config, data_dir, todo: list[int], bar) -> None:
    """Play episodes ``todo`` on ``farm`` and write each one as it comes back."""
    tasks = [(cfg.to_dict(), i) for i in todo]
    try:
        for j, (data, _meta, _frames) in farm.run(
            play_episode, tasks, names=[f"episode {i}" for i in todo], stage="rollout"
        ):
            atomic_write_bytes(episodes.episode_path(data_dir, todo[j]), data)
            bar.update()
    finally:
        if farm.kind == "inprocess":
            close_env()
