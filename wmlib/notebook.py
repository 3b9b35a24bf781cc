"""The notebooks' helpers: where their run directories live and small run helpers; the widgets
(:mod:`wmlib.widgets`) are re-exported here, so a notebook needs ``from wmlib import notebook as nb`` only.

Notebooks hold explanation and short calls; what they call lives here (or in the pipeline's modules, which know
nothing of notebooks).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from . import episodes, rundir
from .agent import Agent, EvalSettings, run_jobs
from .config import make_config
from .controller import load_controller
from .evolution import generation_jobs
from .games import make_env
from .iterate import rounds
from .memory import MDNOutput, load_memory, sample_mixture
from .mixtures import mixture_density
from .play import held_out_seeds
from .plots import plot_frames
from .rollouts import play_random_episode
from .runlock import run_lock
from .seeding import episode_keys
from .vision import reconstruct, to_tensor, vae_loss
from .widgets import DreamGame, DreamPlayer, FramePlayer, LatentExplorer  # noqa: F401 (the notebooks' nb.X)

DATA_DIR_ENV = "WM_DATA_DIR"  # where the notebooks keep their run directories (default: runs/ in the repository)


def find_repo_root(start=None) -> Path:
    """The repository's top folder (the one holding pyproject.toml and wmlib/), searched upwards from ``start``
    (default: the working directory, which is notebooks/ when a notebook runs). Falls back to ``start``."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "wmlib").is_dir():
            return folder
    return here


def runs_root() -> Path:
    """The folder that holds the notebooks' run directories: ``$WM_DATA_DIR`` if set, else ``runs/`` at the top
    of the repository (the same place ``wm`` writes to by default when started there)."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else find_repo_root() / "runs"


def notebook_config(game: str, preset: str, data_dir, **overrides):
    """The Config of the run directory ``data_dir``, made and saved the way ``wm`` does.

    If ``data_dir/config.json`` exists (say, ``wm run`` wrote it) its settings are kept, so a notebook explores a
    run made from the terminal with the settings it was made with; otherwise the ``preset`` for ``game`` is used.
    ``overrides`` change single settings (None = keep), as flags do on the command line; they are checked
    before anything is written.
    """
    data_dir = Path(data_dir)
    path = data_dir / rundir.CONFIG
    if path.exists():
        cfg = rundir.load_config(data_dir)
        if cfg.game != game:
            raise ValueError(f"{path}: this run directory is for {cfg.game}, not {game}; choose another DATA_DIR")
        cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    else:
        cfg = make_config(game, preset, **overrides)
    with run_lock(data_dir, "a notebook (wmlib.notebook.notebook_config)"):  # not while a command works there
        cfg.save(path)
    return cfg


def raw_frames(game: str, steps=(40, 80, 120), seed: int = 0, renderer: str = "fast") -> list[tuple]:
    """(raw screen, 64x64 frame) pairs at the given ``steps`` of one held-random-action episode.

    The raw screen is what the game draws before our preprocessing: CarRacing's 96x96 observation (dashboard
    included; the 64x64 frame is its rows 0:84, resized) and Doom's 160x120 screen (resized whole). Fewer pairs come
    back if the episode ends first.
    """
    steps = sorted(int(s) for s in steps)
    env = make_env(game, renderer=renderer)
    try:
        ep = play_random_episode(env, game, seed, steps[-1] + 1, 1, 10, screens_at=steps)
    finally:
        env.close()
    return [(ep["screens"][t], ep["frames"][t]) for t in steps if t in ep["screens"]]


def episode_stats(data_dir) -> dict:
    """Length and total reward of every episode under ``data_dir/episodes`` (frames are not read)."""
    lengths, returns = [], []
    for path in episodes.list_episodes(data_dir):
        ep = episodes.load_arrays(path, ("rewards", "dones"))
        lengths.append(len(ep["rewards"]))
        returns.append(float(ep["rewards"].sum()))
    return dict(lengths=np.array(lengths, np.int64), returns=np.array(returns, np.float64))


def plot_reconstructions(vision, frames) -> Figure:
    """Frames (top) and V's reconstructions of them (bottom)."""
    frames = np.asarray(frames, np.uint8)
    return plot_frames({"frame": frames, "V(frame)": reconstruct(vision, frames)})


