"""CarRacing-v3 with a fast observation renderer.

gymnasium's ``CarRacing-v3`` spends most of each step drawing its 96x96 observation: it rotates and scales every
one of ~800 grass and track polygons in Python (one ``pygame.math.Vector2`` per vertex), draws the ones near the
screen with ``pygame.gfxdraw`` onto a 1000x800 surface, flips it, draws the dashboard and shrinks the result to
96x96 with ``pygame.transform.smoothscale``. The Box2D physics is a small part of the time.

The environments here are gymnasium's ``CarRacing`` itself (subclasses: same constructor, physics, track generation,
rewards, termination and ``reset(seed=...)``); only the observation renderer (``_render("state_pixels")``) is
replaced. Two levels:

``exact`` (:class:`ExactCarRacing`)
    Pixel-identical to gymnasium. The same pygame drawing calls with bit-identical coordinates, but the vertex
    transform is one numpy expression that reproduces ``Vector2.rotate_rad`` exactly, only polygons that can touch
    the window are drawn, a background that covers the whole window becomes one ``fill``, the window is never
    flipped as a whole, and surfaces, the font and the rendered reward text are kept between steps.
``fast`` (:class:`FastCarRacing`)
    Draws the same scene directly at 192x192 (the 1000x800 window's non-square pixels folded into the transform)
    and smoothscales it to 96x96. Not identical to gymnasium's frames, but within a fraction of a grey level on
    average after the 64x64 preprocessing, with everything in the same place.

:func:`make_carracing` builds any of the three (``"gymnasium"`` is gymnasium's own env) behind the same wrappers as
``gymnasium.make("CarRacing-v3")``, 1000-step ``TimeLimit`` included. ``render_mode="rgb_array"`` and ``"human"``
still use gymnasium's renderer for the big picture; only the observation is fast. :func:`preprocess_frame` is the
project's 96x96 -> 64x64 frame preprocessing.

The exact level relies on pygame-ce's drawing and ``smoothscale`` internals behaving as they do in the version
the tests run with (``tests/test_carracing_render.py`` compares every step with gymnasium's own frames).
"""

from __future__ import annotations

import dataclasses
import math
from functools import lru_cache

import gymnasium as gym
import numpy as np
import pygame
from gymnasium.envs.box2d.car_racing import STATE_H, STATE_W, WINDOW_H, WINDOW_W
from PIL import Image
from pygame import gfxdraw

from .carracing_draw import (
    _FIELD,
    _GRASS,
    _GYM_ID,
    _IND_H,
    _camera,
    _field_covers,
    _ObservationRenderer,
    _reward_text,
    _rotation,
    _surface_to_array,
)

__all__ = [
    "RENDERERS",
    "ExactCarRacing",
    "FastCarRacing",
    "make_carracing",
    "preprocess_frame",
]

RENDERERS = ("gymnasium", "exact", "fast")


