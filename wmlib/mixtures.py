"""Looking inside M (notebook 05): the density and moments of one latent dimension's mixture at a temperature, and
M's predictions along a real episode. :mod:`wmlib.memory` trains M and samples from it; this module only reads.
"""

from __future__ import annotations

import numpy as np
import torch


def mixture_density(x, logpi, mu, logsigma, temperature: float = 1.0) -> np.ndarray:
    """Density of one latent dimension's mixture at points ``x``, at sampling temperature tau.

    p(x) = sum_k pi'_k N(x | mu_k, (sigma_k sqrt(tau))^2),  pi' = softmax(log pi / tau): the distribution that
    :func:`wmlib.memory.sample_mixture` draws from. ``logpi``, ``mu``, ``logsigma`` are (K,) arrays.
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
    return dict(actual=np.asarray(series["mu"])[1:], mean=mean, std=std, logpi=logpi, mu=mu, logsigma=logsigma,
                done_prob=done, dones=np.asarray(series["dones"])[:-1])

