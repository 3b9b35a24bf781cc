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
from gymnasium.envs.box2d import car_dynamics as _cd
from gymnasium.envs.box2d.car_racing import (
    GRASS_DIM,
    PLAYFIELD,
    SCALE,
    STATE_H,
    STATE_W,
    WINDOW_H,
    WINDOW_W,
    ZOOM,
    CarRacing,
)
from PIL import Image

import pygame
from pygame import gfxdraw

__all__ = [
    "RENDERERS",
    "ExactCarRacing",
    "FastCarRacing",
    "make_carracing",
    "preprocess_frame",
]

RENDERERS = ("gymnasium", "exact", "fast")

_GYM_ID = "CarRacing-v3"
_TWO_PI = 2.0 * math.pi
_HALF_PI = 0.5 * math.pi
_ROT_EPSILON = 1e-6  # pygame's default Vector2 epsilon

# The background square and the 20x20 grid of grass squares, in gymnasium's order and with its arithmetic.
_FIELD = np.array(
    [[(PLAYFIELD, PLAYFIELD), (PLAYFIELD, -PLAYFIELD), (-PLAYFIELD, -PLAYFIELD), (-PLAYFIELD, PLAYFIELD)]],
    dtype=np.float64,
)
_GRASS = np.array(
    [
        [
            (GRASS_DIM * x + GRASS_DIM, GRASS_DIM * y + 0),
            (GRASS_DIM * x + 0, GRASS_DIM * y + 0),
            (GRASS_DIM * x + 0, GRASS_DIM * y + GRASS_DIM),
            (GRASS_DIM * x + GRASS_DIM, GRASS_DIM * y + GRASS_DIM),
        ]
        for x in range(-20, 20, 2)
        for y in range(-20, 20, 2)
    ],
    dtype=np.float64,
)

# Dashboard geometry (in the final, flipped 1000x800 window): unit height of its bars, reward text position.
_IND_H = WINDOW_H / 40.0
_TEXT_CENTER = (60, WINDOW_H - WINDOW_H * 2.5 / 40.0)


def _rotation(angle: float) -> tuple[float, float]:
    """(cos, sin) exactly as ``pygame.math.Vector2.rotate_rad`` uses them (angle reduced to [0, 2pi), and exact
    quarter turns within pygame's epsilon), so that ``c*x - s*y, s*x + c*y`` matches it bit for bit."""
    a = math.fmod(angle, _TWO_PI)
    if a < 0:
        a += _TWO_PI
    if math.fmod(a + _ROT_EPSILON, _HALF_PI) < 2 * _ROT_EPSILON:
        quarter = int((a + _ROT_EPSILON) / _HALF_PI) % 4
        return ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))[quarter]
    return math.cos(a), math.sin(a)


def _camera(env: CarRacing) -> tuple[float, float, tuple[float, float]]:
    """gymnasium's camera for the current step: (angle, zoom, translation), computed with its expressions."""
    hull = env.car.hull
    angle = -hull.angle
    zoom = 0.1 * SCALE * max(1 - env.t, 0) + ZOOM * SCALE * min(env.t, 1)
    scroll_x = -(hull.position[0]) * zoom
    scroll_y = -(hull.position[1]) * zoom
    trans = pygame.math.Vector2((scroll_x, scroll_y)).rotate_rad(angle)
    return angle, zoom, (WINDOW_W / 2 + trans[0], WINDOW_H / 4 + trans[1])


def _field_covers(c: float, s: float, zoom: float, trans, x0, y0, x1, y1) -> bool:
    """True if the screen rectangle [x0, x1] x [y0, y1] (gymnasium's pre-flip window pixels) lies inside the
    background square, i.e. drawing the background is the same as filling the screen with its colour."""
    if zoom <= 0:
        return False
    for qx in (x0, x1):
        for qy in (y0, y1):
            dx = (qx - trans[0]) / zoom
            dy = (qy - trans[1]) / zoom
            if abs(c * dx + s * dy) >= PLAYFIELD or abs(c * dy - s * dx) >= PLAYFIELD:
                return False
    return True


_FONT: list[pygame.font.Font] = []  # gymnasium's dashboard font, loaded once (again after a pygame.quit())


def _font() -> pygame.font.Font:
    if not pygame.font.get_init():
        pygame.font.init()
        _FONT.clear()
    if not _FONT:
        _FONT.append(pygame.font.Font(pygame.font.get_default_font(), 42))
    return _FONT[0]


