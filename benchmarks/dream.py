"""The batched dream against a per-candidate, per-episode loop, and a worst-case paper-size Doom generation.

    python benchmarks/dream.py            # ~10-15 minutes on 2 cores
    python benchmarks/dream.py --quick    # ~2 minutes: shorter runs, the full generation's time is projected
    python benchmarks/dream.py --device cuda               # the same comparison on a GPU (no CPU-only configurations)
    python benchmarks/dream.py --paper-size --device cuda  # one paper-size generation, 1024 x 2100 steps, timed

Model: the paper's Doom sizes, randomly initialised (speed does not depend on training): M with N_z 64, an LSTM of
512 units, 5 Gaussians per latent dimension, restart flag and done head; C = tanh(W [z c h]), 1088 parameters.
Population: one generation of CMA-ES, 64 candidates with parameters drawn like its first generation, N(0, 0.1^2),
times 16 trials = 1024 dream episodes, temperature 1.15; the first z of each episode comes from a synthetic pool of
200 (mu, logvar) "first frames". Each episode's seed comes from ``episode_seed`` as in training.

Measurements (each in a fresh subprocess, so that thread settings do not leak; rounds rotate the order, and the
table gives the median over rounds):

* ``loop``: the original's way, one episode at a time (batch 1), one torch thread, as each of its 64 workers did.
* ``batched``: all 1024 episodes as one batch in one process with ``--threads`` torch threads (default 2).
* ``batched 1 thread``: the same with one thread.
* ``batched, 2 processes``: two processes with one thread each, 512 episodes each (what the process-pool and Dask
  evaluators do with a dream generation). Timed from a barrier, so process start-up is not counted.

Throughput runs switch M's done detection off (``detect_done=False``) so that all 1024 episodes stay in flight for the
whole run ("sustained" steps/s). Dream steps/s = episode-steps per wall-clock second. "Steps per CPU-second" divides
by the CPU time the processes used instead: on a machine shared with other programs, that is what the work would
run at on a core of its own (for the single-threaded configurations).

Then: the worst case, a full generation of 1024 episodes x 2100 steps (2.15M dream steps) with done detection off,
timed end to end for the library's default configuration (in-process, ``--threads`` threads) and for the fastest
one (the others, and a configuration projected to take more than ``--full-limit`` seconds, are projected from their
throughput; ``--quick`` projects them all); and a
generation with done detection on, with M's done head biased so that episode lengths spread out (median ~500 steps),
to show that finished episodes stop costing compute: its live steps per CPU-second stay close to the sustained rate
of the same (one-thread) configuration.

The original implementation: 64 CPU workers, one episode per process, a median of about 116 s per Doom generation
(paper), about 7.7k dream steps/s in total. Results go to ``benchmarks/results/dream.json``.

``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``; ``wmlib.devices``) runs the dream there; off the CPU
the comparison keeps one episode at a time and the batched dream (threads and processes are CPU matters).
``--paper-size`` times only a paper-size generation, 1024 episodes x 2100 steps with done detection off, in a fresh
process on ``--device``, and reports its dream steps/s. On a GPU it runs all 2100 steps; on the CPU, by default the
first ``--paper-steps`` 100 of them, and the whole generation's time is projected from their rate (pass
``--paper-steps 2100`` to run it all). Results go to ``benchmarks/results/dream_paper_size.json``. Every results file
records the device it ran on (the GPU's name, or the CPU's).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from common import (
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

POP, TRIALS, MAX_LEN, TAU = 64, 16, 2100, 1.15
Z, HIDDEN, K = 64, 512, 5
# The paper: 64 CPU workers, one episode per process, median ~116 s per Doom generation; ~7.7k dream steps/s in total
# (the generation's episodes end when M says so, so a generation is well under 1024 x 2100 steps).
ORIGINAL = dict(workers=64, seconds_per_generation=116, dream_steps_per_s=7700)


# -- the work ----------------------------------------------------------------------------------------------------
def setup(done_bias: float | None = None):
    """Paper-size Doom M, controller spec, one generation's parameters and seeds, a pool of first frames."""
    import torch

    from wmlib.controller import ControllerSpec
    from wmlib.memory import Memory
    from wmlib.seeding import TRAIN, episode_seed

    torch.manual_seed(0)
    memory = Memory(Z, 1, HIDDEN, K, predict_done=True, restart_flag=True).eval()
    if done_bias is not None:  # a done head whose logit varies along the episode: lengths spread out
        with torch.no_grad():
            memory.head.weight[-1] = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(1))
            memory.head.bias[-1] = done_bias
    spec = ControllerSpec("DoomTakeCover", Z, HIDDEN)
    rng = np.random.default_rng(0)
    candidates = rng.normal(0.0, 0.1, (POP, spec.n_params)).astype(np.float32)  # CMA-ES: mean 0, sigma 0.1
    params = np.repeat(candidates, TRIALS, axis=0)
    seeds = np.array([episode_seed(0, 0, c, t, TRAIN) for c in range(POP) for t in range(TRIALS)])
    pool_mu = rng.normal(0.0, 1.0, (200, Z)).astype(np.float32)
    pool_logvar = rng.normal(-2.0, 0.3, (200, Z)).astype(np.float32)
    return memory, spec, params, seeds, pool_mu, pool_logvar


