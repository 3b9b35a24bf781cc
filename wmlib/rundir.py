"""The run directory: where every stage finds what the stage before it wrote, and writes what it makes.

| path                                     | written by                  | what                                        |
|------------------------------------------|-----------------------------|---------------------------------------------|
| ``config.json``                          | ``wm`` (every command)      | the run's settings (``Config``)             |
| ``.lock``                                | a running command           | who works here now (:mod:`wmlib.runlock`)   |
| ``episodes/ep_NNNNNN.npz``               | rollouts, iterate           | frames, actions, rewards, dones             |
| ``series/ep_NNNNNN.npz``                 | memory (encoding)           | V's mu, logvar of every frame, actions, ... |
| ``vision/vision.pt``, ``log.csv``        | vision                      | V and its log                               |
| ``vision/reconstructions.png``           | vision                      | frames and V's reconstructions              |
| ``vision/frames.u8``, ``frames.json``    | vision                      | V's frames, uncompressed (can be deleted)   |
| ``memory/memory.pt``, ``log.csv``        | memory                      | M and its log                               |
| ``memory/loss.png``                      | memory                      | M's losses                                  |
| ``memory/initial_z.npz``                 | a pretrained agent          | the dream's first frames (mu, logvar)       |
| ``controller/controller.pt``             | evolution                   | C's parameters                              |
| ``controller/es_state.npz``, ``log.csv`` | evolution                   | CMA-ES state (no pickle) and log            |
| ``controller/learning_curve.png``        | evolution                   | the log, drawn                              |
| ``controller/means/gen_NNNN.pt``         | evolution                   | the mean of each evaluated generation       |
| ``controller/es_state.pkl``              | older versions              | a pickled CMA-ES state: never read          |
| ``test/scores.json``                     | play (``wm test``)          | real-game scores of the controller          |
| ``test/random_scores.json``              | play (``--policy random``)  | the random policy's, on the same episodes   |
| ``test/episode_NNN.gif``, ``random_NNN.gif`` | play (``--record``)     | recorded test episodes                      |
| ``temperatures/study.json``              | study                       | the temperature study                       |
| ``temperatures/tau_X.XX/``               | study                       | a run directory per temperature             |
| ``z_only/``, ``z_only/ablation.json``    | study (``--z_only``)        | the "V model only" run and its result       |
| ``fidelity.json``                        | study (``--fidelity``)      | controllers in the dream and the real game  |
| ``compare.json``, ``compare_firstN.json`` | compare                    | controllers on the same fresh real episodes |
| ``compare_world_models.json`` (``_firstN``) | compare (``--world_models``) | V and M on the same fresh episodes |
| ``iteration.json``                       | iterate                     | a round of iterative training               |
| ``rounds/round_K/``                      | iterate                     | each earlier round's controller and M       |
| ``CARD.md``                              | pretrained (export)         | an exported agent's card                    |

What each artifact fixes (``FIXED_BY``) is kept here too: once it exists, :func:`check_artifacts` refuses a
setting that disagrees with it. Every module asks this one for a path instead of spelling it
(``tests/test_rundir.py`` checks that no other module of the package spells one).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from .config import Config, flag_name
from .io import load_checkpoint

CONFIG = "config.json"
LOCK = ".lock"  # wmlib.runlock
EPISODES = Path("episodes")  # a run directory's folder of episode files (wmlib.episodes)
SERIES = Path("series")  # and of their encodings
EPISODE_GLOB = "ep_*.npz"
VISION = Path("vision") / "vision.pt"
RECONSTRUCTIONS = Path("vision") / "reconstructions.png"
FRAMES = Path("vision") / "frames.u8"  # V's training frames, uncompressed (episodes.FrameStore); can be deleted
MEMORY = Path("memory") / "memory.pt"
MEMORY_LOSS = Path("memory") / "loss.png"
INITIAL_Z = Path("memory") / "initial_z.npz"
CONTROLLER = Path("controller") / "controller.pt"
ES_STATE = Path("controller") / "es_state.npz"  # wmlib.esstate: data only, loading runs no code
PICKLED_ES_STATE = Path("controller") / "es_state.pkl"  # where older versions pickled the CMA-ES state: never read
LEARNING_CURVE = Path("controller") / "learning_curve.png"
MEANS = Path("controller") / "means"  # the CMA-ES mean of every evaluated generation, gen_NNNN.pt
STAGES = ("vision", "memory", "controller")  # the stages with a folder and a log.csv of their own
LOG = "log.csv"
LOGS = {stage: Path(stage) / LOG for stage in STAGES}  # each stage's log.csv
TEST = Path("test")
SCORES = TEST / "scores.json"  # wm test: the controller's
RANDOM_SCORES = TEST / "random_scores.json"  # wm test --policy random: the random policy's
TEMPERATURES = Path("temperatures")
STUDY = TEMPERATURES / "study.json"
Z_ONLY = Path("z_only")  # wm study --z_only: a run directory whose C reads z alone
ABLATION = Z_ONLY / "ablation.json"
FIDELITY = "fidelity.json"  # wm study --fidelity: the same controllers in the dream and the real game
COMPARE = "compare.json"  # wm compare
WORLD_MODELS = "compare_world_models.json"  # wm compare --world_models
ITERATION = "iteration.json"
ROUNDS = Path("rounds")  # wm iterate: each earlier round's controller and M, rounds/round_K/
ROUND_FILES = (CONTROLLER, MEMORY)  # what rounds/round_K/ keeps, laid out as in a run directory
CARD = "CARD.md"  # an exported agent's card (wmlib.card)


def path(data_dir, rel) -> Path:
    """``data_dir / rel``: e.g. ``path(run, rundir.MEMORY)``."""
    return Path(data_dir) / rel


def stage_dir(data_dir, stage: str) -> Path:
    """The folder of a stage's files and its ``log.csv``: vision, memory or controller."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; valid: {', '.join(STAGES)}")
    return Path(data_dir) / stage