class ExactCarRacing(_ObservationRenderer):
    """CarRacing-v3 whose observations are pixel-identical to gymnasium's, drawn several times faster.

    Besides drawing less, it avoids flipping the 1000x800 window: ``smoothscale`` shrinks x first, then y, keeping
    an 8-bit intermediate, and the x pass works row by row, so the flip is done on the 96x800 intermediate. The
    dashboard covers the bottom 100 rows of the flipped window, so the scene's rows under it are not shrunk and the
    dashboard is drawn and shrunk on its own. (If an indicator bar would reach above the dashboard, the step falls
    back to flipping the whole window.)
    """

    renderer = "exact"
    _MARGIN = 8.0  # window pixels; anything this far outside the window cannot change a pixel in it
    _DASH_TOP = WINDOW_H - 5 * int(_IND_H)  # first row of the dashboard's black bar (flipped window)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        top = self._DASH_TOP
        self._window = pygame.Surface((WINDOW_W, WINDOW_H))
        self._scene_rect = pygame.Rect(0, WINDOW_H - top, WINDOW_W, top)
        self._window_scene = self._window.subsurface(self._scene_rect)
        self._dash = pygame.Surface((WINDOW_W, WINDOW_H))
        self._dash_rows = self._dash.subsurface((0, top, WINDOW_W, WINDOW_H - top))
        self._scene_x = pygame.Surface((STATE_W, top))
        self._column = pygame.Surface((STATE_W, WINDOW_H))
        self._column_dash = self._column.subsurface((0, top, STATE_W, WINDOW_H - top))
        self._state = pygame.Surface((STATE_W, STATE_H))

    def _dashboard_fits(self) -> bool:
        """True if every indicator bar stays inside the dashboard's black bar (they grow upwards with speed)."""
        car = self.car
        v = car.hull.linearVelocity
        tallest = 0.02 * math.sqrt(v[0] * v[0] + v[1] * v[1])
        for w in car.wheels:
            tallest = max(tallest, 0.01 * abs(w.omega))
        return tallest < 3.9  # the black bar is 5 units tall and a bar starts 1 unit above the bottom

    def _draw_ground(self, surf, c: float, s: float, zoom: float, trans, m: float) -> None:
        """The field, the grass and the road as gymnasium draws them, in its order, clipped to the window widened by
        ``m``."""
        # The window's first 100 rows end up under the dashboard's black bar once flipped, in every step: the
        # background need not be filled there (the polygons are still drawn in full, as gymnasium does).
        scene = self._scene_rect
        if _field_covers(c, s, zoom, trans, -m, -m, WINDOW_W + m, WINDOW_H + m):
            surf.fill(self.bg_color, scene)
        else:
            surf.fill((0, 0, 0), scene)
            x, y = _FIELD[0, :, 0], _FIELD[0, :, 1]
            field = np.stack(((c * x - s * y) * zoom + trans[0], (s * x + c * y) * zoom + trans[1]), axis=-1).tolist()
            gfxdraw.aapolygon(surf, field, self.bg_color)
            gfxdraw.filled_polygon(surf, field, self.bg_color)

        idx = self._candidates(c, s, zoom, trans, m)
        x = self._poly_x[idx]
        y = self._poly_y[idx]
        # The same operations, in the same order, as gymnasium's Vector2 rotation followed by zoom and translation.
        X = (c * x - s * y) * zoom + trans[0]
        Y = (s * x + c * y) * zoom + trans[1]
        visible = (X.max(1) >= -m) & (X.min(1) <= WINDOW_W + m) & (Y.max(1) >= -m) & (Y.min(1) <= WINDOW_H + m)
        idx = idx[visible]
        pts = np.stack((X[visible], Y[visible]), axis=-1).tolist()
        n_grass = int(np.searchsorted(idx, len(_GRASS)))
        grass_color = self.grass_color
        aapolygon = gfxdraw.aapolygon
        filled_polygon = gfxdraw.filled_polygon
        for poly in pts[:n_grass]:
            aapolygon(surf, poly, grass_color)
            filled_polygon(surf, poly, grass_color)
        colors = self._road_rgb[idx[n_grass:] - len(_GRASS)].astype(np.int64).tolist()
        for poly, color in zip(pts[n_grass:], colors):
            aapolygon(surf, poly, color)
            filled_polygon(surf, poly, color)

    def _render_state(self) -> np.ndarray:
        angle, zoom, trans = _camera(self)
        c, s = _rotation(angle)
        m = self._MARGIN
        surf = self._window
        self._draw_ground(surf, c, s, zoom, trans, m)

        X, Y, order = self._car_polygons(c, s, zoom, trans)
        car_pts = np.stack((X, Y), axis=-1).tolist()
        draw_polygon = pygame.draw.polygon
        for start, stop, color in order:
            draw_polygon(surf, color, car_pts[start:stop])
        text, rect = _reward_text(f"{self.reward:04.0f}")

        if not self._dashboard_fits():
            flipped = pygame.transform.flip(surf, False, True)
            self.surf = flipped
            self._render_indicators(WINDOW_W, WINDOW_H)
            flipped.blit(text, rect)
            pygame.transform.smoothscale(flipped, (STATE_W, STATE_H), self._state)
            return _surface_to_array(self._state)

        top = self._DASH_TOP
        pygame.transform.smoothscale(self._window_scene, (STATE_W, top), self._scene_x)
        self._column.blit(pygame.transform.flip(self._scene_x, False, True), (0, 0))
        self.surf = self._dash
        self._render_indicators(WINDOW_W, WINDOW_H)
        self._dash.blit(text, rect)
        pygame.transform.smoothscale(self._dash_rows, (STATE_W, WINDOW_H - top), self._column_dash)
        pygame.transform.smoothscale(self._column, (STATE_W, STATE_H), self._state)
        return _surface_to_array(self._state)