def plot_mixture(logpi, mu, logsigma, actual=None, temperatures=(1.0,), title: str = "") -> Figure:
    """M's mixture for one latent dimension: each weighted component pi_k N(mu_k, sigma_k^2) (dashed), their sum
    (solid) at every temperature in ``temperatures``, and the value that really came next (vertical line)."""
    logpi, mu, logsigma = (np.asarray(v, np.float64).reshape(-1) for v in (logpi, mu, logsigma))
    sigma = np.exp(logsigma)
    spread = sigma.max() * np.sqrt(max(temperatures)) * 4
    ends = [mu.min(), mu.max()] + ([float(actual)] if actual is not None else [])
    x = np.linspace(min(ends) - spread, max(ends) + spread, 600)
    fig = Figure(figsize=(6.5, 3.4), layout="constrained")
    ax = fig.subplots()
    pi = np.exp(logpi - logpi.max())
    pi /= pi.sum()
    for k in range(len(mu)):
        ax.plot(
            x,
            mixture_density(x, [0.0], [mu[k]], [logsigma[k]]) * pi[k],
            "--",
            lw=1,
            label=rf"$\pi_{k}\,\mathcal{{N}}(\mu_{k}, \sigma_{k}^2)$, $\pi_{k}$ = {pi[k]:.2f}",
        )
    for tau in temperatures:
        ax.plot(
            x,
            mixture_density(x, logpi, mu, logsigma, tau),
            lw=2.2 if tau == 1.0 else 1.5,
            label=rf"mixture, $\tau$ = {tau:g}",
        )
    if actual is not None:
        ax.axvline(float(actual), color="k", lw=1.5, label="the z that came next")
    ax.set(xlabel=r"$z_j$ at the next step", ylabel="density", title=title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def round_story(cfg, data_dir, episodes: int = 8) -> list[dict]:
    """Iterative training, round by round (World Models Sec. 5): each kept round's controller
    (:func:`wmlib.iterate.rounds`) scored in its own dream (the M it was trained in) and in the real game, on the same
    ``episodes`` held-out seeds, and a :class:`DreamPlayer` of it: its own first real episode on the left, the dream
    it was trained in from that episode's first frame on the right. An empty list when the run kept no rounds (an
    agent made before rounds were kept, or one trained without ``wm iterate``).

    Returns one dict per round: round, generation, dream_mean, dream_std, real_mean, real_std, player.
    """
    try:
        kept = rounds(data_dir)
    except FileNotFoundError:
        return []
    if len(kept) < 2:
        return []
    agent = Agent.from_run(data_dir, cfg.game)
    seeds = held_out_seeds(cfg, episodes)
    real_settings = EvalSettings.from_config(cfg, mode="real")
    dream_settings = EvalSettings.from_config(cfg, mode="dream")
    out = []
    try:
        for r in kept:
            params, _ = load_controller(r["controller"])
            memory, _ = load_memory(r["memory"])
            dreamer = Agent(cfg.game, agent.vision, memory, agent.pool_mu, agent.pool_logvar)
            dream = run_jobs(dreamer, dream_settings, [(params, seeds)])[0]
            real, lengths, frames = agent.play(params, seeds, real_settings, record=True)
            with torch.no_grad():
                z0, _ = agent.vision.encode(to_tensor(frames[0][:1]))
            player = DreamPlayer(
                agent.vision,
                memory,
                z0[0].numpy(),
                controller=(params, agent.spec),
                real_frames=frames[0],
                temperature=cfg.temperature,
                max_len=cfg.dream_max_len,
                seed=seeds[0],
                done_threshold=cfg.done_threshold,
                stop_at_done=True,
            )
            out.append(
                dict(
                    round=r["round"],
                    generation=r["generation"],
                    dream_mean=float(dream.mean()),
                    dream_std=float(dream.std()),
                    real_mean=float(real.mean()),
                    real_std=float(real.std()),
                    player=player,
                )
            )
    finally:
        agent.close()
    return out


# -- exercises: checks that tell right from wrong, and the library's version standing in for a stub -----------------

NOT_ATTEMPTED = "not attempted yet: the library's version stands in"


class CheckFailed(AssertionError):
    """A check cell's verdict on an answer: what differs (a number, a shape, which case) and where to look.

    In a notebook it shows as those two lines, without a traceback: the learner's code ran, it computes something
    else, and the traceback would only point into the check."""

    def __init__(self, what: str, hint: str = ""):
        self.what, self.hint = what, hint
        super().__init__(what + (f"\nWhere to look: {hint}" if hint else ""))

    def _render_traceback_(self) -> list[str]:  # IPython shows these lines instead of a traceback
        return [f"\x1b[1;31mCheck failed:\x1b[0m {self.what}"] + ([f"Where to look: {self.hint}"] if self.hint else [])


def check(name: str, attempt, test, stand_in=None, passed: str = ""):
    """Run a check cell: ``test(attempt)`` raises :class:`CheckFailed` on a wrong answer. Returns what the cells
    below should use under the exercise's name: the learner's ``attempt`` when it passed, or ``stand_in`` (the
    library's version) when ``attempt`` is still the stub (it raised NotImplementedError), so that Run All goes
    on through the notebook either way."""
    try:
        test(attempt)
    except NotImplementedError:
        if stand_in is None:
            raise
        print(
            f"{name}: {NOT_ATTEMPTED}, so the cells below run. Write yours in the cell above, then run it and "
            f"this check again."
        )
        return stand_in
    print(f"Check passed: {name}. {passed}".rstrip())
    return attempt


def expect(condition: bool, what: str, hint: str = "") -> None:
    """Raise :class:`CheckFailed` (``what``, ``hint``) unless ``condition``."""
    if not condition:
        raise CheckFailed(what, hint)


def as_array(x, dtype=np.float64) -> np.ndarray:
    """Numbers, a list, a numpy array or a torch tensor (grad or not) as a numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype)


def _show(a: np.ndarray) -> str:
    flat = a.reshape(-1)
    text = np.array2string(flat[:4], precision=4, separator=", ")
    return text if a.size <= 4 and a.ndim <= 1 else f"{text[:-1]}, ...] (shape {a.shape})"


def expect_close(yours, expected, what: str, hint: str = "", rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Raise :class:`CheckFailed` unless ``yours`` has ``expected``'s shape and values (to rtol, atol); the message
    names the shape, a value that is not finite, or the largest difference and where it is."""
    try:
        y = as_array(yours)
    except (TypeError, ValueError) as exc:
        raise CheckFailed(f"{what}: yours is not a number or an array of numbers ({exc})", hint) from None
    e = as_array(expected)
    expect(y.shape == e.shape, f"{what}: yours has shape {y.shape}, expected {e.shape}", hint)
    if not np.all(np.isfinite(y)):
        raise CheckFailed(f"{what}: yours holds {y[~np.isfinite(y)].reshape(-1)[0]} (expected {_show(e)})", hint)
    wrong = ~np.isclose(y, e, rtol=rtol, atol=atol)
    if wrong.any():
        i = np.unravel_index(np.argmax(np.abs(y - e) * wrong), y.shape)
        where = (
            f"; largest difference at index {tuple(int(k) for k in i)}: {y[i]:.6g} instead of {e[i]:.6g}"
            if y.ndim
            else ""
        )
        raise CheckFailed(
            f"{what}: yours {_show(y) if y.ndim else f'{float(y):.6g}'}, expected "
            f"{_show(e) if e.ndim else f'{float(e):.6g}'}{where}",
            hint,
        )


def ks_distance(a, b) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov distance: the largest gap between the empirical distribution functions of the
    samples ``a`` and ``b``, and the value where it is."""
    a, b = np.sort(as_array(a).reshape(-1)), np.sort(as_array(b).reshape(-1))
    points = np.concatenate([a, b])
    gaps = np.abs(np.searchsorted(a, points, "right") / len(a) - np.searchsorted(b, points, "right") / len(b))
    i = int(np.argmax(gaps))
    return float(gaps[i]), float(points[i])


def ks_limit(n: int, m: int, alpha: float = 1e-4) -> float:
    """The distance two samples of sizes n and m of the same distribution exceed with probability ``alpha``
    (the asymptotic KS critical value, c(alpha) sqrt((n + m) / (n m)))."""
    return float(np.sqrt(-0.5 * np.log(alpha / 2)) * np.sqrt((n + m) / (n * m)))


def expect_same_distribution(
    yours, reference, what: str, hint: str = "", n: int | None = None, alpha: float = 1e-4
) -> None:
    """Raise :class:`CheckFailed` unless the samples ``yours`` (``n`` of them, if given) could come from the
    distribution the ``reference`` samples come from: a two-sample KS test at level ``alpha``. Matching mean and
    spread is not enough: the test sees the distribution's shape (a Gaussian with a mixture's mean and standard
    deviation fails it). The message gives where the two distributions differ most, and both samples' moments."""
    y, r = as_array(yours), as_array(reference).reshape(-1)
    if n is not None:
        expect(y.shape == (n,), f"{what}: {y.shape} numbers, expected an array of {n} samples (shape ({n},))", hint)
    expect(bool(np.all(np.isfinite(y))), f"{what}: your samples hold values that are not finite", hint)
    y = y.reshape(-1)
    d, at = ks_distance(y, r)
    limit = ks_limit(len(y), len(r), alpha)
    if d > limit:
        raise CheckFailed(
            f"{what}: your samples do not follow the distribution: P(sample <= {at:.3g}) is "
            f"{np.mean(y <= at):.3f} for yours and {np.mean(r <= at):.3f} for the library's (a gap of {d:.3f}; "
            f"samples of the same distribution stay below {limit:.3f}). Mean and std: yours {y.mean():.3f} and "
            f"{y.std():.3f}, the library's {r.mean():.3f} and {r.std():.3f}",
            hint,
        )


