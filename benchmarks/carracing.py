"""CarRacing-v3 speed and pixel fidelity: gymnasium's renderer against our ``exact`` and ``fast`` ones.

    python benchmarks/carracing.py                      # ~1 minute: 3 seeds x 300 steps, 3 repeats
    python benchmarks/carracing.py --repeats 5 --steps 1000

All three environments come from ``wmlib.games.carracing_render.make_carracing`` (so the same gymnasium wrappers
are included) and replay the same seeds and the same actions: the actions are recorded once from a driver that
alternates track following with hard random turns (so the car drives on the road, spins and crosses the grass), and
since the physics is gymnasium's in all three, every renderer sees the same trajectories. Each repeat times every
renderer once, in rotating order; the table reports the median steps/s (wall clock, plus CPU time of the stepping
thread, which is less disturbed by other programs on the machine) and the ratio to gymnasium.

A second, untimed pass steps the three side by side and measures the pixel differences: the largest absolute
difference of ``exact`` (0 = pixel-identical) and the mean absolute difference of ``fast`` after the project's 64x64
preprocessing. Results go to ``benchmarks/results/carracing.json``; one frame of each renderer (the step that
shows most road and kerb, upscaled 4x) goes to ``benchmarks/results/carracing_{gymnasium,exact,fast}.png``, and the
three side by side with the fast-vs-gymnasium difference (x4) to ``carracing_compare.png``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from common import RESULTS, Timer, arg_parser, machine, median, write_results  # first: wmlib from a checkout
from PIL import Image

from wmlib.games.carracing_render import RENDERERS, make_carracing, preprocess_frame


def driver_actions(env, seed: int, n: int) -> np.ndarray:
    """Record ``n`` actions on ``env`` (reset with ``seed``): stretches of following the track interleaved with
    held hard turns at random throttle."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    u = env.unwrapped
    pts = np.array([(t[2], t[3]) for t in u.track])
    actions, left, held = [], 0, None
    for _ in range(n):
        if left == 0:
            if rng.random() < 0.6:
                left, held = int(rng.integers(40, 81)), None
            else:
                left = int(rng.integers(8, 19))
                held = np.array([rng.choice((-1, 1)) * rng.uniform(0.5, 1), rng.uniform(0.5, 1), 0], np.float32)
        left -= 1
        if held is None:
            car = u.car
            pos = np.array(car.hull.position)
            i = int(np.argmin(((pts - pos) ** 2).sum(1)))
            d = pts[(i + 6) % len(pts)] - pos
            fwd = np.array(car.hull.GetWorldVector((0, 1)))
            err = math.atan2(fwd[0] * d[1] - fwd[1] * d[0], fwd @ d)
            turn = abs((u.track[(i + 20) % len(pts)][1] - u.track[i][1] + math.pi) % (2 * math.pi) - math.pi)
            target = 110.0 - 60.0 * min(turn, 1.0)
            speed = float(np.hypot(*car.hull.linearVelocity))
            action = np.array(
                [np.clip(-2.0 * err, -1, 1), 0.8 if speed < target else 0.0, 0.5 if speed > target + 10 else 0.0],
                dtype=np.float32,
            )
        else:
            action = held
        actions.append(action)
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    return np.array(actions, dtype=np.float32)


def time_renderer(name: str, episodes: list[tuple[int, np.ndarray]]) -> tuple[float, float, int]:
    """Step through the episodes; returns (wall seconds, thread CPU seconds, steps). Resets are not timed."""
    env = make_carracing(name)
    timer = Timer(time.thread_time)
    steps = 0
    for seed, actions in episodes:
        env.reset(seed=seed)
        with timer:
            for action in actions:
                env.step(action)
        steps += len(actions)
    env.close()
    return timer.wall, timer.cpu, steps


def scene_score(frame: np.ndarray) -> float:
    """How much of the game a frame shows: about a third of road, and some of the red-white kerb."""
    img = frame[:84].astype(np.int16)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    road = float(((np.abs(r - g) < 12) & (np.abs(g - b) < 12) & (r >= 90) & (r <= 125)).mean())
    white = int((img.min(axis=2) > 220).sum())
    return -abs(road - 0.3) + (0.2 if white > 5 else 0.0)


def fidelity(episodes: list[tuple[int, np.ndarray]]) -> tuple[dict, dict, tuple[int, int]]:
    """Step the three renderers side by side: pixel differences to gymnasium, and the three renderers' frames of
    the step that shows most of the game (after the opening zoom)."""
    envs = {name: make_carracing(name) for name in RENDERERS}
    exact_max, exact_unequal, fast_mean, fast_raw, frames, steps = 0, 0, [], [], {}, 0
    best, frame_at = -np.inf, (0, 0)
    same_rewards = True
    for k, (seed, actions) in enumerate(episodes):
        obs = {name: env.reset(seed=seed)[0] for name, env in envs.items()}
        for i, action in enumerate([None, *actions]):
            if action is not None:
                out = {name: env.step(action) for name, env in envs.items()}
                obs = {name: r[0] for name, r in out.items()}
                same_rewards &= out["exact"][1:] == out["gymnasium"][1:] == out["fast"][1:]
            ref = obs["gymnasium"].astype(np.int16)
            diff = np.abs(obs["exact"] - ref)
            exact_max = max(exact_max, int(diff.max()))
            exact_unequal += bool(diff.any())
            small = preprocess_frame(obs["fast"]).astype(np.int16) - preprocess_frame(obs["gymnasium"])
            fast_mean.append(float(np.abs(small).mean()))
            fast_raw.append(float(np.abs(obs["fast"].astype(np.int16) - ref).mean()))
            steps += 1
            if i >= 60:
                score = scene_score(obs["gymnasium"])
                if score > best:
                    best, frame_at = score, (k, i)
                    frames = {name: o.copy() for name, o in obs.items()}
    for env in envs.values():
        env.close()
    stats = {
        "frames_compared": steps,
        "exact_max_abs_diff": exact_max,
        "exact_frames_not_identical": exact_unequal,
        "fast_mean_abs_diff_64": round(float(np.mean(fast_mean)), 4),
        "fast_max_frame_mean_abs_diff_64": round(float(np.max(fast_mean)), 4),
        "fast_mean_abs_diff_96": round(float(np.mean(fast_raw)), 4),
        "rewards_terminations_infos_identical": bool(same_rewards),
    }
    return stats, frames, frame_at