def log_path(data_dir, stage: str) -> Path:
    stage_dir(data_dir, stage)  # an unknown stage is named
    return path(data_dir, LOGS[stage])


def episode_path(data_dir, index: int, folder=EPISODES) -> Path:
    """Episode ``index``'s file in ``episodes/`` (or in ``series/``, its encoding)."""
    return Path(data_dir) / folder / f"ep_{index:06d}.npz"


def mean_path(data_dir, generation: int) -> Path:
    """Where the CMA-ES mean evaluated after ``generation`` is kept."""
    return path(data_dir, MEANS) / f"gen_{generation:04d}.pt"


def recording_path(data_dir, policy: str, index: int) -> Path:
    """Where ``wm test --record`` puts test episode ``index`` of ``policy`` (controller or random)."""
    name = "episode" if policy == "controller" else policy
    return path(data_dir, TEST) / f"{name}_{index:03d}.gif"


def scores_path(data_dir, policy: str) -> Path:
    """``wm test``'s result for ``policy``: the controller's or the random policy's."""
    return path(data_dir, SCORES if policy == "controller" else RANDOM_SCORES)


def tau_dir(data_dir, temperature: float) -> Path:
    """The run directory of the temperature study's controller trained at ``temperature``."""
    return path(data_dir, TEMPERATURES) / f"tau_{float(temperature):.2f}"


def compare_path(data_dir, first: int = 0) -> Path:
    """Where a comparison starting at fresh episode ``first`` is written (a second look beside the first)."""
    return Path(data_dir) / (COMPARE if first == 0 else f"compare_first{first}.json")


def world_models_path(data_dir, first: int = 0) -> Path:
    """Where ``wm compare --world_models`` starting at fresh episode ``first`` is written."""
    return Path(data_dir) / (WORLD_MODELS if first == 0 else f"compare_world_models_first{first}.json")


def round_dir(data_dir, k: int) -> Path:
    """Where a run keeps round ``k``'s controller and the M of the dream it was trained in (``rounds/round_K``, laid
    out like a run directory: :data:`ROUND_FILES`)."""
    return path(data_dir, ROUNDS) / f"round_{k}"


