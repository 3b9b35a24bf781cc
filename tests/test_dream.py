"""wmlib.dream: the one dream loop. Batched against one episode at a time: same draws, same scores, compaction
that changes nothing; traced (the notebooks' dream player) or not, the same episodes."""

import numpy as np
import pytest
import torch

import wmlib.dream
from wmlib.controller import ControllerSpec
from wmlib.dream import dream_episode, dream_rollouts, initial_latents
from wmlib.games import controller_to_action
from wmlib.memory import Memory, sample_mixture
from wmlib.seeding import episode_keys, episode_seed, uniform

Z, H, K = 8, 32, 3
SPEC = ControllerSpec("DoomTakeCover", Z, H)


def small_memory(done_bias: float = -1.0, done_scale: float = 2.0, seed: int = 0) -> Memory:
    """A small random Doom M whose done head ends dream episodes after ~18 steps on average (geometric-like)."""
    torch.manual_seed(seed)
    m = Memory(Z, 1, H, K, predict_done=True, restart_flag=True).eval()
    with torch.no_grad():
        m.head.weight[-1] = torch.randn(H) * done_scale
        m.head.bias[-1] = done_bias
    return m


def population(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = rng.normal(0.0, 0.1, (n, SPEC.n_params)).astype(np.float32)  # CMA-ES's first generation
    seeds = np.array([episode_seed(seed, 0, i, 0) for i in range(n)])
    pool_mu = rng.normal(0.0, 1.0, (20, Z)).astype(np.float32)
    pool_logvar = np.full((20, Z), -1.0, np.float32)
    return params, seeds, pool_mu, pool_logvar


def dream(memory, params, seeds, pool, **kw):
    kw.setdefault("max_len", 300)
    return dream_rollouts(memory, SPEC, params, seeds, *pool, temperature=1.15, **kw)


@torch.inference_mode()
def first_step(memory, params, seeds, pool_mu, pool_logvar):
    """The dream's first step, as dream_rollouts takes it: initial z, action, M step, next z."""
    keys = episode_keys(seeds)
    z = initial_latents(keys, pool_mu, pool_logvar)
    w, b = SPEC.unflatten(params)
    h, c = memory.initial_state(len(seeds))
    action = controller_to_action(SPEC.game, SPEC.act(w, b, SPEC.features(z, h, c)))
    out, h, c = memory.step(z, action, torch.ones(len(seeds)), h, c, memory.step_weights())
    return z, action, h, sample_mixture(out, 1.15, keys, 0), out.done_logit


def test_rollout_step_matches_the_sequence_forward():
    """Memory.step as the dream runs it (inference mode, weights arranged once) against nn.LSTM + head."""
    m = small_memory()
    z, a = torch.randn(5, 6, Z), torch.randn(5, 6, 1)
    restart = torch.zeros(5, 6)
    restart[:, 0] = 1
    with torch.no_grad():
        seq, _ = m(z, a, restart)
    with torch.inference_mode():
        weights = m.step_weights()
        h, c = m.initial_state(5)
        for t in range(6):
            out, h, c = m.step(z[:, t], a[:, t], restart[:, t], h, c, weights)
            for name in ("logpi", "mu", "logsigma", "done_logit"):
                assert torch.allclose(getattr(out, name), getattr(seq, name)[:, t], atol=1e-5), (t, name)


def test_first_step_draws_do_not_depend_on_the_batch():
    m = small_memory()
    params, seeds, mu, logvar = population(64)
    batched = first_step(m, params, seeds, mu, logvar)
    for i in (0, 17, 63):
        alone = first_step(m, params[i : i + 1], seeds[i : i + 1], mu, logvar)
        for a, b in zip(batched, alone):
            assert torch.allclose(a[i : i + 1], b, atol=1e-5), (i, a[i], b)


def test_batched_and_one_at_a_time_give_the_same_scores():
    m = small_memory()
    params, seeds, *pool = population(256)
    scores, lengths = dream(m, params, seeds, pool)
    assert np.array_equal(scores, lengths.astype(float))
    assert 5 < lengths.mean() < 60 and lengths.std() > 5  # the done head really ends episodes, at varied times
    alone = np.concatenate([dream(m, params[i : i + 1], seeds[i : i + 1], pool)[0] for i in range(len(seeds))])
    # Float rounding may differ between batch sizes, and a rounding difference at a mixture-component boundary
    # sends an episode elsewhere: most episodes must match exactly, and the means must agree well within their
    # standard error (~1.1 steps here).
    assert (alone == scores).mean() > 0.9
    se = np.sqrt(scores.var() / len(scores) + alone.var() / len(alone))
    assert abs(alone.mean() - scores.mean()) < 0.5 * se + 1e-9


def test_same_seeds_same_scores_other_seeds_other_scores():
    m = small_memory()
    params, seeds, *pool = population(64)
    a, b = dream(m, params, seeds, pool)[0], dream(m, params, seeds, pool)[0]
    assert np.array_equal(a, b)
    other = dream(m, params, seeds + 1, pool)[0]
    assert not np.array_equal(a, other)


def test_compaction_leaves_other_episodes_untouched():
    """Episodes give the same scores whether their batch mates end early (rows dropped) or never end."""
    m = small_memory()
    params, seeds, *pool = population(96)
    test_rows = np.arange(0, 96, 3)
    alone = dream(m, params[test_rows], seeds[test_rows], pool)[0]
    # The same 32 episodes mixed with 64 others that end at their own, varied times: rows are dropped at many
    # different steps, and the survivors' rows move within the batch.
    mixed = dream(m, params, seeds, pool)[0]
    assert len(set(mixed[np.setdiff1d(np.arange(96), test_rows)])) > 10
    assert (mixed[test_rows] == alone).mean() > 0.9
    # In reverse order the rows sit elsewhere in the batch, and compaction moves them differently.
    rev = dream(m, params[::-1].copy(), seeds[::-1].copy(), pool)[0][::-1]
    assert (rev == mixed).mean() > 0.9


def test_without_done_detection_every_episode_lasts_max_len():
    m = small_memory(done_bias=5.0)  # a done head that fires at once
    params, seeds, *pool = population(16)
    scores, lengths = dream(m, params, seeds, pool, max_len=40, detect_done=False)
    assert (lengths == 40).all() and (scores == 40).all()
    assert (dream(m, params, seeds, pool, max_len=40)[1] == 1).all()


def test_dream_refuses_a_memory_without_done_head():
    m = Memory(Z, 1, H, K)
    params, seeds, *pool = population(2)
    with pytest.raises(ValueError, match="predicts when the episode ends"):
        dream_rollouts(m, SPEC, params, seeds, *pool)


def test_traced_and_untraced_dreams_are_the_same_episodes():
    """The batch with every step kept (what the dream player shows) ends each episode where training's does."""
    m = small_memory()
    params, seeds, pool_mu, pool_logvar = population(48)
    keys = episode_keys(seeds)
    z = initial_latents(keys, pool_mu, pool_logvar)
    run = lambda trace: wmlib.dream.dream(m, z, keys, 60, 1.15, spec=SPEC, params=params, trace=trace)  # noqa: E731
    lengths, none = run(False)
    traced_lengths, traces = run(True)
    assert none is None and np.array_equal(lengths, traced_lengths)
    assert 1 < len(set(lengths.tolist())) and lengths.min() < 60  # the done head ended episodes at varied steps
    for i in range(len(seeds)):
        tr = traces[i]
        assert tr["length"] == lengths[i] and tr["z"].shape == (lengths[i] + 1, Z)
        assert tr["actions"].shape == (lengths[i], 1) and tr["done_prob"].shape == (lengths[i],)
        assert torch.equal(torch.as_tensor(tr["z"][0]), z[i])
        # the step that ended a dream is the first whose done probability passed the threshold
        ended = lengths[i] < 60
        assert (tr["done_prob"][:-1] <= 0.5).all() and (tr["done_prob"][-1] > 0.5) == ended
    assert np.array_equal(dream(m, params, seeds, (pool_mu, pool_logvar), max_len=60)[1], lengths)


def test_dream_episode_follows_the_given_actions_and_is_reproducible():
    m = small_memory(seed=1)
    actions = np.random.default_rng(0).integers(-1, 2, (15, 1)).astype(np.float32)
    z0 = np.zeros(Z, np.float32)
    a = dream_episode(m, z0, actions, temperature=1.0, seed=4)
    b = dream_episode(m, z0, actions, temperature=1.0, seed=4)
    c = dream_episode(m, z0, actions, temperature=1.3, seed=4)
    assert a["z"].shape == (16, Z) and a["length"] == 15 and a["done_prob"].shape == (15,)
    assert np.array_equal(a["actions"], actions) and np.array_equal(a["z"][0], z0)
    assert np.array_equal(a["z"], b["z"]) and not np.array_equal(a["z"], c["z"])
    with pytest.raises(ValueError, match="needs actions"):
        dream_episode(m, z0)
    with pytest.raises(ValueError, match="max_len"):
        dream_episode(m, z0, controller=(np.zeros(SPEC.n_params), SPEC))


def test_the_cpu_device_is_the_default_dream_and_a_missing_gpu_is_named():
    m = small_memory()
    params, seeds, *pool = population(32)
    default = dream(m, params, seeds, pool, max_len=60)
    assert all(np.array_equal(a, b) for a, b in zip(default, dream(m, params, seeds, pool, max_len=60, device="cpu")))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"--device cuda: this machine has no CUDA device"):
            dream(m, params, seeds, pool, max_len=60, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_dream_on_cuda_scores_like_the_cpu_dream():
    """The same random numbers on the GPU; M's plain equations there round differently, so an episode may end at
    another step now and then. The caller's M stays on the CPU."""
    m = small_memory()
    params, seeds, *pool = population(256)
    cpu = dream(m, params, seeds, pool)[1]
    cuda = dream(m, params, seeds, pool, device="cuda")[1]
    assert m.head.weight.device.type == "cpu"
    assert (cpu == cuda).mean() > 0.9


def _uniform_reference(keys, step, stream, n):
    """The counter-based uniforms written out in Python integers (the definition wmlib.seeding implements)."""
    m32 = 0xFFFFFFFF

    def mix(x):
        x ^= x >> 16
        x = (x * 0x7FEB352D) & m32
        x ^= x >> 15
        x = (x * 0x846CA68B) & m32
        return x ^ (x >> 16)

    out = np.empty((len(keys), n), np.float32)
    for r, key in enumerate(keys.tolist()):
        k = mix(key ^ ((step * 0x9E3779B1 + stream * 0x85EBCA77) & m32))
        for j in range(n):
            h = mix((k + ((j * 0xC2B2AE3D) & m32)) & m32)
            out[r, j] = (np.float32(h >> 8) + np.float32(0.5)) / np.float32(1 << 24)
    return out


@pytest.mark.parametrize("step,stream", [(0, 0), (-1, 1), (2099, 3), (123456, 2)])
def test_uniform_is_bit_exact_to_its_definition(step, stream):
    keys = torch.cat([episode_keys(np.arange(20)), torch.tensor([0, 1, 2**31, 2**32 - 1])])
    assert np.array_equal(uniform(keys, step, stream, 7).numpy(), _uniform_reference(keys, step, stream, 7))