def save_frames(frames: dict, out_dir: Path) -> list[str]:
    names = []
    for name, frame in frames.items():
        path = out_dir / f"carracing_{name}.png"
        Image.fromarray(frame).resize((384, 384), Image.NEAREST).save(path)
        names.append(path.name)
    g, f = frames["gymnasium"].astype(np.int16), frames["fast"].astype(np.int16)
    diff = np.clip(np.abs(g - f).max(axis=2) * 4, 0, 255).astype(np.uint8)
    row = np.concatenate([frames["gymnasium"], frames["exact"], frames["fast"], np.stack([diff] * 3, -1)], axis=1)
    path = out_dir / "carracing_compare.png"
    Image.fromarray(row).resize((row.shape[1] * 4, row.shape[0] * 4), Image.NEAREST).save(path)
    names.append(path.name)
    return names


def main(argv=None) -> dict:
    p = arg_parser(__doc__)
    p.add_argument("--seeds", type=int, default=3, help="episodes (seeds 0..N-1)")
    p.add_argument("--steps", type=int, default=300, help="steps per episode (at most 1000)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each renderer")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    t_start = time.perf_counter()
    recorder = make_carracing("fast")
    episodes = [(seed, driver_actions(recorder, seed, min(args.steps, 999))) for seed in range(args.seeds)]
    recorder.close()

    walls = {name: [] for name in RENDERERS}
    cpus = {name: [] for name in RENDERERS}
    for r in range(args.repeats):
        order = RENDERERS[r % 3 :] + RENDERERS[: r % 3]
        for name in order:
            wall, cpu, steps = time_renderer(name, episodes)
            walls[name].append(steps / wall)
            cpus[name].append(steps / cpu if cpu > 0 else float("nan"))
            print(f"  repeat {r + 1}/{args.repeats} {name:>9}: {steps / wall:7.0f} steps/s", flush=True)

    pixels, frames, frame_at = fidelity(episodes)
    png = save_frames(frames, args.out_dir)

    speed = {}
    for name in RENDERERS:
        speed[name] = {
            "steps_per_s_median": median(walls[name], 1),
            "steps_per_s_cpu_median": median(cpus[name], 1),
            "steps_per_s_runs": [round(v, 1) for v in walls[name]],
        }
    for name in RENDERERS:
        speed[name]["ratio_to_gymnasium"] = round(
            speed[name]["steps_per_s_median"] / speed["gymnasium"]["steps_per_s_median"], 2
        )
        speed[name]["ratio_to_gymnasium_cpu"] = round(
            speed[name]["steps_per_s_cpu_median"] / speed["gymnasium"]["steps_per_s_cpu_median"], 2
        )

    import gymnasium
    import pygame

    result = {
        "benchmark": "CarRacing-v3 observation renderers",
        "config": {
            "seeds": args.seeds,
            "steps_per_episode": [len(a) for _, a in episodes],
            "repeats": args.repeats,
            "actions": "recorded once from a track-following driver with held hard random turns; replayed",
        },
        "machine": machine(gymnasium=gymnasium.__version__, pygame=pygame.version.ver, numpy=np.__version__),
        "speed": speed,
        "pixels": pixels,
        "frame": {"episode": frame_at[0], "step": frame_at[1], "files": png},
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    out = write_results(args.out_dir / "carracing.json", result)

    print()
    print(f"{'renderer':<10} {'steps/s':>9} {'x gym':>7} {'steps/s (cpu)':>14} {'x gym':>7}  pixels vs gymnasium")
    notes = {
        "gymnasium": "-",
        "exact": f"max |diff| {pixels['exact_max_abs_diff']} "
        f"({pixels['exact_frames_not_identical']} of {pixels['frames_compared']} frames differ)",
        "fast": f"mean |diff| 64x64 {pixels['fast_mean_abs_diff_64']:.2f} "
        f"(worst frame {pixels['fast_max_frame_mean_abs_diff_64']:.2f})",
    }
    for name in RENDERERS:
        s = speed[name]
        print(
            f"{name:<10} {s['steps_per_s_median']:>9.0f} {s['ratio_to_gymnasium']:>6.1f}x"
            f" {s['steps_per_s_cpu_median']:>14.0f} {s['ratio_to_gymnasium_cpu']:>6.1f}x  {notes[name]}"
        )
    print(f"rewards/terminations/infos identical: {pixels['rewards_terminations_infos_identical']}")
    print(f"wrote {out} and {', '.join(png)} ({result['seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