@lru_cache(maxsize=512)
def _small_reward_text(text: str, kx: float, ky: float) -> tuple[pygame.Surface, tuple[int, int]]:
    """The reward number shrunk by (kx, ky) and its top-left corner on a surface shrunk the same way."""
    big, rect = _reward_text(text)
    w, h = big.get_size()
    size = (max(1, round(w * kx)), max(1, round(h * ky)))
    small = pygame.transform.smoothscale(big.convert(32), size)
    return small, (round(rect.centerx * kx - size[0] / 2), round(rect.centery * ky - size[1] / 2))


class FastCarRacing(_ObservationRenderer):
    """CarRacing-v3 whose observations are drawn directly at low resolution: within a fraction of a grey level of
    gymnasium's on average, and an order of magnitude faster.

    The scene is drawn with ``pygame.draw.polygon`` onto a 192x192 surface through one affine map from world
    coordinates (gymnasium's camera, the 1000x800 window's squeeze into a square and its vertical flip folded
    together) and shrunk to 96x96 with ``smoothscale``, like gymnasium's window; so each observation pixel averages
    2x2 samples where gymnasium's averages ~10x8 anti-aliased ones. Two corrections bring it closer:

    * pygame fills polygons including their last row and column, which at this resolution makes every polygon about
      half a pixel fatter on each side than gymnasium's; edges are moved inwards by ``_SHRINK`` window pixels (grass
      squares and car parts all round, road tiles across the track only, so that consecutive tiles still meet,
      kerbs on their outer side). The value was chosen by measuring the difference to gymnasium's frames.
    * gymnasium's 1000x800 -> 96x96 ``smoothscale`` rounds down in both passes, so every level comes out 2 lower
      (flat areas exactly so), while the 2:1 shrink here is exact: 2 is subtracted at the end.

    The dashboard is gymnasium's own ``_render_indicators`` called for a 192x192 window (its geometry is linear in
    the window size) with the reward number shrunk to match.
    """

    renderer = "fast"
    _SUPERSAMPLE = 2  # 2 or 4: an integer-ratio smoothscale that keeps flat colours exact
    _MARGIN = 8.0  # window pixels, for the culling
    _SHRINK = 2.0  # window pixels

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._shrink_x = self._shrink_y = None
        self._kx = self._SUPERSAMPLE * STATE_W / WINDOW_W  # small pixels per window pixel
        self._ky = self._SUPERSAMPLE * STATE_H / WINDOW_H
        self._small = pygame.Surface((self._SUPERSAMPLE * STATE_W, self._SUPERSAMPLE * STATE_H))
        self._state = pygame.Surface((STATE_W, STATE_H))

    def _on_new_track(self) -> None:
        # Per vertex, the displacement (world units per unit of shrinkage) that moves the polygon's edges inwards.
        x, y = self._poly_x, self._poly_y
        dx = np.zeros_like(x)
        dy = np.zeros_like(y)
        g = len(_GRASS)
        dx[:g] = np.sign(self._poly_cx[:g, None] - x[:g])
        dy[:g] = np.sign(self._poly_cy[:g, None] - y[:g])
        rx, ry = x[g:], y[g:]
        tile = self._road_is_tile
        for a, b in ((0, 1), (3, 2)):  # (left, right) vertex pairs: tiles [l1, r1, r2, l2], kerbs [in, out, out, in]
            ux, uy = rx[:, b] - rx[:, a], ry[:, b] - ry[:, a]
            n = np.hypot(ux, uy)
            n[n == 0] = 1.0
            ux, uy = ux / n, uy / n
            dx[g:, a] = np.where(tile, ux, 0.0)
            dy[g:, a] = np.where(tile, uy, 0.0)
            dx[g:, b] = -ux
            dy[g:, b] = -uy
        self._shrink_x, self._shrink_y = dx, dy

    def _render_state(self) -> np.ndarray:
        angle, zoom, trans = _camera(self)
        c, s = _rotation(angle)
        kx, ky = self._kx, self._ky
        # window (pre-flip) X = zoom*(c*x - s*y) + tx, Y = zoom*(s*x + c*y) + ty;  small u = kx*X, v = ky*(H - Y)
        ax, bx, ex = kx * zoom * c, -kx * zoom * s, kx * trans[0]
        ay, by, ey = -ky * zoom * s, -ky * zoom * c, ky * (WINDOW_H - trans[1])
        surf = self._small
        su, sv = surf.get_size()
        m = self._MARGIN
        if _field_covers(c, s, zoom, trans, -m, -m, WINDOW_W + m, WINDOW_H + m):
            surf.fill(self.bg_color)
        else:
            surf.fill((0, 0, 0))
            x, y = _FIELD[0, :, 0], _FIELD[0, :, 1]
            field = np.stack((ax * x + bx * y + ex, ay * x + by * y + ey), axis=-1).tolist()
            pygame.draw.polygon(surf, self.bg_color, field)

        idx = self._candidates(c, s, zoom, trans, m)
        shrink = self._SHRINK / zoom  # world units
        x = self._poly_x[idx] + shrink * self._shrink_x[idx]
        y = self._poly_y[idx] + shrink * self._shrink_y[idx]
        pts = np.stack((ax * x + bx * y + ex, ay * x + by * y + ey), axis=-1).tolist()
        n_grass = int(np.searchsorted(idx, len(_GRASS)))
        draw_polygon = pygame.draw.polygon
        grass_color = [int(v) for v in self.grass_color]
        for poly in pts[:n_grass]:
            draw_polygon(surf, grass_color, poly)
        colors = self._road_rgb[idx[n_grass:] - len(_GRASS)].astype(np.int64).tolist()
        for poly, color in zip(pts[n_grass:], colors):
            draw_polygon(surf, color, poly)

        X, Y, order = self._car_polygons(c, s, zoom, trans, shrink)
        car_pts = np.stack((kx * X, ky * (WINDOW_H - Y)), axis=-1).tolist()
        for start, stop, color in order:
            draw_polygon(surf, color, car_pts[start:stop])

        # gymnasium's dashboard is linear in the window size: drawn for a (su, sv) window it is the shrunk one.
        self.surf = surf
        self._render_indicators(su, sv)
        text, at = _small_reward_text(f"{self.reward:04.0f}", kx, ky)
        surf.blit(text, at)
        state = self._state
        pygame.transform.smoothscale(surf, (STATE_W, STATE_H), state)
        state.fill((2, 2, 2), special_flags=pygame.BLEND_RGB_SUB)  # gymnasium's rounding, see the class doc
        return _surface_to_array(state)


