"""wmlib.memory: the MDN-RNN, its loss and sampling, its training data and training, and the notebooks' analyses."""

import math
import shutil

import numpy as np
import pytest
import torch
from conftest import wm

from wmlib.memory import MDNOutput, Memory, lstm_step, mdn_nll, memory_loss, sample_mixture, sample_mixture_plain
from wmlib.mixtures import memory_predictions, mixture_density, mixture_moments
from wmlib.seeding import episode_keys


def test_shapes_and_per_dimension_softmax():
    m = Memory(z_dim=4, action_dim=3, hidden_dim=16, mixtures=5)
    out, (h, c) = m(torch.randn(2, 7, 4), torch.randn(2, 7, 3))
    for t in (out.logpi, out.mu, out.logsigma):
        assert t.shape == (2, 7, 4, 5)
    assert out.done_logit is None
    assert torch.allclose(out.logpi.exp().sum(-1), torch.ones(2, 7, 4))  # mixture weights sum to 1 per dimension
    assert h.shape == c.shape == (1, 2, 16)


def test_paper_sized_models():
    car = Memory(32, 3, 256, 5)
    doom = Memory(64, 1, 512, 5, predict_done=True, restart_flag=True)
    # The paper counts one LSTM bias vector (TensorFlow); PyTorch's LSTM has two, 4 * H numbers more.
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(car) - 4 * 256 == 422_368
    assert count(doom) - 4 * 512 == 1_678_785
    assert doom.input_dim == 64 + 1 + 1


def test_each_dimension_has_its_own_mixture_weights():
    m = Memory(z_dim=3, action_dim=1, hidden_dim=8, mixtures=2)
    hs = torch.randn(1, 1, 8)
    before = m.split(m.head(hs))
    with torch.no_grad():  # change only the head rows of dimension 0's mixture logits
        m.head.weight.view(3, 3, 2, 8)[0, 0, 0] += 1.0  # (param kind, dimension, mixture, input)
    after = m.split(m.head(hs))
    assert not torch.allclose(before.logpi[..., 0, :], after.logpi[..., 0, :])
    assert torch.allclose(before.logpi[..., 1:, :], after.logpi[..., 1:, :])


def test_step_matches_sequence_forward():
    torch.manual_seed(0)
    m = Memory(z_dim=4, action_dim=1, hidden_dim=16, mixtures=3, predict_done=True, restart_flag=True)
    z, a = torch.randn(3, 5, 4), torch.randn(3, 5, 1)
    restart = torch.zeros(3, 5)
    restart[:, 0] = 1
    seq, _ = m(z, a, restart)
    h, c = m.initial_state(3)
    for t in range(5):
        out, h, c = m.step(z[:, t], a[:, t], restart[:, t], h, c)
        assert torch.allclose(out.mu, seq.mu[:, t], atol=1e-5)
        assert torch.allclose(out.done_logit, seq.done_logit[:, t], atol=1e-5)


