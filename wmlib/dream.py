"""The dream: a batched environment made of the Memory model alone (World Models Sec. 4.4).

Many dream episodes advance together as one tensor batch; each episode belongs to a candidate controller and has
its own seed, so its random draws do not depend on which other episodes share the batch. Finished episodes are
dropped from the batch at once, so they stop costing compute.

Batch tensors (B episodes still running):

| name     | shape        | description                                                            |
|----------|--------------|------------------------------------------------------------------------|
| z        | (B, N_z)     | current latent, drawn from M's mixture with temperature tau             |
| h, c     | (B, H)       | LSTM state                                                             |
| w, b     | (B, out, in), (B, out) | each episode's controller weights (or given actions (B, T, A)) |
| keys     | (B,)         | per-episode random keys (wmlib.seeding)                                |
| index    | (B,) numpy   | which of the original episodes each row is                             |

One loop, :func:`dream`, runs every dream: the batched dreams of training (:func:`dream_rollouts`) and the single
traced dream a notebook plays (:func:`dream_episode`). Reward: +1 per step survived (Doom Take Cover). An episode
ends when M's done probability exceeds done_threshold or after max_len steps. In training, the first z is drawn
from the stored mu/logvar of a real first frame (chosen per episode by its seed), plus optional extra noise
(initial_z_noise).

Cost: two matrix products make up most of a step, M's four LSTM gates ((B, N_z + 2 + H) x (N_z + 2 + H, 4H)) and
its mixture head ((B, H) x (H, 3 N_z K + 1)): 3.4 GFLOP per step for the paper's Doom sizes with the 1024 episodes
of a generation in flight. Everything else (C, drawing z, the per-episode random numbers) works elementwise on
(B, N_z)-sized tensors. ``benchmarks/dream.py`` measures it.

How faithful a dream is: :func:`fidelity_summary` turns the scores of the same controllers in the dream and in the
real game into a few numbers (rank correlation, overestimate); ``wm iterate`` and ``python -m wmlib.study
--fidelity`` report them.
"""

from __future__ import annotations

import numpy as np
import torch

from .config import Config
from .controller import ControllerSpec
from .games import controller_to_action
from .memory import Memory, sample_mixture
from .seeding import FIRST_FRAME, FIRST_Z, FIRST_Z_NOISE, INIT_STEP, episode_keys, normal, uniform


def initial_latents(keys, pool_mu, pool_logvar, noise: float = 0.0) -> torch.Tensor:
    """First z of each episode: a real first frame's mu + sigma * eps (+ noise * eps'), chosen by the key."""
    pool_mu, pool_logvar = torch.as_tensor(pool_mu), torch.as_tensor(pool_logvar)
    pick = (uniform(keys, INIT_STEP, FIRST_FRAME, 1)[:, 0] * len(pool_mu)).long().clamp(max=len(pool_mu) - 1)
    n = pool_mu.shape[1]
    z = pool_mu[pick] + torch.exp(0.5 * pool_logvar[pick]) * normal(keys, INIT_STEP, FIRST_Z, n)
    if noise > 0:
        z = z + noise * normal(keys, INIT_STEP, FIRST_Z_NOISE, n)
    return z