def _spec_for(cls) -> gym.envs.registration.EnvSpec:
    """gymnasium's CarRacing-v3 spec (time limit, wrappers, reward threshold) with our class as entry point."""
    base = gym.spec(_GYM_ID)
    return dataclasses.replace(base, id=f"CarRacing{cls.renderer.capitalize()}-v3", entry_point=cls)


def make_carracing(renderer: str = "fast", **kwargs) -> gym.Env:
    """CarRacing-v3 with the chosen observation renderer: ``"gymnasium"`` (gymnasium's own), ``"exact"``
    (pixel-identical, faster) or ``"fast"`` (low-resolution, fastest).

    ``kwargs`` go to the environment (``continuous``, ``domain_randomize``, ``lap_complete_percent``,
    ``render_mode``, ``verbose``) or to ``gymnasium.make`` (``max_episode_steps``, ...). All three get the same
    wrappers as ``gymnasium.make("CarRacing-v3")``, so a 1000-step time limit truncates episodes in each.
    """
    if renderer == "gymnasium":
        return gym.make(_GYM_ID, **kwargs)
    if renderer == "exact":
        return gym.make(_spec_for(ExactCarRacing), **kwargs)
    if renderer == "fast":
        return gym.make(_spec_for(FastCarRacing), **kwargs)
    raise ValueError(f"unknown CarRacing renderer {renderer!r}; valid renderers: {', '.join(RENDERERS)}")


def preprocess_frame(obs: np.ndarray) -> np.ndarray:
    """The project's 64x64 frame: rows 0:84 of the 96x96 observation (the dashboard dropped), resized to 64x64
    with PIL's bilinear filter. Returns uint8 (64, 64, 3)."""
    obs = np.asarray(obs, dtype=np.uint8)
    if obs.shape != (STATE_H, STATE_W, 3):
        raise ValueError(f"expected a ({STATE_H}, {STATE_W}, 3) frame, got {obs.shape}")
    # PIL reads the rows straight from the array's memory and hands the result back as bytes: half the time of
    # Image.fromarray / np.array, which copy twice each way (same pixels).
    img = Image.frombuffer("RGB", (STATE_W, 84), np.ascontiguousarray(obs[:84]), "raw", "RGB", 0, 1)
    return np.frombuffer(img.resize((64, 64), Image.BILINEAR).tobytes(), np.uint8).reshape(64, 64, 3).copy()
