"""A minimal (mu/mu_w, lambda)-CMA-ES in numpy, written to be read next to the tutorial.

Why the project has its own CMA-ES
----------------------------------
The library itself (:mod:`wmlib.evolution`) uses `pycma <https://github.com/CMA-ES/pycma>`_, the reference
implementation, which has many refinements (restarts, boundary handling, termination tests, numerical safety
nets) that hide the idea under engineering. This module exists to *teach*: it is the bare algorithm of
Figure 6 in Nikolaus Hansen, "The CMA Evolution Strategy: A Tutorial" (arXiv:1604.00772), with the default
parameters of its Table 1, and every update carries the number of the equation it implements. Equation
numbers refer to the 2016 text of that tutorial (Eqs. (38)-(47): the algorithm; Eqs. (48)-(58): the default
parameters). Two small additions, both as in pycma: the step-size change per generation is capped, and
:meth:`CMAES.stop` offers the usual termination tests.

It keeps pycma's ask/tell shape, so the two can be swapped in a loop::

    es = CMAES(x0, sigma0, popsize=None, seed=1)        # or cma.CMAEvolutionStrategy(x0, sigma0, {...})
    for _ in range(100):
        X = es.ask()                                    # (popsize, n) candidate solutions
        es.tell(X, [f(x) for x in X])                   # minimises f
    es.mean, es.sigma, es.C, es.best.x, es.best.f

The search distribution is the multivariate normal N(mean, sigma^2 C). Each generation samples ``popsize``
points from it, ranks them by fitness, and moves all three parameters towards the better points:

* ``mean``  moves to a weighted average of the best half              (Eqs. (41)-(42))
* ``sigma`` grows when consecutive steps point the same way, shrinks when they cancel (Eqs. (43)-(44))
* ``C``     learns the shape of the landscape: the direction of progress (rank-one update, from the
  evolution path p_c, Eq. (45)) and the spread of the good steps (rank-mu update, Eqs. (46)-(47)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CMAES",
    "Best",
    "Snapshot",
    "default_popsize",
    "evaluations_to_target",
    "run",
    "sphere",
    "ellipsoid",
    "rosenbrock",
    "schaffer",
    "SCHAFFER_OPTIMUM",
]


def default_popsize(n: int) -> int:
    """Default population size lambda = 4 + floor(3 ln n), Eq. (48) (the same default as pycma)."""
    if n < 1:
        raise ValueError(f"dimension must be at least 1, got {n}")
    return 4 + int(math.floor(3.0 * math.log(n)))


@dataclass(frozen=True)
class Best:
    """The best solution told so far: its point ``x``, its fitness ``f`` and the evaluation count when found."""

    x: np.ndarray
    f: float
    evaluations: int


class CMAES:
    """(mu/mu_w, lambda)-CMA-ES with the tutorial's default parameters (including its negative weights).

    Parameters
    ----------
    x0 : array_like, shape (n,)
        Initial mean of the search distribution.
    sigma0 : float
        Initial step size (the initial search distribution is N(x0, sigma0^2 I)).
    popsize : int, optional
        Number of candidates per generation (lambda); default 4 + floor(3 ln n), Eq. (48).
    seed : int, optional
        Seed of the random generator: the same seed gives the same sequence of populations.

    Attributes
    ----------
    mean, sigma, C : the current search distribution N(mean, sigma^2 C).
    generation : number of completed ``tell`` calls.
    countevals : number of fitness values told.
    best : :class:`Best` or None, the best solution told so far.
    p_sigma, p_c : the two evolution paths.
    """

    def __init__(self, x0, sigma0: float, popsize: int | None = None, seed: int | None = None):
        x0 = np.array(x0, dtype=float).ravel()
        n = x0.size
        if n < 1:
            raise ValueError("x0 must have at least one coordinate")
        if not sigma0 > 0:
            raise ValueError(f"sigma0 must be positive, got {sigma0}")
        lam = default_popsize(n) if popsize is None else int(popsize)
        if lam < 2:
            raise ValueError(f"popsize must be at least 2, got {popsize}")
        self.n = n
        self.popsize = lam
        self.mu = mu = lam // 2  # number of parents, Eq. (48)

        # --- Recombination weights, Table 1 -------------------------------------------------------------------
        # Eq. (49): preliminary weights w'_i = ln((lambda + 1) / 2) - ln i for all lambda ranks; the first mu are
        # positive, the rest are zero or negative.
        w_prime = math.log((lam + 1) / 2.0) - np.log(np.arange(1, lam + 1))
        positive, negative = w_prime[:mu], w_prime[mu:]
        # Variance effective selection mass mu_eff = (sum w_i)^2 / sum w_i^2 over the positive weights (Sec. 2 and
        # Table 1); mu_eff_minus is the same quantity for the negative weights.
        self.mu_eff = mu_eff = positive.sum() ** 2 / np.sum(positive**2)
        mu_eff_minus = negative.sum() ** 2 / np.sum(negative**2) if np.any(negative != 0) else 0.0

        # --- Learning rates, Eqs. (54)-(58) -------------------------------------------------------------------
        self.c_m = 1.0  # Eq. (54): learning rate of the mean
        self.c_sigma = (mu_eff + 2.0) / (n + mu_eff + 5.0)  # Eq. (55): cumulation for the step size
        self.d_sigma = 1.0 + 2.0 * max(0.0, math.sqrt((mu_eff - 1.0) / (n + 1.0)) - 1.0) + self.c_sigma  # Eq. (55)
        self.c_c = (4.0 + mu_eff / n) / (n + 4.0 + 2.0 * mu_eff / n)  # Eq. (56): cumulation for the rank-one path
        alpha_cov = 2.0
        self.c_1 = alpha_cov / ((n + 1.3) ** 2 + mu_eff)  # Eq. (57): rank-one learning rate
        self.c_mu = min(  # Eq. (58): rank-mu learning rate
            1.0 - self.c_1,
            alpha_cov * (mu_eff - 2.0 + 1.0 / mu_eff) / ((n + 2.0) ** 2 + alpha_cov * mu_eff / 2.0),
        )

        # Eqs. (50)-(53): positive weights are normalised to sum to one; negative weights are scaled so that the
        # rank-mu update cannot lose positive definiteness and the total decay of C stays bounded.
        if self.c_mu > 0 and mu_eff_minus > 0:
            alpha_mu_minus = 1.0 + self.c_1 / self.c_mu  # Eq. (50)
            alpha_mu_eff_minus = 1.0 + 2.0 * mu_eff_minus / (mu_eff + 2.0)  # Eq. (51)
            alpha_posdef_minus = (1.0 - self.c_1 - self.c_mu) / (n * self.c_mu)  # Eq. (52)
            alpha_minus = min(alpha_mu_minus, alpha_mu_eff_minus, alpha_posdef_minus)
        else:  # mu_eff == 1 (lambda < 4): no rank-mu update, so no negative weights either
            alpha_minus = 0.0
        self.weights = np.where(  # Eq. (53)
            w_prime >= 0,
            w_prime / positive.sum(),
            alpha_minus * w_prime / np.abs(negative).sum() if negative.any() else 0.0,
        )

        # E||N(0, I)|| = sqrt(2) Gamma((n+1)/2) / Gamma(n/2), with the approximation given in the tutorial (Sec. 4).
        self.chi_n = math.sqrt(n) * (1.0 - 1.0 / (4.0 * n) + 1.0 / (21.0 * n**2))

        # --- State: the search distribution N(mean, sigma^2 C) and the two evolution paths ----------------------
        self.mean = x0
        self.sigma0 = self.sigma = float(sigma0)
        self.C = np.eye(n)
        self.B = np.eye(n)  # eigenvectors of C (columns)
        self.D = np.ones(n)  # square roots of the eigenvalues of C, so that C = B diag(D^2) B^T
        self.p_sigma = np.zeros(n)
        self.p_c = np.zeros(n)
        self.generation = 0
        self.countevals = 0
        self.best: Best | None = None
        self._rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------------------------------------------------
    def ask(self) -> np.ndarray:
        """Sample ``popsize`` candidate solutions from N(mean, sigma^2 C); returns an array (popsize, n)."""
        z = self._rng.standard_normal((self.popsize, self.n))  # Eq. (38): z_k ~ N(0, I)
        y = (z * self.D) @ self.B.T  # Eq. (39): y_k = B D z_k ~ N(0, C)   (rows are the y_k)
        return self.mean + self.sigma * y  # Eq. (40): x_k = m + sigma y_k ~ N(m, sigma^2 C)

    def tell(self, solutions, fitnesses) -> None:
        """Update mean, step size and covariance from ``solutions`` (popsize, n) and their ``fitnesses`` (minimised)."""
        X = np.asarray(solutions, dtype=float)
        f = np.asarray(fitnesses, dtype=float).ravel()
        if X.shape != (self.popsize, self.n) or f.shape != (self.popsize,):
            raise ValueError(
                f"expected {self.popsize} solutions of dimension {self.n} and {self.popsize} fitnesses, "
                f"got solutions {X.shape} and fitnesses {f.shape}"
            )
        if not np.all(np.isfinite(f)):
            raise ValueError("fitnesses must be finite")
        n, mu = self.n, self.mu

        # Selection: rank by fitness (best first). y_{i:lambda} = (x_{i:lambda} - m) / sigma are the sorted steps.
        order = np.argsort(f, kind="stable")
        y = (X[order] - self.mean) / self.sigma
        self._update_best(X[order[0]], f[order[0]])

        # --- Selection and recombination -------------------------------------------------------------------
        y_w = self.weights[:mu] @ y[:mu]  # Eq. (41): <y>_w = sum_{i<=mu} w_i y_{i:lambda}
        self.mean = self.mean + self.c_m * self.sigma * y_w  # Eq. (42): m <- m + c_m sigma <y>_w

        # --- Step-size control (cumulative step-size adaptation), Eqs. (43)-(44) --------------------------------
        self.p_sigma, new_sigma = self.step_size_update(y_w)
        norm_p_sigma = float(np.linalg.norm(self.p_sigma))

        # --- Covariance matrix adaptation ------------------------------------------------------------------
        # h_sigma, the Heaviside function of the tutorial's summary, stalls the rank-one path when ||p_sigma|| is
        # large, i.e. when sigma is growing quickly, so that C does not grow too fast along the path in that phase.
        h_sigma_lhs = norm_p_sigma / math.sqrt(1.0 - (1.0 - self.c_sigma) ** (2 * (self.generation + 1)))
        h_sigma = 1.0 if h_sigma_lhs < (1.4 + 2.0 / (n + 1.0)) * self.chi_n else 0.0
        self.p_c = (1.0 - self.c_c) * self.p_c + h_sigma * math.sqrt(
            self.c_c * (2.0 - self.c_c) * self.mu_eff
        ) * y_w  # Eq. (45): evolution path for the rank-one update

        # Eq. (46): negative weights are rescaled by n / ||C^{-1/2} y_{i:lambda}||^2, so that a long bad step
        # cannot remove more than its share of variance.
        inv_sqrt_C_y = ((y @ self.B) / self.D) @ self.B.T
        sq_norms = np.maximum(np.sum(inv_sqrt_C_y**2, axis=1), 1e-300)
        w_circ = np.where(self.weights >= 0, self.weights, self.weights * n / sq_norms)

        # Eq. (47): C <- (1 + c_1 delta(h_sigma) - c_1 - c_mu sum w_j) C          (decay of the old C)
        #                 + c_1 p_c p_c^T                                          (rank-one update)
        #                 + c_mu sum_{i=1}^{lambda} w°_i y_{i:lambda} y_{i:lambda}^T (rank-mu update)
        # where delta(h_sigma) = (1 - h_sigma) c_c (2 - c_c) compensates the variance lost when h_sigma = 0.
        delta_h = (1.0 - h_sigma) * self.c_c * (2.0 - self.c_c)
        rank_one = np.outer(self.p_c, self.p_c)
        rank_mu = (y.T * w_circ) @ y
        self.C = (
            (1.0 + self.c_1 * delta_h - self.c_1 - self.c_mu * self.weights.sum()) * self.C
            + self.c_1 * rank_one
            + self.c_mu * rank_mu
        )

        # Eq. (44), computed above: the new step size. (The steps y_{i:lambda} were measured with the old sigma, as
        # the tutorial prescribes.)
        self.sigma = new_sigma

        # Eigendecomposition C = B diag(D^2) B^T for the next sampling step and for C^{-1/2}. (Appendix B.2 of
        # the tutorial does this only every few generations to save time; n is small here, so we always do.)
        self.C = (self.C + self.C.T) / 2.0  # remove floating-point asymmetry
        eigenvalues, self.B = np.linalg.eigh(self.C)
        self.D = np.sqrt(np.maximum(eigenvalues, 1e-300))

        self.generation += 1
        self.countevals += self.popsize

    def step_size_update(self, y_w) -> tuple[np.ndarray, float]:
        """The step-size path and the step size after a generation whose weighted step is ``y_w`` (Eq. (41)):
        ``(p_sigma, sigma)``, computed from the current state without changing it.

        C^{-1/2} = B D^{-1} B^T makes the path independent of the shape of C: under random selection p_sigma is
        N(0, I)-distributed, so its length can be compared with E||N(0, I)||. Longer: consecutive steps agree, and
        sigma grows; shorter: they cancel, and sigma shrinks. The exponent is capped at 1, as pycma does, so that
        sigma grows at most by a factor e per generation.
        """
        inv_sqrt_C_y_w = self.B @ ((self.B.T @ np.asarray(y_w, dtype=float)) / self.D)
        p_sigma = (1.0 - self.c_sigma) * self.p_sigma + math.sqrt(
            self.c_sigma * (2.0 - self.c_sigma) * self.mu_eff
        ) * inv_sqrt_C_y_w  # Eq. (43)
        growth = (self.c_sigma / self.d_sigma) * (float(np.linalg.norm(p_sigma)) / self.chi_n - 1.0)
        return p_sigma, self.sigma * math.exp(min(1.0, growth))  # Eq. (44)

    def stop(self, tolx: float = 1e-11, max_condition: float = 1e14, tolupsigma: float = 1e20) -> dict:
        """Termination tests (cf. Appendix B.3, named as in pycma); an empty dict means "keep going".

        * ``tolx``: every coordinate's standard deviation sigma * sqrt(C_ii) is below ``tolx``;
        * ``conditioncov``: the condition number of C exceeds ``max_condition``;
        * ``tolupsigma``: sigma grew ``tolupsigma``-fold: the search creeps along a flat valley or ring of optima
          while C shrinks to compensate.
        """
        reasons = {}
        if np.all(self.sigma * np.sqrt(np.diag(self.C)) < tolx):
            reasons["tolx"] = tolx
        if (self.D.max() / self.D.min()) ** 2 > max_condition:
            reasons["conditioncov"] = max_condition
        if self.sigma > tolupsigma * self.sigma0:
            reasons["tolupsigma"] = tolupsigma
        return reasons

    # ------------------------------------------------------------------------------------------------------------
    def _update_best(self, x: np.ndarray, f: float) -> None:
        if self.best is None or f < self.best.f:
            self.best = Best(x=np.array(x, dtype=float), f=float(f), evaluations=self.countevals + self.popsize)

    def optimize(self, fun, iterations: int = 1000, ftarget: float | None = None) -> CMAES:
        """Run ask/evaluate/tell for at most ``iterations`` generations, until ``best.f <= ftarget`` or :meth:`stop`."""
        for _ in range(iterations):
            X = self.ask()
            self.tell(X, [fun(x) for x in X])
            if (ftarget is not None and self.best.f <= ftarget) or self.stop():
                break
        return self

    def __repr__(self) -> str:
        best = "None" if self.best is None else f"{self.best.f:.3g}"
        return (
            f"CMAES(n={self.n}, popsize={self.popsize}, generation={self.generation}, "
            f"sigma={self.sigma:.3g}, best_f={best})"
        )


def evaluations_to_target(es, fun, ftarget: float = 1e-8, max_generations: int = 10_000) -> int:
    """Run any ask/tell optimiser ``es`` (this module's :class:`CMAES` or pycma's ``CMAEvolutionStrategy``) on ``fun``
    until a candidate reaches f < ``ftarget``; return the number of evaluations used (``es.countevals``)."""
    for _ in range(max_generations):
        X = es.ask()
        F = [float(fun(x)) for x in X]
        es.tell(X, F)
        if min(F) < ftarget:
            return int(es.countevals)
    raise RuntimeError(f"f < {ftarget} not reached within {max_generations} generations")


# ----------------------------------------------------------------------------------------------------------------
# Recording a run, for plots and animations
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    """One generation of a run: the distribution N(mean, sigma^2 C) it sampled from, and what it sampled."""

    generation: int
    mean: np.ndarray
    sigma: float
    C: np.ndarray
    population: np.ndarray  # (popsize, n)
    fitnesses: np.ndarray  # (popsize,)
    best_f: float  # best fitness found up to and including this generation


def run(fun, x0, sigma0: float, popsize: int | None = None, seed: int | None = None, generations: int = 60):
    """Run :class:`CMAES` on ``fun`` for ``generations`` generations; return one :class:`Snapshot` per generation.

    The run ends early if :meth:`CMAES.stop` fires, so the list may be shorter than ``generations``.
    """
    es = CMAES(x0, sigma0, popsize=popsize, seed=seed)
    snapshots = []
    for g in range(generations):
        if es.stop():
            break
        mean, sigma, C = es.mean.copy(), es.sigma, es.C.copy()
        X = es.ask()
        fit = np.array([fun(x) for x in X], dtype=float)
        es.tell(X, fit)
        snapshots.append(Snapshot(g, mean, sigma, C, X, fit, es.best.f))
    return snapshots


# ----------------------------------------------------------------------------------------------------------------
# Test functions (all minimised; they accept a point of shape (n,) or a batch of shape (..., n))
# ----------------------------------------------------------------------------------------------------------------
SCHAFFER_OPTIMUM = np.array([10.0, 10.0])


def schaffer(x) -> np.ndarray | float:
    """Schaffer function N. 2, shifted so that its global minimum f = 0 is at (10, 10).

    With (u, v) = x - (10, 10):  f = 0.5 + (sin^2(u^2 - v^2) - 0.5) / (1 + 0.001 (u^2 + v^2))^2.
    Narrow valleys along the hyperbolas u^2 - v^2 = k pi criss-cross the plane, so a local search is caught by the
    first valley it meets. The valleys get deeper towards the optimum (the denominator): a large population (the
    paper used 64) sees that through the ripples, a small one usually does not.
    Accepts a point (2,) or a batch (..., 2).
    """
    d = np.asarray(x, dtype=float) - SCHAFFER_OPTIMUM
    u, v = d[..., 0], d[..., 1]
    r2 = u**2 + v**2
    return 0.5 + (np.sin(u**2 - v**2) ** 2 - 0.5) / (1.0 + 0.001 * r2) ** 2


def sphere(x):
    """f(x) = sum x_i^2."""
    x = np.asarray(x, dtype=float)
    return np.sum(x**2, axis=-1)


def ellipsoid(x, condition: float = 1e6):
    """f(x) = sum_i condition^((i-1)/(n-1)) x_i^2: an axis-parallel valley with the given condition number."""
    x = np.asarray(x, dtype=float)
    n = x.shape[-1]
    scales = condition ** (np.arange(n) / max(n - 1, 1))
    return np.sum(scales * x**2, axis=-1)


def rosenbrock(x):
    """f(x) = sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2: a curved valley, minimum 0 at (1, ..., 1)."""
    x = np.asarray(x, dtype=float)
    return np.sum(100.0 * (x[..., 1:] - x[..., :-1] ** 2) ** 2 + (1.0 - x[..., :-1]) ** 2, axis=-1)
