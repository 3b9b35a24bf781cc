"""Random-policy rollouts on a local Dask cluster against local worker processes: episodes/s and identical files.

    python benchmarks/dask_rollouts.py    # 16 CarRacing episodes of 200 frames, 3 repeats (~1-2 min)
    python benchmarks/dask_rollouts.py --episodes 64 --max_frames 1000 --workers 2 --repeats 5

``wm rollouts`` plays every episode as one task (:func:`wmlib.rollouts.play_episode`) and the command writes the
compressed episode that comes back (:class:`wmlib.farm.Farm`). Here ``--episodes`` CarRacing episodes (fast renderer,
``--max_frames`` frames each, seeds as in a run at seed 0) are collected by ``collect_rollouts`` with three farms:
this process, ``--workers`` local spawn processes, and a Dask cluster of ``--workers`` one-thread workers on
127.0.0.1 over TLS, started as ``wm`` starts one. Each farm is started once (its start time reported apart) and
warmed up on other episodes, so every worker has imported the game and built it (local processes start with their
first task: their start is in the warm-up); then the repeats collect the episodes into fresh directories, processes
and Dask alternating which goes first, and the median wall time gives episodes/s. The CPU time of this process and
every process under it (workers, Dask's nannies and scheduler thread included) gives episodes per CPU-second, the
steadier figure on a shared machine. Every run's files are compared byte for byte with the in-process ones.
Reported too: the mean size of an episode file (what a Dask worker sends back per task) and the Dask / processes
ratio.

Results go to ``benchmarks/results/dask_rollouts.json``. On a shared 2-core machine the wall-clock figures move with
the load (recorded in the file); compare ratios within one run.
"""

from __future__ import annotations

import io
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import psutil
from common import RESULTS, Timer, arg_parser, machine, median, write_results  # first: wmlib from a checkout

from wmlib import episodes
from wmlib.config import make_config
from wmlib.farm import Farm
from wmlib.rollouts import collect_rollouts


def files(d) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in episodes.list_episodes(d)}


def start_farms(workers: int) -> tuple[dict, dict]:
    farms, start_s = {}, {}
    for name, kind in (("in_process", "inprocess"), ("processes", "processes"), ("dask", "dask")):
        with Timer() as t:
            farms[name] = Farm(kind, workers)
        start_s[name] = round(t.wall, 2)
    return farms, start_s


