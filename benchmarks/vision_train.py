"""V training: is streaming frames from the episode files ever the bottleneck, and does memory stay flat?

    python benchmarks/vision_train.py            # ~6 minutes (collects 48 Doom episodes first, ~1 minute)
    python benchmarks/vision_train.py --quick    # ~2 minutes
    python benchmarks/vision_train.py --device cuda   # V trains on a GPU (batches go there from the CPU)

Data: real DoomTakeCover episodes from the random policy (``wmlib.rollouts.play_random_episode``, actions held 1-10
frames as in the paper), up to ``--frames`` frames each, written with ``episodes.save_episode`` into a cache directory
(reused by later runs). Model: the paper's ConvVAE for Doom (N_z 64), randomly initialised, Adam, batch 100.

1. Throughput, in this process: training steps whose batches come from one uint8 array already in memory, against
   the same steps fed by an ``episodes.FrameStore`` as ``train_vision`` does (every frame written once, uncompressed,
   to one file; batches read at positions shuffled across the whole data set; the time to write it is reported).
   Single steps alternate between the two, so that changes in the machine's load hit both alike; frames/s = all
   frames / all time of each kind, and the ratio streamed / in-memory is given for wall-clock and CPU time. The
   time to produce batches alone (no training) is reported too.
2. Memory: the real ``wmlib.vision.train_vision`` (one epoch, checkpoint and reconstructions included) in a fresh
   subprocess for two dataset sizes (a quarter of the episodes, and all); peak resident memory (``ru_maxrss``) of
   each, and the epoch's wall time (which includes start-up, the checkpoint and the reconstruction PNG).

One torch thread by default: the ratio does not depend on it, and on a machine shared with other programs two
OpenMP threads spend much of their time waiting for each other (see ``dream.py``). Wall-clock and CPU-time ratios
are both reported; the CPU-time one is less disturbed by other programs.

``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``; ``wmlib.devices``) trains V there, in both parts;
the results file records the device (the GPU's name, or the CPU's) and, on a CUDA GPU, the most GPU memory the
epoch of ``train_vision`` held (``torch.cuda.max_memory_allocated``).

Results go to ``benchmarks/results/vision_train.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import (  # first: wmlib
    RESULTS,
    Timer,
    arg_parser,
    device_name,
    machine,
    median,
    print_load_average,
    synchronize,
    write_results,
)

from wmlib import devices, episodes
from wmlib.vision import Vision, to_tensor, vae_loss

GAME, Z_DIM, BATCH = "DoomTakeCover", 64, 100


def collect(data_dir: Path, n: int, frames: int) -> list[Path]:
    """Make sure ``n`` random-policy Doom episodes of up to ``frames`` frames exist in ``data_dir/episodes``."""
    from wmlib.games import make_env
    from wmlib.rollouts import play_random_episode
    from wmlib.seeding import ROLLOUT, episode_seed

    env = None
    for i in range(n):
        path = episodes.episode_path(data_dir, i)
        if path.exists() and episodes.load_arrays(path, ("actions",))["meta"].get("max_frames") == frames:
            continue
        env = env or make_env(GAME, max_steps=frames)
        seed = episode_seed(0, 0, i, 0, ROLLOUT)
        ep = play_random_episode(env, GAME, seed, frames, 1, 10)
        episodes.save_episode(path, meta=dict(game=GAME, seed=seed, index=i, max_frames=frames), **ep)
    if env is not None:
        env.close()
    return [episodes.episode_path(data_dir, i) for i in range(n)]


def train_step(model, opt, frames: np.ndarray) -> None:
    """One training step as train_vision takes it, on the model's device (timed to the end of its work)."""
    device = devices.of(model)
    x = to_tensor(frames, device)
    recon, mu, logvar = model(x)
    loss, _, _ = vae_loss(recon, x, mu, logvar)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    synchronize(device)


def throughput(files, steps: int, device) -> dict:
    with tempfile.TemporaryDirectory(prefix="wm-frames-") as tmp:
        with Timer() as built:
            store = episodes.FrameStore.build(files, Path(tmp) / "frames.u8")
        return dict(measure(files, store, steps, device), store_write_s=built.wall)


def passes(store):
    """Shuffled passes over the store, one after another, as the epochs of train_vision."""
    epoch = 0
    while True:
        yield from store.batches(BATCH, np.random.default_rng([0, epoch]))
        epoch += 1


