"""wmlib.evaluators: which evaluator scores a population (the fitness each gives is tested with each evaluator)."""

import pytest

from wmlib.agent import Agent, EvalSettings, InProcessEvaluator
from wmlib.evaluators import default_evaluator, make_evaluator
from wmlib.processes import ProcessPoolEvaluator


def test_an_unknown_evaluator_lists_the_valid_kinds(tmp_path):
    with pytest.raises(ValueError, match="unknown evaluator 'cloud'; valid: inprocess, processes, dask"):
        make_evaluator("cloud", tmp_path, "DoomTakeCover")


def test_make_evaluator_builds_the_named_kind(smoke_runs):
    d = smoke_runs("DoomTakeCover")
    with make_evaluator("inprocess", d, "DoomTakeCover") as ev:
        assert isinstance(ev, InProcessEvaluator) and ev.agent.game == "DoomTakeCover"
    with make_evaluator("processes", d, "DoomTakeCover", workers=3) as ev:
        assert isinstance(ev, ProcessPoolEvaluator) and ev.workers == 3
    for kind in ("inprocess", "processes"):  # named at once, by this process, not by dying workers
        with pytest.raises(ValueError, match="trained on DoomTakeCover"):
            make_evaluator(kind, d, "CarRacing-v3")


def test_default_evaluator_dreams_in_process_and_plays_the_real_game_in_processes(smoke_runs):
    d = smoke_runs("DoomTakeCover")
    dream, real = EvalSettings(mode="dream"), EvalSettings(mode="real")
    for settings, workers, kind in [(dream, 4, InProcessEvaluator), (real, 1, InProcessEvaluator),
                                    (real, 2, ProcessPoolEvaluator)]:
        with default_evaluator(settings, d, "DoomTakeCover", workers) as ev:
            assert type(ev) is kind, (settings.mode, workers)
    agent = Agent.from_run(d)
    with default_evaluator(dream, d, "DoomTakeCover", 4, agent) as ev:
        assert ev.agent is agent  # the caller's agent, not a second copy of V and M


def test_a_dask_evaluator_starts_a_tls_cluster_unless_tls_is_turned_off(smoke_runs):
    d = smoke_runs("DoomTakeCover")
    for tls, scheme in [(None, "tls://"), (False, "tcp://")]:
        with make_evaluator("dask", d, "DoomTakeCover", workers=1, tls=tls) as ev:
            assert ev.address.startswith(scheme), (tls, ev.address)
            assert ev.n_workers == 1