@torch.inference_mode()
def dream(memory: Memory, z: torch.Tensor, keys: torch.Tensor, max_len: int,
          temperature: float = Config.temperature, *,
          spec: ControllerSpec | None = None, params=None, actions=None,
          done_threshold: float = Config.done_threshold,
          detect_done: bool = True, trace: bool = False) -> tuple[np.ndarray, list[dict] | None]:
    """THE dream loop: E episodes inside M, from first latents ``z`` (E, N_z), advanced together as one batch.

    Actions come from a controller (``spec`` and ``params`` (E, n_params): C acts on [z h] or [z c h]) or are
    given (``actions`` (E, T, A), e.g. a real episode's, to put a dream beside it). Per step, for the B episodes
    still running: C acts (one batched matrix product), M takes one LSTM step with its weights arranged once
    (:meth:`Memory.step_weights`), z is drawn from the mixture at ``temperature`` with the episodes' own random
    numbers (``keys``, :mod:`wmlib.seeding`), and, with ``detect_done`` and a done head, the episodes whose done
    probability passed ``done_threshold`` are dropped from the batch.

    Returns (lengths (E,), traces): ``traces`` (with ``trace``) holds per episode its z (T+1, N_z) with z[0] the
    first, actions (T, A), done_prob (T,) (None without a done head: M's probability that the game ends after
    action t) and length T; None otherwise.
    """
    e = len(z)
    if actions is not None:
        actions = torch.as_tensor(np.asarray(actions, np.float32))
        max_len = min(int(max_len), actions.shape[1])
    elif spec is None or params is None:
        raise ValueError("a dream needs actions: pass a controller (spec and params) or the actions to take")
    else:
        w, b = spec.unflatten(params)
        if len(w) != e:
            raise ValueError(f"{len(w)} parameter vectors for {e} episodes")
    rows = {"z": z, "keys": keys}  # the per-episode tensors that lose the rows of finished episodes
    if actions is not None:
        rows["actions"] = actions
    else:
        rows["w"], rows["b"] = w, b
    h, c = memory.initial_state(e)
    weights = memory.step_weights()
    restart = torch.ones(e)
    index = np.arange(e)  # which episode each row is
    lengths = np.full(e, max_len, np.int64)  # episodes still running at the end lasted every step
    traces = [dict(z=[z[i].clone()], actions=[], done_prob=[]) for i in range(e)] if trace else None
    detect_done = detect_done and memory.predict_done
    threshold = float(done_threshold)
    z, keys = rows["z"], rows["keys"]
    for t in range(max_len):
        if actions is not None:
            action = rows["actions"][:, t]
        else:
            action = controller_to_action(spec.game, spec.act(rows["w"], rows["b"], spec.features(z, h, c)))
        mdn, h, c = memory.step(z, action, restart, h, c, weights)
        if t == 0:
            restart = torch.zeros(e)
        z = sample_mixture(mdn, temperature, keys, t)
        if trace:
            p = torch.sigmoid(mdn.done_logit) if memory.predict_done else None
            for j, i in enumerate(index):
                traces[i]["z"].append(z[j].clone())
                traces[i]["actions"].append(action[j].clone())
                if p is not None:
                    traces[i]["done_prob"].append(float(p[j]))
        if not detect_done:
            continue
        done = torch.sigmoid(mdn.done_logit) > threshold
        if bool(done.any()):
            lengths[index[done.numpy()]] = t + 1  # this step counts: the episode ended after it
            keep = (~done).nonzero().squeeze(1)
            if len(keep) == 0:
                break
            rows["z"], rows["keys"] = z, keys
            rows = {k: v.index_select(0, keep) for k, v in rows.items()}
            z, keys = rows["z"], rows["keys"]
            h, c, restart = (x.index_select(0, keep) for x in (h, c, restart))
            index = index[keep.numpy()]
    if trace:
        traces = [dict(z=torch.stack(tr["z"]).numpy(), actions=torch.stack(tr["actions"]).numpy(),
                       done_prob=np.array(tr["done_prob"]) if memory.predict_done else None,
                       length=len(tr["actions"])) for tr in traces]
    return lengths, traces