def plot_histograms(samples: dict, bins: int = 120, title: str = "") -> Figure:
    """Histograms (as densities, on shared bins) of the samples in ``samples`` (label -> 1-D array), overlaid: how
    two samplers' distributions differ in shape, not only in mean and spread."""
    arrays = {label: as_array(v).reshape(-1) for label, v in samples.items()}
    edges = np.histogram_bin_edges(np.concatenate(list(arrays.values())), bins=bins)
    fig = Figure(figsize=(6.5, 3.2), layout="constrained")
    ax = fig.subplots()
    for label, v in arrays.items():
        ax.hist(v, bins=edges, density=True, histtype="stepfilled", alpha=0.45, label=label)
    ax.set(xlabel="sample", ylabel="density", title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def sampler_hint(yours, reference) -> str:
    """Where to look when a sampler's draws ``yours`` do not follow the distribution of ``reference``: far too
    narrow is every draw from one component; many draws where the reference has little mass (the gaps between a
    mixture's branches) is one Gaussian standing for the mixture; otherwise the components' widths."""
    y, r = as_array(yours).reshape(-1), as_array(reference).reshape(-1)
    if np.std(y) < 0.5 * np.std(r):
        return (
            "your samples are far too concentrated: do they all come from one component? Every sample needs a "
            "component of its own, chosen with the mixture's weights"
        )
    counts, edges = np.histogram(r, bins=60)
    sparse = counts < 0.05 * counts.max()  # where the reference has little mass, inside its range
    inside = (y >= edges[0]) & (y <= edges[-1])
    in_sparse = sparse[np.clip(np.searchsorted(edges, y[inside], "right") - 1, 0, len(sparse) - 1)]
    if in_sparse.sum() / len(y) > 2 * (counts[sparse].sum() / len(r)) + 0.02:
        return (
            "many of your samples fall where the mixture has little mass, between its branches: is each one "
            "drawn from a component of the mixture, or from one Gaussian around the mixture's mean?"
        )
    return (
        "the components are chosen about right, but their widths are not: what scales each draw should be the "
        "component's standard deviation, at the temperature asked for"
    )


# -- the library's versions of the exercises that have no single library function of their own ----------------------


def vae_sample_and_loss(vision, x, mu, logvar, eps, kl_tolerance: float = 0.5):
    """V's draw z = mu + sigma * eps with the given noise ``eps`` (sigma = exp(logvar / 2), the reparameterisation
    trick), and the loss :func:`wmlib.vision.train_vision` minimises on it (:func:`wmlib.vision.vae_loss`: squared
    error summed over each frame's pixels, plus the KL floored per frame at kl_tolerance * N_z, averaged over the
    frames): ``(z, loss)``."""
    z = mu + torch.exp(0.5 * logvar) * eps
    return z, vae_loss(vision.decode(z), x, mu, logvar, kl_tolerance)[0]


def lstm_step(memory, x, h, c):
    """One step of M's LSTM (torch's own ``nn.LSTM``, the one M trains with) for a batch: input ``x`` (B, in),
    state ``h``, ``c`` (B, H) -> the new ``(h, c)``."""
    _, (h, c) = memory.lstm(x.unsqueeze(1), (h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()))
    return h[0], c[0]


def sample_next(logpi, mu, logsigma, tau: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws of one latent dimension's next value from M's mixture (``logpi``, ``mu``, ``logsigma``: (K,)) at
    temperature ``tau``, by the dream's own sampler (:func:`wmlib.memory.sample_mixture`), each draw with an
    episode key of its own taken from ``rng``."""
    k = len(np.asarray(logpi).reshape(-1))
    rows = [
        torch.as_tensor(np.asarray(v, np.float32).reshape(1, 1, k)).expand(n, 1, k).contiguous()
        for v in (logpi, mu, logsigma)
    ]
    keys = episode_keys(rng.integers(0, 2**31 - 1, n))
    return sample_mixture(MDNOutput(*rows, None), float(tau), keys, 0)[:, 0].numpy().astype(np.float64)


def cma_generation(es, agent, settings, cfg, generation: int) -> np.ndarray:
    """One generation of CMA-ES over the real agent, as :func:`wmlib.evolution.train_controller` runs it: ask ``es``
    (pycma) for candidates, let each play its trials' episodes (:func:`wmlib.evolution.generation_jobs`,
    :func:`wmlib.agent.run_jobs`), tell ``es`` the negated fitness (pycma minimises). Returns the fitness, each
    candidate's mean score."""
    candidates = es.ask()
    scores = run_jobs(agent, settings, generation_jobs(cfg, candidates, generation))
    fitness = np.array([s.mean() for s in scores])
    es.tell(candidates, (-fitness).tolist())
    return fitness


def training_length(rewards, patience: int = 100, opening: int = 50) -> int:
    """How many frames an episode with these per-frame ``rewards`` plays in training with early stopping
    (:attr:`wmlib.config.Config.early_stop`, as :meth:`wmlib.agent.Agent.play` applies it): it ends at the frame
    where the rewards have been negative ``patience`` frames in a row, counting from frame ``opening`` on."""
    losing = 0
    for t, reward in enumerate(np.asarray(rewards, np.float64)):
        if t >= opening:
            losing = losing + 1 if reward < 0 else 0
            if losing >= patience:
                return t + 1
    return len(rewards)


def dream_length(done_prob, threshold: float = 0.5) -> int:
    """How many steps a dream with M's per-step done probabilities ``done_prob`` lasts, as :func:`wmlib.dream.dream`
    ends it: at the first step whose probability exceeds ``threshold`` (that step counted), else all of them. In
    Doom's dream that is also its score: +1 per step survived."""
    over = np.flatnonzero(np.asarray(done_prob, np.float64) > threshold)
    return int(over[0]) + 1 if len(over) else len(done_prob)


def clearly_better(a: dict, b: dict) -> bool:
    """Whether row ``a`` of a temperature study beats row ``b`` in the real game by more than two standard errors
    of the difference of their means, sqrt(s_a^2 / n_a + s_b^2 / n_b) (s: real_std, n: real_episodes)."""
    se = np.sqrt(a["real_std"] ** 2 / a["real_episodes"] + b["real_std"] ** 2 / b["real_episodes"])
    return bool(a["real_mean"] - b["real_mean"] > 2 * se)


_JOB_AGENTS: dict = {}  # the agents a process has built for play_job, by (run directory, thread)


def play_job(run, settings, params, seeds) -> np.ndarray:
    """One job's scores (one per seed), played in this process with the agent of the run directory ``run``: what a
    worker of notebook 08's minimal evaluator runs for each task. The agent is built on the process's first task of
    that run (one torch thread) and kept for the next, as :class:`wmlib.distributed.DaskEvaluator`'s workers do."""
    key = (str(Path(run).resolve()), threading.get_ident())
    if key not in _JOB_AGENTS:
        torch.set_num_threads(1)
        _JOB_AGENTS[key] = Agent.from_run(run)
    return run_jobs(_JOB_AGENTS[key], settings, [(np.asarray(params, np.float32), list(seeds))])[0]


def evaluate_on_cluster(client, run, settings, jobs) -> list[np.ndarray]:
    """A minimal evaluator: each job [(params, seeds), ...] a task of :func:`play_job` on the cluster of ``client``
    (``client.map``), the results gathered in the jobs' order, one scores array per job."""
    futures = client.map(
        play_job,
        [str(run)] * len(jobs),
        [settings] * len(jobs),
        [np.asarray(params, np.float32) for params, _ in jobs],
        [list(seeds) for _, seeds in jobs],
    )
    return [np.asarray(scores) for scores in client.gather(futures)]


def paired_better(a, b) -> bool:
    """Whether the controller with per-episode scores ``a`` beats the one with scores ``b``, played on the same
    episodes (the same seeds, in the same order), by more than two standard errors of the mean paired difference:
    mean(a - b) > 2 std(a - b) / sqrt(n)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return bool(d.mean() > 2 * d.std() / np.sqrt(len(d)))
