"""The exact and fast CarRacing renderers against gymnasium's own CarRacing-v3.

Every comparison runs gymnasium's env and ours side by side on the same seed and the same actions. The exact level
must give the same observation on every step (``np.array_equal``); the fast level must stay within a mean absolute
difference of 2 grey levels after the project's 64x64 preprocessing, with flat regions (road, grass, tiles) the same
colour in the same places. Rewards, terminations, truncations and infos must be identical for all three.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.box2d.car_racing import CarRacing
from PIL import Image

from wmlib.games.carracing_render import (
    RENDERERS,
    ExactCarRacing,
    FastCarRacing,
    make_carracing,
    preprocess_frame,
)

SEEDS = (0, 1, 3, 4)
N_STEPS = 250  # per seed; gymnasium's env does ~100-150 steps/s here
FAST_MEAN_TOL = 2.0  # mean |difference| per frame after preprocessing, grey levels (of 255)


# -- helpers -----------------------------------------------------------------------------------------------------------


def held_random_actions(seed: int, n: int) -> np.ndarray:
    """Random (steer, gas, brake) actions, each held for 5-30 steps: sustained turns, bursts of throttle and braking,
    so that the car spins, leaves the track and drives on the grass."""
    rng = np.random.default_rng(1000 + seed)
    out = []
    while len(out) < n:
        steer = rng.uniform(-1, 1)
        gas = rng.uniform(0, 1)
        brake = rng.uniform(0, 0.8) if rng.random() < 0.2 else 0.0
        out.extend([(steer, gas, brake)] * int(rng.integers(5, 31)))
    return np.array(out[:n], dtype=np.float32)


class MixedDriver:
    """Alternates stretches of track following with held random actions: the car drives along the road (visiting
    tiles, which changes their colour), spins, leaves the track, drives on the grass and comes back."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(2000 + seed)
        self.left = 0
        self.held = None

    def __call__(self, env: gym.Env) -> np.ndarray:
        if self.left == 0:
            if self.rng.random() < 0.6:
                self.left, self.held = int(self.rng.integers(40, 81)), None
            else:
                self.left = int(self.rng.integers(8, 19))
                steer = self.rng.choice((-1, 1)) * self.rng.uniform(0.5, 1.0)
                self.held = np.array([steer, self.rng.uniform(0.5, 1.0), 0.0], dtype=np.float32)
        self.left -= 1
        return pursuit_action(env) if self.held is None else self.held


def mean_diff_64(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(preprocess_frame(a).astype(np.int16) - preprocess_frame(b)).mean())


def flat_mismatch(reference: np.ndarray, other: np.ndarray, tol: int = 3) -> float:
    """Fraction of the reference's flat pixels (all 8 neighbours within 2 levels: inside road, grass, tiles, car) that
    differ by more than ``tol`` in ``other``, on the 64x64 preprocessed frames. Edges are excluded: there the two
    renderers anti-alias differently."""
    ref = preprocess_frame(reference).astype(np.int16)
    oth = preprocess_frame(other).astype(np.int16)
    h, w, _ = ref.shape
    pad = np.pad(ref, ((1, 1), (1, 1), (0, 0)), mode="edge")
    flat = np.ones((h, w), dtype=bool)
    for dy in range(3):
        for dx in range(3):
            flat &= np.abs(pad[dy : dy + h, dx : dx + w] - ref).max(axis=2) <= 2
    bad = np.abs(ref - oth).max(axis=2) > tol
    return float(bad[flat].mean()) if flat.any() else 0.0


def on_grass(env: gym.Env) -> bool:
    return not any(w.tiles for w in env.unwrapped.car.wheels)