def warm_up(farms: dict, cfg, workers: int, tmp: Path) -> dict:
    """Every worker imports the game and builds it (episodes of another seed, not the ones timed)."""
    first_s = {}
    warm = make_config(
        cfg.game,
        "smoke",
        num_rollouts=2 * workers,
        max_frames=cfg.max_frames,
        min_frames=0,
        renderer=cfg.renderer,
        seed=cfg.seed + 1,
    )
    for name, farm in farms.items():
        with Timer() as t:
            collect_rollouts(warm, tmp / f"warm-{name}", farm=farm, progress=False)
        first_s[name] = round(t.wall, 2)
    return first_s


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and every process under it (pool workers, Dask's nannies and
    workers), which live through a timed run."""
    total = 0.0
    for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def time_runs(farms: dict, cfg, repeats: int, tmp: Path) -> tuple[dict, dict, dict, bool]:
    walls, cpus = {name: [] for name in farms}, {name: [] for name in farms}
    reference, identical = None, True
    for r in range(repeats):
        names = ["in_process"] + (["processes", "dask"] if r % 2 == 0 else ["dask", "processes"])
        for name in names:
            d = tmp / f"{name}-{r}"
            cpu0 = cpu_seconds()
            with Timer() as t:
                collect_rollouts(cfg, d, farm=farms[name], progress=False)
            walls[name].append(t.wall)
            cpus[name].append(cpu_seconds() - cpu0)
            got = files(d)
            reference = got if reference is None else reference
            identical = identical and len(got) == cfg.num_rollouts and got == reference
            if r < repeats - 1:
                shutil.rmtree(d)
    return walls, cpus, reference, identical


def main(argv=None) -> int:
    p = arg_parser(__doc__)
    p.add_argument("--episodes", type=int, default=16)
    p.add_argument("--max_frames", type=int, default=200)
    p.add_argument("--workers", type=int, default=2, help="local processes, and Dask workers")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(RESULTS / "dask_rollouts.json"))
    args = p.parse_args(argv)
    cfg = make_config(
        "CarRacing-v3",
        "smoke",
        num_rollouts=args.episodes,
        max_frames=args.max_frames,
        min_frames=0,
        renderer="fast",
        seed=0,
    )
    with tempfile.TemporaryDirectory(prefix="wm-dask-rollouts-") as tmp:
        farms, start_s = start_farms(args.workers)
        try:
            first_s = warm_up(farms, cfg, args.workers, Path(tmp))
            walls, cpus, reference, identical = time_runs(farms, cfg, args.repeats, Path(tmp))
            address = farms["dask"].address
        finally:
            for farm in farms.values():
                farm.close()
    result = report(args, cfg, start_s, first_s, walls, cpus, reference, identical, address)
    import dask

    result["machine"] = machine(with_torch=True, dask=dask.__version__)
    out = write_results(args.out, result)
    print(f"wrote {out}")
    return 0 if identical else 1


def report(args, cfg, start_s, first_s, walls, cpus, reference, identical, address) -> dict:
    """The results record, and the figures printed."""
    sizes = [len(b) for b in reference.values()]
    frames = sum(len(np.load(io.BytesIO(b))["dones"]) for b in reference.values())
    result = dict(
        benchmark="random-policy rollouts: in-process, local processes and a local Dask cluster (127.0.0.1, TLS)",
        config=dict(
            game=cfg.game,
            renderer=cfg.renderer,
            episodes=args.episodes,
            max_frames=args.max_frames,
            workers=args.workers,
            repeats=args.repeats,
            dask_scheduler=address.split(":")[0] + "://",
        ),
        frames=frames,
        episode_file_kb=round(sum(sizes) / len(sizes) / 1024, 1),
        identical_files=identical,
    )
    for name, ws in walls.items():
        result[name] = dict(
            start_s=start_s[name],
            warm_up_s=first_s[name],
            run_s=median(ws, 3),
            runs=[round(w, 3) for w in ws],
            episodes_per_s=round(args.episodes / median(ws), 2),
            frames_per_s=round(frames / median(ws), 1),
            cpu_s=median(cpus[name], 3),
            episodes_per_cpu_s=round(args.episodes / median(cpus[name]), 2),
        )
        r = result[name]
        print(
            f"{name:>10}: {r['episodes_per_s']:6.2f} episodes/s, {r['episodes_per_cpu_s']:5.2f} "
            f"per CPU-s (median of {len(ws)} runs of {args.episodes} episodes: {result[name]['run_s']:.2f} s, "
            f"{result[name]['cpu_s']:.2f} CPU-s; start {start_s[name]:.2f} s, warm-up {first_s[name]:.2f} s)"
        )
    result["dask_vs_processes"] = round(result["dask"]["episodes_per_s"] / result["processes"]["episodes_per_s"], 3)
    result["dask_vs_processes_per_cpu_s"] = round(
        result["dask"]["episodes_per_cpu_s"] / result["processes"]["episodes_per_cpu_s"], 3
    )
    result["processes_vs_in_process"] = round(
        result["processes"]["episodes_per_s"] / result["in_process"]["episodes_per_s"], 3
    )
    print(
        f"dask / processes: {result['dask_vs_processes']:.3f} "
        f"(per CPU-s {result['dask_vs_processes_per_cpu_s']:.3f}); processes / in-process: "
        f"{result['processes_vs_in_process']:.3f}; episode file {result['episode_file_kb']} KiB; identical files: "
        f"{identical}"
    )
    return result


if __name__ == "__main__":
    sys.exit(main())
