"""Figures and widgets for the two toy problems (notebooks 01 and 02 call these, so their cells stay short).

Every plotting function returns a :class:`matplotlib.figure.Figure` built without pyplot: in a notebook (with
``%matplotlib inline``) it is shown once, as the cell's value, and in a script or a test it leaves no global state
behind. The widgets import ipywidgets only when they are built.
"""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

from . import mdn as _mdn
from .cmaes import SCHAFFER_OPTIMUM, Snapshot, run

DATA_STYLE = dict(s=4, color="0.6", alpha=0.5, linewidths=0)
MSE_COLOR = "tab:red"
MDN_COLOR = "tab:blue"


def _figure(ncols: int = 1, width: float = 5.0, height: float = 4.0):
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


# ================================================================================================================
# Mixture density network
# ================================================================================================================
def plot_data(x, y) -> Figure:
    """Left: how the data is made (x is a noisy function of y). Right: the task, y from x, which is multi-valued."""
    fig, (left, right) = _figure(2)
    ys = np.linspace(*_mdn.Y_RANGE, 500)
    left.scatter(y, x, **DATA_STYLE)
    left.plot(ys, _mdn.forward_curve(ys), color="k", lw=1)
    left.set(xlabel="y", ylabel="x", title="made as x = 7 sin(0.75 y) + 0.5 y + noise")
    right.scatter(x, y, **DATA_STYLE)
    for x0 in (-6.0, 0.0):
        for b in _mdn.branches(x0):
            right.plot([x0], [b], "o", color="k", ms=5)
        right.axvline(x0, color="k", lw=0.5, ls=":")
    right.set(xlabel="x", ylabel="y", title="asked as y given x: several right answers")
    return fig


def _grid(fit, n: int = 400) -> np.ndarray:
    return np.linspace(float(np.min(fit.x_train)), float(np.max(fit.x_train)), n)