def measure(files, store, steps: int, device) -> dict:
    torch.manual_seed(0)
    model = Vision(Z_DIM).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    memory = np.concatenate([episodes.load_episode(f)["frames"] for f in files])
    rng = np.random.default_rng(0)
    batches = passes(store)
    train_step(model, opt, memory[:BATCH])  # warm up
    runs = {"in_memory": [], "streamed": []}
    for i in range(steps):  # alternate single steps, so that the machine's load drifts alike for both
        for kind in ["in_memory", "streamed"] if i % 2 == 0 else ["streamed", "in_memory"]:
            with Timer() as t:
                frames = memory[rng.integers(0, len(memory), BATCH)] if kind == "in_memory" else next(batches)
                train_step(model, opt, frames)
            runs[kind].append(dict(frames=len(frames), wall=t.wall, cpu=t.cpu))
    # batches alone: one pass over all files, no training
    with Timer() as t:
        n_batches = sum(1 for _ in store.batches(BATCH, np.random.default_rng(1)))
    load_s = t.wall / n_batches
    total = lambda v, key: sum(r[key] for r in v)  # noqa: E731
    agg = {
        k: dict(
            frames_per_s=total(v, "frames") / total(v, "wall"),
            frames_per_cpu_s=total(v, "frames") / total(v, "cpu"),
            median_step_ms=1e3 * median(r["wall"] for r in v),
        )
        for k, v in runs.items()
    }
    step_s = BATCH / agg["in_memory"]["frames_per_s"]
    return dict(
        steps=steps,
        in_memory=agg["in_memory"],
        streamed=agg["streamed"],
        ratio=agg["streamed"]["frames_per_s"] / agg["in_memory"]["frames_per_s"],
        ratio_cpu=agg["streamed"]["frames_per_cpu_s"] / agg["in_memory"]["frames_per_cpu_s"],
        batch_load_ms=1e3 * load_s,
        train_step_ms=1e3 * step_s,
        load_fraction=load_s / step_s,
        dataset_frames=int(len(memory)),
        runs=runs,
    )


def memory_child(data_dir: str, threads: int, device: str) -> None:
    """In a fresh process: one epoch of the real train_vision; prints peak RSS (and, on CUDA, peak GPU memory) and
    timing as JSON."""
    torch.set_num_threads(threads)
    from wmlib.config import make_config
    from wmlib.vision import train_vision

    cfg = make_config(GAME, "paper", vae_epochs=1, vae_batch=BATCH)
    files = episodes.list_episodes(data_dir)
    frames = sum(len(episodes.load_arrays(f, ("actions",))["actions"]) for f in files)
    device = devices.resolve(device)
    with Timer() as t:
        train_vision(cfg, data_dir, progress=False, device=device)
    wall = t.wall
    gpu = dict(gpu_max_allocated_mb=torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else {}
    print(
        json.dumps(
            dict(
                episodes=len(files),
                frames=frames,
                seconds=wall,
                frames_per_s=frames / wall,
                max_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                **gpu,
            )
        )
    )


def peak_memory(files, sizes, threads: int, device: str) -> list[dict]:
    out = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="wm-vision-mem-") as d:
            (Path(d) / "episodes").mkdir()
            for f in files[:n]:
                (Path(d) / "episodes" / f.name).symlink_to(f)
            proc = subprocess.run(
                [sys.executable, __file__, "--memory-child", d, "--threads", str(threads), "--device", device],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr)
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            res["dataset_mb"] = res["frames"] * 64 * 64 * 3 / 2**20
            out.append(res)
            print(
                f"  {n:3d} episodes ({res['dataset_mb']:.0f} MB of frames): peak RSS {res['max_rss_mb']:.0f} MB, "
                f"epoch {res['seconds']:.1f} s",
                flush=True,
            )
    return out


def main(argv=None):
    p = arg_parser(__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--episodes", type=int, default=48, help="episodes collected (the larger dataset)")
    p.add_argument("--frames", type=int, default=200, help="longest episode, frames")
    p.add_argument("--steps", type=int, default=40, help="training steps of each kind (alternating)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on a shared machine two OpenMP threads mostly wait for each other)",
    )
    p.add_argument("--device", default="cpu", help="where V trains: auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "wmlib-bench-vision-doom"))
    p.add_argument("--out", default=str(RESULTS / "vision_train.json"))
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:  # 'auto' becomes the device it picks; a device this machine lacks is named before any work
        device = devices.resolve(args.device)
    except ValueError as exc:
        p.error(str(exc))
    if args.memory_child:
        return memory_child(args.memory_child, args.threads, str(device))
    if args.quick:
        args.episodes, args.frames, args.steps = 24, 150, 10
    torch.set_num_threads(args.threads)
    t0 = time.time()
    data_dir = Path(args.data_dir)
    print(f"data: {args.episodes} random-policy {GAME} episodes (up to {args.frames} frames) in {data_dir}")
    files = collect(data_dir, args.episodes, args.frames)
    print(f"throughput (training steps, batch 100) on {device_name(device)}:")
    tp = throughput(files, args.steps, device)
    print(
        f"  in memory {tp['in_memory']['frames_per_s']:.0f} frames/s, streamed from files "
        f"{tp['streamed']['frames_per_s']:.0f} frames/s: ratio {100 * tp['ratio']:.0f}% "
        f"(CPU time: {100 * tp['ratio_cpu']:.0f}%); a batch takes {tp['batch_load_ms']:.1f} ms to load, "
        f"a training step {tp['train_step_ms']:.0f} ms"
    )
    print("peak memory of train_vision (one epoch, fresh process):")
    sizes = [args.episodes // 4, args.episodes]
    mem = peak_memory(files, sizes, args.threads, str(device))
    load = print_load_average()
    out = dict(
        benchmark="vision_train",
        quick=args.quick,
        device=device_name(device),
        seconds=round(time.time() - t0, 1),
        data=dict(
            game=GAME,
            kind="real random-policy episodes",
            episodes=args.episodes,
            max_frames=args.frames,
            frames=tp["dataset_frames"],
        ),
        model=dict(z_dim=Z_DIM, batch=BATCH, shuffle="whole data set (episodes.FrameStore)"),
        throughput=tp,
        peak_memory=mem,
        machine=machine(torch.get_num_threads(), load=load),
    )
    write_results(args.out, out)
    print(f"wrote {args.out} ({out['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