@lru_cache(maxsize=512)
def _reward_text(text: str) -> tuple[pygame.Surface, pygame.Rect]:
    """The dashboard's reward number as gymnasium draws it: surface and destination rectangle (kept, since the
    number changes every few steps only)."""
    surf = _font().render(text, True, (255, 255, 255), (0, 0, 0))
    rect = surf.get_rect()
    rect.center = _TEXT_CENTER
    return surf, rect


def _inset_directions(poly: np.ndarray) -> np.ndarray:
    """For a convex polygon (k, 2): per vertex, the displacement that moves every edge inwards by one unit."""
    e = np.roll(poly, -1, axis=0) - poly  # edge i: vertex i -> i+1
    e /= np.maximum(np.hypot(e[:, 0], e[:, 1]), 1e-12)[:, None]
    area2 = float(np.sum(poly[:, 0] * np.roll(poly[:, 1], -1) - np.roll(poly[:, 0], -1) * poly[:, 1]))
    sign = 1.0 if area2 > 0 else -1.0
    n = sign * np.stack((-e[:, 1], e[:, 0]), axis=1)  # inward unit normals
    prev = np.roll(n, 1, axis=0)  # normal of the edge ending at vertex i
    return (prev + n) / np.maximum(1.0 + np.sum(prev * n, axis=1), 0.2)[:, None]


def _surface_to_array(surf: pygame.Surface) -> np.ndarray:
    """(h, w, 3) uint8 copy of a surface's pixels, row-major like gymnasium's observation."""
    w, h = surf.get_size()
    return np.frombuffer(pygame.image.tobytes(surf, "RGB"), dtype=np.uint8).reshape(h, w, 3).copy()