def run_dream(
    rows, steps: int, detect_done: bool = False, done_bias: float | None = None, per_episode=False, device: str = "cpu"
):
    """Dream the episodes ``rows`` of the generation for up to ``steps`` steps on ``device``; returns
    (episode-steps, wall, cpu). M moves to the device once, before the clock starts."""
    from wmlib import devices
    from wmlib.dream import dream_rollouts

    memory, spec, params, seeds, mu, logvar = setup(done_bias)
    device = devices.resolve(device)
    memory = devices.on(memory, device)
    rows = np.asarray(rows)
    dream = lambda r, n: dream_rollouts(
        memory,
        spec,
        params[r],
        seeds[r],
        mu,
        logvar,
        TAU,
        n,  # noqa: E731
        detect_done=detect_done,
        device=device,
    )[1]
    dream(rows[:2], 3)  # warm up
    synchronize(device)
    with Timer() as t:
        if per_episode:
            total = sum(int(dream(slice(i, i + 1), steps).sum()) for i in rows)
        else:
            total = int(dream(rows, steps).sum())
        synchronize(device)  # a GPU's timing ends when its work does
    return total, t.wall, t.cpu


def _child(i, parts, steps, detect_done, done_bias, barrier, queue):
    import torch

    torch.set_num_threads(1)
    from wmlib.dream import dream_rollouts

    memory, spec, params, seeds, mu, logvar = setup(done_bias)
    rows = parts[i]
    dream_rollouts(memory, spec, params[rows[:2]], seeds[rows[:2]], mu, logvar, TAU, 3)
    barrier.wait()
    c0 = time.process_time()
    n = int(
        dream_rollouts(memory, spec, params[rows], seeds[rows], mu, logvar, TAU, steps, detect_done=detect_done)[
            1
        ].sum()
    )
    queue.put((n, time.perf_counter(), time.process_time() - c0))


