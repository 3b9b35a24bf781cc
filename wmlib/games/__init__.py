"""The two games of the paper as gymnasium environments that yield 64x64x3 uint8 frames.

Each game module is imported only when asked for, so CarRacing works without ViZDoom and Doom works without Box2D.

| game            | observation       | action space (game)            | controller outputs -> action            |
|-----------------|-------------------|--------------------------------|-----------------------------------------|
| CarRacing-v3    | uint8 (64, 64, 3) | Box(3): steer, gas, brake      | steer=a0, gas=(a1+1)/2, brake=clip(a2,0,1) |
| DoomTakeCover   | uint8 (64, 64, 3) | Box(1): -1 left, 0 stay, 1 right | < -1/3 left, > 1/3 right, else stay     |
"""

from __future__ import annotations

import numpy as np
import torch

GAMES = ("CarRacing-v3", "DoomTakeCover")
CARRACING_RENDERERS = ("gymnasium", "exact", "fast")  # who draws CarRacing's observation (see carracing_render)
# Frames at the start of an episode when the player cannot yet do anything useful: CarRacing's camera zooms in for
# its first second (50 frames at 50 FPS; gymnasium's car_racing.py), while each frame costs -0.1 reward.
OPENING_FRAMES = {"CarRacing-v3": 50, "DoomTakeCover": 0}
# The name a ViZDoom engine's watcher process goes by (see games.doom): a process that kills its children before it
# exits (farm.exit_orphaned) spares it, so that it can remove the engine's folder once the process is gone.
ENGINE_WATCHER = "wm-vizdoom-watch"


def check_game(game: str) -> str:
    """Return ``game`` if it is known, else raise a ValueError that lists the valid names."""
    if game not in GAMES:
        raise ValueError(f"unknown game {game!r}; valid games: {', '.join(GAMES)}")
    return game


def make_env(game: str, max_steps: int | None = None, renderer: str = "fast"):
    """Make the 64x64 environment for ``game``.

    ``max_steps`` caps an episode (truncation); ``renderer`` picks CarRacing's observation renderer
    (gymnasium, exact or fast) and is ignored for Doom.
    """
    check_game(game)
    if game == "CarRacing-v3":
        from .carracing import CarRacingWM  # here, not above: Box2D is loaded only for CarRacing

        return CarRacingWM(renderer=renderer, max_steps=max_steps)
    from .doom import MAX_STEPS, DoomTakeCoverWM  # here, not above: ViZDoom is loaded only for Doom

    return DoomTakeCoverWM(max_steps=max_steps or MAX_STEPS)


def action_dim(game: str) -> int:
    """Size of the action the game and the Memory model take: 3 (steer, gas, brake) or 1 (left/stay/right)."""
    return 3 if check_game(game) == "CarRacing-v3" else 1


def controller_to_action(game: str, out):
    """Map controller outputs (tanh, in [-1, 1]) to the game's action, as in the paper.

    ``out`` is a torch tensor or numpy array of shape (..., n_out); the result has the same kind and shape
    (..., action_dim) and is what both the real game and the Memory model receive. This is the single place where
    that mapping lives (real game, dream and tests all call it).
    """
    check_game(game)
    as_numpy = not isinstance(out, torch.Tensor)
    t = torch.as_tensor(np.asarray(out, dtype=np.float32)) if as_numpy else out
    if game == "CarRacing-v3":
        act = torch.stack([t[..., 0], (t[..., 1] + 1.0) / 2.0, t[..., 2].clamp(0.0, 1.0)], dim=-1)
    else:
        a = t[..., 0]
        third = 1.0 / 3.0
        act = torch.where(a < -third, -1.0, torch.where(a > third, 1.0, 0.0)).unsqueeze(-1).to(t.dtype)
    return act.numpy() if as_numpy else act
