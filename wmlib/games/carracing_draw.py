"""Drawing machinery shared by the CarRacing observation renderers.

Holds gymnasium's scene geometry as arrays (the background square, the grass grid, the dashboard's geometry), the
helpers that reproduce its camera, rotation and reward text exactly, and :class:`_ObservationRenderer`, the
``CarRacing`` subclass that keeps the track and car geometry as numpy arrays, culls polygons and replaces
``_render("state_pixels")``. The renderers themselves and the overview are in :mod:`wmlib.games.carracing_render`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pygame
from gymnasium.envs.box2d import car_dynamics as _cd
from gymnasium.envs.box2d.car_racing import (
    GRASS_DIM,
    PLAYFIELD,
    SCALE,
    WINDOW_H,
    WINDOW_W,
    ZOOM,
    CarRacing,
)

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
            self._car_geometry(car)
        bodies = car.drawlist
        xf = np.empty((len(bodies), 4), dtype=np.float32)
        for k, body in enumerate(bodies):
            t = body.transform
            p = t.position
            xf[k] = (t.q.c, t.q.s, p[0], p[1])
        white, white_owner, white_at = self._wheel_marks(bodies)
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

    def _car_geometry(self, car) -> None:
        """The car's polygons in body coordinates (float32, as Box2D keeps them), their inset directions, the body
        each vertex belongs to and the drawing order's slices: made once per car."""
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

    def _wheel_marks(self, bodies) -> tuple[list, list, dict]:
        """The wheels' white marks (gymnasium's Car.draw): local quads that depend on each wheel's phase. Returns
        their vertices, the body of each, and where each wheel's quad starts among all the car's vertices."""
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
        return white, white_owner, white_at

    def _candidates(self, c: float, s: float, zoom: float, trans, margin: float) -> np.ndarray:
        """Indices of the polygons whose bounding circle meets gymnasium's (pre-flip) window widened by ``margin``
        window pixels: a cheap superset of the polygons that can touch the window."""
        xc = (c * self._poly_cx - s * self._poly_cy) * zoom + (trans[0] - WINDOW_W / 2)
        yc = (s * self._poly_cx + c * self._poly_cy) * zoom + (trans[1] - WINDOW_H / 2)
        r = self._poly_r * zoom
        return np.flatnonzero((np.abs(xc) <= r + (WINDOW_W / 2 + margin)) & (np.abs(yc) <= r + (WINDOW_H / 2 + margin)))

    def _render(self, mode: str):
        if mode == "state_pixels" and "t" in self.__dict__ and self.car is not None:
            self._sync_geometry()
            return self._render_state()
        return super()._render(mode)

    def _render_state(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError
