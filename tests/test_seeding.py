"""wmlib.seeding: every episode's seed from one pure function, and per-episode random numbers that do not depend
on the batch."""

import numpy as np
import torch

from wmlib import seeding
from wmlib.seeding import EVAL, TRAIN, episode_keys, episode_seed, generator, normal, uniform

PURPOSES = {name: getattr(seeding, name) for name in ("TRAIN", "EVAL", "TEST", "ROLLOUT", "ITERATE", "FIDELITY")}


def test_episode_seed_is_a_pure_function():
    a = episode_seed(0, 3, 5, 7)
    assert a == episode_seed(0, 3, 5, 7)
    assert len({episode_seed(0, 3, 5, t) for t in range(100)}) == 100
    assert episode_seed(0, 3, 5, 7, TRAIN) != episode_seed(0, 3, 5, 7, EVAL)
    assert 0 <= a < 2**31 - 1


def test_uniform_and_normal_statistics():
    keys = episode_keys(np.arange(50_000))
    u = uniform(keys, 0, 0, 4)
    assert u.min() > 0 and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.005
    n = normal(keys, 5, 1, 4)
    assert abs(n.mean().item()) < 0.02 and abs(n.std().item() - 1) < 0.02
    # different steps and streams are (nearly) uncorrelated
    c = np.corrcoef(uniform(keys, 1, 0, 1)[:, 0].numpy(), uniform(keys, 2, 0, 1)[:, 0].numpy())[0, 1]
    assert abs(c) < 0.02


def test_draws_do_not_depend_on_batch_mates():
    keys = episode_keys([5, 6, 7, 8])
    assert torch.equal(uniform(keys, 9, 1, 3)[[2, 0]], uniform(keys[[2, 0]], 9, 1, 3))


def test_purposes_keep_the_seeds_of_different_jobs_apart():
    assert len(set(PURPOSES.values())) == len(PURPOSES)
    seen = {}
    for name, purpose in PURPOSES.items():
        for s in {episode_seed(0, g, c, t, purpose) for g in range(3) for c in range(4) for t in range(4)}:
            assert s not in seen, f"{name} and {seen[s]} share seed {s}"
            seen[s] = name
    assert len(seen) == len(PURPOSES) * 48


def test_generator_is_reproducible_and_keyed():
    draws = lambda *a: generator(*a).normal(size=5).tolist()  # noqa: E731
    assert draws(3, seeding.ITERATE, 1) == draws(3, seeding.ITERATE, 1)
    others = [
        draws(4, seeding.ITERATE, 1),
        draws(3, seeding.FIDELITY, 1),
        draws(3, seeding.ITERATE, 2),
        draws(3, seeding.ITERATE),
    ]
    assert all(o != draws(3, seeding.ITERATE, 1) for o in others)
    assert len({tuple(o) for o in others}) == len(others)
    assert draws(3, np.int64(seeding.ITERATE), np.int32(1)) == draws(3, seeding.ITERATE, 1)  # numpy ints alike
