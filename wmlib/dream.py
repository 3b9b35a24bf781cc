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
| index    | (B,)         | which of the original episodes each row is                             |

Reward: +1 per step survived (Doom Take Cover). An episode ends when M's done probability exceeds done_threshold
or after max_len steps. The first z is drawn from the stored mu/logvar of a real first frame (chosen per episode by
its seed), plus optional extra noise (initial_z_noise).
"""

from __future__ import annotations

import numpy as np
import torch

from .controller import ControllerSpec
from .games import controller_to_action
from .memory import Memory, sample_mixture
from .seeding import episode_keys, normal, uniform

# Streams of per-episode random numbers used outside M's sampling (which uses steps >= 0, streams 0-2).
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

    Scores are the dream's cumulative reward: +1 per step survived.
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
    restart = torch.ones(e)
    index = torch.arange(e)
    lengths = np.zeros(e, np.int64)
    for t in range(max_len):
        out = spec.act(w, b, spec.features(z, h, c))
        action = controller_to_action(spec.game, out)
        mdn, h, c = memory.step(z, action, restart, h, c)
        if t == 0:
            restart = torch.zeros(e)
        lengths[index.numpy()] += 1  # reward: +1 for every step survived
        z = sample_mixture(mdn, temperature, keys, t)
        if not detect_done:
            continue
        done = torch.sigmoid(mdn.done_logit) > done_threshold
        if bool(done.any()):
            keep = ~done
            z, h, c, w, b, keys, index, restart = (x[keep] for x in (z, h, c, w, b, keys, index, restart))
            if len(index) == 0:
                break
    return lengths.astype(np.float64), lengths
