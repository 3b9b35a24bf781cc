"""wmlib.agent: what scores a controller. Settings from a run's config, the agent loaded from a run, and run_jobs,
the one function every evaluator calls wherever the work runs."""

import numpy as np
import pytest
import torch

from wmlib import devices, episodes, jobs
from wmlib.agent import Agent, EvalSettings, InProcessEvaluator, run_jobs, split_evenly
from wmlib.config import make_config
from wmlib.dream import dream_rollouts


def test_eval_settings_from_a_runs_config():
    cfg = make_config("DoomTakeCover", "smoke", in_dream=True, dream_max_len=40, max_steps=60, temperature=1.15)
    dream = EvalSettings.from_config(cfg)
    assert (dream.mode, dream.max_len, dream.temperature) == ("dream", 40, 1.15)
    assert (dream.done_threshold, dream.initial_z_noise, dream.renderer) == (
        cfg.done_threshold,
        cfg.initial_z_noise,
        cfg.renderer,
    )
    real = EvalSettings.from_config(cfg, mode="real")
    assert (real.mode, real.max_len) == ("real", 60)
    assert EvalSettings.from_config(cfg, max_len=7).max_len == 7
    assert EvalSettings.from_config(cfg, temperature=1.3).temperature == 1.3
    assert EvalSettings.from_config(make_config("DoomTakeCover", "smoke", in_dream=False)).mode == "real"
    with pytest.raises(ValueError, match="unknown evaluation mode 'imagined'; valid: real, dream"):
        EvalSettings.from_config(cfg, mode="imagined")


@pytest.fixture(scope="module")
def agent(smoke_runs):
    a = Agent.from_run(smoke_runs("DoomTakeCover"))
    yield a
    a.close()


def jobs_for(agent, counts, seed=0):
    rng = np.random.default_rng(seed)
    return [
        (rng.normal(0, 0.5, agent.spec.n_params).astype(np.float32), [100 * j + t for t in range(n)])
        for j, n in enumerate(counts)
    ]


def test_an_agent_from_a_run_has_its_models_and_the_dreams_first_frames(smoke_runs, agent):
    d = smoke_runs("DoomTakeCover")
    assert agent.game == "DoomTakeCover" and agent.spec.z_dim == agent.vision.z_dim == agent.memory.z_dim
    first = [episodes.load_series(f) for f in episodes.list_series(d)]
    assert np.array_equal(agent.pool_mu, np.stack([s["mu"][0] for s in first]))
    assert Agent.from_run(d, with_pool=False).pool_mu is None
    with pytest.raises(ValueError, match="trained on DoomTakeCover, but --game is CarRacing-v3"):
        Agent.from_run(d, "CarRacing-v3")


def test_run_jobs_dreams_all_jobs_in_one_batch_and_splits_the_scores_back(agent):
    jobs = jobs_for(agent, [3, 1, 4])
    settings = EvalSettings(mode="dream", max_len=40, temperature=1.15)
    scores = run_jobs(agent, settings, jobs)
    assert [len(s) for s in scores] == [3, 1, 4]
    params = np.concatenate([np.repeat(p[None], len(s), 0) for p, s in jobs])
    seeds = np.concatenate([s for _, s in jobs])
    batch, _ = dream_rollouts(
        agent.memory, agent.spec, params, seeds, agent.pool_mu, agent.pool_logvar, temperature=1.15, max_len=40
    )
    assert np.concatenate(scores).tolist() == batch.tolist()
    assert all(((s >= 1) & (s <= 40)).all() for s in scores)
    assert run_jobs(agent, settings, []) == []
    with pytest.raises(ValueError, match="unknown evaluation mode"):
        run_jobs(agent, EvalSettings(mode="imagined"), jobs)


def test_real_game_scores_do_not_depend_on_the_batch(agent):
    """A job's episodes play in lockstep; each game's score is the one it gets played alone."""
    settings = EvalSettings(mode="real", max_len=200)
    ((params, seeds),) = jobs_for(agent, [3], seed=1)
    together = run_jobs(agent, settings, [(params, seeds)])[0]
    assert together.min() < 200 == together.max()  # one game ends early and drops out of the batch
    alone = [run_jobs(agent, settings, [(params, [s])])[0][0] for s in seeds]
    assert together.tolist() == alone
    assert together.tolist() == agent.play(params, seeds, settings)[0].tolist()
    eps = agent.play_episodes(params, seeds[:1], settings)
    assert len(eps[0]["frames"]) == len(eps[0]["actions"]) == together[0]  # +1 per tic: score = steps
    assert eps[0]["frames"].shape[1:] == (64, 64, 3) and set(np.unique(eps[0]["actions"])) <= {-1.0, 0.0, 1.0}


