import numpy as np
import torch

from wmlib.seeding import EVAL, TRAIN, episode_keys, episode_seed, normal, uniform


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
