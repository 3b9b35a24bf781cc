"""Figures, GIFs and frame grids, for the command line and the notebooks.

Every function here takes arrays (or a CSV log) and draws them; none of them runs a model, so the pipeline's stages
can save their PNGs with it and nothing here depends on the pipeline. Figures are made with
``matplotlib.figure.Figure`` (no pyplot state), so they work the same in a terminal, in a worker process and in
JupyterLab (a Figure is shown inline when it is the value of a cell).
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from .io import atomic_save, read_csv


def save_figure(fig: Figure, path) -> None:
    atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))


def plot_log(csv_path, columns, png_path=None, x: str = "step", title: str = "") -> Figure:
    """Line plot of some columns of a CSV log against ``x``; saved as a PNG too when ``png_path`` is given."""
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
        ax.errorbar(
            g[ev], d["eval_mean"][ev], yerr=d["eval_std"][ev], fmt="o-", capsize=3, label="CMA-ES mean, evaluated"
        )
    ax.set_xlabel("generation")
    ax.set_ylabel("score")
    ax.set_title("Controller learning curve")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if png_path is not None:
        save_figure(fig, png_path)
    return fig


def plot_learning_curves(runs: dict, png_path=None, title: str = "Learning curves side by side") -> Figure:
    """Several searches on one plot: ``runs`` maps a label to a controller log (``controller/log.csv``); each run's
    population mean per generation (a line) and its evaluated CMA-ES means (points with their std), in one colour."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for i, (label, csv_path) in enumerate(runs.items()):
        d = read_csv(csv_path)
        colour = f"C{i}"
        ax.plot(d["generation"], d["fitness_mean"], color=colour, alpha=0.6, label=f"{label}: population mean")
        ev = ~np.isnan(d["eval_mean"])
        if ev.any():
            ax.errorbar(
                d["generation"][ev],
                d["eval_mean"][ev],
                yerr=d["eval_std"][ev],
                fmt="o-",
                color=colour,
                capsize=3,
                label=f"{label}: CMA-ES mean, evaluated",
            )
    ax.set_xlabel("generation")
    ax.set_ylabel("score")
    ax.set_title(title)
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
    atomic_save(
        path,
        lambda f: images[0].save(
            f, format="GIF", save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)), loop=0
        ),
    )


def frame_grid(rows, scale: int = 2) -> np.ndarray:
    """Stack lists of equally sized frames: rows[i][j] -> one (H*rows, W*cols, 3) image."""
    return upscale(np.concatenate([np.concatenate(list(r), 1) for r in rows], 0), scale)


def png_bytes(frame: np.ndarray, scale: int = 4) -> bytes:
    """An (H, W, 3) uint8 frame as PNG bytes, upscaled (what an ``ipywidgets.Image`` shows)."""
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


def plot_episode_stats(stats: dict) -> Figure:
    """Histograms of episode lengths (left) and total rewards (right); ``stats`` maps a game to episode_stats()."""
    fig = Figure(figsize=(9, 2.8 * len(stats)), layout="constrained")
    axes = np.array(fig.subplots(len(stats), 2, squeeze=False))
    for row, (game, s) in zip(axes, stats.items()):
        bins = min(30, max(5, len(s["lengths"])))
        row[0].hist(s["lengths"], bins=bins, color="tab:blue")
        row[0].set(
            xlabel="episode length (frames)",
            ylabel="episodes",
            title=f"{game}: {len(s['lengths'])} episodes, {int(s['lengths'].sum())} frames",
        )
        row[1].hist(s["returns"], bins=bins, color="tab:green")
        row[1].set(xlabel="total reward", title=f"{game}: mean {s['returns'].mean():.1f} ± {s['returns'].std():.1f}")
        for ax in row:
            ax.grid(alpha=0.3)
    return fig


def plot_latent_kl(kl) -> Figure:
    """Bar chart of the KL per latent dimension (see :func:`latent_kl`)."""
    fig = Figure(figsize=(8, 2.6), layout="constrained")
    ax = fig.subplots()
    ax.bar(np.arange(len(kl)), kl, color="tab:purple")
    ax.set(xlabel="latent dimension j", ylabel="mean KL (nats)", title="How much each latent dimension is used")
    ax.grid(alpha=0.3, axis="y")
    return fig


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


def plot_controller(params, spec) -> Figure:
    """The controller's weight matrix W (n_out x n_in) as an image, its inputs z | (c |) h marked, and b."""
    w, b = spec.unflatten(params)
    w, b = w[0].numpy(), b[0].numpy()
    fig = Figure(figsize=(10, 1.2 + 0.5 * spec.n_out), layout="constrained")
    ax = fig.subplots()
    lim = float(np.abs(w).max()) or 1.0
    im = ax.imshow(w, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    parts = spec.parts
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
    ax.set_title(
        f"{spec.game} controller W, shape {spec.n_out} x {spec.n_in}{bias}; {spec.n_params} parameters", fontsize=9
    )
    fig.colorbar(im, ax=ax, fraction=0.03)
    return fig


def plot_temperature_study(rows, random_score: float | None = None) -> Figure:
    """Dream score and real score of the controllers trained at each temperature (mean +- std)."""
    taus = np.array([r["temperature"] for r in rows])
    x = np.arange(len(rows))
    fig = Figure(figsize=(6.5, 3.4), layout="constrained")
    ax = fig.subplots()
    ax.bar(
        x - 0.2,
        [r["dream_mean"] for r in rows],
        0.4,
        yerr=[r["dream_std"] for r in rows],
        capsize=3,
        label="in the dream (virtual score)",
        color="tab:purple",
    )
    ax.bar(
        x + 0.2,
        [r["real_mean"] for r in rows],
        0.4,
        yerr=[r["real_std"] for r in rows],
        capsize=3,
        label="in the real game (actual score)",
        color="tab:green",
    )
    if random_score is not None:
        ax.axhline(random_score, color="k", ls="--", lw=1, label="random policy, real game")
    ax.set_xticks(x, [rf"$\tau$ = {t:g}" for t in taus])
    ax.set(ylabel="steps survived", title="Controllers trained inside the dream at each temperature")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return fig
