"""CarRacing-v3 with the paper's 64x64 frames.

The 96x96 state image is cropped to rows 0:84 (the dashboard at the bottom is dropped) and resized to 64x64
as in the original code. ``renderer`` picks who draws the 96x96 image: gymnasium itself, our pixel-identical ``exact``
renderer, or the ``fast`` low-resolution one (the default; see :mod:`wmlib.games.carracing_render`). Physics, track,
rewards and termination are gymnasium's in all three.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from .carracing_render import RENDERERS, make_carracing, preprocess_frame

DEFAULT_RENDERER = "fast"


class CarRacingWM(gym.Wrapper):
    """CarRacing-v3 that returns (64, 64, 3) uint8 frames. Actions are gymnasium's (steer, gas, brake)."""

    def __init__(self, renderer: str = DEFAULT_RENDERER, max_steps: int | None = None, **kwargs):
        if renderer not in RENDERERS:
            raise ValueError(f"unknown CarRacing renderer {renderer!r}; valid: {', '.join(RENDERERS)}")
        env = make_carracing(renderer, **kwargs)
        if max_steps is not None:
            env = gym.wrappers.TimeLimit(env, max_episode_steps=int(max_steps))
        super().__init__(env)
        self.renderer = renderer
        self.observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
        self._screen = np.zeros((96, 96, 3), np.uint8)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._screen = obs
        return preprocess_frame(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(action, dtype=np.float32))
        self._screen = obs
        return preprocess_frame(obs), reward, terminated, truncated, info

    def screen(self) -> np.ndarray:
        """The game's own 96x96 observation (dashboard included) behind the current 64x64 frame."""
        return np.array(self._screen, np.uint8)