def round_dirs(data_dir) -> list[Path]:
    """The rounds a run keeps, ``rounds/round_K`` in order of K."""
    return sorted(path(data_dir, ROUNDS).glob("round_*"), key=lambda p: int(p.name.split("_")[1]))


def load_config(data_dir) -> Config:
    """The settings a run directory was made with; a missing or broken ``config.json`` is named in the error."""
    p = Path(data_dir) / CONFIG
    if not p.exists():
        raise FileNotFoundError(f"{p}: not a run directory (no {CONFIG})")
    try:
        values = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p}: not a valid run config (not JSON: {exc})") from None
    if not isinstance(values, dict):
        raise ValueError(
            f"{p}: not a valid run config (expected a JSON object of settings, got {type(values).__name__})"
        )
    return Config.from_dict(values, source=str(p))  # a missing, unknown or bad setting is named


def share_world_model(src, dst, with_episodes: bool = False) -> Path:
    """Make ``dst`` a run directory that shares ``src``'s trained V and M and its encoded series (hard links, or
    copies where links cannot be made), so a controller can be trained there without touching ``src``'s.
    Checkpoints are replaced, never written in place, so training in ``dst`` leaves ``src``'s files alone."""
    src, dst = Path(src), Path(dst)
    extra = [INITIAL_Z] if (src / INITIAL_Z).exists() else []  # a pretrained agent's
    folders = [SERIES, EPISODES] if with_episodes else [SERIES]
    for rel in [VISION, MEMORY, *extra, *(d / p.name for d in folders for p in sorted((src / d).glob(EPISODE_GLOB)))]:
        target = dst / rel
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src / rel, target)
        except OSError:
            shutil.copy2(src / rel, target)
    return dst


# What each artifact fixes: once it exists, these settings can no longer change in its run directory.
FIXED_BY = [
    (VISION, ("game", "z_dim"), None),
    (MEMORY, ("game", "z_dim", "hidden_dim", "mixtures", "predict_done", "restart_flag"), None),
    (CONTROLLER, ("game", "pop", "mu", "in_dream", "z_only"), ES_STATE),  # while a search can resume
]


def check_artifacts(cfg: Config, data_dir: Path, given: dict) -> None:
    """Refuse settings that disagree with what the run directory already holds, before config.json is written:
    a refused command leaves config.json as it was. The message names the flag given, or config.json's key."""
    for rel, fields, only_with in FIXED_BY:
        held = path(data_dir, rel)
        if not held.exists() or (only_with is not None and not path(data_dir, only_with).exists()):
            continue
        ckpt = load_checkpoint(held, str(rel))
        made = ckpt.get("config") if isinstance(ckpt, dict) else None
        made = made if isinstance(made, dict) else {}  # (a wrong structure is named by the stage that reads it)
        for field in fields:
            if field in made and made[field] != getattr(cfg, field):
                said = (
                    f"{flag_name(field)} {getattr(cfg, field)}"
                    if field in given
                    else f"{path(data_dir, CONFIG)}'s {field!r} {getattr(cfg, field)!r}"
                )
                raise ValueError(
                    f"{said}: {held} was made with {field} {made[field]!r}; keep {made[field]!r} "
                    "or use another --data_dir (config.json is unchanged)"
                )


def load_initial_z(data_dir) -> tuple[np.ndarray, np.ndarray] | None:
    """(mu, logvar) of the dream's first frames from ``memory/initial_z.npz``, or None when the file is absent."""
    p = Path(data_dir) / INITIAL_Z
    if not p.exists():
        return None
    try:
        with np.load(p, allow_pickle=False) as d:
            mu, logvar = d["mu"], d["logvar"]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{p}: not a readable initial-z file ({type(exc).__name__}: {exc})") from exc
    if mu.ndim != 2 or mu.shape != logvar.shape or len(mu) == 0:
        raise ValueError(f"{p}: mu and logvar must be two equal (N, N_z) arrays, got {mu.shape}, {logvar.shape}")
    return mu.astype(np.float32), logvar.astype(np.float32)
