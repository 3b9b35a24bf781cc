"""Mixture density network (MDN) on a one-dimensional problem whose answer is multi-valued.

The data: draw y uniformly, set x = 7 sin(0.75 y) + 0.5 y + noise, then *swap the axes* and ask for y given x.
The forward map y -> x is a function; the inverse x -> y is not: at x = 0 five y's are right (three at x = -6).

* A plain network trained with mean squared error learns E[y | x], the average of the branches, which is close
  to none of them.
* A mixture density network (Bishop, 1994) outputs, for every x, the parameters of a mixture of Gaussians
  p(y | x) = sum_k pi_k(x) N(y | mu_k(x), sigma_k(x)^2) and is trained by maximum likelihood. Each branch gets
  its own component, and sampling from the mixture lands on the branches.

The Memory model M of World Models is such an MDN (on top of an LSTM): the next latent frame z_{t+1} is
multi-modal (a fireball may or may not appear), so M outputs a mixture of Gaussians for every latent dimension.

Everything here takes a ``seed``: the same seed gives the same data, the same initial weights and therefore the
same trained network and the same samples.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

__all__ = [
    "forward_curve",
    "make_data",
    "branches",
    "MSENet",
    "MDN",
    "mdn_nll",
    "gaussian_nll",
    "train_mse",
    "train_mdn",
    "predict",
    "mixture_params",
    "temper",
    "sample_mixture",
    "sample",
    "prob_between",
    "mixture_density",
    "mdn_heldout_nll",
    "ToyFit",
    "fit_toy",
]

Y_RANGE = (-10.5, 10.5)


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------
def forward_curve(y):
    """The noise-free forward map x = 7 sin(0.75 y) + 0.5 y (a function of y; its inverse is multi-valued)."""
    y = np.asarray(y, dtype=float)
    return 7.0 * np.sin(0.75 * y) + 0.5 * y


def make_data(n: int = 1000, noise: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, y)``, float32 arrays of shape (n,): y ~ U(-10.5, 10.5), x = forward_curve(y) + noise N(0, 1).

    The task is to predict y from x (the axes are swapped with respect to how the data was made).
    """
    rng = np.random.default_rng(seed)
    y = rng.uniform(*Y_RANGE, size=n)
    x = forward_curve(y) + noise * rng.standard_normal(n)
    return x.astype(np.float32), y.astype(np.float32)


def branches(x: float, y_range: tuple[float, float] = Y_RANGE, resolution: int = 20001) -> np.ndarray:
    """All y in ``y_range`` with forward_curve(y) == x: the noise-free branches of the inverse at ``x``."""
    ys = np.linspace(*y_range, resolution)
    g = forward_curve(ys) - x
    crossing = np.nonzero(np.sign(g[:-1]) * np.sign(g[1:]) <= 0)[0]
    roots = []
    for i in crossing:  # linear interpolation inside each bracketing cell
        if g[i] == g[i + 1]:
            roots.append(ys[i])
        else:
            roots.append(ys[i] - g[i] * (ys[i + 1] - ys[i]) / (g[i + 1] - g[i]))
    roots = np.array(roots)
    if roots.size > 1:  # a root exactly on a grid point is found by two neighbouring cells
        roots = roots[np.concatenate([[True], np.diff(roots) > 1e-6])]
    return roots


# ----------------------------------------------------------------------------------------------------------------
# Models. Both standardise x and y internally (from the training data) and speak data units outside.
# ----------------------------------------------------------------------------------------------------------------
class _Scaled(nn.Module):
    """Shared body: standardise x, two tanh layers of ``hidden`` units, a linear head with ``n_out`` outputs."""

    def __init__(self, hidden: int, n_out: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())
        self.head = nn.Linear(hidden, n_out)
        for name in ("x_mean", "y_mean"):
            self.register_buffer(name, torch.zeros(()))
        for name in ("x_std", "y_std"):
            self.register_buffer(name, torch.ones(()))
        self.loss_history: list[float] = []

    def set_scaling(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x_mean.copy_(x.mean())
        self.x_std.copy_(x.std())
        self.y_mean.copy_(y.mean())
        self.y_std.copy_(y.std())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(((x - self.x_mean) / self.x_std).reshape(-1, 1)))


class MSENet(_Scaled):
    """A plain regression network x -> y_hat (two tanh layers), trained with mean squared error."""

    def __init__(self, hidden: int = 32):
        super().__init__(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.y_mean + self.y_std * self.features(x)[:, 0]


class MDN(_Scaled):
    """Mixture density network: x -> (log pi, mu, sigma), each of shape (N, n_mixtures), in data units.

    Output activations as in Bishop, *Pattern Recognition and Machine Learning* (2006), Sec. 5.6:
    softmax for the mixing coefficients pi_k (Eq. (5.150)), exp for the standard deviations sigma_k (Eq. (5.151))
    and the identity for the means mu_k (Eq. (5.152)); these are Eqs. (25)-(27) of Bishop's 1994 report
    "Mixture Density Networks" (NCRG/94/004), which introduced the model.
    """

    def __init__(self, n_mixtures: int = 5, hidden: int = 32):
        super().__init__(hidden, 3 * n_mixtures)
        self.n_mixtures = n_mixtures

    def forward(self, x: torch.Tensor):
        logits, mu, log_sigma = self.features(x).chunk(3, dim=1)
        log_pi = torch.log_softmax(logits, dim=1)  # pi_k = softmax(a^pi)_k, Eq. (5.150)
        sigma = self.y_std * torch.exp(log_sigma.clamp(-7.0, 7.0))  # sigma_k = exp(a^sigma_k), Eq. (5.151)
        mu = self.y_mean + self.y_std * mu  # mu_k = a^mu_k, Eq. (5.152)
        return log_pi, mu, sigma


# ----------------------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------------------
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def mdn_nll(log_pi: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of ``y`` (N,) under the mixtures (N, K); Bishop (2006) Eq. (5.153):

        E(w) = - sum_n ln { sum_k pi_k(x_n) N(y_n | mu_k(x_n), sigma_k(x_n)^2) }     (here divided by N)

    computed in log space with log-sum-exp, so that a point far from every component does not underflow to ln 0.
    """
    y = y.reshape(-1, 1)
    log_normal = -0.5 * ((y - mu) / sigma) ** 2 - torch.log(sigma) - _LOG_SQRT_2PI  # ln N(y | mu_k, sigma_k^2)
    return -torch.logsumexp(log_pi + log_normal, dim=1).mean()


def gaussian_nll(y, mean, std) -> float:
    """Mean negative log-likelihood of ``y`` under N(mean, std^2) (numpy in, float out)."""
    y, mean, std = (np.asarray(a, dtype=float) for a in (y, mean, std))
    return float(np.mean(0.5 * ((y - mean) / std) ** 2 + np.log(std) + _LOG_SQRT_2PI))


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------
@contextmanager
def _seeded_single_thread(seed: int):
    """Seed torch for the block without touching the caller's random state; use one thread (tiny models)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(threads)


def _as_tensor(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32))


def _train(model: _Scaled, loss_fn, x, y, steps: int, lr: float) -> None:
    """Full-batch Adam on ``loss_fn(model, x, y)``; the loss of every step goes to ``model.loss_history``."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model, x, y)
        loss.backward()
        opt.step()
        model.loss_history.append(loss.item())
    model.eval()


def train_mse(x, y, steps: int = 1500, hidden: int = 32, lr: float = 5e-3, seed: int = 0) -> MSENet:
    """Fit an :class:`MSENet` to predict ``y`` from ``x`` by minimising the mean squared error."""
    x, y = _as_tensor(x), _as_tensor(y)
    with _seeded_single_thread(seed):
        model = MSENet(hidden)
        model.set_scaling(x, y)
        _train(model, lambda m, xx, yy: torch.mean((m(xx) - yy) ** 2), x, y, steps, lr)
    return model


def train_mdn(x, y, n_mixtures: int = 5, steps: int = 1500, hidden: int = 32, lr: float = 5e-3, seed: int = 0) -> MDN:
    """Fit an :class:`MDN` with ``n_mixtures`` Gaussians by minimising :func:`mdn_nll`."""
    x, y = _as_tensor(x), _as_tensor(y)
    with _seeded_single_thread(seed):
        model = MDN(n_mixtures, hidden)
        model.set_scaling(x, y)
        _train(model, lambda m, xx, yy: mdn_nll(*m(xx), yy), x, y, steps, lr)
    return model


# ----------------------------------------------------------------------------------------------------------------
# Using the trained models
# ----------------------------------------------------------------------------------------------------------------
def predict(model: MSENet, x) -> np.ndarray:
    """The MSE network's prediction y_hat(x) as a numpy array."""
    with torch.no_grad():
        return model(_as_tensor(x)).numpy().astype(float)


def mixture_params(model: MDN, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pi, mu, sigma)``, numpy arrays of shape (len(x), n_mixtures)."""
    with torch.no_grad():
        log_pi, mu, sigma = model(_as_tensor(x))
    return log_pi.exp().numpy().astype(float), mu.numpy().astype(float), sigma.numpy().astype(float)


def temper(pi, sigma, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """One mixture's weights and standard deviations at temperature ``tau`` (World Models, Sec. 4.4): the mixing
    logits divided by tau, pi'_k = exp(ln pi_k / tau) / sum_j exp(ln pi_j / tau), and sigma'_k = sigma_k sqrt(tau).
    ``pi`` and ``sigma`` are (K,) arrays."""
    if not tau > 0:
        raise ValueError(f"temperature must be positive, got {tau}")
    logits = np.log(np.maximum(np.asarray(pi, dtype=float), 1e-300)) / tau
    pi_tau = np.exp(logits - logits.max())  # subtracting the largest logit keeps exp() in range
    return pi_tau / pi_tau.sum(), np.asarray(sigma, dtype=float) * math.sqrt(tau)


def sample_mixture(pi, mu, sigma, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of y from one mixture sum_k pi_k N(mu_k, sigma_k^2) (``pi``, ``mu``, ``sigma``: (K,) arrays):
    for every sample a component k with probability pi_k, then a draw from that component. Returns (n,)."""
    pi, mu, sigma = (np.asarray(a, dtype=float) for a in (pi, mu, sigma))
    k = rng.choice(len(pi), size=n, p=pi / pi.sum())  # a component for every sample
    return mu[k] + sigma[k] * rng.standard_normal(n)  # then a draw from that component


def prob_between(pi, mu, sigma, low: float, high: float) -> float:
    """The probability that y lies between ``low`` and ``high`` under the mixture sum_k pi_k N(mu_k, sigma_k^2),
    exactly: sum_k pi_k (Phi((high - mu_k) / sigma_k) - Phi((low - mu_k) / sigma_k)), Phi the standard normal
    distribution function."""
    pi, mu, sigma = (np.asarray(a, dtype=float) for a in (pi, mu, sigma))

    def phi(v):
        return np.array([0.5 * (1.0 + math.erf(t / math.sqrt(2.0))) for t in np.atleast_1d(v)])

    return float(np.sum(pi / pi.sum() * (phi((high - mu) / sigma) - phi((low - mu) / sigma))))


def sample(model: MDN, x, n_per_x: int = 1, seed: int = 0, temperature: float = 1.0) -> np.ndarray:
    """Draw ``n_per_x`` samples of y for every x from the MDN: pick a component k with probability pi_k(x), then
    draw y ~ N(mu_k(x), sigma_k(x)^2). Returns an array (len(x), n_per_x).

    ``temperature`` tau works as in World Models' dreams: the mixing logits are divided by tau and the standard
    deviations multiplied by sqrt(tau), so tau < 1 sticks to the likeliest branch and tau > 1 spreads out.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    pi, mu, sigma = mixture_params(model, np.atleast_1d(x))
    if temperature != 1.0:
        logits = np.log(np.maximum(pi, 1e-300)) / temperature
        pi = np.exp(logits - logits.max(axis=1, keepdims=True))
        pi /= pi.sum(axis=1, keepdims=True)
        sigma = sigma * math.sqrt(temperature)
    rng = np.random.default_rng(seed)
    n = pi.shape[0]
    u = rng.random((n, n_per_x, 1))  # choose the component by inverting the cumulative sum of pi
    k = (u > np.cumsum(pi, axis=1)[:, None, :]).sum(axis=2).clip(max=pi.shape[1] - 1)
    rows = np.arange(n)[:, None]
    return mu[rows, k] + sigma[rows, k] * rng.standard_normal((n, n_per_x))


def mixture_density(model: MDN, x: float, ys) -> np.ndarray:
    """The MDN's density p(y | x) evaluated at the points ``ys`` for one input ``x``."""
    pi, mu, sigma = (a[0] for a in mixture_params(model, [x]))
    ys = np.asarray(ys, dtype=float)[:, None]
    return np.sum(pi * np.exp(-0.5 * ((ys - mu) / sigma) ** 2) / (sigma * math.sqrt(2.0 * math.pi)), axis=1)


def mdn_heldout_nll(model: MDN, x, y) -> float:
    """Mean negative log-likelihood of held-out ``(x, y)`` under the MDN."""
    with torch.no_grad():
        return float(mdn_nll(*model(_as_tensor(x)), _as_tensor(y)))


# ----------------------------------------------------------------------------------------------------------------
# Both fits in one call
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class ToyFit:
    """Data, both trained models and their held-out negative log-likelihoods (nats per point, lower is better)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mse: MSENet
    mdn: MDN
    mse_sigma: float  # std of the MSE network's residuals on the training data
    nll_mse: float = field(init=False)
    nll_mdn: float = field(init=False)

    def __post_init__(self):
        # The MSE network as a density: N(y | y_hat(x), s^2) with s the training residual std. This is the best a
        # single Gaussian of constant width around the MSE prediction can do.
        self.nll_mse = gaussian_nll(self.y_test, predict(self.mse, self.x_test), self.mse_sigma)
        self.nll_mdn = mdn_heldout_nll(self.mdn, self.x_test, self.y_test)


def fit_toy(
    n_mixtures: int = 5,
    steps: int = 1500,
    n_train: int = 1000,
    n_test: int = 1000,
    hidden: int = 32,
    lr: float = 5e-3,
    seed: int = 0,
) -> ToyFit:
    """Make training and held-out data, fit the MSE network and the MDN, and score both on the held-out data."""
    x_train, y_train = make_data(n_train, seed=seed)
    x_test, y_test = make_data(n_test, seed=seed + 10_000)  # held out: a different random stream
    mse = train_mse(x_train, y_train, steps=steps, hidden=hidden, lr=lr, seed=seed)
    mdn = train_mdn(x_train, y_train, n_mixtures=n_mixtures, steps=steps, hidden=hidden, lr=lr, seed=seed)
    mse_sigma = float(np.std(y_train - predict(mse, x_train)))
    return ToyFit(x_train, y_train, x_test, y_test, mse, mdn, mse_sigma)
