"""The notebooks' widgets. Each is a small class whose callbacks are plain methods that return arrays (``image``,
``frame``, ``act``, ...), so it is tested without a browser; the ipywidgets are built only when it is shown, and
pictures are ``ipywidgets.Image`` PNGs (see :func:`wmlib.plots.png_bytes`).

| widget             | notebook | what it shows                                                              |
|--------------------|----------|----------------------------------------------------------------------------|
| LatentExplorer     | 04       | one slider per latent dimension, V's decoding of z                         |
| DreamPlayer        | 05, 07   | M's dream decoded by V, played step by step, beside the real game          |
| DreamGame          | 05       | you are the controller: play inside M's dream with left / stay / right     |
| FramePlayer        | 06, 07   | recorded real frames                                                       |
"""

from __future__ import annotations

import numpy as np
import torch

from .config import Config
from .dream import DreamState, dream_episode, dream_step
from .plots import png_bytes
from .seeding import episode_keys
from .vision import decode


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
        return self.order[page * self.per_page : (page + 1) * self.per_page]

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
                s = w.FloatSlider(
                    value=0.0,
                    min=-self.limit,
                    max=self.limit,
                    step=0.05,
                    continuous_update=True,
                    layout=w.Layout(width="300px"),
                )
                s.observe(lambda change, i=i: self.on_slider(i, change), names="value")
                self.sliders.append(s)
            first = lambda p: p * self.per_page + 1  # noqa: E731
            options = [
                (
                    f"the {first(p)}.-{first(p) + len(self.dims(p)) - 1}. most used"
                    if self.ordered
                    else f"dimensions {self.dims(p)[0]}-{self.dims(p)[-1]}",
                    p,
                )
                for p in range(self.pages)
            ]
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

    def __init__(
        self,
        vision,
        memory,
        z0,
        actions=None,
        controller=None,
        real_frames=None,
        temperature: float = Config.temperature,
        max_len: int | None = None,
        seed: int = 0,
        done_threshold: float = Config.done_threshold,
        stop_at_done: bool = False,
        scale: int = 4,
    ):
        self.vision, self.memory, self.z0 = vision, memory, np.asarray(z0, np.float32)
        self.actions, self.controller, self.max_len, self.seed = actions, controller, max_len, seed
        self.done_threshold, self.stop_at_done, self.scale = done_threshold, stop_at_done, scale
        self.real_frames = None if real_frames is None else np.asarray(real_frames, np.uint8)
        self._widget = None
        self.dream(temperature)

    def dream(self, temperature: float) -> dict:
        """Dream again at ``temperature`` (same seed, so only tau changes); returns the episode."""
        self.temperature = float(temperature)
        self.episode = dream_episode(
            self.memory,
            self.z0,
            self.actions,
            self.controller,
            self.temperature,
            self.max_len,
            self.seed,
            self.done_threshold,
            self.stop_at_done,
        )
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
            self.tau_slider = w.FloatSlider(
                value=self.temperature, min=0.1, max=2.0, step=0.05, continuous_update=False, description="tau"
            )
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


class DreamGame:
    """You are the controller: play inside M's dream, one step per button (as in the paper's interactive article).

    Each press of an action button is one step of the dream, the step every dream takes
    (:func:`wmlib.dream.dream_step`): M takes the action and the current z, the next z is drawn at ``temperature``
    (with the same per-step random numbers a dream in training uses, from ``seed``), and V draws it. For Doom, M's
    P(done) is shown, and above ``done_threshold`` the dream is over: you died, as a controller's dream would end in
    training. "New dream" starts again from ``z0`` with the next seed.
    Callbacks: ``act(name)`` (one step; returns the new frame), ``reset()``, ``frame()``.
    """

    ACTIONS = {  # button -> the game's action (Doom: strafe; CarRacing: steer with a little gas)
        1: {"left": [-1.0], "stay": [0.0], "right": [1.0]},
        3: {"left": [-1.0, 0.3, 0.0], "straight": [0.0, 0.3, 0.0], "right": [1.0, 0.3, 0.0]},
    }

    def __init__(
        self,
        vision,
        memory,
        z0,
        temperature: float = Config.temperature,
        seed: int = 0,
        done_threshold: float = Config.done_threshold,
        scale: int = 4,
    ):
        if memory.action_dim not in self.ACTIONS:
            raise ValueError(f"no buttons for an M with {memory.action_dim}-number actions")
        self.vision, self.memory, self.scale = vision, memory, scale
        self.z0 = torch.as_tensor(np.asarray(z0, np.float32)).reshape(1, memory.z_dim)
        self.temperature, self.done_threshold, self.seed = float(temperature), float(done_threshold), int(seed)
        self.actions = {k: torch.tensor([v]) for k, v in self.ACTIONS[memory.action_dim].items()}
        self._weights = memory.step_weights()
        self._widget = None
        self.games = 0
        self.reset()

    def reset(self) -> np.ndarray:
        """A new dream from z0 (the next seed); returns its first frame."""
        self.state = DreamState.start(self.memory, self.z0.clone(), episode_keys(np.array([self.seed + self.games])))
        self.games += 1
        self.p_done, self.over = None, False
        self._refresh()
        return self.frame()

    @property
    def z(self) -> torch.Tensor:
        """The current latent (1, N_z)."""
        return self.state.z

    @property
    def step(self) -> int:
        """Steps taken in this dream."""
        return self.state.t

    def frame(self) -> np.ndarray:
        """V's drawing of the current z: (64, 64, 3) uint8."""
        return decode(self.vision, self.z[0].numpy())

    @torch.inference_mode()
    def act(self, name: str) -> np.ndarray:
        """Take the action of button ``name`` for one step of the dream; returns the new frame. After the dream is
        over, nothing changes until ``reset``."""
        if name not in self.actions:
            raise ValueError(f"unknown action {name!r}; the buttons are {', '.join(self.actions)}")
        if not self.over:
            out = dream_step(self.memory, self._weights, self.state, self.actions[name], self.temperature)
            if self.memory.predict_done:
                self.p_done = float(torch.sigmoid(out.done_logit)[0])
                self.over = self.p_done > self.done_threshold
        self._refresh()
        return self.frame()

    def status(self) -> str:
        text = f"step {self.step}, tau = {self.temperature:g}"
        if self.p_done is not None:
            text += f", M's P(done) = {self.p_done:.3f}"
        if self.over:
            steps = f"{self.step} step" + ("s" if self.step != 1 else "")
            text += f": you died after {steps} in the dream. Press 'new dream'."
        return text

    # -- widget ------------------------------------------------------------------------------------------------
    def _refresh(self) -> None:
        if self._widget is not None:
            self.picture.value = png_bytes(self.frame(), self.scale)
            self.label.value = self.status()
            if self.p_done is not None:
                self.done_bar.value = self.p_done

    @property
    def widget(self):
        if self._widget is None:
            import ipywidgets as w  # only when a widget is shown: the library and its tests run without a front end

            self.buttons = {}
            for name in self.actions:
                button = w.Button(description=name)
                button.on_click(lambda _, name=name: self.act(name))
                self.buttons[name] = button
            again = w.Button(description="new dream", button_style="primary")
            again.on_click(lambda _: self.reset())
            self.picture = w.Image(format="png")
            self.label = w.Label()
            self.done_bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="P(done)")
            rows = [w.HBox([*self.buttons.values(), again]), self.picture, self.label]
            if self.memory.predict_done:
                rows.insert(2, self.done_bar)
            self._widget = w.VBox(rows)
            self._refresh()
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
