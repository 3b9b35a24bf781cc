"""Plots and GIFs for the command line and the notebooks.

Figures are made with ``matplotlib.figure.Figure`` (no pyplot state), so they work the same in a terminal, in a
worker process and in JupyterLab (a Figure is shown inline when it is the value of a cell).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from .io import atomic_save
from .study import dream_scores, real_scores, share_world_model, temperature_study  # noqa: F401  (notebook 07)


def read_csv(path) -> dict[str, np.ndarray]:
    """Columns of a CSV log as float arrays (empty cells become NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows]) for k in rows[0]}


def save_figure(fig: Figure, path) -> None:
    atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))


def plot_log(csv_path, columns, png_path=None, x: str = "step", title: str = "") -> Figure:
    """Line plot of some columns of a CSV log against ``x``."""
    data = read_csv(csv_path)
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    for col in columns:
        if col in data and not np.all(np.isnan(data[col])):
            ax.plot(data[x], data[col], label=col)
    ax.set_xlabel(x)
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    if png_path is not None:
        save_figure(fig, png_path)
    return fig


def plot_learning_curve(csv_path, png_path=None) -> Figure:
    """CMA-ES fitness per generation (best, mean, worst candidate) and the evaluated mean, if any."""
    d = read_csv(csv_path)
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    g = d["generation"]
    ax.fill_between(g, d["fitness_worst"], d["fitness_best"], alpha=0.2, label="population range")
    ax.plot(g, d["fitness_mean"], label="population mean")
    ax.plot(g, d["fitness_best"], label="best candidate")
    ev = ~np.isnan(d["eval_mean"])
    if ev.any():
        ax.errorbar(g[ev], d["eval_mean"][ev], yerr=d["eval_std"][ev], fmt="o-", capsize=3, label="CMA-ES mean, evaluated")
    ax.set_xlabel("generation")
    ax.set_ylabel("score")
    ax.set_title("Controller learning curve")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if png_path is not None:
        save_figure(fig, png_path)
    return fig


def upscale(frame: np.ndarray, factor: int = 4) -> np.ndarray:
    """Nearest-neighbour upscaling of an (H, W, 3) uint8 frame, for looking at 64x64 images."""
    return frame.repeat(factor, 0).repeat(factor, 1)


def save_gif(path, frames, fps: int = 30, scale: int = 4) -> None:
    """Write (T, H, W, 3) uint8 frames as a looping GIF, atomically."""
    images = [Image.fromarray(upscale(np.asarray(f, np.uint8), scale)) for f in frames]
    atomic_save(path, lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:],
                                                duration=max(1, round(1000 / fps)), loop=0))


def frame_grid(rows, scale: int = 2) -> np.ndarray:
    """Stack lists of equally sized frames: rows[i][j] -> one (H*rows, W*cols, 3) image."""
    return upscale(np.concatenate([np.concatenate(list(r), 1) for r in rows], 0), scale)


# ==============================================================================================================
# The course (notebooks 03-07): run directories, figures and widgets.
#
# Every widget below is a small class whose callbacks are plain methods that return arrays (``image``, ``frame``,
# ...), so they are tested without a browser; the ipywidgets are built only when the widget is shown. Imports of
# torch and of the other wmlib modules happen inside the functions: several of those modules import this one.
# ==============================================================================================================

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
    import os

    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else find_repo_root() / "runs"


def notebook_config(game: str, preset: str, data_dir, **overrides):
    """The Config of the run directory ``data_dir``, made and saved the way ``wm`` does.

    If ``data_dir/config.json`` exists (say, ``wm run`` wrote it) its settings are kept, so a notebook explores a
    run made from the terminal with the settings it was made with; otherwise the ``preset`` for ``game`` is used.
    ``overrides`` change single settings (None = keep), as flags do on the command line.
    """
    import dataclasses
    import json

    from .config import Config, make_config

    data_dir = Path(data_dir)
    path = data_dir / "config.json"
    if path.exists():
        cfg = Config.from_dict(json.loads(path.read_text()))
        if cfg.game != game:
            raise ValueError(f"{path}: this run directory is for {cfg.game}, not {game}; choose another DATA_DIR")
        cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    else:
        cfg = make_config(game, preset, **overrides)
    data_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(path)
    return cfg


