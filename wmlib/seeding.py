"""Seeds and per-episode random numbers.

One function derives every episode's seed from (run seed, purpose, generation, candidate, trial), so a candidate's
fitness is the same whichever process, worker or batch computes it. :func:`uniform` draws random numbers from a
counter-based hash of (episode key, step, stream, index): an episode's numbers do not depend on which other episodes
share its batch, which lets the batched dream give the same samples as a one-episode-at-a-time loop.

The dream draws three (episodes, N_z) blocks of these numbers per step, so the per-element hash runs in numpy's
uint32 arithmetic (wrap-around multiplication is defined there), about four times faster than emulating 32-bit
words in int64 torch ops; the numbers are bit for bit those of the int64 formulation in ``_hash32``.
"""

from __future__ import annotations

import numpy as np
import torch

# Purposes keep the seeds of different jobs apart.
TRAIN = 0  # CMA-ES candidates' training episodes
EVAL = 1  # the CMA-ES mean's evaluation episodes
TEST = 2  # `wm test`'s held-out episodes
ROLLOUT = 3  # random-policy episodes for V and M
ITERATE = 4  # iterative training: the controllers and episodes of a round
VALIDATE = 5  # `wm compare`: fresh tracks for choosing between controllers, never the test's
HELD_OUT_RANDOM = 6  # `wm compare --world_models`: fresh random-policy episodes no V or M trained on
FIDELITY = 7  # the random controllers a dream-fidelity study plays (the fidelity table of docs/results-doom.md)

# Streams of one episode's random numbers (:func:`uniform`, :func:`normal`), by what they draw. A normal stream s
# uses the uniform streams 2s and 2s + 1, so the numbers below never share draws.
PICK_COMPONENT = 0  # uniform, step t >= 0: which of M's mixture components z_{t+1} comes from (dream)
SAMPLE_Z = 1  # normal, step t >= 0: z_{t+1} within that component (dream)
FIRST_FRAME = 0  # uniform, step -1: which stored first frame a dream starts from
FIRST_Z = 1  # normal, step -1: the first z around that frame's mu
FIRST_Z_NOISE = 2  # normal, step -1: extra noise on the first z (initial_z_noise)
ENCODE_Z = 7  # normal, step t of a real game: z = mu + sigma * eps from V's encoding of the frame
INIT_STEP = -1  # the step of the draws made before an episode's first step

_M32 = 0xFFFFFFFF


def episode_seed(run_seed: int, generation: int, candidate: int, trial: int, purpose: int = TRAIN) -> int:
    """The seed of one episode, a non-negative int below 2**31 - 1."""
    ss = np.random.SeedSequence([int(run_seed), int(purpose), int(generation), int(candidate), int(trial)])
    return int(ss.generate_state(1, dtype=np.uint32)[0]) % (2**31 - 1)


def generator(run_seed: int, purpose: int, *keys: int) -> np.random.Generator:
    """A numpy generator for draws that belong to no single episode (say, a round's perturbed controllers),
    seeded from the run seed, a purpose above and any further keys."""
    return np.random.default_rng([int(run_seed), int(purpose), *(int(k) for k in keys)])


def _mul32(x: torch.Tensor, m: int) -> torch.Tensor:
    """(x * m) mod 2**32 for 0 <= x < 2**32 in int64 without overflow (split x into 16-bit halves)."""
    hi = ((x >> 16) * m) & 0xFFFF
    return ((hi << 16) + (x & 0xFFFF) * m) & _M32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixer (xorshift-multiply, 'lowbias32'); x holds values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def episode_keys(seeds) -> torch.Tensor:
    """int64 keys (one per episode) for :func:`uniform`, from episode seeds."""
    return _hash32(torch.as_tensor(np.asarray(seeds, dtype=np.int64) & _M32, dtype=torch.int64))


def _hash32_u32(x: np.ndarray) -> np.ndarray:
    """:func:`_hash32` on a uint32 array, in place (numpy's uint32 products wrap modulo 2**32)."""
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def uniform(keys: torch.Tensor, step: int, stream: int, n: int) -> torch.Tensor:
    """(len(keys), n) float32 uniforms in (0, 1), a pure function of (key, step, stream, column)."""
    salt = (int(step) * 0x9E3779B1 + int(stream) * 0x85EBCA77) & _M32
    k = (torch.as_tensor(keys, dtype=torch.int64).numpy() ^ salt).astype(np.uint32)
    k = _hash32_u32(k)
    cols = np.arange(n, dtype=np.uint32) * np.uint32(0xC2B2AE3D)
    h = _hash32_u32(k[:, None] + cols[None, :])  # (key + column constant) mod 2**32, then mixed
    h >>= np.uint32(8)  # the top 24 bits: exactly representable in float32
    u = h.astype(np.float32)
    u += np.float32(0.5)
    u *= np.float32(1.0 / (1 << 24))
    return torch.from_numpy(u)


def normal(keys: torch.Tensor, step: int, stream: int, n: int) -> torch.Tensor:
    """(len(keys), n) standard normals by Box-Muller on two :func:`uniform` streams."""
    u1 = uniform(keys, step, 2 * stream, n)
    u2 = uniform(keys, step, 2 * stream + 1, n)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * torch.pi * u2)


def seed_everything(seed: int) -> None:
    """Seed torch and numpy's legacy global generator (training loops use these)."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