def run_processes(n_proc: int, steps: int, detect_done: bool = False, done_bias: float | None = None):
    """The generation split over ``n_proc`` processes with one thread each; timed from a common barrier."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    parts = np.array_split(np.arange(POP * TRIALS), n_proc)
    barrier, queue = ctx.Barrier(n_proc + 1), ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(i, parts, steps, detect_done, done_bias, barrier, queue))
        for i in range(n_proc)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    w0 = time.perf_counter()
    done = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(d[0] for d in done), max(d[1] for d in done) - w0, sum(d[2] for d in done)


def worker(config: str, steps: int, threads: int, episodes: int, detect_done: bool, done_bias, device: str):
    """One measurement, in this (fresh) process: prints one JSON line."""
    import torch

    torch.set_num_threads(threads)
    load0 = os.getloadavg()[0]
    everyone = np.arange(POP * TRIALS)
    if config == "loop":  # the first ``episodes`` episodes of the generation, one at a time
        steps_done, wall, cpu = run_dream(everyone[:episodes], steps, detect_done, done_bias, True, device)
    elif config == "batched":
        steps_done, wall, cpu = run_dream(everyone, steps, detect_done, done_bias, device=device)
    elif config == "processes":
        steps_done, wall, cpu = run_processes(2, steps, detect_done, done_bias)
    else:
        raise ValueError(config)
    print(
        json.dumps(
            dict(
                config=config,
                threads=threads,
                device=device,
                steps=steps_done,
                wall=wall,
                cpu=cpu,
                steps_per_s=steps_done / wall,
                steps_per_cpu_s=steps_done / cpu,
                load_before=round(load0, 2),
                load_after=round(os.getloadavg()[0], 2),
                omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
            )
        ),
        flush=True,
    )


# -- the driver --------------------------------------------------------------------------------------------------
def measure(
    name, config, steps, threads=1, episodes=0, detect_done=False, done_bias=None, env=None, device: str = "cpu"
) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        config,
        "--steps",
        str(steps),
        "--threads",
        str(threads),
        "--episodes",
        str(episodes),
        "--device",
        device,
    ]
    if detect_done:
        cmd.append("--detect-done")
    if done_bias is not None:
        cmd += ["--done-bias", str(done_bias)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["name"] = name
    print(
        f"  {name:34s} {res['steps_per_s']:9.0f} steps/s  ({res['steps']} steps in {res['wall']:.1f} s, "
        f"load {res['load_before']})",
        flush=True,
    )
    return res


def parse_args(argv=None):
    p = arg_parser(__doc__)
    p.add_argument("--quick", action="store_true", help="short runs; the full generation's time is projected")
    p.add_argument("--device", default="cpu", help="where the dream runs: auto, cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--paper-size",
        action="store_true",
        help="time only a paper-size generation (1024 episodes x 2100 steps) on --device",
    )
    p.add_argument(
        "--paper-steps",
        type=int,
        default=None,
        help="steps of that generation to run (default: all 2100 on a GPU, 100 on the CPU, projected)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads of the in-process batched dream")
    p.add_argument("--rounds", type=int, default=3, help="repeats of the throughput comparison")
    p.add_argument("--steps", type=int, default=150, help="steps of each batched throughput run")
    p.add_argument("--loop-episodes", type=int, default=6, help="episodes of each per-episode loop run")
    p.add_argument("--loop-steps", type=int, default=300, help="steps of each of those episodes")
    p.add_argument("--skip-full", action="store_true", help="project the full generation instead of running it")
    p.add_argument(
        "--full-limit",
        type=float,
        default=400.0,
        help="run the full generation only for configurations projected to take less (seconds)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="results file (default: results/dream.json, or results/dream_paper_size.json with --paper-size)",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--episodes", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--detect-done", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--done-bias", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from wmlib import devices  # (the driver imports wmlib only here; its workers, what they measure)

    try:  # 'auto' becomes the device it picks; a device this machine lacks is named now, not in the first worker
        args.device = str(devices.resolve(args.device))
    except ValueError as exc:
        p.error(str(exc))
    if args.quick:
        args.rounds, args.steps, args.loop_episodes, args.loop_steps = 2, 40, 3, 150
        args.skip_full = True
    return args


def configurations(args) -> list[tuple]:
    """(name, config, threads, env) of the comparison; the first is one episode at a time, the second the library's
    default. Off the CPU: one episode at a time and the batched dream only."""
    if args.device != "cpu":
        return [
            (f"loop (batch 1, {args.device})", "loop", 1, None),
            (f"batched ({args.device})", "batched", args.threads, None),
        ]
    return [
        ("loop (batch 1, 1 thread)", "loop", 1, None),
        (f"batched ({args.threads} threads)", "batched", args.threads, None),
        (f"batched ({args.threads} threads, OMP passive)", "batched", args.threads, {"OMP_WAIT_POLICY": "PASSIVE"}),
        ("batched (1 thread)", "batched", 1, None),
        ("batched (2 processes x 1 thread)", "processes", 1, None),
    ]


def throughput(args, configs) -> tuple[dict, dict]:
    """Rounds of every configuration (the order rotating); (runs by name, summary by name)."""
    runs = {name: [] for name, *_ in configs}
    print(f"throughput: {POP} x {TRIALS} = {POP * TRIALS} episodes, done detection off, {args.rounds} rounds")
    for r in range(args.rounds):
        order = configs[r % len(configs) :] + configs[: r % len(configs)]
        for name, config, threads, env in order:
            if config == "loop":
                res = measure(name, config, args.loop_steps, threads, args.loop_episodes, env=env, device=args.device)
            else:
                res = measure(name, config, args.steps, threads, env=env, device=args.device)
            runs[name].append(res)
    summary = {}
    for name, rs in runs.items():
        summary[name] = dict(
            steps_per_s=median(r["steps_per_s"] for r in rs),
            steps_per_cpu_s=median(r["steps_per_cpu_s"] for r in rs),
            best_steps_per_s=max(r["steps_per_s"] for r in rs),
        )
    loop = summary[configs[0][0]]["steps_per_s"]
    for s in summary.values():
        s["ratio_to_loop"] = s["steps_per_s"] / loop
    return runs, summary


def worst_case(args, configs, summary: dict, best_name: str) -> dict:
    """The full generation (1024 x 2100 steps, done detection off): run for the library's default and the fastest
    configuration (when projected to take less than --full-limit), projected for the others."""
    full_steps = POP * TRIALS * MAX_LEN
    worst = {}
    if not args.skip_full:
        print(
            f"worst case: {POP * TRIALS} episodes x {MAX_LEN} steps = {full_steps / 1e6:.2f}M dream steps, "
            "done detection off"
        )
    for name, config, threads, env in configs[1:]:
        projected = full_steps / summary[name]["steps_per_s"]
        if args.skip_full or name not in (configs[1][0], best_name) or projected > args.full_limit:
            worst[name] = dict(projected=True, seconds=projected)
            continue
        res = measure(name, config, MAX_LEN, threads, env=env, device=args.device)
        worst[name] = dict(
            projected=False,
            seconds=res["wall"],
            cpu_seconds=res["cpu"],
            steps=res["steps"],
            steps_per_s=res["steps_per_s"],
            steps_per_cpu_s=res["steps_per_cpu_s"],
            load_before=res["load_before"],
            load_after=res["load_after"],
        )
    return worst


def print_table(summary: dict, worst: dict, varied: dict | None) -> None:
    print()
    print(
        f"{'configuration':38s} {'steps/s':>9s} {'best':>9s} {'per CPU-s':>10s} {'x loop':>7s} {'full generation':>24s}"
    )
    for name, s in summary.items():
        w = worst.get(name)
        wtxt = (
            ""
            if w is None
            else f"{w['seconds']:7.0f} s" + (" (proj.)" if w["projected"] else f" ({w['cpu_seconds']:.0f} CPU-s)")
        )
        print(
            f"{name:38s} {s['steps_per_s']:9.0f} {s['best_steps_per_s']:9.0f} {s['steps_per_cpu_s']:10.0f} "
            f"{s['ratio_to_loop']:7.1f} {wtxt:>24s}"
        )
    print(
        f"{'original (64 workers, paper)':38s} {ORIGINAL['dream_steps_per_s']:9.0f} {'':9s} {'':10s} "
        f"{'':7s} {'~116 s':>24s}"
    )
    if varied:
        print(
            f"done detection on: {varied['steps']} live steps (mean length {varied['mean_length']:.0f}) "
            f"in {varied['wall']:.1f} s = {varied['steps_per_s']:.0f} live steps/s, "
            f"{varied['steps_per_cpu_s']:.0f} per CPU-second (sustained, all 1024 running: "
            f"{varied['sustained_steps_per_cpu_s']:.0f})"
        )


def paper_size(args) -> None:
    """One paper-size generation (1024 episodes x 2100 steps, done detection off) on --device: its dream steps/s,
    and its time (projected from the steps run when --paper-steps is below 2100)."""
    t_start = time.time()
    steps = args.paper_steps or (MAX_LEN if args.device != "cpu" else 100)
    full_steps = POP * TRIALS * MAX_LEN
    print(
        f"paper-size generation on {device_name(args.device)}: {POP * TRIALS} episodes x {steps} of {MAX_LEN} "
        "steps, done detection off"
    )
    res = measure("paper-size generation", "batched", steps, args.threads, device=args.device)
    projected = steps < MAX_LEN
    seconds = full_steps / res["steps_per_s"] if projected else res["wall"]
    print(
        f"{res['steps_per_s']:.0f} dream steps/s; a full generation ({full_steps / 1e6:.2f}M steps): "
        f"{seconds:.1f} s" + (" (projected)" if projected else "")
    )
    load = print_load_average()
    out = dict(
        benchmark="dream_paper_size",
        device=device_name(args.device),
        seconds=round(time.time() - t_start, 1),
        model=dict(z_dim=Z, hidden_dim=HIDDEN, mixtures=K, temperature=TAU, controller_params=1088),
        generation=dict(population=POP, trials=TRIALS, episodes=POP * TRIALS, max_len=MAX_LEN, full_steps=full_steps),
        steps_run=steps,
        steps_per_s=res["steps_per_s"],
        full_generation_seconds=seconds,
        projected=projected,
        run=res,
        original=ORIGINAL,
        machine=machine(args.threads, load=load),
    )
    path = args.out or str(RESULTS / "dream_paper_size.json")
    write_results(path, out)
    print(f"wrote {path}")


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(
            args.worker, args.steps, args.threads, args.episodes, args.detect_done, args.done_bias, args.device
        )
    if args.paper_size:
        return paper_size(args)
    t_start = time.time()
    configs = configurations(args)
    runs, summary = throughput(args, configs)
    best_name = max((n for n in summary if n != configs[0][0]), key=lambda n: summary[n]["steps_per_s"])
    worst = worst_case(args, configs, summary, best_name)
    varied = None
    if not args.quick:
        print("done detection on, lengths spread out (done head biased):")
        where = "1 thread" if args.device == "cpu" else args.device
        res = measure(
            f"batched ({where}), done detection on",
            "batched",
            MAX_LEN,
            1,
            detect_done=True,
            done_bias=-4.0,
            device=args.device,
        )
        sustained = summary.get("batched (1 thread)", summary[configs[1][0]])["steps_per_cpu_s"]
        varied = dict(res, mean_length=res["steps"] / (POP * TRIALS), sustained_steps_per_cpu_s=sustained)
    print_table(summary, worst, varied)
    load = print_load_average()
    out = dict(
        benchmark="dream",
        quick=args.quick,
        device=device_name(args.device),
        seconds=round(time.time() - t_start, 1),
        model=dict(z_dim=Z, hidden_dim=HIDDEN, mixtures=K, temperature=TAU, controller_params=1088),
        generation=dict(
            population=POP, trials=TRIALS, episodes=POP * TRIALS, max_len=MAX_LEN, full_steps=POP * TRIALS * MAX_LEN
        ),
        throughput=summary,
        best_batched=best_name,
        worst_case_full_generation=worst,
        done_detection_on=varied,
        original=ORIGINAL,
        runs=runs,
        machine=machine("per configuration (runs[...]['threads'])", load=load),
    )
    path = args.out or str(RESULTS / "dream.json")
    write_results(path, out)
    print(f"wrote {path} ({out['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