def pursuit_action(env: gym.Env) -> np.ndarray:
    """A simple track-following driver (steer towards a point a few tiles ahead, slow down before turns)."""
    u = env.unwrapped
    car = u.car
    pos = np.array(car.hull.position)
    pts = np.array([(t[2], t[3]) for t in u.track])
    i = int(np.argmin(((pts - pos) ** 2).sum(1)))
    n = len(pts)
    d = pts[(i + 6) % n] - pos
    fwd = np.array(car.hull.GetWorldVector((0, 1)))
    err = math.atan2(fwd[0] * d[1] - fwd[1] * d[0], fwd @ d)
    turn = abs((u.track[(i + 20) % n][1] - u.track[i][1] + math.pi) % (2 * math.pi) - math.pi)
    target = 110.0 - 60.0 * min(turn, 1.0)
    speed = float(np.hypot(*car.hull.linearVelocity))
    return np.array(
        [np.clip(-2.0 * err, -1, 1), 0.8 if speed < target else 0.0, 0.5 if speed > target + 10 else 0.0],
        dtype=np.float32,
    )


class Lockstep:
    """gymnasium's env and ours, reset and stepped together; records what the tests check."""

    def __init__(self, renderers=("exact", "fast"), **kwargs):
        self.names = ("gymnasium", *renderers)
        self.envs = {name: make_carracing(name, **kwargs) for name in self.names}
        self.steps = 0

    def reset(self, **kwargs):
        out = {name: env.reset(**kwargs) for name, env in self.envs.items()}
        self._check(out, reset=True)
        return out

    def step(self, action):
        out = {name: env.step(action) for name, env in self.envs.items()}
        self._check(out, reset=False)
        self.steps += 1
        return out

    def _check(self, out, reset):
        ref = out["gymnasium"]
        self.obs = {name: r[0] for name, r in out.items()}
        for name in self.names[1:]:
            got = out[name]
            assert got[0].shape == (96, 96, 3) and got[0].dtype == np.uint8
            if reset:
                assert got[1] == ref[1], (name, "reset info")
            else:
                assert got[1:] == ref[1:], (name, self.steps, got[1:], ref[1:])
        self.gym_obs = ref[0]

    def close(self):
        for env in self.envs.values():
            env.close()


# -- interface ---------------------------------------------------------------------------------------------------------


def test_renderers_and_unknown_renderer():
    assert RENDERERS == ("gymnasium", "exact", "fast")
    with pytest.raises(ValueError, match="gymnasium, exact, fast"):
        make_carracing("opengl")


def test_preprocess_frame_shape_dtype_and_definition():
    frame = np.random.default_rng(0).integers(0, 256, size=(96, 96, 3), dtype=np.uint8)
    out = preprocess_frame(frame)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    expected = np.asarray(Image.fromarray(frame[:84]).resize((64, 64), Image.BILINEAR))
    assert np.array_equal(out, expected)
    # a non-contiguous view (gymnasium's observation is a transposed array) gives the same result
    assert np.array_equal(preprocess_frame(np.asfortranarray(frame)), expected)
    with pytest.raises(ValueError):
        preprocess_frame(frame[:84])


def test_rotation_matches_pygame_vector2():
    """The exact renderer's vectorised rotation is bit-identical to ``Vector2.rotate_rad``, quarter turns included."""
    import pygame

    from wmlib.games.carracing_draw import _rotation

    rng = np.random.default_rng(0)
    quarter = [k * math.pi / 2 + d for k in range(-8, 9) for d in (0.0, 1e-7, -1e-7, 9e-7, -9e-7, 3e-6, -3e-6)]
    for angle in [*rng.uniform(-20, 20, 200), *quarter]:
        pts = rng.uniform(-400, 400, size=(8, 2))
        c, s = _rotation(float(angle))
        got = np.stack((c * pts[:, 0] - s * pts[:, 1], s * pts[:, 0] + c * pts[:, 1]), axis=1)
        want = np.array([tuple(pygame.math.Vector2(tuple(p)).rotate_rad(float(angle))) for p in pts])
        assert np.array_equal(got, want), angle