def plot_fits(fit: _mdn.ToyFit, min_weight: float = 0.1) -> Figure:
    """Left: the data, the MSE network's curve and the MDN's component means (drawn where pi_k > ``min_weight``,
    thicker for larger pi_k). Right: the MDN's whole density p(y | x) as an image (square root, for contrast)."""
    fig, (left, right) = _figure(2)
    xs = _grid(fit)
    left.scatter(fit.x_train, fit.y_train, **DATA_STYLE)
    pi, mu, sigma = _mdn.mixture_params(fit.mdn, xs)
    for k in range(pi.shape[1]):
        shown = pi[:, k] > min_weight
        if not shown.any():
            continue
        left.scatter(xs[shown], mu[shown, k], s=2 + 12 * pi[shown, k], color=MDN_COLOR, linewidths=0)
    left.plot([], [], "o", color=MDN_COLOR, ms=4, label=f"MDN means mu_k(x) ({fit.mdn.n_mixtures} components)")
    left.plot(xs, _mdn.predict(fit.mse, xs), color=MSE_COLOR, lw=2.5, label="MSE network: the average")
    left.set(xlabel="x", ylabel="y", title="two fits")
    left.legend(loc="upper left", fontsize=8)

    ys = np.linspace(*_mdn.Y_RANGE, 300)[:, None, None]  # (y, x, component)
    dens = np.sum(pi * np.exp(-0.5 * ((ys - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi)), axis=2)
    ys = ys[:, 0, 0]
    right.imshow(np.sqrt(dens), origin="lower", aspect="auto", cmap="Blues", extent=(xs[0], xs[-1], ys[0], ys[-1]))
    right.set(xlabel="x", ylabel="y", title=f"MDN density p(y | x)   (held-out NLL {fit.nll_mdn:.2f})")
    return fig


def plot_slice(fit: _mdn.ToyFit, x0: float = 0.0, width: float = 0.5) -> Figure:
    """p(y | x0): training targets with |x - x0| < ``width`` (histogram), the MDN density, and the Gaussian around
    the MSE prediction; the dotted lines are the noise-free branches."""
    fig, (ax,) = _figure(1, width=7.0, height=3.5)
    ys = np.linspace(*_mdn.Y_RANGE, 600)
    near = np.abs(fit.x_train - x0) < width
    ax.hist(
        fit.y_train[near],
        bins=40,
        range=_mdn.Y_RANGE,
        density=True,
        color="0.8",
        label=f"data, |x - {x0:g}| < {width:g}",
    )
    ax.plot(ys, _mdn.mixture_density(fit.mdn, x0, ys), color=MDN_COLOR, lw=2, label="MDN")
    m = float(_mdn.predict(fit.mse, [x0])[0])
    gauss = np.exp(-0.5 * ((ys - m) / fit.mse_sigma) ** 2) / (fit.mse_sigma * math.sqrt(2 * math.pi))
    ax.plot(ys, gauss, color=MSE_COLOR, lw=2, label="N(MSE prediction, residual std^2)")
    for b in _mdn.branches(x0):
        ax.axvline(b, color="k", ls=":", lw=1)
    ax.set(xlabel="y", ylabel=f"p(y | x = {x0:g})", title=f"one slice, x = {x0:g}")
    ax.legend(fontsize=8)
    return fig


def plot_samples(fit: _mdn.ToyFit, seed: int = 0, temperatures=(1.0,)) -> Figure:
    """Samples y ~ p(y | x) over the data: the Gaussian around the MSE curve, then the MDN (at each temperature)."""
    temperatures = tuple(temperatures)
    fig, axes = _figure(1 + len(temperatures), width=4.5)
    xs = np.sort(fit.x_test)
    rng = np.random.default_rng(seed)
    y_mse = _mdn.predict(fit.mse, xs) + fit.mse_sigma * rng.standard_normal(xs.size)
    axes[0].scatter(fit.x_train, fit.y_train, **DATA_STYLE)
    axes[0].scatter(xs, y_mse, s=4, color=MSE_COLOR, linewidths=0)
    axes[0].set(xlabel="x", ylabel="y", title="samples: Gaussian around the MSE fit")
    for ax, tau in zip(axes[1:], temperatures):
        y_mdn = _mdn.sample(fit.mdn, xs, 1, seed=seed, temperature=tau)[:, 0]
        ax.scatter(fit.x_train, fit.y_train, **DATA_STYLE)
        ax.scatter(xs, y_mdn, s=4, color=MDN_COLOR, linewidths=0)
        ax.set(xlabel="x", title="samples: MDN" + ("" if tau == 1.0 else f", temperature {tau:g}"))
    return fig


def plot_temperature(
    fit: _mdn.ToyFit, x0: float = 0.0, temperatures=(0.5, 1.0, 2.0), n: int = 5000, seed: int = 0
) -> Figure:
    """Histograms of MDN samples at one input ``x0`` for several sampling temperatures."""
    fig, axes = _figure(len(temperatures), width=3.6, height=3.0)
    for ax in axes[1:]:
        ax.sharey(axes[0])
    for ax, tau in zip(axes, temperatures):
        ys = _mdn.sample(fit.mdn, [x0], n, seed=seed, temperature=tau)[0]
        ax.hist(ys, bins=80, range=(-12, 12), density=True, color=MDN_COLOR)
        for b in _mdn.branches(x0):
            ax.axvline(b, color="k", ls=":", lw=1)
        ax.set(xlabel="y", title=f"temperature {tau:g}")
    axes[0].set_ylabel(f"samples of y at x = {x0:g}")
    return fig


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """A figure as PNG bytes, for an ``ipywidgets.Image``.

    The widgets show their figures as pictures rather than through an ``Output`` widget: an ``Output`` widget
    written to while its cell runs captures that cell's own messages, which notebook runners (nbclient, used by
    the tests and by ``jupyter nbconvert --execute``) then wait on until their timeout."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


class MDNExplorer:
    """Widget: choose the number of mixtures and training steps, press *Retrain*, see the fits and the scores."""

    def __init__(self, n_mixtures: int = 5, steps: int = 1500, seed: int = 0, max_steps: int = 5000):
        import ipywidgets as w

        self.seed = seed
        self.n_mixtures = w.IntSlider(value=n_mixtures, min=1, max=10, description="mixtures K")
        self.steps = w.IntSlider(value=steps, min=100, max=max_steps, step=100, description="steps")
        self.button = w.Button(description="Retrain", button_style="primary")
        self.score = w.Label(value="press Retrain")
        self.picture = w.Image(format="png")  # the figure as a picture: see figure_png
        self.button.on_click(lambda _: self.retrain())
        self.widget = w.VBox([w.HBox([self.n_mixtures, self.steps, self.button]), self.score, self.picture])
        self.fit = None

    def retrain(self) -> _mdn.ToyFit:
        """Fit both networks with the current slider values and redraw (what the button calls)."""
        self.fit = _mdn.fit_toy(n_mixtures=self.n_mixtures.value, steps=self.steps.value, seed=self.seed)
        self.score.value = (
            f"held-out NLL (nats/point): MSE Gaussian {self.fit.nll_mse:.3f}   MDN {self.fit.nll_mdn:.3f}"
        )
        self.picture.value = figure_png(plot_fits(self.fit))
        return self.fit

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


# ================================================================================================================
# CMA-ES
# ================================================================================================================
def covariance_ellipse(mean, sigma: float, C, n_std: float = 2.0) -> tuple[tuple[float, float], float, float, float]:
    """Centre, width, height and angle (degrees) of the ``n_std`` ellipse of N(mean, sigma^2 C) in 2-D.

    The axes of the ellipse are the eigenvectors of C; its half-lengths are n_std sigma sqrt(eigenvalue).
    """
    eigenvalues, vectors = np.linalg.eigh(sigma**2 * np.asarray(C, dtype=float))
    major = vectors[:, 1]
    width, height = 2.0 * n_std * np.sqrt(np.maximum(eigenvalues[::-1], 0.0))
    angle = math.degrees(math.atan2(major[1], major[0]))
    return (float(mean[0]), float(mean[1])), float(width), float(height), angle


def _auto_extent(snapshots, margin: float = 0.1):
    pts = np.concatenate([s.population for s in snapshots[:3]] + [s.mean[None] for s in snapshots])
    lo, hi = np.percentile(pts, 1, axis=0), np.percentile(pts, 99, axis=0)
    lo, hi = np.minimum(lo, SCHAFFER_OPTIMUM - 10), np.maximum(hi, SCHAFFER_OPTIMUM + 10)
    pad = margin * (hi - lo)
    return float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1])


def landscape_image(fun, extent, resolution: int = 300, samples: int = 9, seed: int = 0) -> np.ndarray:
    """f averaged over each pixel of a ``resolution`` x ``resolution`` image of ``extent`` = (x0, x1, y0, y1).

    Each pixel averages ``samples`` points at random positions inside it. Ripples finer than a pixel would turn
    into false patterns (aliasing) on a regular grid; random positions turn them into their average instead, so
    the image honestly shows where the landscape is too rugged to draw.
    """
    rng = np.random.default_rng(seed)
    px = (extent[1] - extent[0]) / resolution
    py = (extent[3] - extent[2]) / resolution
    cx, cy = np.meshgrid(extent[0] + px * np.arange(resolution), extent[2] + py * np.arange(resolution))
    total = np.zeros((resolution, resolution))
    for _ in range(samples):
        jitter = rng.random((2, resolution, resolution))
        total += np.asarray(fun(np.stack([cx + px * jitter[0], cy + py * jitter[1]], axis=-1)), dtype=float)
    return total / samples


def draw_landscape(ax, fun, extent, resolution: int = 300, optimum=SCHAFFER_OPTIMUM):
    """Draw f over ``extent`` = (x0, x1, y0, y1) as an image (dark = low) and mark the optimum."""
    values = landscape_image(fun, extent, resolution)
    ax.imshow(values, origin="lower", extent=extent, cmap="viridis", interpolation="nearest")
    if optimum is not None:
        ax.plot(*optimum, marker="*", color="w", ms=14, mec="k", ls="none")
    ax.set(xlim=extent[:2], ylim=extent[2:], xlabel="x1", ylabel="x2")
    return ax


def plot_landscape(fun, extent=(-35.0, 30.0, -10.0, 45.0), start=(-20.0, 30.0)) -> Figure:
    """The whole search area (with the start point) next to a close-up of the optimum."""
    fig, (wide, close) = _figure(2)
    draw_landscape(wide, fun, extent, resolution=600)
    if start is not None:
        wide.plot(*start, marker="o", color="r", ms=8, mec="k", ls="none", label="start")
        wide.legend(loc="lower left", fontsize=8)
    wide.set_title("whole search area")
    o = SCHAFFER_OPTIMUM
    draw_landscape(close, fun, (o[0] - 4, o[0] + 4, o[1] - 4, o[1] + 4))
    close.set_title("close-up of the optimum (10, 10)")
    return fig


class CMAESPlayer:
    """One figure showing a recorded run one generation at a time: the landscape, the population, the mean (and
    its path so far) and the 2-sigma ellipse of N(mean, sigma^2 C).

    :meth:`draw` is the callback: the widget's slider calls :meth:`on_value_change`, which calls :meth:`draw`.
    """

    def __init__(self, snapshots, fun, extent=None, resolution: int = 300, figsize=(5.5, 5.0)):
        self.fun = fun
        self.figure = Figure(figsize=figsize, layout="constrained")
        FigureCanvasAgg(self.figure)
        self.ax = self.figure.add_subplot(1, 1, 1)
        self._resolution = resolution
        self._widget = None
        self._picture = None
        self.set_snapshots(snapshots, extent)

    # -- drawing ------------------------------------------------------------------------------------------------
    def set_snapshots(self, snapshots, extent=None) -> None:
        """Show a new run (keeps the widget, resets it to generation 0)."""
        if not snapshots:
            raise ValueError("no snapshots to show")
        self.snapshots = list(snapshots)
        self.extent = tuple(extent) if extent is not None else _auto_extent(self.snapshots)
        ax = self.ax
        ax.clear()
        draw_landscape(ax, self.fun, self.extent, resolution=self._resolution)
        (self.path,) = ax.plot([], [], "-", color="w", lw=1, alpha=0.8)
        self.scatter = ax.scatter([], [], s=12, color="tab:orange", edgecolors="k", linewidths=0.3, zorder=3)
        self.ellipse = Ellipse((0, 0), 1, 1, angle=0, fill=False, color="r", lw=2, zorder=4)
        ax.add_patch(self.ellipse)
        (self.mean_marker,) = ax.plot([], [], "+", color="r", ms=14, mew=2.5, zorder=5)
        self.generation = None
        if self._widget is not None:
            self.slider.max = len(self.snapshots) - 1
            self.play.max = len(self.snapshots) - 1
            self.slider.value = 0
        self.draw(0)

    def draw(self, generation: int) -> Figure:
        """Update the figure to show ``generation`` (0-based index into the snapshots); returns the figure."""
        generation = int(generation)
        if not 0 <= generation < len(self.snapshots):
            raise IndexError(f"generation {generation} outside 0..{len(self.snapshots) - 1}")
        s: Snapshot = self.snapshots[generation]
        self.scatter.set_offsets(s.population[:, :2])
        means = np.array([t.mean[:2] for t in self.snapshots[: generation + 1]])
        self.path.set_data(means[:, 0], means[:, 1])
        self.mean_marker.set_data([s.mean[0]], [s.mean[1]])
        center, width, height, angle = covariance_ellipse(s.mean[:2], s.sigma, s.C[:2, :2])
        self.ellipse.set_center(center)
        self.ellipse.set_width(width)
        self.ellipse.set_height(height)
        self.ellipse.set_angle(angle)
        spread = s.sigma * math.sqrt(max(float(np.linalg.eigvalsh(s.C).max()), 0.0))
        self.ax.set_title(
            f"generation {s.generation}: mean ({s.mean[0]:.2f}, {s.mean[1]:.2f})\n"
            f"sigma {s.sigma:.3g}, largest std sigma*sqrt(eig C) {spread:.3g}, best f {s.best_f:.2g}",
            fontsize=9,
        )
        self.generation = generation
        return self.figure

    def frame(self, generation: int, dpi: int = 80) -> np.ndarray:
        """The figure at ``generation`` as an RGB uint8 array (height, width, 3)."""
        self.figure.set_dpi(dpi)
        self.draw(generation)
        canvas = self.figure.canvas
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()

    # -- widget ------------------------------------------------------------------------------------------------
    def on_value_change(self, change) -> None:
        """Slider callback: draw generation ``change["new"]`` and show the figure in the widget's picture."""
        self.draw(change["new"])
        if self._picture is not None:
            self._picture.value = figure_png(self.figure)

    @property
    def widget(self):
        """A ``Play`` button linked to an ``IntSlider`` over generations, above the figure."""
        if self._widget is None:
            import ipywidgets as w

            last = len(self.snapshots) - 1
            self.play = w.Play(value=0, min=0, max=last, step=1, interval=250, description="play")
            self.slider = w.IntSlider(value=0, min=0, max=last, description="generation")
            w.jslink((self.play, "value"), (self.slider, "value"))
            self._picture = w.Image(format="png")
            self.slider.observe(self.on_value_change, names="value")
            self._widget = w.VBox([w.HBox([self.play, self.slider]), self._picture])
            self.on_value_change({"new": self.slider.value})
        return self._widget

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def plot_generations(snapshots, fun, generations=(0, 5, 10, 20), extent=None) -> Figure:
    """A row of frames of a recorded run (static, so it shows in any notebook viewer)."""
    generations = [g for g in generations if g < len(snapshots)]
    fig = Figure(figsize=(3.6 * len(generations), 3.6), layout="constrained")
    extent = extent if extent is not None else _auto_extent(snapshots)
    for i, g in enumerate(generations):
        ax = fig.add_subplot(1, len(generations), i + 1)
        s = snapshots[g]
        draw_landscape(ax, fun, extent, resolution=250)
        ax.scatter(s.population[:, 0], s.population[:, 1], s=8, color="tab:orange", edgecolors="k", linewidths=0.3)
        center, width, height, angle = covariance_ellipse(s.mean, s.sigma, s.C)
        ax.add_patch(Ellipse(center, width, height, angle=angle, fill=False, color="r", lw=2))
        ax.plot(*s.mean, "+", color="r", ms=12, mew=2)
        ax.set_title(f"generation {g}, sigma {s.sigma:.2g}", fontsize=9)
    return fig


def plot_progress(snapshots) -> Figure:
    """Best fitness so far, step size sigma and the axis lengths sigma sqrt(eig C), per generation (log scale)."""
    fig, (left, right) = _figure(2, height=3.3)
    g = [s.generation for s in snapshots]
    left.semilogy(g, [max(s.best_f, 1e-16) for s in snapshots], color="k")
    left.set(xlabel="generation", ylabel="best f so far (floored at 1e-16)", title="progress")
    right.semilogy(g, [s.sigma for s in snapshots], color="k", label="sigma")
    axes = np.array([s.sigma * np.sqrt(np.linalg.eigvalsh(s.C)) for s in snapshots])
    right.semilogy(g, axes, color="tab:red", lw=1, alpha=0.8)
    right.plot([], [], color="tab:red", label="sigma sqrt(eigenvalues of C)")
    right.set(xlabel="generation", title="step size and axes of the ellipse")
    right.legend(fontsize=8)
    return fig


class CMAESExplorer:
    """Widget: population size, initial sigma and seed; *Run* records a new run and shows it in a player."""

    def __init__(
        self,
        fun,
        x0=(-20.0, 30.0),
        popsize: int = 64,
        sigma0: float = 10.0,
        seed: int = 1,
        generations: int = 60,
        extent=(-35.0, 30.0, -10.0, 45.0),
    ):
        import ipywidgets as w

        self.fun, self.x0, self.generations, self.extent = fun, x0, generations, extent
        self.popsize = w.IntSlider(value=popsize, min=4, max=200, description="popsize")
        self.sigma0 = w.FloatSlider(value=sigma0, min=0.5, max=30.0, step=0.5, description="sigma0")
        self.seed = w.IntText(value=seed, description="seed")
        self.button = w.Button(description="Run", button_style="primary")
        self.status = w.HTML()
        self.player = CMAESPlayer(self._run(), fun, extent=extent)
        self.button.on_click(lambda _: self.rerun())
        controls = w.HBox([self.popsize, self.sigma0, self.seed, self.button])
        self.widget = w.VBox([controls, self.status, self.player.widget])

    def _run(self):
        snaps = run(
            self.fun,
            self.x0,
            self.sigma0.value,
            popsize=self.popsize.value,
            seed=self.seed.value,
            generations=self.generations,
        )
        self.last_run = snaps
        s = snaps[-1]
        if hasattr(self, "status"):
            self.status.value = (
                f"{len(snaps)} generations, {len(snaps) * s.population.shape[0]} evaluations; final mean "
                f"({s.mean[0]:.3f}, {s.mean[1]:.3f}), best f {s.best_f:.2g}"
            )
        return snaps

    def rerun(self):
        """Run CMA-ES with the current settings and show it (what the button calls)."""
        self.player.set_snapshots(self._run(), extent=self.extent)
        self.player.on_value_change({"new": 0})
        return self.last_run

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
