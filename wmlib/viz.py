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
