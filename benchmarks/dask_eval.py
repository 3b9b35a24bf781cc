"""Controller evaluation on a local Dask cluster: generation time with 1 and 2 workers, and the cost of a task.

    python benchmarks/dask_eval.py                         # a few minutes: builds a smoke run, 3 repeats
    python benchmarks/dask_eval.py --data_dir runs/DoomTakeCover-small --pop 32 --trials 4 --max_len 500
    python benchmarks/dask_eval.py --workers 2 --repeats 5        # one cluster size; TLS against plain TCP

Without ``--data_dir`` a DoomTakeCover run is made with ``wm run --preset smoke`` in a temporary directory. One
real-game generation (``--pop`` candidates x ``--trials`` episodes of at most ``--max_len`` steps, seeds from
``wmlib.seeding.episode_seed`` as in training) is scored in-process, then by a :class:`wmlib.distributed.DaskEvaluator`
on a local cluster (127.0.0.1) of 1 and of 2 one-thread workers. For each, the first generation (which builds the
agent and its games on the workers) is reported apart, then ``--repeats`` generations are timed and the median
quoted. Dask's task stream gives each task's compute time on its worker; the per-task overhead is the worker time
not spent computing, per task: (wall x workers - sum of compute) / tasks, next to the mean episode time. A batch of
empty tasks measures Dask's own round trip. A dream generation (``--dream_pop`` x ``--trials`` episodes) is timed
the same way. Every Dask result is checked against the in-process one (real game: identical; dream: identical to
in-process dreams batched the same way).

The clusters are started as ``wm`` starts them: mutual TLS with a temporary certificate. What that costs is measured
apart (``--tls_compare N``, default 2 workers; 0 skips it): a TLS cluster and a plain tcp:// one of N workers run
side by side, and each repeat times the same real-game and dream generations and a batch of empty tasks on one,
then on the other (which goes first alternates), so both see the same load. Reported: cluster start, making the
certificate, the median generation times, the cost (the median of the repeats' TLS - plain differences) and the
empty-task round trip.

Results go to ``benchmarks/results/dask_eval.json``. On a shared 2-core machine the wall-clock figures move with
the load (recorded in the file); compare ratios within one run.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, Timer, arg_parser, machine, median, smoke_run, write_results  # first: wmlib from a checkout
from distributed import get_task_stream

from wmlib.agent import Agent, EvalSettings, plan_tasks, run_jobs, task_jobs
from wmlib.distributed import DaskEvaluator
from wmlib.seeding import TRAIN, episode_seed


def _noop(i):
    return i


def generation(agent: Agent, pop: int, trials: int, seed: int = 0, scale: float = 0.5):
    rng = np.random.default_rng(seed)
    return [
        (
            rng.normal(0, scale, agent.spec.n_params).astype(np.float32),
            [episode_seed(seed, 0, i, t, TRAIN) for t in range(trials)],
        )
        for i in range(pop)
    ]


def time_inprocess(agent, settings, jobs, repeats):
    run_jobs(agent, settings, jobs[:1])  # games opened once, as a worker keeps them
    walls, scores = [], None
    for _ in range(repeats):
        with Timer() as t:
            scores = run_jobs(agent, settings, jobs)
        walls.append(t.wall)
    return walls, scores


def time_dask(ev: DaskEvaluator, settings, jobs, repeats):
    with Timer() as first_t:
        first = ev.evaluate(settings, jobs)
    walls, computes, tasks = [], [], 0
    for _ in range(repeats):
        with get_task_stream(client=ev.client) as ts, Timer() as timer:
            scores = ev.evaluate(settings, jobs)
        walls.append(timer.wall)
        ours = [t for t in ts.data if "wm-score" in str(t["key"])]
        tasks = len(ours)
        computes.append(sum(s["stop"] - s["start"] for t in ours for s in t["startstops"] if s["action"] == "compute"))
    return dict(first_s=first_t.wall, walls=walls, computes=computes, tasks=tasks, scores=scores, first=first)


def noop_round_trip(ev: DaskEvaluator, n: int = 200) -> float:
    ev.client.gather(ev.client.map(_noop, range(n), pure=False))  # warm
    with Timer() as t:
        ev.client.gather(ev.client.map(_noop, range(n), pure=False))
    return t.wall / n


def tls_cost(agent, workloads: dict, workers: int, repeats: int) -> dict:
    """The same generations ({name: (settings, jobs)}) on a TLS and a plain local cluster, alternating."""
    from wmlib.cluster import local_security

    cert_s = []
    for _ in range(5):
        with Timer() as t:
            local_security()
        cert_s.append(t.wall)
    evs, out = {}, dict(workers=workers, certificate_s=median(cert_s, 4))
    try:
        for name, tls in (("tls", True), ("plain", False)):
            with Timer() as t:
                evs[name] = DaskEvaluator(agent, workers=workers, tls=tls)
            out[name] = dict(address_scheme=evs[name].address.split(":")[0], cluster_start_s=round(t.wall, 2))
            for settings, jobs in workloads.values():
                evs[name].evaluate(settings, jobs)  # warm-up: agents built, games opened on every worker
        walls = {(name, w): [] for name in evs for w in [*workloads, "empty_task"]}
        scores = {}
        for r in range(repeats):
            order = list(evs.items())[:: 1 if r % 2 == 0 else -1]  # which goes first alternates too
            for w, (settings, jobs) in workloads.items():
                for name, ev in order:
                    with Timer() as t:
                        scores[name, w] = ev.evaluate(settings, jobs)
                    walls[name, w].append(t.wall)
            for name, ev in order:
                walls[name, "empty_task"].append(noop_round_trip(ev))
    finally:
        for ev in evs.values():
            ev.close()
    for (name, w), xs in walls.items():
        if w == "empty_task":
            out[name]["empty_task_round_trip_ms"] = median([1000 * x for x in xs], 3)
        else:
            out[name][f"{w}_generation_s"] = median(xs, 3)
            out[name][f"{w}_generation_runs"] = [round(x, 3) for x in xs]
    for w in workloads:  # the cost: the median of the repeats' differences (each pair ran back to back)
        diffs = [a - b for a, b in zip(walls["tls", w], walls["plain", w])]
        out[f"{w}_tls_cost_ms"] = round(1000 * median(diffs), 1)
        out[f"{w}_tls_cost_share"] = round(median(diffs) / out["plain"][f"{w}_generation_s"], 4)
        out[f"{w}_identical"] = all(np.array_equal(a, b) for a, b in zip(scores["tls", w], scores["plain", w]))
    diffs = [a - b for a, b in zip(walls["tls", "empty_task"], walls["plain", "empty_task"])]
    out["empty_task_tls_cost_ms"] = round(1000 * median(diffs), 3)
    return out


def main(argv=None) -> int:
    p = arg_parser(__doc__)
    p.add_argument("--data_dir", help="an existing DoomTakeCover run (default: make a smoke run in a temp dir)")
    p.add_argument("--pop", type=int, default=8, help="candidates in the real-game generation")
    p.add_argument("--trials", type=int, default=2, help="episodes per candidate")
    p.add_argument("--max_len", type=int, default=150, help="longest real-game episode")
    p.add_argument("--dream_pop", type=int, default=64, help="candidates in the dream generation")
    p.add_argument("--dream_len", type=int, default=100, help="longest dream episode")
    p.add_argument("--workers", default="1,2", help='cluster sizes to time ("": none, e.g. for --tls_compare alone)')
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--tls_compare",
        type=int,
        default=2,
        metavar="N",
        help="workers of the TLS and plain clusters compared side by side (0: no comparison)",
    )
    p.add_argument("--out", default=str(RESULTS / "dask_eval.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # like each worker: the comparison is one process against worker processes
    sizes = [int(x) for x in args.workers.split(",") if x.strip()]

    with tempfile.TemporaryDirectory(prefix="wm-dask-bench-") as tmp:
        with Timer() as made:
            data_dir = Path(args.data_dir) if args.data_dir else smoke_run(Path(tmp))
        agent = Agent.from_run(data_dir, "DoomTakeCover")
        real = EvalSettings(mode="real", max_len=args.max_len)
        dream = EvalSettings(mode="dream", max_len=args.dream_len, temperature=1.15)
        jobs = generation(agent, args.pop, args.trials)
        djobs = generation(agent, args.dream_pop, args.trials, seed=1)
        episodes = args.pop * args.trials

        walls, here = time_inprocess(agent, real, jobs, args.repeats)
        dwalls, dhere = time_inprocess(agent, dream, djobs, args.repeats)
        steps = int(sum(s.sum() for s in here))  # Doom's reward is +1 per step survived
        result = dict(
            benchmark="controller evaluation on a local Dask cluster (127.0.0.1, TLS, one-thread worker processes)",
            config=dict(
                game="DoomTakeCover",
                run=str(data_dir) if args.data_dir else "wm run --preset smoke",
                real=dict(
                    pop=args.pop, trials=args.trials, max_len=args.max_len, episodes=episodes, steps_played=steps
                ),
                dream=dict(pop=args.dream_pop, trials=args.trials, max_len=args.dream_len),
                repeats=args.repeats,
            ),
            in_process=dict(
                real_generation_s=median(walls, 3),
                real_generation_runs=[round(w, 3) for w in walls],
                episode_s=round(median(walls) / episodes, 4),
                step_ms=round(1000 * median(walls) / max(1, steps), 3),
                dream_generation_s=median(dwalls, 3),
            ),
            dask={},
        )
        print(
            f"in-process: real generation {median(walls, 3):.2f} s ({episodes} episodes, {steps} steps), "
            f"dream generation {median(dwalls, 3):.2f} s",
            flush=True,
        )
        for n in sizes:
            t0 = time.perf_counter()
            with DaskEvaluator(agent, workers=n) as ev:
                start_s = time.perf_counter() - t0
                r = time_dask(ev, real, jobs, args.repeats)
                rt = noop_round_trip(ev)
                d = time_dask(ev, dream, djobs, args.repeats)
                batched = [run_jobs(agent, dream, task_jobs(djobs, t)) for t in plan_tasks(dream, djobs, ev.batches)]
                flat_batched = np.concatenate([s for b in batched for s in b])
                wall, comp = median(r["walls"]), median(r["computes"])
                overhead = (wall * n - comp) / r["tasks"]
                per_task_episodes = episodes / r["tasks"]
                entry = dict(
                    cluster_start_s=round(start_s, 2),
                    real_first_generation_s=round(r["first_s"], 3),
                    real_generation_s=median(r["walls"], 3),
                    real_generation_runs=[round(w, 3) for w in r["walls"]],
                    tasks=r["tasks"],
                    task_compute_s=round(comp / r["tasks"], 4),
                    episode_s=round(comp / episodes, 4),
                    overhead_per_task_s=round(overhead, 4),
                    overhead_share=round(overhead / (comp / r["tasks"] + overhead), 4),
                    empty_task_round_trip_ms=round(1000 * rt, 3),
                    dream_generation_s=median(d["walls"], 3),
                    dream_compute_s=median(d["computes"], 3),
                    dream_batches=ev.batches,
                    real_identical_to_in_process=all(np.array_equal(a, b) for a, b in zip(r["scores"], here)),
                    dream_identical_to_same_batching=np.concatenate(d["scores"]).tolist() == flat_batched.tolist(),
                    dream_max_abs_diff_to_one_batch=float(
                        np.abs(np.concatenate(d["scores"]) - np.concatenate(dhere)).max()
                    ),
                )
                result["dask"][f"{n}_workers"] = entry
                print(
                    f"dask, {n} worker(s): real generation {entry['real_generation_s']:.2f} s "
                    f"(first {entry['real_first_generation_s']:.2f} s), {r['tasks']} tasks of "
                    f"{per_task_episodes:g} episodes, task {entry['task_compute_s']:.3f} s + overhead "
                    f"{entry['overhead_per_task_s']:.3f} s; empty task {entry['empty_task_round_trip_ms']:.1f} ms; "
                    f"dream {entry['dream_generation_s']:.2f} s; identical: {entry['real_identical_to_in_process']}",
                    flush=True,
                )
        if args.tls_compare > 0:
            c = tls_cost(agent, dict(real=(real, jobs), dream=(dream, djobs)), args.tls_compare, args.repeats)
            result["tls_vs_plain"] = c
            print(
                f"TLS vs plain TCP, {c['workers']} worker(s): real generation {c['tls']['real_generation_s']:.3f} "
                f"vs {c['plain']['real_generation_s']:.3f} s ({c['real_tls_cost_ms']:+.1f} ms), dream "
                f"{c['tls']['dream_generation_s']:.3f} vs {c['plain']['dream_generation_s']:.3f} s "
                f"({c['dream_tls_cost_ms']:+.1f} ms), empty task {c['tls']['empty_task_round_trip_ms']:.2f} vs "
                f"{c['plain']['empty_task_round_trip_ms']:.2f} ms; cluster start {c['tls']['cluster_start_s']:.2f} "
                f"vs {c['plain']['cluster_start_s']:.2f} s (certificate {c['certificate_s']:.3f} s); "
                f"identical scores: {c['real_identical'] and c['dream_identical']}",
                flush=True,
            )
        agent.close()
    if len(sizes) > 1 and f"{sizes[0]}_workers" in result["dask"]:
        a, b = result["dask"][f"{sizes[0]}_workers"], result["dask"][f"{sizes[-1]}_workers"]
        result["speedup_real"] = round(a["real_generation_s"] / b["real_generation_s"], 2)
        result["speedup_dream"] = round(a["dream_generation_s"] / b["dream_generation_s"], 2)
    import dask

    result["machine"] = machine(
        with_torch=True, dask=dask.__version__, smoke_run_made_s=round(made.wall, 1) if not args.data_dir else None
    )
    out = write_results(args.out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
