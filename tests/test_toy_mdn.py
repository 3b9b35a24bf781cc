"""The mixture density network toy (toy/mdn.py): it must beat the MSE network as a density and find every branch."""

import numpy as np
import pytest
import torch

from toy import mdn, plots


@pytest.fixture(scope="module")
def fit():
    return mdn.fit_toy(n_mixtures=5, steps=1000, seed=0)


def test_data_is_seeded_and_multivalued():
    x1, y1 = mdn.make_data(300, seed=3)
    x2, y2 = mdn.make_data(300, seed=3)
    x3, y3 = mdn.make_data(300, seed=4)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    assert y1.min() >= -10.5 and y1.max() <= 10.5
    # the noise-free inverse has three branches at x = +-6 and five at x = 0, and they solve the forward map
    assert len(mdn.branches(6.0)) == 3 and len(mdn.branches(-6.0)) == 3 and len(mdn.branches(0.0)) == 5
    for b in mdn.branches(6.0):
        assert abs(mdn.forward_curve(b) - 6.0) < 1e-3


def test_mdn_nll_agrees_with_torch_distributions():
    torch.manual_seed(0)
    log_pi = torch.log_softmax(torch.randn(7, 3), dim=1)
    mu, sigma, y = torch.randn(7, 3) * 3, torch.rand(7, 3) + 0.2, torch.randn(7) * 3
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=log_pi), torch.distributions.Normal(mu, sigma)
    )
    expected = -mixture.log_prob(y).mean()
    assert torch.allclose(mdn.mdn_nll(log_pi, mu, sigma, y), expected, atol=1e-5)
    # a single component reduces to the Gaussian negative log-likelihood
    one = mdn.mdn_nll(torch.zeros(7, 1), mu[:, :1], sigma[:, :1], y)
    assert abs(float(one) - mdn.gaussian_nll(y, mu[:, 0], sigma[:, 0])) < 1e-5


def test_mdn_heldout_nll_far_below_mse_gaussian(fit):
    # the MSE network's Gaussian is wide (its mean sits between branches) ...
    assert fit.mse_sigma > 3.0
    # ... and the MDN beats it on held-out data by more than a nat per point
    assert fit.nll_mdn < fit.nll_mse - 1.0, (fit.nll_mdn, fit.nll_mse)


def test_mse_network_learns_the_conditional_average(fit):
    edges = np.arange(-10.0, 10.5, 1.0)
    centres, means = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (fit.x_train >= lo) & (fit.x_train < hi)
        if inside.sum() >= 20:
            centres.append((lo + hi) / 2)
            means.append(fit.y_train[inside].mean())
    gap = np.abs(mdn.predict(fit.mse, centres) - np.array(means))
    assert np.median(gap) < 1.0, gap


@pytest.mark.parametrize("x0", [-6.0, 6.0])
def test_mdn_samples_cover_every_branch(fit, x0):
    branches = mdn.branches(x0)
    assert len(branches) == 3
    samples = mdn.sample(fit.mdn, [x0], 4000, seed=1)[0]
    distance = np.abs(samples[:, None] - branches[None, :])
    nearest, close = distance.argmin(axis=1), distance.min(axis=1) < 1.0
    assert close.mean() > 0.85
    fractions = [np.mean(close & (nearest == j)) for j in range(len(branches))]
    assert min(fractions) > 0.12, fractions
    # the Gaussian around the MSE prediction, by contrast, mostly lands between the branches
    rng = np.random.default_rng(1)
    gaussian = mdn.predict(fit.mse, [x0])[0] + fit.mse_sigma * rng.standard_normal(4000)
    assert (np.abs(gaussian[:, None] - branches[None, :]).min(axis=1) < 1.0).mean() < 0.5


def test_same_seed_same_numbers():
    x, y = mdn.make_data(200, seed=5)
    state = torch.random.get_rng_state()
    a = mdn.train_mdn(x, y, n_mixtures=3, steps=40, seed=7)
    b = mdn.train_mdn(x, y, n_mixtures=3, steps=40, seed=7)
    c = mdn.train_mdn(x, y, n_mixtures=3, steps=40, seed=8)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's torch random state is left alone
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    assert a.loss_history == b.loss_history
    assert not torch.equal(a.head.weight, c.head.weight)
    assert np.array_equal(mdn.sample(a, x[:10], 5, seed=2), mdn.sample(b, x[:10], 5, seed=2))
    assert not np.array_equal(mdn.sample(a, x[:10], 5, seed=2), mdn.sample(a, x[:10], 5, seed=3))
    m1, m2 = mdn.train_mse(x, y, steps=40, seed=7), mdn.train_mse(x, y, steps=40, seed=7)
    assert np.array_equal(mdn.predict(m1, x), mdn.predict(m2, x))


def test_temperature(fit):
    x0, branches = 6.0, mdn.branches(6.0)

    def shares(tau):
        ys = mdn.sample(fit.mdn, [x0], 4000, seed=0, temperature=tau)[0]
        distance = np.abs(ys[:, None] - branches[None, :])
        top_branch = np.bincount(distance.argmin(axis=1), minlength=3).max() / ys.size
        return top_branch, np.mean(distance.min(axis=1) < 0.5)

    assert np.array_equal(mdn.sample(fit.mdn, [x0], 50, seed=0, temperature=1.0), mdn.sample(fit.mdn, [x0], 50, seed=0))
    (top_cold, tight_cold), (top_one, tight_one), (_, tight_hot) = shares(0.1), shares(1.0), shares(3.0)
    assert top_cold > top_one + 0.1  # cold: the likeliest branch takes more of the samples ...
    assert tight_cold > tight_one > tight_hot  # ... and the samples sit closer to the branches; hot: the opposite
    with pytest.raises(ValueError):
        mdn.sample(fit.mdn, [x0], 1, temperature=0.0)


def test_plots_return_figures(fit):
    from matplotlib.figure import Figure

    from toy import plots

    for fig in (
        plots.plot_data(fit.x_train, fit.y_train),
        plots.plot_fits(fit),
        plots.plot_slice(fit, 0.0),
        plots.plot_samples(fit),
        plots.plot_temperature(fit),
    ):
        assert isinstance(fig, Figure) and fig.axes


def test_explorer_retrain_shows_the_new_fit_as_a_picture():
    pytest.importorskip("ipywidgets")
    explorer = plots.MDNExplorer(n_mixtures=2, steps=100, seed=0)
    assert explorer.picture.value == b""
    fit = explorer.retrain()  # what the Retrain button calls
    first = explorer.picture.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and f"MDN {fit.nll_mdn:.3f}" in explorer.score.value
    explorer.n_mixtures.value = 5
    explorer.retrain()
    assert explorer.fit.mdn.n_mixtures == 5 and explorer.picture.value != first
