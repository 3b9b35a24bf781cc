"""The dream: a batched environment made of the Memory model alone (World Models Sec. 4.4).

Many dream episodes advance together as one tensor batch; each episode belongs to a candidate controller and has
its own seed, so its random draws do not depend on which other episodes share the batch. Finished episodes are
dropped from the batch at once, so they stop costing compute.

Batch tensors (B episodes still running):

| name     | shape        | description                                                            |
|----------|--------------|------------------------------------------------------------------------|
| z        | (B, N_z)     | current latent, drawn from M's mixture with temperature tau             |
| h, c     | (B, H)       | LSTM state                                                             |
| w, b     | (B, out, in), (B, out) | each episode's controller weights                            |
| keys     | (B,)         | per-episode random keys (wmlib.seeding)                                |
| index    | (B,) numpy   | which of the original episodes each row is                             |

Reward: +1 per step survived (Doom Take Cover). An episode ends when M's done probability exceeds done_threshold
or after max_len steps. The first z is drawn from the stored mu/logvar of a real first frame (chosen per episode by
its seed), plus optional extra noise (initial_z_noise).

Cost: two matrix products make up most of a step, M's four LSTM gates ((B, N_z + 2 + H) x (N_z + 2 + H, 4H)) and
its mixture head ((B, H) x (H, 3 N_z K + 1)): 3.4 GFLOP per step for the paper's Doom sizes with the 1024 episodes
of a generation in flight. Everything else (C, drawing z, the per-episode random numbers) works elementwise on
(B, N_z)-sized tensors. ``benchmarks/dream.py`` measures it.
"""

from __future__ import annotations

import numpy as np
import torch

from .controller import ControllerSpec
from .games import controller_to_action
from .memory import Memory, sample_mixture
from .seeding import episode_keys, normal, uniform

# The step of the per-episode random numbers used before the first step (M's sampling uses steps >= 0).
_INIT_STEP = -1


def initial_latents(keys, pool_mu, pool_logvar, noise: float = 0.0) -> torch.Tensor:
    """First z of each episode: a real first frame's mu + sigma * eps (+ noise * eps'), chosen by the key."""
    pool_mu, pool_logvar = torch.as_tensor(pool_mu), torch.as_tensor(pool_logvar)
    pick = (uniform(keys, _INIT_STEP, 0, 1)[:, 0] * len(pool_mu)).long().clamp(max=len(pool_mu) - 1)
    n = pool_mu.shape[1]
    z = pool_mu[pick] + torch.exp(0.5 * pool_logvar[pick]) * normal(keys, _INIT_STEP, 1, n)
    if noise > 0:
        z = z + noise * normal(keys, _INIT_STEP, 2, n)
    return z


@torch.inference_mode()
def dream_rollouts(memory: Memory, spec: ControllerSpec, params, seeds, pool_mu, pool_logvar,
                   temperature: float = 1.15, max_len: int = 2100, done_threshold: float = 0.5,
                   initial_z_noise: float = 0.0, detect_done: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Run one dream episode per row of ``params`` (E, n_params) with ``seeds`` (E,); returns (scores, lengths).

    Scores are the dream's cumulative reward: +1 per step survived. ``detect_done=False`` ignores M's done head,
    so every episode lasts ``max_len`` steps (the most a generation can cost).

    Per step, for the B episodes still running: C acts on [z c h] (one batched matrix product), M takes one LSTM
    step with its weights arranged once per call (:meth:`Memory.step_weights`), z is drawn from the mixture with
    the episodes' own random numbers, and the rows of episodes that just ended are dropped.
    """
    if spec.game != "DoomTakeCover" or not memory.predict_done:
        raise ValueError(
            "dream training needs an M that predicts when the episode ends and a reward it implies: "
            "DoomTakeCover (+1 per step survived). For CarRacing, train the controller in the real game "
            "(drop --in_dream)"
        )
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    e = len(seeds)
    w, b = spec.unflatten(params)
    if len(w) != e:
        raise ValueError(f"{len(w)} parameter vectors for {e} episodes")
    keys = episode_keys(seeds)
    z = initial_latents(keys, pool_mu, pool_logvar, initial_z_noise)
    h, c = memory.initial_state(e)
    weights = memory.step_weights()
    restart = torch.ones(e)
    index = np.arange(e)  # which episode each row is
    lengths = np.full(e, max_len, np.int64)  # episodes still running at the end survived every step
    threshold = float(done_threshold)
    for t in range(max_len):
        action = controller_to_action(spec.game, spec.act(w, b, spec.features(z, h, c)))
        mdn, h, c = memory.step(z, action, restart, h, c, weights)
        if t == 0:
            restart = torch.zeros(e)
        z = sample_mixture(mdn, temperature, keys, t)
        if not detect_done:
            continue
        done = torch.sigmoid(mdn.done_logit) > threshold
        if bool(done.any()):
            lengths[index[done.numpy()]] = t + 1  # reward: +1 for every step survived, this one included
            keep = (~done).nonzero().squeeze(1)
            if len(keep) == 0:
                break
            z, h, c, w, b, keys, restart = (x.index_select(0, keep) for x in (z, h, c, w, b, keys, restart))
            index = index[keep.numpy()]
    return lengths.astype(np.float64), lengths