@pytest.mark.parametrize("renderer", RENDERERS)
def test_same_wrappers_spaces_and_time_limit(renderer):
    env = make_carracing(renderer)
    ref = gym.make("CarRacing-v3")
    try:
        assert env.spec.max_episode_steps == ref.spec.max_episode_steps == 1000
        assert isinstance(env, gym.wrappers.TimeLimit)
        assert [type(w) for w in _wrapper_chain(env)] == [type(w) for w in _wrapper_chain(ref)]
        assert isinstance(env.unwrapped, CarRacing)
        assert env.observation_space == ref.observation_space
        assert env.action_space == ref.action_space
    finally:
        env.close()
        ref.close()
    discrete = make_carracing(renderer, continuous=False)
    assert discrete.action_space == gym.spaces.Discrete(5)
    discrete.close()
    assert type(make_carracing("exact").unwrapped) is ExactCarRacing
    assert type(make_carracing("fast").unwrapped) is FastCarRacing


def _wrapper_chain(env):
    chain = []
    while isinstance(env, gym.Wrapper):
        chain.append(env)
        env = env.env
    return chain


@pytest.mark.parametrize("renderer", ["exact", "fast"])
def test_truncated_after_1000_steps(renderer):
    env = make_carracing(renderer)
    env.reset(seed=7)
    action = np.zeros(3, dtype=np.float32)  # standing still: never terminates
    for i in range(1000):
        _, _, terminated, truncated, _ = env.step(action)
        assert not terminated
        assert truncated == (i == 999)
    env.close()


# -- side by side with gymnasium ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_episodes():
    """Per seed: exact equality per step, fast differences per step, how much of the episode was on grass/turning
    and how many tiles were visited."""
    results = {}
    for seed in SEEDS:
        run = Lockstep()
        run.reset(seed=seed)
        rec = {"exact_equal": [np.array_equal(run.obs["exact"], run.gym_obs)], "fast_mean": [], "fast_flat": []}
        rec["fast_mean"].append(mean_diff_64(run.obs["fast"], run.gym_obs))
        grass = turning = 0
        driver = MixedDriver(seed)
        for _ in range(N_STEPS):
            run.step(driver(run.envs["gymnasium"]))
            rec["exact_equal"].append(np.array_equal(run.obs["exact"], run.gym_obs))
            rec["fast_mean"].append(mean_diff_64(run.obs["fast"], run.gym_obs))
            rec["fast_flat"].append(flat_mismatch(run.gym_obs, run.obs["fast"]))
            car = run.envs["gymnasium"].unwrapped.car
            grass += on_grass(run.envs["gymnasium"])
            turning += abs(car.hull.angularVelocity) > 0.5
        rec["grass"], rec["turning"] = grass, turning
        rec["tiles"] = run.envs["gymnasium"].unwrapped.tile_visited_count
        rec["dashboard"] = float(np.abs(run.obs["fast"][84:].astype(np.int16) - run.gym_obs[84:]).mean())
        run.close()
        results[seed] = rec
    return results


@pytest.mark.parametrize("seed", SEEDS)
def test_exact_is_pixel_identical(random_episodes, seed):
    equal = random_episodes[seed]["exact_equal"]
    assert len(equal) == N_STEPS + 1
    assert all(equal), f"first differing step: {equal.index(False)}"


@pytest.mark.parametrize("seed", SEEDS)
def test_fast_is_close(random_episodes, seed):
    rec = random_episodes[seed]
    means = np.array(rec["fast_mean"])
    assert means.max() <= FAST_MEAN_TOL, f"step {means.argmax()}: {means.max():.2f}"
    assert means.mean() <= 1.0
    # structure: flat areas (road, grass, kerbs, car) have the same colour in the same places
    assert max(rec["fast_flat"]) <= 0.03
    # the dashboard is there in a recognisable form
    assert rec["dashboard"] <= 8.0


@pytest.mark.parametrize("seed", SEEDS)
def test_episodes_cover_road_grass_and_turning(random_episodes, seed):
    rec = random_episodes[seed]
    assert rec["grass"] >= 20
    assert rec["turning"] >= 20
    assert rec["tiles"] >= 15


