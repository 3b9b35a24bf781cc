"""ViZDoom Take Cover as a gymnasium environment with 64x64 frames (the paper's DoomTakeCover).

The scenario is ViZDoom's bundled ``take_cover.cfg``: fireballs come from the far wall and the agent can only strafe
left or right; the reward is +1 for every tic survived. As in the paper an episode ends on death or after 2100 tics
(60 seconds of game time). The game runs headless (no window, no display needed). No HUD is rendered, so the whole
160x120 RGB screen is resized to 64x64.
"""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
from PIL import Image

try:
    import vizdoom as vzd
except ImportError as exc:  # pragma: no cover - exercised only where ViZDoom is absent
    raise ImportError(
        "DoomTakeCover needs ViZDoom, which is not installed: pip install 'vizdoom>=1.2' "
        "(CarRacing-v3 works without it)"
    ) from exc

FRAME_SIZE = 64
MAX_STEPS = 2100  # paper: episodes are capped at 2100 time steps


def preprocess_screen(screen: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB screen -> (64, 64, 3) uint8 frame."""
    return np.asarray(Image.fromarray(screen).resize((FRAME_SIZE, FRAME_SIZE), Image.BILINEAR), dtype=np.uint8)


class DoomTakeCoverWM(gym.Env):
    """Take Cover with 64x64 observations and the paper's one-number action.

    Action: Box(1) in {-1, 0, 1} (left, stay, right); any value < -1/3 strafes left, > 1/3 right.
    The ViZDoom process starts on the first ``reset`` and ``reset(seed=s)`` replays the same episode for the same
    seed and actions.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 35}

    def __init__(self, max_steps: int = MAX_STEPS, render_mode: str | None = None):
        self.max_steps = int(max_steps)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0, 255, (FRAME_SIZE, FRAME_SIZE, 3), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._game = None
        self._screen = np.zeros((120, 160, 3), np.uint8)
        self._t = 0

    def _start(self):
        game = vzd.DoomGame()
        game.load_config(os.path.join(vzd.scenarios_path, "take_cover.cfg"))
        game.set_window_visible(False)
        game.set_sound_enabled(False)
        game.set_screen_format(vzd.ScreenFormat.RGB24)
        game.set_screen_resolution(vzd.ScreenResolution.RES_160X120)
        game.set_mode(vzd.Mode.PLAYER)
        game.set_episode_timeout(0)  # we truncate at max_steps ourselves
        game.init()
        self._game = game

    def _observe(self) -> np.ndarray:
        state = self._game.get_state()
        if state is not None:  # None once the episode is over: keep the last screen
            self._screen = state.screen_buffer
        return preprocess_screen(self._screen)

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        if self._game is None:
            self._start()
        if seed is None:
            seed = int(self.np_random.integers(2**31 - 1))
        self._game.set_seed(int(seed) % (2**31 - 1))
        self._game.new_episode()
        self._t = 0
        return self._observe(), {}

    def step(self, action):
        a = float(np.asarray(action, dtype=np.float32).reshape(-1)[0])
        buttons = [int(a < -1.0 / 3.0), int(a > 1.0 / 3.0)]  # MOVE_LEFT, MOVE_RIGHT
        reward = float(self._game.make_action(buttons))
        self._t += 1
        terminated = bool(self._game.is_episode_finished())
        truncated = (not terminated) and self._t >= self.max_steps
        return self._observe(), reward, terminated, truncated, {}

    def render(self):
        return self._screen.copy()

    def screen(self) -> np.ndarray:
        """The game's own 160x120 screen behind the current 64x64 frame."""
        return self._screen.copy()

    def close(self):
        if self._game is not None:
            self._game.close()
            self._game = None