def test_a_window_that_crosses_an_episode_start_restarts_from_a_zero_state():
    """M is trained on windows cut anywhere from the stream of episodes; where a new episode begins inside a window,
    its state is zeroed, so from there on M computes exactly what it computes on a window starting at that episode
    (which is how every dream and real episode starts: zero state, restart = 1)."""
    torch.manual_seed(0)
    m = Memory(z_dim=4, action_dim=3, hidden_dim=16, mixtures=3, predict_done=True, restart_flag=True)
    z, a = torch.randn(3, 12, 4), torch.randn(3, 12, 3)
    restart = torch.zeros(3, 12)
    restart[:, 0] = 1
    restart[0, 5] = 1  # row 0: a new episode at step 5; row 1: at step 9; row 2: none
    restart[1, 9] = 1
    whole, (h, c) = m(z, a, restart)
    for row, t in ((0, 5), (1, 9)):
        fresh, (hf, cf) = m(z[row : row + 1, t:], a[row : row + 1, t:], restart[row : row + 1, t:])
        for name in ("logpi", "mu", "logsigma", "done_logit"):
            torch.testing.assert_close(getattr(whole, name)[row : row + 1, t:], getattr(fresh, name))
        torch.testing.assert_close(h[:, row : row + 1], hf)
        torch.testing.assert_close(c[:, row : row + 1], cf)
        # and before the boundary, what the old episode's own window gives
        old, _ = m(z[row : row + 1, :t], a[row : row + 1, :t], restart[row : row + 1, :t])
        torch.testing.assert_close(whole.mu[row : row + 1, :t], old.mu)
    # the row without a boundary is what one uninterrupted LSTM pass gives
    hs, _ = m.lstm(m._inputs(z[2:], a[2:], restart[2:]))
    torch.testing.assert_close(whole.mu[2:], m.split(m.head(hs)).mu)
    # a carried-in state is dropped where the window starts with restart = 1, kept where it does not
    state = (torch.randn(1, 3, 16), torch.randn(1, 3, 16))
    restart[2, 0] = 0
    carried, _ = m(z, a, restart, state)
    torch.testing.assert_close(carried.mu[:2], whole.mu[:2])
    assert not torch.allclose(carried.mu[2, :3], whole.mu[2, :3])
    # and M learns from such windows: the gradient reaches through the reset
    carried.mu.sum().backward()
    assert m.lstm.weight_hh_l0.grad.abs().sum() > 0


@torch.inference_mode()
def test_step_restarts_from_a_zero_state():
    torch.manual_seed(0)
    m = Memory(z_dim=4, action_dim=1, hidden_dim=16, mixtures=3, predict_done=True, restart_flag=True).eval()
    z, a = torch.randn(2, 4), torch.randn(2, 1)
    h0, c0 = torch.randn(2, 16), torch.randn(2, 16)
    out, h, c = m.step(z, a, torch.tensor([1.0, 0.0]), h0, c0)
    fresh, hf, cf = m.step(z, a, torch.ones(2), *m.initial_state(2))
    assert torch.equal(h[0], hf[0]) and torch.equal(c[0], cf[0]) and torch.equal(out.mu[0], fresh.mu[0])
    assert not torch.allclose(h[1], hf[1])  # the other row carried its state on


@torch.inference_mode()
def test_step_without_the_head_gives_the_same_state():
    torch.manual_seed(0)
    m = Memory(z_dim=4, action_dim=1, hidden_dim=16, mixtures=3, predict_done=True, restart_flag=True).eval()
    z, a, restart = torch.randn(3, 4), torch.randn(3, 1), torch.ones(3)
    h0, c0 = torch.randn(3, 16), torch.randn(3, 16)
    out, h, c = m.step(z, a, restart, h0, c0)
    none, h2, c2 = m.step(z, a, restart, h0, c0, head=False)
    assert out is not None and none is None
    assert torch.equal(h, h2) and torch.equal(c, c2)


