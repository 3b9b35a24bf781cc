"""wmlib.evaluators: which evaluator scores a population, chosen in one place (the fitness each gives is tested with
each evaluator)."""

import pytest

from wmlib.agent import Agent, InProcessEvaluator
from wmlib.config import make_config
from wmlib.evaluators import choose, default_kind, named_kind
from wmlib.processes import ProcessPoolEvaluator


def test_the_kind_named_by_the_flags_and_the_default():
    assert named_kind() is None and named_kind("processes") == "processes"
    assert named_kind(scheduler="tcp://h:8786") == named_kind(tls=False) == named_kind("dask", tls=True) == "dask"
    for kind in ("inprocess", "processes"):
        with pytest.raises(ValueError, match=f"--scheduler and --tls go with --evaluator dask, not --evaluator {kind}"):
            named_kind(kind, scheduler="tcp://h:8786")
    with pytest.raises(ValueError, match="unknown evaluator 'cloud'; valid: inprocess, processes, dask"):
        named_kind("cloud")
    assert [default_kind(mode, workers) for mode, workers in [("dream", 4), ("real", 1), ("real", 2)]] == [
        "inprocess",
        "inprocess",
        "processes",
    ]
    with pytest.raises(ValueError, match="unknown evaluation mode 'imagined'"):
        default_kind("imagined", 2)


def test_choose_builds_the_named_kind_or_the_default_with_one_agent(smoke_runs):
    d = smoke_runs("DoomTakeCover")
    dream, real = (make_config("DoomTakeCover", "smoke", in_dream=flag, workers=2) for flag in (True, False))
    with choose(dream, d, "inprocess") as ev:
        assert isinstance(ev, InProcessEvaluator) and ev.agent.game == "DoomTakeCover"
    with choose(dream, d, "processes", workers=3) as ev:
        assert isinstance(ev, ProcessPoolEvaluator) and ev.workers == 3
    for cfg, workers, kind in [
        (dream, None, InProcessEvaluator),
        (real, 1, InProcessEvaluator),
        (real, None, ProcessPoolEvaluator),
    ]:
        with choose(cfg, d, workers=workers) as ev:
            assert type(ev) is kind, (cfg.in_dream, workers)
    with choose(dream, d, mode="real") as ev:  # a caller that plays the real game whatever the run trains in
        assert type(ev) is ProcessPoolEvaluator
    agent = Agent.from_run(d)
    for kind in ("inprocess", "processes", None):
        with choose(real, kind=kind, agent=agent) as ev:
            assert ev.agent is agent  # the caller's agent, not a second copy of V and M
    carracing = make_config("CarRacing-v3", "smoke")
    for kind in ("inprocess", "processes"):  # named at once, by this process, not by dying workers
        with pytest.raises(ValueError, match="trained on DoomTakeCover"):
            choose(carracing, d, kind)
        with pytest.raises(ValueError, match="the agent plays DoomTakeCover, but this run is CarRacing-v3"):
            choose(carracing, kind=kind, agent=agent)


def test_a_dask_evaluator_starts_a_tls_cluster_unless_tls_is_turned_off(smoke_runs):
    d = smoke_runs("DoomTakeCover")
    cfg = make_config("DoomTakeCover", "smoke", workers=1)
    for tls, scheme in [(None, "tls://"), (False, "tcp://")]:
        with choose(cfg, d, "dask", tls=tls) as ev:
            assert ev.address.startswith(scheme), (tls, ev.address)
            assert ev.n_workers == 1 and ev.agent.game == "DoomTakeCover"
