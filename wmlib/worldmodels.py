"""World models side by side: V's loss and M's prediction of the next z, on the same fresh random-policy episodes.

    wm compare --world_models --data_dir RUN RUN [RUN ...] [--episodes 20] [--first 0]

Each RUN is a run directory (a pretrained agent's folder too) with a trained V and M. All of them read the same
episodes, played by the random policy of ``--data_dir``'s ``rollouts`` settings, on seeds of their own purpose
(HELD_OUT_RANDOM) that no run trained on, whatever its seed. For each world model:

* V's loss on every frame, the quantity V is trained to lower (:func:`wmlib.vision.vae_loss`: the reconstruction's
  squared error summed over pixels, plus the KL term floored at ``kl_tolerance * N_z``), and its two terms;
* M's negative log-likelihood of the next z per dimension (:func:`wmlib.memory.mdn_nll`, the z term of M's loss),
  reading whole episodes from their first frame, as a controller's M does, over all steps and over the first
  :data:`EARLY` steps and the rest apart (an M trained on short windows may predict late steps worse). z is drawn
  as in the real game, z = mu + sigma * eps, with the same eps for every run.

V's loss compares any two V's of the same frames. M's NLL is measured in each run's own latent space, so it compares
two M's of one V exactly and M's of different V's only roughly (a V whose z is more predictable helps its M). The
result is written, atomically, to ``DATA_DIR/compare_world_models.json`` (``..._first{first}.json`` for a later look,
from fresh episode ``first`` on).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from . import rundir
from .config import Config
from .games import make_env
from .io import atomic_write_text
from .memory import check_compatible, load_memory, mdn_nll
from .rollouts import play_random_episode
from .seeding import HELD_OUT_RANDOM, episode_seed
from .vision import load_vision, to_tensor, vae_loss

EARLY = 200
"""M's NLL is also given over the first EARLY steps of an episode and over the rest, apart."""
BATCH = 500
"""Frames per V batch (memory only: the loss is summed frame by frame)."""


def held_out_seeds(run_seed: int, n: int, first: int = 0) -> list[int]:
    """The seeds of fresh random-policy episodes ``first`` to ``first + n - 1`` (purpose HELD_OUT_RANDOM)."""
    return [episode_seed(run_seed, 0, 0, i, HELD_OUT_RANDOM) for i in range(first, first + n)]


def play_episodes(cfg: Config, seeds) -> list[dict]:
    """One random-policy episode per seed, as ``wm rollouts`` plays them (cfg's game, renderer, max_frames and
    holds), in this process."""
    env = make_env(cfg.game, max_steps=cfg.max_frames, renderer=cfg.renderer)
    try:
        return [play_random_episode(env, cfg.game, s, cfg.max_frames, cfg.hold_min, cfg.hold_max) for s in seeds]
    finally:
        env.close()


@torch.inference_mode()
def score_world_model(data_dir, episodes: list[dict], seeds) -> dict:
    """V's loss (and its terms) per frame and M's next-z NLL per dimension (all steps, the first EARLY, the rest)
    of the run ``data_dir`` on ``episodes`` (``seeds``: theirs, which draw each frame's eps)."""
    vision, vckpt = load_vision(data_dir)
    memory, mckpt = load_memory(data_dir)
    check_compatible(vckpt, mckpt)
    vision.eval(), memory.eval()
    kl_tolerance = float(vckpt["config"]["kl_tolerance"])
    t0 = time.time()
    v_sums, frames, nll = np.zeros(3), 0, []
    for ep, seed in zip(episodes, seeds):
        mus, logvars = [], []
        for i in range(0, len(ep["frames"]), BATCH):
            x = to_tensor(ep["frames"][i : i + BATCH])
            torch.manual_seed(seed)  # V's own draw of z, as in training: the same for every run
            recon, mu, logvar = vision(x)
            v_sums += np.array([t.item() for t in vae_loss(recon, x, mu, logvar, kl_tolerance)]) * len(x)
            mus.append(mu), logvars.append(logvar)
        frames += len(ep["frames"])
        mu, logvar = torch.cat(mus), torch.cat(logvars)
        eps = np.random.default_rng(seed).standard_normal(tuple(mu.shape), dtype=np.float32)
        z = mu + torch.exp(0.5 * logvar) * torch.from_numpy(eps)
        actions = torch.as_tensor(np.asarray(ep["actions"], np.float32).reshape(len(z), -1))
        out, _ = memory(z[None, :-1], actions[None, :-1], torch.zeros(1, len(z) - 1))
        nll.append(mdn_nll(out, z[None, 1:]).mean(-1)[0].numpy())
    loss, r_loss, kl = (float(v) for v in v_sums / frames)
    early = np.concatenate([n[:EARLY] for n in nll])
    late = np.concatenate([n[EARLY:] for n in nll])
    return dict(
        run=str(data_dir),
        vision_epochs=int(vckpt.get("epoch", 0)),
        memory_steps=int(mckpt.get("step", 0)),
        v_loss=loss,
        v_r_loss=r_loss,
        v_kl=kl,
        m_nll=float(np.concatenate(nll).mean()),
        m_nll_early=float(early.mean()),
        m_nll_late=float(late.mean()) if len(late) else None,
        seconds=round(time.time() - t0, 1),
    )


