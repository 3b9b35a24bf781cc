"""The notebooks' helpers: where their run directories live, small run helpers, and the widgets.

Notebooks hold explanation and short calls; what they call lives here (or in the pipeline's modules, which know
nothing of notebooks). Every widget is a small class whose callbacks are plain methods that return arrays
(``image``, ``frame``, ...), so it is tested without a browser; the ipywidgets are built only when it is shown.

| widget             | notebook | what it shows                                                              |
|--------------------|----------|----------------------------------------------------------------------------|
| LatentExplorer     | 04       | one slider per latent dimension, V's decoding of z                         |
| DreamPlayer        | 05, 07   | M's dream decoded by V, played step by step, beside the real game          |
| FramePlayer        | 06, 07   | recorded real frames                                                       |
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from . import episodes, rundir
from .config import Config, make_config
from .dream import dream_episode
from .games import make_env
from .memory import mixture_density
from .plots import plot_frames, png_bytes
from .rollouts import play_random_episode
from .runlock import run_lock
from .vision import decode, reconstruct

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


class LatentExplorer:
    """One slider per latent dimension, and V's decoding of the latent vector, updated as a slider moves.

    ``per_page`` sliders are shown at a time; a dropdown picks which dimensions they control (all 32 of CarRacing
    fit on two pages, Doom's 64 on four). ``order`` lists the dimensions in the order the pages show them: pass
    them sorted by how much V uses them (:func:`wmlib.vision.latent_kl`, largest first) and the first sliders move
    the picture most (a trained V leaves many dimensions unused, and a slider on one of those changes nothing).
    The callbacks are methods: ``set(dim, value)`` changes one dimension and returns the new image; ``image()``
    decodes the current z.
    """

    def __init__(self, vision, z=None, per_page: int = 16, limit: float = 3.0, scale: int = 4, order=None):
        self.vision, self.per_page, self.limit, self.scale = vision, int(per_page), float(limit), scale
        self.z_dim = int(vision.z_dim)
        self.order = list(range(self.z_dim)) if order is None else [int(j) for j in order]
        if sorted(self.order) != list(range(self.z_dim)):
            raise ValueError(f"order must list each of the {self.z_dim} latent dimensions once, got {self.order}")
        self.ordered = order is not None
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
        return self.order[page * self.per_page:(page + 1) * self.per_page]

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
            import ipywidgets as w  # only when a widget is shown: the library and its tests run without a front end

            self.sliders = []
            for i in range(self.per_page):
                s = w.FloatSlider(value=0.0, min=-self.limit, max=self.limit, step=0.05, continuous_update=True,
                                  layout=w.Layout(width="300px"))
                s.observe(lambda change, i=i: self.on_slider(i, change), names="value")
                self.sliders.append(s)
            first = lambda p: p * self.per_page + 1  # noqa: E731
            options = [(f"the {first(p)}.-{first(p) + len(self.dims(p)) - 1}. most used" if self.ordered else
                        f"dimensions {self.dims(p)[0]}-{self.dims(p)[-1]}", p) for p in range(self.pages)]
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
        from IPython.display import display  # only in a notebook: IPython comes with ipywidgets

        display(self.widget)


class DreamPlayer:
    """Play a dream: M imagines the latents, V decodes them to frames. A Play button steps through them, a
    temperature slider dreams again at another tau, and for Doom a bar shows M's probability that the game ends.

    Give ``real_frames`` (with the real episode's ``actions`` and ``z0`` = V's code of its first frame) to see
    dream and reality side by side from the same start. Callbacks: ``frame(step)``, ``real_frame(step)``,
    ``done_probability(step)`` and ``dream(temperature)``.
    """

    def __init__(self, vision, memory, z0, actions=None, controller=None, real_frames=None,
                 temperature: float = Config.temperature, max_len: int | None = None, seed: int = 0,
                 done_threshold: float = Config.done_threshold,
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
            import ipywidgets as w  # only when a widget is shown: the library and its tests run without a front end

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
        from IPython.display import display  # only in a notebook: IPython comes with ipywidgets

        display(self.widget)


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
            import ipywidgets as w  # only when a widget is shown: the library and its tests run without a front end

            last = len(self.frames) - 1
            self.play = w.Play(value=0, min=0, max=last, step=1, interval=self.interval, description="play")
            self.slider = w.IntSlider(value=0, min=0, max=last, description="frame")
            w.jslink((self.play, "value"), (self.slider, "value"))
            self.picture = w.Image(value=png_bytes(self.frame(0), self.scale), format="png")
            self.slider.observe(self.on_step, names="value")
            self._widget = w.VBox([w.Label(self.title), w.HBox([self.play, self.slider]), self.picture])
        return self._widget

    def _ipython_display_(self):
        from IPython.display import display  # only in a notebook: IPython comes with ipywidgets

        display(self.widget)