def dream_rollouts(memory: Memory, spec: ControllerSpec, params, seeds, pool_mu, pool_logvar,
                   temperature: float = Config.temperature, max_len: int = Config.dream_max_len,
                   done_threshold: float = Config.done_threshold, initial_z_noise: float = Config.initial_z_noise, detect_done: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Score controllers in the dream: one episode per row of ``params`` (E, n_params) with ``seeds`` (E,);
    returns (scores, lengths).

    Each episode starts from a stored first frame picked by its seed (:func:`initial_latents`). Scores are the
    dream's cumulative reward: +1 per step survived. ``detect_done=False`` ignores M's done head, so every
    episode lasts ``max_len`` steps (the most a generation can cost).
    """
    if spec.game != "DoomTakeCover" or not memory.predict_done:
        raise ValueError(
            "dream training needs an M that predicts when the episode ends and a reward it implies: "
            "DoomTakeCover (+1 per step survived). For CarRacing, train the controller in the real game "
            "(drop --in_dream)"
        )
    keys = episode_keys(np.asarray(seeds, dtype=np.int64).reshape(-1))
    z = initial_latents(keys, pool_mu, pool_logvar, initial_z_noise)
    lengths, _ = dream(memory, z, keys, max_len, temperature, spec=spec, params=params,
                       done_threshold=done_threshold, detect_done=detect_done)
    return lengths.astype(np.float64), lengths


def dream_episode(memory: Memory, z0, actions=None, controller=None, temperature: float = Config.temperature,
                  max_len: int | None = None, seed: int = 0, done_threshold: float = Config.done_threshold,
                  stop_at_done: bool = False) -> dict:
    """One dream from the first latent ``z0``, every step kept for display (the dream player of notebook 05).

    Actions come from ``actions`` (T, A), e.g. a real episode's, or from ``controller`` = (params, ControllerSpec).
    The same loop and random numbers as a dream in training (:func:`dream`), so with the same first z,
    controller and seed, ``stop_at_done`` gives the same episode length. Returns z (T+1, N) with z[0] = z0,
    actions (T, A), done_prob (T,) (None without a done head) and length T.
    """
    if actions is None and controller is None:
        raise ValueError("a dream needs actions: pass a real episode's actions or controller=(params, spec)")
    if actions is not None:
        actions = np.asarray(actions, np.float32).reshape(1, len(actions), -1)
        max_len = actions.shape[1] if max_len is None else min(max_len, actions.shape[1])
    elif max_len is None:
        raise ValueError("a controller-driven dream needs max_len")
    spec, params = (None, None) if controller is None else (controller[1], controller[0])
    z = torch.as_tensor(np.asarray(z0, np.float32)).reshape(1, -1)
    _, traces = dream(memory, z, episode_keys([int(seed)]), int(max_len), temperature, spec=spec, params=params,
                      actions=actions, done_threshold=done_threshold, detect_done=stop_at_done, trace=True)
    return traces[0]


def rank_correlation(x, y) -> float:
    """Spearman's rank correlation of two equally long sequences (ties share their mean rank); nan when either is
    constant or shorter than 2."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"rank_correlation: two equally long 1-d sequences expected, got shapes {x.shape}, {y.shape}")

    def ranks(v):
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=np.float64)
        for value in np.unique(v):  # ties: the mean of their ranks
            same = v == value
            r[same] = r[same].mean()
        return r

    if len(x) < 2:
        return float("nan")
    rx, ry = ranks(x) - (len(x) - 1) / 2, ranks(y) - (len(y) - 1) / 2
    denom = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


def fidelity_summary(real, dream, trained: int | None = None) -> dict:
    """Dream fidelity as numbers, from the mean scores of the same controllers in the real game and in the dream.

    | key                  | meaning                                                                             |
    |----------------------|-------------------------------------------------------------------------------------|
    | rank_correlation     | Spearman's rho of dream against real means: does the dream rank controllers right? |
    | mean_overestimate    | mean of (dream - real) over the controllers, in score units (Doom: steps survived)  |
    | overestimate_ratio   | mean dream score / mean real score                                                  |
    | trained_overestimate | dream - real of the controller CMA-ES trained in that dream (index ``trained``)    |

    A faithful dream has a rank correlation near 1 and overestimates near 0 (ratio near 1). A number that is not
    defined (a rank correlation of controllers that all scored the same) is None.
    """
    real, dream = np.asarray(real, np.float64), np.asarray(dream, np.float64)
    rho = rank_correlation(dream, real)
    out = dict(controllers=int(len(real)), rank_correlation=None if np.isnan(rho) else rho,
               mean_overestimate=float((dream - real).mean()),
               overestimate_ratio=float(dream.mean() / real.mean()) if real.mean() else None)
    if trained is not None:
        out["trained_overestimate"] = float(dream[trained] - real[trained])
    return out