def compare_world_models(data_dir, runs, episodes: int = 20, first: int = 0, progress: bool = True) -> dict:
    """Score each run's V and M on the same fresh random episodes, played with ``data_dir``'s rollout settings (see
    the module's docstring); the result is written to ``data_dir``."""
    runs = [Path(r) for r in runs]
    if episodes < 1:
        raise ValueError(f"--episodes must be at least 1 (got {episodes})")
    if first < 0:
        raise ValueError(f"--first must be 0 or more (got {first})")
    if not runs:
        raise ValueError("name at least one run directory")
    cfg = rundir.load_config(data_dir)
    for r in runs:
        if not rundir.path(r, rundir.CONFIG).is_file():
            raise ValueError(f"{r}: not a run directory (no {rundir.CONFIG}); --world_models compares run directories")
        game = rundir.load_config(r).game
        if game != cfg.game:
            raise ValueError(f"{r}: a run of {game}, but the run {data_dir} plays {cfg.game}")
    seeds = held_out_seeds(cfg.seed, episodes, first)
    t0 = time.time()
    played = play_episodes(cfg, seeds)
    if progress:
        print(f"  {episodes} random episodes played ({time.time() - t0:.0f} s)", flush=True)
    rows = []
    for r in runs:
        rows.append(score_world_model(r, played, seeds))
        if progress:
            print(f"  {r}: V {rows[-1]['v_loss']:.2f}, M {rows[-1]['m_nll']:.4f} ({rows[-1]['seconds']:.0f} s)")
    result = dict(
        game=cfg.game,
        episodes=episodes,
        first=first,
        frames=int(sum(len(e["frames"]) for e in played)),
        run=str(data_dir),
        policy=dict(max_frames=cfg.max_frames, hold_min=cfg.hold_min, hold_max=cfg.hold_max, renderer=cfg.renderer),
        purpose="HELD_OUT_RANDOM",
        rows=rows,
    )
    atomic_write_text(rundir.world_models_path(data_dir, first), json.dumps(result, indent=2))
    return result


def print_table(result: dict, path) -> None:
    """The table ``wm compare --world_models`` prints."""
    print(
        f"{result['episodes']} fresh random-policy episodes of {result['game']} ({result['frames']} frames), the same "
        "for every world model"
    )
    print(
        f"{'run':>40s} {'V loss':>8s} {'(recon':>8s} {'+ KL)':>7s} {'M NLL':>8s} "
        f"{'steps <' + str(EARLY):>11s} {'the rest':>9s}"
    )
    for r in result["rows"]:
        name = r["run"] if len(r["run"]) <= 40 else "..." + r["run"][-37:]
        late = "-" if r["m_nll_late"] is None else f"{r['m_nll_late']:.4f}"
        print(
            f"{name:>40s} {r['v_loss']:8.2f} {r['v_r_loss']:8.2f} {r['v_kl']:7.2f} {r['m_nll']:8.4f} "
            f"{r['m_nll_early']:11.4f} {late:>9s}"
        )
    print(f"(written to {path})")
