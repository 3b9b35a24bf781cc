"""wmlib.processes: scoring on local worker processes gives the fitness values of scoring in this process, even
when a worker dies mid-generation."""

import threading
import time

import numpy as np
import psutil

from wmlib.agent import Agent, EvalSettings, plan_tasks, run_jobs, split_evenly
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
    with ProcessPoolEvaluator(d, "DoomTakeCover", workers=2) as ev:
        there = ev.evaluate(settings, jobs)
        dreamt = ev.evaluate(dream, jobs)
    assert [s.tolist() for s in here] == [s.tolist() for s in there]
    # Dream jobs go as one batched dream per worker: the in-process dreams of the same two groups.
    groups = split_evenly(jobs, 2)
    assert [len(g) for g in groups] == [2, 1]
    expected = [s for g in groups for s in run_jobs(agent, dream, g)]
    assert [s.tolist() for s in dreamt] == [s.tolist() for s in expected]


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
    jobs = [(rng.normal(0, 0.1, agent.spec.n_params).astype(np.float32), [11 + i, 29 + i, 47 + i, 61 + i])
            for i in range(2)]
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