def test_drive_off_the_playfield():
    """Straight on until the car leaves the playfield: -100 and termination in all three; the black outside the
    playfield is drawn the same."""
    run = Lockstep()
    run.reset(seed=4)
    action = np.array([0.0, 0.4, 0.0], dtype=np.float32)
    saw_outside = False
    for _ in range(400):
        out = run.step(action)
        assert np.array_equal(run.obs["exact"], run.gym_obs)
        assert mean_diff_64(run.obs["fast"], run.gym_obs) <= FAST_MEAN_TOL
        saw_outside |= bool((run.gym_obs[:84].max(axis=2) == 0).any())
        if out["gymnasium"][2]:
            break
    reward, terminated, _, info = out["gymnasium"][1:]
    assert terminated and reward == -100 and info == {"lap_finished": False}
    assert saw_outside
    run.close()


def test_lap_finished():
    """A driver that completes a lap: same rewards, termination step and ``lap_finished`` info in all three."""
    run = Lockstep()
    run.reset(seed=3)
    gym_env = run.envs["gymnasium"]
    total = 0.0
    for _ in range(1000):
        out = run.step(pursuit_action(gym_env))
        total += out["gymnasium"][1]
        assert np.array_equal(run.obs["exact"], run.gym_obs)
        assert mean_diff_64(run.obs["fast"], run.gym_obs) <= FAST_MEAN_TOL
        if out["gymnasium"][2] or out["gymnasium"][3]:
            break
    assert out["gymnasium"][2] and out["gymnasium"][4] == {"lap_finished": True}
    assert total > 800
    run.close()


def test_exact_dashboard_fallback(monkeypatch):
    """The whole-window path the exact renderer takes when an indicator bar reaches above the dashboard."""
    monkeypatch.setattr(ExactCarRacing, "_dashboard_fits", lambda self: False)
    run = Lockstep(renderers=("exact",))
    run.reset(seed=5)
    for action in held_random_actions(5, 60):
        run.step(action)
        assert np.array_equal(run.obs["exact"], run.gym_obs)
    run.close()


def test_domain_randomize_and_repeated_resets():
    """Random colours (float RGB), reset options, and several tracks on the same env instances."""
    run = Lockstep(domain_randomize=True)
    for ep, options in enumerate((None, {"randomize": False}, {"randomize": True})):
        run.reset(seed=20 + ep, options=options)
        assert np.array_equal(run.obs["exact"], run.gym_obs)
        for action in held_random_actions(20 + ep, 60):
            run.step(action)
            assert np.array_equal(run.obs["exact"], run.gym_obs)
            assert mean_diff_64(run.obs["fast"], run.gym_obs) <= FAST_MEAN_TOL
            assert flat_mismatch(run.gym_obs, run.obs["fast"]) <= 0.03
    run.close()


def test_discrete_actions():
    run = Lockstep(continuous=False)
    run.reset(seed=6)
    rng = np.random.default_rng(6)
    for _ in range(80):
        run.step(int(rng.integers(5)))
        assert np.array_equal(run.obs["exact"], run.gym_obs)
        assert mean_diff_64(run.obs["fast"], run.gym_obs) <= FAST_MEAN_TOL
    run.close()


def test_rgb_array_render_is_gymnasiums():
    """``render_mode="rgb_array"`` keeps gymnasium's big picture, unchanged (tile colours included)."""
    run = Lockstep(render_mode="rgb_array")
    run.reset(seed=1)
    for action in held_random_actions(1, 30):
        run.step(action)
    frames = {name: env.render() for name, env in run.envs.items()}
    assert frames["gymnasium"].shape == (400, 600, 3)
    assert np.array_equal(frames["exact"], frames["gymnasium"])
    assert np.array_equal(frames["fast"], frames["gymnasium"])
    run.close()
