"""M's mixtures: drawing the next latent from them at a temperature (the dream), and looking inside them (notebook
05: the density and moments of one latent dimension's mixture, M's predictions along a real episode).

Temperature tau (World Models Sec. 2.2, after sketch-rnn, Ha & Eck 2017; how it enters is the original code's):

    pi'_k = softmax_k(log pi_k / tau)                      each latent dimension's own K mixture weights
    k ~ pi'                                                one component per dimension
    z = mu_k + sigma_k * sqrt(tau) * eps,  eps ~ N(0, 1)

:func:`sample_mixture_plain` is these three lines; :func:`sample_mixture`, which every dream uses, draws the same
samples from the same random numbers (up to float rounding at a component's boundary) with less work per step.
:func:`mixture_density` is the density both draw from. :mod:`wmlib.memory` re-exports the two samplers.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .seeding import PICK_COMPONENT, SAMPLE_Z, normal, uniform


def sample_mixture_plain(out, temperature: float, keys: torch.Tensor, step: int) -> torch.Tensor:
    """Draw z (B, N) from a one-step MDNOutput (B, N, K) at temperature tau, as the equations above read.

    The component is picked by inverse CDF: the first k whose cumulative weight pi'_1 + ... + pi'_k exceeds a
    uniform u. u and eps are the episode's own counter-based random numbers (``keys``, ``step``; wmlib.seeding), the
    ones :func:`sample_mixture` uses: the two give the same samples.
    """
    n, k = out.mu.shape[-2], out.mu.shape[-1]
    pi = torch.softmax(out.logpi / temperature, dim=-1)  # (B, N, K): pi'_k of each dimension
    u = uniform(keys, step, PICK_COMPONENT, n).to(pi.device)  # (B, N)
    pick = (pi.cumsum(-1) < u.unsqueeze(-1)).sum(-1, keepdim=True).clamp(max=k - 1)  # (B, N, 1): k ~ pi'
    mu = out.mu.gather(-1, pick).squeeze(-1)
    sigma = out.logsigma.gather(-1, pick).squeeze(-1).exp()
    eps = normal(keys, step, SAMPLE_Z, n).to(mu.device)
    return mu + sigma * math.sqrt(temperature) * eps


def sample_mixture(out, temperature: float, keys: torch.Tensor, step: int) -> torch.Tensor:
    """:func:`sample_mixture_plain`'s samples with less work: what every dream draws with (World Models Sec. 2.2).

    The weights are not normalised: u is scaled by the sum of the unnormalised pi'_k instead, and the component is
    how many of the first K-1 running sums lie below it; the per-component work runs on contiguous (B, N) slices
    when ``out`` comes from Memory.step. The random numbers come from (episode key, step), so each episode's draw is
    independent of its batch mates.
    """
    b, n, k = out.mu.shape
    logpi = out.logpi.movedim(-1, 0)  # (K, B, N): contiguous slices when out comes from Memory.step
    top = logpi[0]
    for j in range(1, k):
        top = torch.maximum(top, logpi[j])
    # unnormalised pi'_k = exp((logpi_k - max) / tau); component = how many of the first K-1 running sums lie
    # below u * sum_k pi'_k (inverse CDF; the same component as comparing u with the normalised cumulative pi')
    cum = (logpi - top).mul_(1.0 / temperature).exp_().cumsum(0)
    threshold = uniform(keys, step, PICK_COMPONENT, n).to(cum.device).mul_(cum[-1])
    idx = (cum[:-1] < threshold).sum(0).unsqueeze(-1)
    mu = out.mu.gather(-1, idx).squeeze(-1)
    sigma = out.logsigma.gather(-1, idx).squeeze(-1).exp_()
    return sigma.mul_(normal(keys, step, SAMPLE_Z, n).to(sigma.device)).mul_(math.sqrt(temperature)).add_(mu)


def mixture_density(x, logpi, mu, logsigma, temperature: float = 1.0) -> np.ndarray:
    """Density of one latent dimension's mixture at points ``x``, at sampling temperature tau.

    p(x) = sum_k pi'_k N(x | mu_k, (sigma_k sqrt(tau))^2),  pi' = softmax(log pi / tau): the distribution that
    :func:`sample_mixture` draws from. ``logpi``, ``mu``, ``logsigma`` are (K,) arrays.
    """
    logpi, mu, logsigma = (np.asarray(v, np.float64).reshape(-1) for v in (logpi, mu, logsigma))
    logits = logpi / temperature
    pi = np.exp(logits - logits.max())
    pi /= pi.sum()
    sigma = np.exp(logsigma) * np.sqrt(temperature)
    x = np.asarray(x, np.float64)[..., None]
    comps = pi * np.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    return comps.sum(-1)


def mixture_moments(logpi, mu, logsigma, temperature: float = 1.0) -> tuple[float, float]:
    """Mean and standard deviation of the mixture of :func:`mixture_density`."""
    logpi, mu, logsigma = (np.asarray(v, np.float64).reshape(-1) for v in (logpi, mu, logsigma))
    logits = logpi / temperature
    pi = np.exp(logits - logits.max())
    pi /= pi.sum()
    var = np.exp(2 * logsigma) * temperature
    mean = float((pi * mu).sum())
    return mean, float(np.sqrt((pi * (var + mu**2)).sum() - mean**2))


def memory_predictions(memory, series: dict) -> dict:
    """Run M over one encoded real episode (teacher forcing: M always reads the real z_t) and collect its
    predictions of the next latent.

    | key        | shape          | meaning                                                            |
    |------------|----------------|--------------------------------------------------------------------|
    | actual     | (T-1, N)       | the real next latent mu_{t+1}                                      |
    | mean, std  | (T-1, N)       | mean and std of M's mixture for z_{t+1}                            |
    | logpi, mu, logsigma | (T-1, N, K) | the mixture itself                                         |
    | done_prob  | (T-1,) or None | M's probability that the episode ends after step t (Doom)         |
    | dones      | (T-1,)         | whether it did                                                     |
    """
    z = torch.as_tensor(np.asarray(series["mu"], np.float32))[None]
    a = torch.as_tensor(np.asarray(series["actions"], np.float32))[None]
    restart = torch.zeros(1, z.shape[1])
    restart[0, 0] = 1.0
    with torch.inference_mode():
        out, _ = memory(z, a, restart)
    logpi, mu, logsigma = (x[0, :-1].numpy().astype(np.float64) for x in (out.logpi, out.mu, out.logsigma))
    pi = np.exp(logpi)
    mean = (pi * mu).sum(-1)
    std = np.sqrt(np.maximum((pi * (np.exp(2 * logsigma) + mu**2)).sum(-1) - mean**2, 0.0))
    done = None if out.done_logit is None else torch.sigmoid(out.done_logit[0, :-1]).numpy()
    return dict(
        actual=np.asarray(series["mu"])[1:],
        mean=mean,
        std=std,
        logpi=logpi,
        mu=mu,
        logsigma=logsigma,
        done_prob=done,
        dones=np.asarray(series["dones"])[:-1],
    )
