"""wmlib.processes: scoring on local worker processes gives the fitness values of scoring in this process, even
when a worker dies mid-generation; the workers die with the process that started them."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
from conftest import wait_for

from wmlib.agent import Agent, EvalSettings, run_jobs
from wmlib.jobs import plan_tasks, task_jobs
from wmlib.processes import ProcessPoolEvaluator


def test_real_game_fitness_is_the_same_in_process_and_in_worker_processes(smoke_runs):
    d = smoke_runs("DoomTakeCover")
    agent = Agent.from_run(d)
    rng = np.random.default_rng(0)
    jobs = [(rng.normal(0, 0.1, agent.spec.n_params).astype(np.float32), [11 + i, 29 + i]) for i in range(3)]
    settings = EvalSettings(mode="real", max_len=40)
    dream = EvalSettings(mode="dream", max_len=40, temperature=1.15)
    here = run_jobs(agent, settings, jobs)
    agent.close()
    with ProcessPoolEvaluator(agent, workers=2) as ev:  # the agent's V and M, sent to the workers as weights
        there = ev.evaluate(settings, jobs)
        dreamt = ev.evaluate(dream, jobs)
    assert [s.tolist() for s in here] == [s.tolist() for s in there]
    # A dream goes as one batched dream per worker, planned as every evaluator plans it: the in-process dreams
    # of the same two batches (3 and 3 episodes, the second job's split between them).
    tasks = plan_tasks(dream, jobs, 2)
    assert tasks == [[(0, 0, 2), (1, 0, 1)], [(1, 1, 2), (2, 0, 2)]]
    pieces = [s for t in tasks for s in run_jobs(agent, dream, task_jobs(jobs, t))]
    assert np.concatenate([s for s in dreamt]).tolist() == np.concatenate(pieces).tolist()


def test_one_long_job_is_split_over_the_workers_with_the_scores_of_one_process(smoke_runs):
    """The CMA-ES mean's evaluation is one job of many episodes: it goes to every worker, in chunks, and comes back
    with the scores one process gives."""
    d = smoke_runs("DoomTakeCover")
    agent = Agent.from_run(d)
    job = [(np.random.default_rng(3).normal(0, 0.1, agent.spec.n_params).astype(np.float32), list(range(40)))]
    settings = EvalSettings(mode="real", max_len=30)
    here = run_jobs(agent, settings, job)
    agent.close()
    assert [len(t) for t in plan_tasks(settings, job, 2)] == [1, 1, 1]  # chunks of 16, 16 and 8 episodes
    with ProcessPoolEvaluator(d, "DoomTakeCover", workers=2) as ev:
        there = ev.evaluate(settings, job)
    assert len(there) == 1 and there[0].tolist() == here[0].tolist()


def spawned_workers() -> set[int]:
    """This process's pool workers (not, say, multiprocessing's resource tracker)."""
    return {p.pid for p in psutil.Process().children() if "spawn_main" in " ".join(p.cmdline())}


def test_a_worker_killed_mid_generation_costs_a_retry_not_a_wrong_fitness(smoke_runs):
    d = smoke_runs("DoomTakeCover")
    agent = Agent.from_run(d)
    rng = np.random.default_rng(0)
    jobs = [
        (rng.normal(0, 0.1, agent.spec.n_params).astype(np.float32), [11 + i, 29 + i, 47 + i, 61 + i]) for i in range(2)
    ]
    settings = EvalSettings(mode="real", max_len=200)
    out = {}
    before = spawned_workers()
    with ProcessPoolEvaluator(d, "DoomTakeCover", workers=1) as ev:
        first_pool = ev.pool
        thread = threading.Thread(target=lambda: out.update(scores=ev.evaluate(settings, jobs)))
        thread.start()
        t0 = time.monotonic()
        while not spawned_workers() - before and time.monotonic() - t0 < 60:
            time.sleep(0.05)
        time.sleep(0.5)
        assert thread.is_alive(), "the generation ended before the worker could be killed"
        (victim,) = [psutil.Process(pid) for pid in spawned_workers() - before]
        tree = [victim, *victim.children(recursive=True)]  # the worker and the game it plays
        for p in tree:
            p.kill()
        # Wait for the game only: the worker is the pool's child, and a child reaped here would look alive to the
        # pool forever (its manager thread would then spin at this process's exit).
        psutil.wait_procs(tree[1:], timeout=10)
        thread.join(timeout=240)
        assert not thread.is_alive(), "the generation hung after its worker died"
        assert ev.pool is not first_pool  # a new pool took the generation over
    here = run_jobs(agent, settings, jobs)
    agent.close()
    assert [s.tolist() for s in out["scores"]] == [s.tolist() for s in here]
    assert not spawned_workers() - before  # no worker left behind


def alive(procs) -> list:
    """Those of ``procs`` (psutil.Process) that still run (an exited process nobody reaped yet does not)."""
    running = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                running.append(p)
        except psutil.NoSuchProcess:
            pass
    return running


def test_killing_wm_controller_kills_its_worker_processes_and_their_games(run_copy):
    """`wm controller --evaluator processes` killed with SIGKILL mid-generation: within 2 s no worker, and no
    ViZDoom game a worker started, is left."""
    d = run_copy("DoomTakeCover")
    shutil.rmtree(d / "controller")  # a new controller, evolved in the real game
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wmlib.cli",
            "controller",
            "--data_dir",
            str(d),
            "--evaluator",
            "processes",
            "--workers",
            "2",
            "--no-in_dream",
            "--generations",
            "500",
            "--quiet",
        ],
        start_new_session=True,
    )
    try:
        parent = psutil.Process(proc.pid)

        def command(p) -> str:
            try:
                return " ".join(p.cmdline())
            except psutil.Error:  # gone meanwhile
                return ""

        def workers():
            return [p for p in parent.children() if "spawn_main" in command(p)]

        def pool():  # the two workers and what they started: the games they play (and the games' watchers)
            return workers() + [g for w in workers() for g in w.children()]

        def playing(w) -> bool:
            return any("vizdoom/vizdoom" in command(g) for g in w.children())

        wait_for(lambda: proc.poll() is not None or (len(workers()) == 2 and all(map(playing, workers()))))
        assert proc.poll() is None, "wm controller ended before it could be killed"
        victims = pool()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 2.0
        while alive(victims) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(victims), "worker processes (or their games) outlived the killed command"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the command's process group
        proc.wait()


def test_a_pool_used_from_a_thread_that_ended_keeps_its_workers(smoke_runs):
    """The workers watch their parent process, not the thread that started them: a generation scored from a
    short-lived thread leaves the pool whole for the next one."""
    d = smoke_runs("DoomTakeCover")
    settings = EvalSettings(mode="dream", max_len=20, temperature=1.15)
    agent = Agent.from_run(d)
    jobs = [(np.zeros(agent.spec.n_params, np.float32), [1, 2])]
    agent.close()
    before = spawned_workers()
    with ProcessPoolEvaluator(d, "DoomTakeCover", workers=1) as ev:
        out = {}
        thread = threading.Thread(target=lambda: out.update(scores=ev.evaluate(settings, jobs)))
        thread.start()
        thread.join()
        pool, workers = ev.pool, spawned_workers() - before
        time.sleep(1.0)
        again = ev.evaluate(settings, jobs)
        assert ev.pool is pool and spawned_workers() - before == workers and len(workers) == 1
    assert [s.tolist() for s in again] == [s.tolist() for s in out["scores"]]