def png_bytes(frame: np.ndarray, scale: int = 4) -> bytes:
    """An (H, W, 3) uint8 frame as PNG bytes, upscaled (what an ``ipywidgets.Image`` shows)."""
    import io

    buf = io.BytesIO()
    Image.fromarray(upscale(np.asarray(frame, np.uint8), scale)).save(buf, format="PNG")
    return buf.getvalue()


def plot_frames(rows: dict, titles=None, size: float = 1.6) -> Figure:
    """A grid of images: ``rows`` maps a row label to a list of (H, W, 3) frames; ``titles`` label the columns."""
    rows = {label: list(frames) for label, frames in rows.items()}
    ncols = max(len(frames) for frames in rows.values())
    fig = Figure(figsize=(size * ncols + 0.8, size * len(rows) + 0.3), layout="constrained")
    axes = np.array(fig.subplots(len(rows), ncols, squeeze=False))
    for r, (label, frames) in enumerate(rows.items()):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(frames):
                ax.imshow(frames[c])
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
            if r == 0 and titles is not None and c < len(titles):
                ax.set_title(str(titles[c]), fontsize=9)
    return fig


# -- 03: rollouts --------------------------------------------------------------------------------------------


def raw_frames(game: str, steps=(40, 80, 120), seed: int = 0, renderer: str = "fast") -> list[tuple]:
    """(raw screen, 64x64 frame) pairs at the given ``steps`` of one held-random-action episode.

    The raw screen is what the game draws before our preprocessing: CarRacing's 96x96 observation (dashboard
    included; the 64x64 frame is its rows 0:84, resized) and Doom's 160x120 screen (resized whole). Fewer pairs come
    back if the episode ends first.
    """
    from .games import make_env
    from .rollouts import random_action

    steps = sorted(int(s) for s in steps)
    env = make_env(game, renderer=renderer)
    carracing = game == "CarRacing-v3"
    # CarRacingWM wraps the 96x96 game and preprocesses its observations; step the game underneath it directly.
    game_env = env.env if carracing else env
    rng = np.random.default_rng(seed)
    pairs, action, hold = [], None, 0
    try:
        obs, _ = game_env.reset(seed=seed)
        for t in range(steps[-1] + 1):
            if t in steps:
                if carracing:
                    from .games.carracing_render import preprocess_frame

                    pairs.append((np.array(obs, np.uint8), preprocess_frame(obs)))
                else:
                    pairs.append((env.render(), np.array(obs, np.uint8)))
            if hold == 0:
                action, hold = random_action(game, rng), int(rng.integers(1, 11))
            hold -= 1
            obs, _, terminated, truncated, _ = game_env.step(action)
            if terminated or truncated:
                break
    finally:
        env.close()
    return pairs