def test_lstm_step_is_one_step_of_torchs_lstm():
    """The LSTM's equations as written (i, f, g, o from W_ih x + b_ih + W_hh h + b_hh; c' = f c + i g; h' = o tanh c')
    with nn.LSTM's own weights are what nn.LSTM computes."""
    torch.manual_seed(0)
    m = Memory(z_dim=4, action_dim=1, hidden_dim=16, mixtures=3, predict_done=True, restart_flag=True)
    lstm = m.lstm
    x, h, c = torch.randn(5, m.input_dim), torch.randn(5, 16), torch.randn(5, 16)
    with torch.no_grad():
        h1, c1 = lstm_step(x, h, c, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
        _, (h_torch, c_torch) = lstm(x[:, None], (h[None], c[None]))
    torch.testing.assert_close(h1, h_torch[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(c1, c_torch[0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("mode", [torch.inference_mode, torch.no_grad, torch.enable_grad])
def test_the_fast_step_computes_the_plain_equations(mode):
    """Memory.step's two implementations along a rollout: the plain equations (lstm_step, split(head(h))) and the
    fast ones (one product and one sigmoid for the four gates, the rearranged head) agree to float rounding, and on
    the CPU the default is the fast one, exactly (every published score was computed with it)."""
    torch.manual_seed(0)
    m = Memory(z_dim=8, action_dim=1, hidden_dim=32, mixtures=5, predict_done=True, restart_flag=True).eval()
    z, a = torch.randn(6, 8), torch.randn(6, 1)
    keys = episode_keys(np.arange(6))
    start = (torch.randn(6, 32), torch.randn(6, 32))
    with mode():
        weights = m.step_weights()
        state = {True: start, False: start}
        for t in range(6):
            restart = torch.tensor([1.0, 0, 1, 0, 0, 1]) if t == 0 else torch.zeros(6)
            out = {}
            for fast in (True, False):
                out[fast], *state[fast] = m.step(z, a, restart, *state[fast], weights, fast=fast)
            for name in ("logpi", "mu", "logsigma", "done_logit"):
                torch.testing.assert_close(getattr(out[True], name), getattr(out[False], name), atol=2e-6, rtol=1e-5)
            for i in (0, 1):
                torch.testing.assert_close(state[True][i], state[False][i], atol=2e-6, rtol=1e-5)
            default, h, c = m.step(z, a, restart, *state[True], weights)
            fast, hf, cf = m.step(z, a, restart, *state[True], weights, fast=True)
            assert torch.equal(h, hf) and torch.equal(c, cf) and torch.equal(default.mu, fast.mu)
            z = sample_mixture(out[True], 1.15, keys, t).detach()


def test_nll_by_hand():
    # one dimension, two components: pi = (0.25, 0.75), mu = (0, 2), sigma = (1, 0.5), z = 1
    out = MDNOutput(
        logpi=torch.log(torch.tensor([[0.25, 0.75]])),
        mu=torch.tensor([[0.0, 2.0]]),
        logsigma=torch.log(torch.tensor([[1.0, 0.5]])),
        done_logit=None,
    )
    normal = lambda x, m, s: math.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))  # noqa: E731
    expected = -math.log(0.25 * normal(1, 0, 1) + 0.75 * normal(1, 2, 0.5))
    assert mdn_nll(out, torch.tensor([1.0])).item() == pytest.approx(expected, rel=1e-6)


def test_done_loss_weights_positives():
    out = MDNOutput(
        torch.zeros(1, 2, 1, 1), torch.zeros(1, 2, 1, 1), torch.zeros(1, 2, 1, 1), done_logit=torch.tensor([[0.0, 0.0]])
    )
    z_next = torch.zeros(1, 2, 1)
    _, _, d = memory_loss(out, z_next, done=torch.tensor([[1.0, 0.0]]), done_weight=10.0)
    assert d.item() == pytest.approx((10 * math.log(2) + math.log(2)) / 2, rel=1e-6)
    # masked steps do not count in the z loss
    out2 = MDNOutput(torch.zeros(1, 2, 1, 1), torch.zeros(1, 2, 1, 1), torch.zeros(1, 2, 1, 1), None)
    _, zl, _ = memory_loss(out2, torch.tensor([[[0.0], [100.0]]]), mask=torch.tensor([[1.0, 0.0]]))
    assert zl.item() == pytest.approx(0.5 * math.log(2 * math.pi), rel=1e-6)


def _mixture(b, pis, mus, sigmas):
    k = len(pis)
    return MDNOutput(
        logpi=torch.log(torch.tensor(pis)).expand(b, 1, k).clone(),
        mu=torch.tensor(mus).expand(b, 1, k).clone(),
        logsigma=torch.log(torch.tensor(sigmas)).expand(b, 1, k).clone(),
        done_logit=None,
    )


SAMPLERS = pytest.mark.parametrize("sample", [sample_mixture, sample_mixture_plain], ids=["fast", "plain"])


@SAMPLERS
def test_sampling_statistics_match_the_mixture(sample):
    b = 200_000
    pis, mus, sigmas = [0.3, 0.7], [-2.0, 1.0], [0.5, 1.5]
    z = sample(_mixture(b, pis, mus, sigmas), 1.0, episode_keys(np.arange(b)), step=0)[:, 0]
    mean = sum(p * m for p, m in zip(pis, mus))
    var = sum(p * (s**2 + m**2) for p, m, s in zip(pis, mus, sigmas)) - mean**2
    assert z.mean().item() == pytest.approx(mean, abs=0.02)
    assert z.std().item() == pytest.approx(math.sqrt(var), abs=0.02)
    cdf = lambda x, m, s: 0.5 * (1 + math.erf((x - m) / (s * math.sqrt(2))))  # noqa: E731
    p_below = sum(p * cdf(-0.5, m, s) for p, m, s in zip(pis, mus, sigmas))
    assert (z < -0.5).float().mean().item() == pytest.approx(p_below, abs=0.005)


@SAMPLERS
def test_temperature(sample):
    b = 100_000
    keys = episode_keys(np.arange(b))
    out = _mixture(b, [0.2, 0.8], [-3.0, 3.0], [1.0, 1.0])
    # low temperature: the heavier component almost always, with a smaller spread (sigma * sqrt(tau))
    cold = sample(out, 0.1, keys, 0)[:, 0]
    assert (cold > 0).float().mean().item() > 0.99
    assert cold[cold > 0].std().item() == pytest.approx(math.sqrt(0.1), rel=0.05)
    # high temperature: weights flatten (logits / tau), spread grows
    hot = sample(out, 2.0, keys, 0)[:, 0]
    p_right = 0.8**0.5 / (0.8**0.5 + 0.2**0.5)
    assert (hot > 0).float().mean().item() == pytest.approx(p_right, abs=0.01)
    assert hot[hot > 0].std().item() == pytest.approx(math.sqrt(2.0), rel=0.05)


@pytest.mark.parametrize("temperature", [0.5, 1.15, 2.0])
def test_plain_and_fast_sampling_draw_the_same_samples(temperature):
    """With the same random numbers (episode keys, step), the equations as written (sample_mixture_plain) and every
    dream's sampler (sample_mixture) pick the same component and draw the same z, but for a rare u that falls
    within float rounding of a component's boundary."""
    b, n, k = 50_000, 8, 5
    g = torch.Generator().manual_seed(0)
    out = MDNOutput(
        torch.log_softmax(2 * torch.randn(b, n, k, generator=g), -1),
        2 * torch.randn(b, n, k, generator=g),
        0.5 * torch.randn(b, n, k, generator=g) - 1,
        None,
    )
    keys = episode_keys(np.arange(b))
    fast, plain = sample_mixture(out, temperature, keys, 3), sample_mixture_plain(out, temperature, keys, 3)
    same = torch.isclose(fast, plain, atol=1e-5, rtol=1e-5)
    assert same.float().mean().item() > 0.9999
    # and from a Memory.step output, whose (B, N, K) tensors are views of (B, K, N) blocks
    torch.manual_seed(0)
    m = Memory(z_dim=8, action_dim=1, hidden_dim=16, mixtures=5).eval()
    with torch.inference_mode():
        step, _, _ = m.step(torch.randn(64, 8), torch.randn(64, 1), None, *m.initial_state(64))
        keys = episode_keys(np.arange(64))
        fast, plain = sample_mixture(step, temperature, keys, 0), sample_mixture_plain(step, temperature, keys, 0)
    assert torch.allclose(fast, plain, atol=1e-5, rtol=1e-5)


def test_sampling_depends_only_on_each_episodes_key():
    out = _mixture(6, [0.5, 0.5], [-1.0, 1.0], [1.0, 1.0])
    keys = episode_keys([11, 12, 13, 14, 15, 16])
    full = sample_mixture(out, 1.15, keys, step=3)
    part = sample_mixture(_mixture(3, [0.5, 0.5], [-1.0, 1.0], [1.0, 1.0]), 1.15, keys[[4, 1, 2]], step=3)
    assert torch.equal(full[[4, 1, 2]], part)


def test_training_windows_show_episode_ends_to_the_done_head(tmp_path):
    from wmlib import episodes
    from wmlib.memory import SeriesStream

    for i, n in enumerate([50, 80, 120]):
        dones = np.zeros(n, bool)
        dones[-1] = True
        episodes.save_arrays(
            tmp_path / f"ep_{i:06d}.npz",
            {},
            mu=np.full((n, 2), i, np.float32),
            logvar=np.zeros((n, 2), np.float32),
            actions=np.zeros((n, 1), np.float32),
            rewards=np.ones(n, np.float32),
            dones=dones,
        )
    stream = SeriesStream(sorted(tmp_path.glob("ep_*.npz")), z_dim=2)
    rng = np.random.default_rng(0)
    b = stream.batch(rng, 2000, seq_len=20, anywhere=True)
    done_targets = b["dones"][:, :-1]
    # a window of 20 inputs holds an episode end with probability 3 * 20 / 250
    assert done_targets.sum(1).clamp(max=1).mean().item() == pytest.approx(60 / 250, abs=0.03)
    # after every done comes a restart, and the z loss is masked exactly there
    ends = done_targets.nonzero()
    assert torch.all(b["restart"][ends[:, 0], ends[:, 1] + 1] == 1)
    # inside-episode windows never cross an end when the episode is long enough
    b2 = stream.batch(rng, 500, seq_len=20)
    assert b2["restart"][:, 1:].sum().item() == 0


def test_a_finished_m_stopped_before_its_plot_gets_the_plot_on_the_next_run(run_copy):
    from wmlib.config import make_config
    from wmlib.memory import train_memory

    d = run_copy("DoomTakeCover")
    (d / "memory" / "loss.png").unlink()
    weights = (d / "memory" / "memory.pt").read_bytes()
    train_memory(make_config("DoomTakeCover", "smoke"), d, progress=False)
    assert (d / "memory" / "loss.png").exists() and (d / "memory" / "memory.pt").read_bytes() == weights


def test_the_log_is_rewritten_from_the_checkpoint(run_copy):
    """M's checkpoint carries its log rows: a log.csv with a row twice and no header (what appending could leave
    after a kill) is written again from them; M itself is untouched."""
    from wmlib.config import make_config
    from wmlib.io import load_checkpoint
    from wmlib.memory import train_memory

    d = run_copy("DoomTakeCover")
    log, out = d / "memory" / "log.csv", d / "memory" / "memory.pt"
    rows = load_checkpoint(out)["log"]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # smoke M: 4 steps, a checkpoint after each
    good, weights = log.read_bytes(), out.read_bytes()
    assert good.startswith(b"step,loss,z_loss,done_loss,lr,seconds\r\n1,") and good.count(b"\r\n") == 5
    lines = good.split(b"\r\n")
    log.write_bytes(b"\r\n".join(lines[1:] + lines[1:]))
    train_memory(make_config("DoomTakeCover", "smoke"), d, progress=False)
    assert log.read_bytes() == good and out.read_bytes() == weights


def test_memory_from_another_vision_is_refused(run_copy, tmp_path):
    d = run_copy("DoomTakeCover")
    other = tmp_path / "other"
    shutil.copytree(d / "episodes", other / "episodes")
    wm("vision", "--game", "DoomTakeCover", "--data_dir", other, "--z_dim", 32, "--quiet")
    shutil.copy(other / "vision/vision.pt", d / "vision/vision.pt")
    proc = wm("test", "--data_dir", d, "--quiet", check=False)  # wm: the run's z_dim disagrees with this V
    assert proc.returncode == 2
    assert "vision.pt was made with z_dim 32" in proc.stderr, proc.stderr
    from wmlib.agent import Agent  # and the library, loading V and M together

    with pytest.raises(ValueError, match=r"memory.pt has z_dim=64 but .*vision.pt has z_dim=32"):
        Agent.from_run(d, "DoomTakeCover", with_pool=False)


# -- analyses (notebook 05) ----------------------------------------------------------------------------------------


def random_mixture(k=5, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=k)
    return logits - np.log(np.exp(logits).sum()), rng.normal(0, 2, k), rng.normal(-0.5, 0.5, k)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.3])
def test_mixture_density_integrates_to_one(temperature):
    logpi, mu, logsigma = random_mixture()
    x = np.linspace(-40, 40, 200_001)
    assert np.trapezoid(mixture_density(x, logpi, mu, logsigma, temperature), x) == pytest.approx(1.0, abs=1e-4)
    mean, std = mixture_moments(logpi, mu, logsigma, temperature)
    p = mixture_density(x, logpi, mu, logsigma, temperature)
    assert np.trapezoid(x * p, x) == pytest.approx(mean, abs=1e-4)
    assert np.sqrt(np.trapezoid((x - mean) ** 2 * p, x)) == pytest.approx(std, rel=1e-4)


def test_mixture_density_is_the_likelihood_memory_is_trained_on():
    logpi, mu, logsigma = random_mixture(seed=2)
    out = MDNOutput(*(torch.tensor(v, dtype=torch.float64).view(1, 1, 5) for v in (logpi, mu, logsigma)), None)
    for x in (-3.0, 0.1, 2.5):
        nll = mdn_nll(out, torch.tensor([[x]], dtype=torch.float64)).item()
        assert mixture_density(x, logpi, mu, logsigma) == pytest.approx(np.exp(-nll), rel=1e-9)


def test_mixture_density_at_temperature_is_what_sample_mixture_draws():
    logpi, mu, logsigma = random_mixture(seed=3)
    tau, n = 1.3, 40_000
    out = MDNOutput(*(torch.tensor(v, dtype=torch.float32).expand(n, 1, 5) for v in (logpi, mu, logsigma)), None)
    draws = sample_mixture(out, tau, episode_keys(np.arange(n)), step=0)[:, 0].numpy()
    mean, std = mixture_moments(logpi, mu, logsigma, tau)
    assert draws.mean() == pytest.approx(mean, abs=4 * std / np.sqrt(n))
    assert draws.std() == pytest.approx(std, rel=0.02)


def test_memory_predictions_line_up_each_step_with_the_next_latent():
    torch.manual_seed(1)
    doom_memory = Memory(z_dim=8, action_dim=1, hidden_dim=16, mixtures=5, predict_done=True, restart_flag=True).eval()
    rng = np.random.default_rng(0)
    t = 12
    series = dict(
        mu=rng.normal(size=(t, 8)).astype(np.float32),
        actions=rng.integers(-1, 2, (t, 1)).astype(np.float32),
        dones=np.r_[np.zeros(t - 1, bool), True],
    )
    pred = memory_predictions(doom_memory, series)
    assert np.array_equal(pred["actual"], series["mu"][1:])
    assert pred["mean"].shape == pred["std"].shape == (t - 1, 8) and pred["logpi"].shape == (t - 1, 8, 5)
    assert pred["done_prob"].shape == (t - 1,) and pred["dones"].shape == (t - 1,)
    # M's mixture at step 3 is the one Memory.forward gives there.
    z = torch.as_tensor(series["mu"])[None]
    restart = torch.zeros(1, t)
    restart[0, 0] = 1
    with torch.no_grad():
        out, _ = doom_memory(z, torch.as_tensor(series["actions"])[None], restart)
    assert pred["mu"][3] == pytest.approx(out.mu[0, 3].numpy(), abs=1e-6)
    mean, std = mixture_moments(pred["logpi"][3, 2], pred["mu"][3, 2], pred["logsigma"][3, 2])
    assert pred["mean"][3, 2] == pytest.approx(mean, abs=1e-6) and pred["std"][3, 2] == pytest.approx(std, abs=1e-5)
    no_done = memory_predictions(Memory(z_dim=8, action_dim=1, hidden_dim=16, mixtures=5).eval(), series)
    assert no_done["done_prob"] is None