class _ObservationRenderer(CarRacing):
    """gymnasium's CarRacing with ``_render("state_pixels")`` replaced; everything else is inherited."""

    renderer = ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._geometry_of = None  # the road_poly list the arrays below were built from
        self._poly_x = self._poly_y = None  # (P, 4) vertex coordinates of the grass, then the road polygons
        self._poly_cx = self._poly_cy = self._poly_r = None  # (P,) bounding circles, for culling
        self._road_rgb = None  # (R, 3) float colours of road_poly; tiles' ``color`` are views into it
        self._car_of = None  # the Car the local car geometry below was read from
        self._car_local = self._car_owner = self._car_parts = None

    # -- geometry, rebuilt whenever reset() made a new track ------------------------------------------------------

    def _sync_geometry(self) -> None:
        polys = self.road_poly
        if self._geometry_of is polys:
            return
        road = np.array([p for p, _ in polys], dtype=np.float64).reshape(len(polys), 4, 2)
        verts = np.concatenate([_GRASS, road])
        self._poly_x = np.ascontiguousarray(verts[..., 0])
        self._poly_y = np.ascontiguousarray(verts[..., 1])
        self._poly_cx = self._poly_x.mean(axis=1)
        self._poly_cy = self._poly_y.mean(axis=1)
        self._poly_r = np.sqrt(
            ((self._poly_x - self._poly_cx[:, None]) ** 2 + (self._poly_y - self._poly_cy[:, None]) ** 2).max(axis=1)
        )
        # Road tiles change colour in place when the car touches them (gymnasium's contact listener writes
        # ``tile.color[:] = road_color``). Making each tile's colour array a row of one (R, 3) array lets the
        # renderer read all colours at once; values, dtype and the listener's in-place write are unchanged.
        rgb = np.array([np.asarray(col, dtype=np.float64) for _, col in polys]).reshape(len(polys), 3)
        is_tile = np.zeros(len(polys), dtype=bool)  # else a red or white kerb
        tile_of = {id(t.color): t for t in self.road}
        for k, (p, col) in enumerate(polys):
            tile = tile_of.get(id(col))
            if tile is not None:
                tile.color = rgb[k]
                polys[k] = (p, tile.color)
                is_tile[k] = True
        self._road_rgb = rgb
        self._road_is_tile = is_tile
        self._geometry_of = polys
        self._on_new_track()

    def _on_new_track(self) -> None:
        pass

    def _car_polygons(
        self, c: float, s: float, zoom: float, trans, shrink: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray, list]:
        """The car's polygons as gymnasium's ``Car.draw`` computes them, in its drawing order: the body transform
        in float32 (bit-identical to Box2D's ``transform * vertex``), then the camera in float64.

        Returns window x and y of all vertices (pre-flip) and a list of (start, stop, colour) slices into them.
        """
        car = self.car
        if self._car_of is not car:
            local, owner, parts = [], [], []
            for k, obj in enumerate(car.drawlist):
                color = [int(v * 255) for v in obj.color]
                for f in obj.fixtures:
                    verts = f.shape.vertices
                    parts.append((len(local), len(local) + len(verts), color, k if "phase" in obj.__dict__ else -1))
                    local.extend(verts)
                    owner.extend([k] * len(verts))
            self._car_local = np.array(local, dtype=np.float32).reshape(-1, 2)
            self._car_inset = np.concatenate(
                [_inset_directions(self._car_local[a:b].astype(np.float64)) for a, b, _, _ in parts]
            )
            self._car_owner = np.array(owner, dtype=np.intp)
            self._car_parts = parts
            self._car_of = car

        bodies = car.drawlist
        xf = np.empty((len(bodies), 4), dtype=np.float32)
        for k, body in enumerate(bodies):
            t = body.transform
            p = t.position
            xf[k] = (t.q.c, t.q.s, p[0], p[1])
        # The wheels' white marks (gymnasium's Car.draw): local quads that depend on each wheel's phase.
        white, white_owner, white_at = [], [], {}
        ww = _cd.WHEEL_W * _cd.SIZE
        for k, obj in enumerate(bodies):
            if "phase" not in obj.__dict__:
                continue
            a1 = obj.phase
            a2 = obj.phase + 1.2
            s1, s2, c1, c2 = math.sin(a1), math.sin(a2), math.cos(a1), math.cos(a2)
            if s1 > 0 and s2 > 0:
                continue
            if s1 > 0:
                c1 = np.sign(c1)
            if s2 > 0:
                c2 = np.sign(c2)
            y1 = +_cd.WHEEL_R * c1 * _cd.SIZE
            y2 = +_cd.WHEEL_R * c2 * _cd.SIZE
            white_at[k] = len(self._car_local) + len(white)
            white.extend(((-ww, y1), (+ww, y1), (+ww, y2), (-ww, y2)))
            white_owner.extend((k, k, k, k))
        local = self._car_local
        if shrink:
            local = (local + shrink * self._car_inset).astype(np.float32)
        if white:
            local = np.concatenate([local, np.array(white, dtype=np.float32)])
            owner = np.concatenate([self._car_owner, np.array(white_owner, dtype=np.intp)])
        else:
            owner = self._car_owner
        q = xf[owner]
        lx, ly = local[:, 0], local[:, 1]
        wx = ((q[:, 0] * lx - q[:, 1] * ly) + q[:, 2]).astype(np.float64)
        wy = ((q[:, 1] * lx + q[:, 0] * ly) + q[:, 3]).astype(np.float64)
        X = (c * wx - s * wy) * zoom + trans[0]
        Y = (s * wx + c * wy) * zoom + trans[1]
        order = []
        for start, stop, color, k in self._car_parts:
            order.append((start, stop, color))
            if k in white_at:
                order.append((white_at[k], white_at[k] + 4, _cd.WHEEL_WHITE))
        return X, Y, order

    def _candidates(self, c: float, s: float, zoom: float, trans, margin: float) -> np.ndarray:
        """Indices of the polygons whose bounding circle meets gymnasium's (pre-flip) window widened by ``margin``
        window pixels: a cheap superset of the polygons that can touch the window."""
        xc = (c * self._poly_cx - s * self._poly_cy) * zoom + (trans[0] - WINDOW_W / 2)
        yc = (s * self._poly_cx + c * self._poly_cy) * zoom + (trans[1] - WINDOW_H / 2)
        r = self._poly_r * zoom
        return np.flatnonzero(
            (np.abs(xc) <= r + (WINDOW_W / 2 + margin)) & (np.abs(yc) <= r + (WINDOW_H / 2 + margin))
        )

    def _render(self, mode: str):
        if mode == "state_pixels" and "t" in self.__dict__ and self.car is not None:
            self._sync_geometry()
            return self._render_state()
        return super()._render(mode)

    def _render_state(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


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

    def _render_state(self) -> np.ndarray:
        angle, zoom, trans = _camera(self)
        c, s = _rotation(angle)
        m = self._MARGIN
        surf = self._window
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
    img = Image.fromarray(np.ascontiguousarray(obs[:84]))
    return np.array(img.resize((64, 64), Image.BILINEAR), dtype=np.uint8)