def plot_raw_frames(pairs, game: str = "") -> Figure:
    """Raw screens (top) and the 64x64 frames V sees (bottom), each at its own size in pixels."""
    n = len(pairs)
    fig = Figure(figsize=(2.6 * n, 4.6), layout="constrained")
    axes = np.array(fig.subplots(2, n, squeeze=False))
    for i, (raw, small) in enumerate(pairs):
        for ax, img, what in ((axes[0, i], raw, "raw"), (axes[1, i], small, "V's input")):
            ax.imshow(img)
            ax.set_title(f"{what} {img.shape[1]}x{img.shape[0]}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    if game:
        fig.suptitle(game)
    return fig


def episode_stats(data_dir) -> dict:
    """Length and total reward of every episode under ``data_dir/episodes`` (frames are not read)."""
    from . import episodes

    lengths, returns = [], []
    for path in episodes.list_episodes(data_dir):
        ep = episodes.load_arrays(path, ("rewards", "dones"))
        lengths.append(len(ep["rewards"]))
        returns.append(float(ep["rewards"].sum()))
    return dict(lengths=np.array(lengths, np.int64), returns=np.array(returns, np.float64))


def plot_episode_stats(stats: dict) -> Figure:
    """Histograms of episode lengths (left) and total rewards (right); ``stats`` maps a game to episode_stats()."""
    fig = Figure(figsize=(9, 2.8 * len(stats)), layout="constrained")
    axes = np.array(fig.subplots(len(stats), 2, squeeze=False))
    for row, (game, s) in zip(axes, stats.items()):
        bins = min(30, max(5, len(s["lengths"])))
        row[0].hist(s["lengths"], bins=bins, color="tab:blue")
        row[0].set(xlabel="episode length (frames)", ylabel="episodes",
                   title=f"{game}: {len(s['lengths'])} episodes, {int(s['lengths'].sum())} frames")
        row[1].hist(s["returns"], bins=bins, color="tab:green")
        row[1].set(xlabel="total reward", title=f"{game}: mean {s['returns'].mean():.1f} ± {s['returns'].std():.1f}")
        for ax in row:
            ax.grid(alpha=0.3)
    return fig


# -- 04: vision ----------------------------------------------------------------------------------------------


def to_images(x) -> np.ndarray:
    """(..., 3, 64, 64) float tensor in [0, 1] -> (..., 64, 64, 3) uint8 array."""
    return (x.movedim(-3, -1).clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def encode(vision, frames) -> tuple[np.ndarray, np.ndarray]:
    """V's (mu, logvar) of (B, 64, 64, 3) uint8 frames, as float32 arrays (B, N_z)."""
    import torch

    from .vision import to_tensor

    with torch.inference_mode():
        mu, logvar = vision.encode(to_tensor(np.asarray(frames, np.uint8)))
    return mu.numpy(), logvar.numpy()


def decode(vision, z) -> np.ndarray:
    """V's decoder on latents ``z`` (N_z,) or (B, N_z): (64, 64, 3) or (B, 64, 64, 3) uint8 images."""
    import torch

    z = torch.as_tensor(np.asarray(z, np.float32))
    with torch.inference_mode():
        images = to_images(vision.decode(z.reshape(-1, z.shape[-1])))
    return images[0] if z.dim() == 1 else images


def reconstruct(vision, frames) -> np.ndarray:
    """V's reconstructions of frames, decoded from mu (no sampling): (B, 64, 64, 3) uint8."""
    return decode(vision, encode(vision, frames)[0])


def plot_reconstructions(vision, frames) -> Figure:
    """Frames (top) and V's reconstructions of them (bottom)."""
    frames = np.asarray(frames, np.uint8)
    return plot_frames({"frame": frames, "V(frame)": reconstruct(vision, frames)})


def interpolate(vision, frame_a, frame_b, steps: int = 8) -> np.ndarray:
    """Decoded points on the straight line from mu(frame_a) to mu(frame_b): (steps, 64, 64, 3) uint8."""
    mu, _ = encode(vision, np.stack([frame_a, frame_b]))
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    return decode(vision, (1 - t) * mu[0] + t * mu[1])


def latent_kl(vision, frames) -> np.ndarray:
    """Mean KL divergence from the prior N(0, 1), per latent dimension (N_z,), over ``frames``.

    KL_j = -1/2 (1 + logvar_j - mu_j^2 - exp(logvar_j)), the VAE loss's KL term split by dimension. Dimensions
    near 0 carry no information (the encoder ignores them); the large ones are worth moving in the explorer.
    """
    mu, logvar = encode(vision, frames)
    return (-0.5 * (1 + logvar - mu**2 - np.exp(logvar))).mean(0)


def plot_latent_kl(kl) -> Figure:
    """Bar chart of the KL per latent dimension (see :func:`latent_kl`)."""
    fig = Figure(figsize=(8, 2.6), layout="constrained")
    ax = fig.subplots()
    ax.bar(np.arange(len(kl)), kl, color="tab:purple")
    ax.set(xlabel="latent dimension j", ylabel="mean KL (nats)", title="How much each latent dimension is used")
    ax.grid(alpha=0.3, axis="y")
    return fig


def latent_sensitivity(vision, z, span: float = 2.0) -> np.ndarray:
    """For each dimension j: the mean absolute pixel change (0-255) between decoding z with z_j = -span and
    with z_j = +span, the other dimensions as in ``z``. (N_z,)"""
    z = np.asarray(z, np.float32)
    n = len(z)
    lo, hi = np.repeat(z[None], n, 0), np.repeat(z[None], n, 0)
    lo[np.arange(n), np.arange(n)] = -span
    hi[np.arange(n), np.arange(n)] = span
    return np.abs(decode(vision, lo).astype(np.float32) - decode(vision, hi).astype(np.float32)).mean((1, 2, 3))


class LatentExplorer:
    """One slider per latent dimension, and V's decoding of the latent vector, updated as a slider moves.

    ``per_page`` sliders are shown at a time; a dropdown picks which dimensions they control (all 32 of CarRacing
    fit on two pages, Doom's 64 on four). The callbacks are methods: ``set(dim, value)`` changes one dimension and
    returns the new image; ``image()`` decodes the current z.
    """

    def __init__(self, vision, z=None, per_page: int = 16, limit: float = 3.0, scale: int = 4):
        self.vision, self.per_page, self.limit, self.scale = vision, int(per_page), float(limit), scale
        self.z_dim = int(vision.z_dim)
        self.start = np.zeros(self.z_dim, np.float32) if z is None else np.array(z, np.float32).reshape(self.z_dim)
        self.z = self.start.copy()
        self.page = 0
        self._widget = None
        self._syncing = False

    @property
    def pages(self) -> int:
        return -(-self.z_dim // self.per_page)

    def dims(self, page: int | None = None) -> list[int]:
        """The latent dimensions the sliders control on ``page`` (default: the current one)."""
        page = self.page if page is None else page
        return list(range(page * self.per_page, min(self.z_dim, (page + 1) * self.per_page)))

    def image(self) -> np.ndarray:
        """V's decoding of the current z: (64, 64, 3) uint8."""
        return decode(self.vision, self.z)

    def set(self, dim: int, value: float) -> np.ndarray:
        """Set z[dim] and return the new image (what a slider calls)."""
        if not 0 <= dim < self.z_dim:
            raise IndexError(f"latent dimension {dim} outside 0..{self.z_dim - 1}")
        self.z[dim] = float(value)
        return self._refresh()

    def reset(self, z=None) -> np.ndarray:
        """Back to the starting z (or to a new one) and return the image."""
        if z is not None:
            self.start = np.array(z, np.float32).reshape(self.z_dim)
        self.z = self.start.copy()
        self._sync_sliders()
        return self._refresh()

    def show_page(self, page: int) -> list[int]:
        """Point the sliders at the dimensions of ``page``; returns those dimensions."""
        if not 0 <= page < self.pages:
            raise IndexError(f"page {page} outside 0..{self.pages - 1}")
        self.page = int(page)
        self._sync_sliders()
        return self.dims()

    # -- widget ------------------------------------------------------------------------------------------------
    def _refresh(self) -> np.ndarray:
        img = self.image()
        if self._widget is not None:
            self.picture.value = png_bytes(img, self.scale)
        return img

    def _sync_sliders(self) -> None:
        if self._widget is None:
            return
        self._syncing = True  # programmatic changes below must not call set()
        try:
            dims = self.dims()
            for i, slider in enumerate(self.sliders):
                if i < len(dims):
                    slider.description = f"z[{dims[i]}]"
                    slider.value = float(np.clip(self.z[dims[i]], -self.limit, self.limit))
                    slider.layout.visibility = "visible"
                else:
                    slider.layout.visibility = "hidden"
        finally:
            self._syncing = False

    def on_slider(self, i: int, change) -> None:
        """Slider ``i`` of the page moved: set its dimension."""
        if not self._syncing:
            self.set(self.dims()[i], change["new"])

    @property
    def widget(self):
        if self._widget is None:
            import ipywidgets as w

            self.sliders = []
            for i in range(self.per_page):
                s = w.FloatSlider(value=0.0, min=-self.limit, max=self.limit, step=0.05, continuous_update=True,
                                  layout=w.Layout(width="300px"))
                s.observe(lambda change, i=i: self.on_slider(i, change), names="value")
                self.sliders.append(s)
            options = [(f"dimensions {d[0]}-{d[-1]}", p) for p in range(self.pages) for d in [self.dims(p)]]
            self.dropdown = w.Dropdown(options=options, value=self.page, description="sliders for")
            self.dropdown.observe(lambda change: self.show_page(change["new"]), names="value")
            reset = w.Button(description="reset z")
            reset.on_click(lambda _: self.reset())
            self.picture = w.Image(value=png_bytes(self.image(), self.scale), format="png")
            half = (self.per_page + 1) // 2
            columns = w.HBox([w.VBox(self.sliders[:half]), w.VBox(self.sliders[half:])])
            self._widget = w.VBox([w.HBox([self.dropdown, reset]), w.HBox([self.picture, columns])])
            self._sync_sliders()
        return self._widget

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


# -- 05: memory ----------------------------------------------------------------------------------------------


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
        ax.plot(x, mixture_density(x, [0.0], [mu[k]], [logsigma[k]]) * pi[k], "--", lw=1,
                label=rf"$\pi_{k}\,\mathcal{{N}}(\mu_{k}, \sigma_{k}^2)$, $\pi_{k}$ = {pi[k]:.2f}")
    for tau in temperatures:
        ax.plot(x, mixture_density(x, logpi, mu, logsigma, tau), lw=2.2 if tau == 1.0 else 1.5,
                label=rf"mixture, $\tau$ = {tau:g}")
    if actual is not None:
        ax.axvline(float(actual), color="k", lw=1.5, label="the z that came next")
    ax.set(xlabel=r"$z_j$ at the next step", ylabel="density", title=title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


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
    import torch

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


def plot_predictions(pred: dict, dims=(0, 1, 2, 3)) -> Figure:
    """The real next latent and M's prediction (mixture mean +- 2 std) over an episode, for a few dimensions;
    plus M's done probability when it has a done head."""
    dims = [d for d in dims if d < pred["actual"].shape[1]]
    extra = pred["done_prob"] is not None
    fig = Figure(figsize=(9, 1.9 * (len(dims) + extra) + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(dims) + extra, 1, sharex=True))
    t = np.arange(1, len(pred["actual"]) + 1)
    for ax, d in zip(axes, dims):
        m, s = pred["mean"][:, d], pred["std"][:, d]
        ax.fill_between(t, m - 2 * s, m + 2 * s, color="tab:orange", alpha=0.25, label="M: mean +- 2 std")
        ax.plot(t, m, color="tab:orange", lw=1.2, label="M: mean")
        ax.plot(t, pred["actual"][:, d], color="k", lw=1.2, label="real")
        ax.set_ylabel(f"z[{d}]")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=3, loc="upper right")
    axes[0].set_title("Next latent: real vs M's prediction (M reads the real z_t at every step)")
    if extra:
        ax = axes[-1]
        ax.plot(t, pred["done_prob"], color="tab:red", label="M: P(done)")
        ends = np.flatnonzero(pred["dones"])
        if len(ends):
            ax.plot(t[ends], np.ones(len(ends)), "kv", label="real end")
        ax.set(ylabel="P(done)", ylim=(-0.05, 1.05))
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("step t+1")
    return fig


def dream_episode(memory, z0, actions=None, controller=None, temperature: float = 1.0, max_len: int | None = None,
                  seed: int = 0, done_threshold: float = 0.5, stop_at_done: bool = False) -> dict:
    """One dream (a single episode inside M) from the first latent ``z0``, keeping every step for display.

    Actions come either from ``actions`` (T, A), e.g. a real episode's, so a dream can be put beside it, or from
    ``controller`` = (params, ControllerSpec) acting on [z, h] ([z, c, h] for Doom) as in the real game. Draws use
    the same per-episode random numbers as :func:`wmlib.dream.dream_rollouts` (seed -> key), so with the same first
    z, controller and seed, ``stop_at_done`` gives the same episode length as a dream used in training.

    Returns z (T+1, N) with z[0] = z0, actions (T, A), done_prob (T,) (None without a done head: P that the game
    ends after action t) and length T.
    """
    import torch

    from .games import controller_to_action
    from .memory import sample_mixture
    from .seeding import episode_keys

    if actions is None and controller is None:
        raise ValueError("a dream needs actions: pass a real episode's actions or controller=(params, spec)")
    if actions is not None:
        actions = torch.as_tensor(np.asarray(actions, np.float32)).reshape(len(actions), -1)
        max_len = len(actions) if max_len is None else min(max_len, len(actions))
    elif max_len is None:
        raise ValueError("a controller-driven dream needs max_len")
    if controller is not None:
        params, spec = controller
        w, b = spec.unflatten(params)
    keys = episode_keys([int(seed)])
    z = torch.as_tensor(np.asarray(z0, np.float32)).reshape(1, -1)
    h, c = memory.initial_state(1)
    restart = torch.ones(1)
    zs, acts, dones = [z[0].clone()], [], []
    with torch.inference_mode():
        weights = memory.step_weights()
        for t in range(int(max_len)):
            if actions is not None:
                a = actions[t : t + 1]
            else:
                a = controller_to_action(spec.game, spec.act(w, b, spec.features(z, h, c)))
            mdn, h, c = memory.step(z, a, restart, h, c, weights)
            restart = torch.zeros(1)
            z = sample_mixture(mdn, temperature, keys, t)
            zs.append(z[0].clone())
            acts.append(a[0].clone())
            if mdn.done_logit is not None:
                p = float(torch.sigmoid(mdn.done_logit)[0])
                dones.append(p)
                if stop_at_done and p > done_threshold:
                    break
    return dict(z=torch.stack(zs).numpy(), actions=torch.stack(acts).numpy(),
                done_prob=np.array(dones) if memory.predict_done else None, length=len(acts))


class DreamPlayer:
    """Play a dream: M imagines the latents, V decodes them to frames. A Play button steps through them, a
    temperature slider dreams again at another tau, and for Doom a bar shows M's probability that the game ends.

    Give ``real_frames`` (with the real episode's ``actions`` and ``z0`` = V's code of its first frame) to see
    dream and reality side by side from the same start. Callbacks: ``frame(step)``, ``real_frame(step)``,
    ``done_probability(step)`` and ``dream(temperature)``.
    """

    def __init__(self, vision, memory, z0, actions=None, controller=None, real_frames=None,
                 temperature: float = 1.0, max_len: int | None = None, seed: int = 0, done_threshold: float = 0.5,
                 stop_at_done: bool = False, scale: int = 4):
        self.vision, self.memory, self.z0 = vision, memory, np.asarray(z0, np.float32)
        self.actions, self.controller, self.max_len, self.seed = actions, controller, max_len, seed
        self.done_threshold, self.stop_at_done, self.scale = done_threshold, stop_at_done, scale
        self.real_frames = None if real_frames is None else np.asarray(real_frames, np.uint8)
        self._widget = None
        self.dream(temperature)

    def dream(self, temperature: float) -> dict:
        """Dream again at ``temperature`` (same seed, so only tau changes); returns the episode."""
        self.temperature = float(temperature)
        self.episode = dream_episode(self.memory, self.z0, self.actions, self.controller, self.temperature,
                                     self.max_len, self.seed, self.done_threshold, self.stop_at_done)
        self._frames = {}
        if self._widget is not None:
            self.slider.max = self.play.max = self.steps - 1
            self.show(min(self.slider.value, self.steps - 1))
        return self.episode

    @property
    def steps(self) -> int:
        """Frames in the dream (its length + 1: the start frame too)."""
        return len(self.episode["z"])

    def frame(self, step: int) -> np.ndarray:
        """The dream's frame at ``step`` (0 = the start): V's decoding of M's z, (64, 64, 3) uint8."""
        if not 0 <= step < self.steps:
            raise IndexError(f"step {step} outside 0..{self.steps - 1}")
        if step not in self._frames:
            self._frames[step] = decode(self.vision, self.episode["z"][step])
        return self._frames[step]

    def real_frame(self, step: int) -> np.ndarray | None:
        if self.real_frames is None:
            return None
        return self.real_frames[min(step, len(self.real_frames) - 1)]

    def done_probability(self, step: int) -> float | None:
        """M's probability that the game ends with the action taken at ``step`` (None without a done head)."""
        p = self.episode["done_prob"]
        if p is None or len(p) == 0:
            return None
        return float(p[min(step, len(p) - 1)])

    # -- widget ------------------------------------------------------------------------------------------------
    def show(self, step: int) -> None:
        """Put ``step`` on the widget's pictures and labels."""
        if self._widget is None:
            return
        self.dream_picture.value = png_bytes(self.frame(step), self.scale)
        if self.real_frames is not None:
            self.real_picture.value = png_bytes(self.real_frame(step), self.scale)
        p = self.done_probability(step)
        text = f"step {step} of {self.steps - 1}, tau = {self.temperature:g}"
        if p is not None:
            self.done_bar.value = p
            text += f", M's P(done) = {p:.3f}"
            if p > self.done_threshold:
                text += " (above the threshold: in training, the dream would end here)"
        self.label.value = text

    def on_step(self, change) -> None:
        self.show(change["new"])

    def on_temperature(self, change) -> None:
        self.dream(change["new"])

    @property
    def widget(self):
        if self._widget is None:
            import ipywidgets as w

            last = self.steps - 1
            self.play = w.Play(value=0, min=0, max=last, step=1, interval=100, description="play")
            self.slider = w.IntSlider(value=0, min=0, max=last, description="step")
            w.jslink((self.play, "value"), (self.slider, "value"))
            self.tau_slider = w.FloatSlider(value=self.temperature, min=0.1, max=2.0, step=0.05,
                                            continuous_update=False, description="tau")
            self.dream_picture = w.Image(format="png")
            self.real_picture = w.Image(format="png")
            self.done_bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="P(done)")
            self.label = w.Label()
            pictures = [w.VBox([w.Label("dream (M imagines, V draws)"), self.dream_picture])]
            if self.real_frames is not None:
                pictures.insert(0, w.VBox([w.Label("real game"), self.real_picture]))
            rows = [w.HBox([self.play, self.slider, self.tau_slider]), w.HBox(pictures), self.label]
            if self.episode["done_prob"] is not None:
                rows.insert(2, self.done_bar)
            self._widget = w.VBox(rows)
            self.slider.observe(self.on_step, names="value")
            self.tau_slider.observe(self.on_temperature, names="value")
            self.show(0)
        return self._widget

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


# -- 06: controller ------------------------------------------------------------------------------------------


class FramePlayer:
    """A Play button and a slider over recorded frames (a real episode from ``Agent.play(..., record=True)``)."""

    def __init__(self, frames, scale: int = 4, interval: int = 60, title: str = ""):
        self.frames = np.asarray(frames, np.uint8)
        if self.frames.ndim != 4 or len(self.frames) == 0:
            raise ValueError(f"expected (T, H, W, 3) frames, got shape {self.frames.shape}")
        self.scale, self.interval, self.title = scale, interval, title
        self._widget = None

    def frame(self, step: int) -> np.ndarray:
        return self.frames[int(step)]

    def on_step(self, change) -> None:
        self.picture.value = png_bytes(self.frame(change["new"]), self.scale)

    @property
    def widget(self):
        if self._widget is None:
            import ipywidgets as w

            last = len(self.frames) - 1
            self.play = w.Play(value=0, min=0, max=last, step=1, interval=self.interval, description="play")
            self.slider = w.IntSlider(value=0, min=0, max=last, description="frame")
            w.jslink((self.play, "value"), (self.slider, "value"))
            self.picture = w.Image(value=png_bytes(self.frame(0), self.scale), format="png")
            self.slider.observe(self.on_step, names="value")
            self._widget = w.VBox([w.Label(self.title), w.HBox([self.play, self.slider]), self.picture])
        return self._widget

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def plot_controller(params, spec) -> Figure:
    """The controller's weight matrix W (n_out x n_in) as an image, its inputs z | h (| c) marked, and b."""
    w, b = spec.unflatten(params)
    w, b = w[0].numpy(), b[0].numpy()
    fig = Figure(figsize=(10, 1.2 + 0.5 * spec.n_out), layout="constrained")
    ax = fig.subplots()
    lim = float(np.abs(w).max()) or 1.0
    im = ax.imshow(w, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    parts = [("z", spec.z_dim), ("c", spec.hidden_dim), ("h", spec.hidden_dim)] if spec.uses_cell else \
        [("z", spec.z_dim), ("h", spec.hidden_dim)]
    edges = np.cumsum([0] + [size for _, size in parts])
    for edge in edges[1:-1]:
        ax.axvline(edge - 0.5, color="k", lw=2.5)
    top = ax.secondary_xaxis("top")
    top.set_xticks((edges[:-1] + edges[1:]) / 2 - 0.5, [f"{name} ({size})" for name, size in parts])
    top.tick_params(length=0)
    names = ["steer", "gas", "brake"] if spec.game == "CarRacing-v3" else ["left/stay/right"]
    ax.set_yticks(range(spec.n_out), names)
    ax.set_xlabel("input index")
    bias = f";  b = [{', '.join(f'{v:+.3f}' for v in b)}]" if spec.has_bias else " (no bias)"
    ax.set_title(f"{spec.game} controller W, shape {spec.n_out} x {spec.n_in}{bias}; {spec.n_params} parameters",
                 fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03)
    return fig


# -- 07: dream training --------------------------------------------------------------------------------------


def plot_temperature_study(rows, random_score: float | None = None) -> Figure:
    """Dream score and real score of the controllers trained at each temperature (mean +- std)."""
    taus = np.array([r["temperature"] for r in rows])
    x = np.arange(len(rows))
    fig = Figure(figsize=(6.5, 3.4), layout="constrained")
    ax = fig.subplots()
    ax.bar(x - 0.2, [r["dream_mean"] for r in rows], 0.4, yerr=[r["dream_std"] for r in rows], capsize=3,
           label="in the dream (virtual score)", color="tab:purple")
    ax.bar(x + 0.2, [r["real_mean"] for r in rows], 0.4, yerr=[r["real_std"] for r in rows], capsize=3,
           label="in the real game (actual score)", color="tab:green")
    if random_score is not None:
        ax.axhline(random_score, color="k", ls="--", lw=1, label="random policy, real game")
    ax.set_xticks(x, [rf"$\tau$ = {t:g}" for t in taus])
    ax.set(ylabel="steps survived", title="Controllers trained inside the dream at each temperature")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return fig