def test_an_agent_rebuilt_from_its_state_scores_the_same(agent):
    jobs = jobs_for(agent, [2, 2], seed=2)
    settings = EvalSettings(mode="dream", max_len=40)
    with InProcessEvaluator(Agent.from_state(agent.state())) as ev:
        again = ev.evaluate(settings, jobs)
    assert [s.tolist() for s in again] == [s.tolist() for s in run_jobs(agent, settings, jobs)]


def test_a_copy_of_the_agent_resolves_its_device_flag_on_its_own_machine(agent):
    assert agent.device_flag == "cpu" and agent.state()["device"] == "cpu"  # the default: every worker on its CPU
    try:
        agent.on("AUTO")
        assert agent.device_flag == "auto" and agent.state()["device"] == "auto"
        copy = Agent.from_state(agent.state())
        assert copy.device == devices.resolve("auto") and copy.device_flag == "auto"
        assert agent.with_z_only(True).device_flag == "auto"
    finally:
        agent.on("cpu")
    state = dict(agent.state(), device="cuda:7")  # a worker without that GPU
    if torch.cuda.device_count() <= 7:
        with pytest.raises(ValueError, match=r"^--device cuda:7: this machine has "):
            Agent.from_state(state)


def test_split_evenly_keeps_order_and_drops_empty_parts():
    assert split_evenly(list(range(7)), 3) == [[0, 1], [2, 3, 4], [5, 6]]
    assert split_evenly([1, 2], 4) == [[1], [2]]
    assert split_evenly([], 2) == []


def test_the_planning_of_jobs_lives_in_wmlib_jobs_and_stays_importable_from_here():
    import wmlib.agent

    for name in (
        "REAL_ENVS_PER_BATCH",
        "EvalSettings",
        "Evaluator",
        "split_evenly",
        "plan_tasks",
        "task_jobs",
        "assemble_tasks",
    ):
        assert getattr(wmlib.agent, name) is getattr(jobs, name), name


def test_episode_cap_is_the_dream_s_length_in_the_dream_and_the_game_s_outside():
    cfg = make_config("DoomTakeCover", "smoke", dream_max_len=40, max_steps=60)
    assert (jobs.episode_cap(cfg, True), jobs.episode_cap(cfg, False)) == (40, 60)
    assert EvalSettings.from_config(cfg, mode="dream").max_len == 40
    assert EvalSettings.from_config(cfg, mode="real").max_len == 60


def test_the_in_process_evaluator_plays_the_planned_tasks_with_the_scores_of_run_jobs(agent):
    """Real-game jobs are played in chunks of REAL_ENVS_PER_BATCH, a dream as one batch: the scores of run_jobs."""
    big = jobs_for(agent, [jobs.REAL_ENVS_PER_BATCH + 2, 1], seed=3)
    real = EvalSettings(mode="real", max_len=15)
    assert len(jobs.plan_tasks(real, big, InProcessEvaluator.batches)) == 3
    dream = EvalSettings(mode="dream", max_len=40)
    small = jobs_for(agent, [3, 1, 2], seed=4)
    with InProcessEvaluator(agent) as ev:
        assert [s.tolist() for s in ev.evaluate(real, big)] == [s.tolist() for s in run_jobs(agent, real, big)]
        assert [s.tolist() for s in ev.evaluate(dream, small)] == [s.tolist() for s in run_jobs(agent, dream, small)]
        assert ev.evaluate(dream, []) == []


def test_early_stop_ends_training_episodes_and_never_the_ones_that_report_a_score(smoke_runs):
    """A car that never moves earns -0.1 a frame: a training episode ends `early_stop` frames after CarRacing's
    opening zoom (50 frames); settings made for a score (the mean's evaluation, `wm test`) play every frame."""
    d = smoke_runs("CarRacing-v3")
    cfg = make_config("CarRacing-v3", "smoke", max_steps=120, early_stop=10)
    training, scoring = EvalSettings.from_config(cfg, training=True), EvalSettings.from_config(cfg)
    assert (training.early_stop, scoring.early_stop) == (10, 0)
    assert (
        EvalSettings.from_config(
            make_config("DoomTakeCover", "smoke", early_stop=10), training=True, mode="dream"
        ).early_stop
        == 0
    )
    agent = Agent.from_run(d)
    parked = np.zeros(agent.spec.n_params, np.float32)
    parked[-2] = -10.0  # the gas output's bias: tanh(-10) = -1, gas (a + 1) / 2 = 0
    try:
        _, stopped, _ = agent.play(parked, [3, 4], training)
        _, whole, _ = agent.play(parked, [3, 4], scoring)
    finally:
        agent.close()
    assert stopped.tolist() == [60, 60] and whole.tolist() == [120, 120]
