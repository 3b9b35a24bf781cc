"""wmlib.study: the dream-fidelity check (dream vs real game for the same controllers) and the temperature study,
on a real smoke run."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from wmlib import episodes, rundir, study
from wmlib.agent import Agent
from wmlib.config import make_config
from wmlib.controller import load_controller
from wmlib.plots import plot_temperature_study


def test_dream_vs_real_scores_the_same_controllers_in_both(run_copy):
    d = run_copy("DoomTakeCover")
    cfg = make_config("DoomTakeCover", "smoke")
    rows = study.dream_vs_real(cfg, d, candidates=2, episodes=2, temperatures=(1.0, 1.3))
    assert [r["name"] for r in rows] == ["random 1", "random 2", "trained (generation 2)"]
    for r in rows:
        assert 1 <= r["real_mean"] <= cfg.max_steps
        assert set(r["dream_mean"]) == {1.0, 1.3}
        assert all(1 <= v <= cfg.dream_max_len for v in r["dream_mean"].values())
    # seeded: the same controllers and episodes again
    again = study.dream_vs_real(cfg, d, candidates=2, episodes=2, temperatures=(1.0, 1.3))
    assert [r["real_mean"] for r in again] == [r["real_mean"] for r in rows]
    assert np.allclose([r["dream_mean"][1.3] for r in again], [r["dream_mean"][1.3] for r in rows])


def test_fidelity_from_the_command_line(run_copy):
    d = run_copy("DoomTakeCover")
    out = wm_study("--data_dir", d, "--fidelity", "--candidates", 2, "--episodes", 1, "--temperatures", 1.15)
    assert "random 1" in out and "trained (generation 2)" in out and "dream 1.15" in out
    assert "rank correlation" in out and "mean overestimate" in out and "trained's overestimate" in out
    record = json.loads((d / "fidelity.json").read_text())
    rows, summary = record["rows"], record["summary"]["1.15"]
    real, dream = [r["real_mean"] for r in rows], [r["dream_mean"]["1.15"] for r in rows]
    assert summary == study.fidelity_summary(real, dream, trained=2)
    assert f"{summary['mean_overestimate']:.1f}" in out


def test_rank_correlation_is_spearmans_rho():
    assert study.rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert study.rank_correlation([1, 2, 3, 4], [9, 1, 0, -5]) == pytest.approx(-1.0)
    # rho = 1 - 6 sum d^2 / (n (n^2 - 1)) without ties: ranks (0, 1, 2, 3, 4) against (1, 0, 2, 4, 3)
    assert study.rank_correlation([5, 6, 7, 8, 9], [2, 1, 3, 9, 4]) == pytest.approx(1 - 6 * 4 / (5 * 24))
    # ties share their mean rank: (0.5, 0.5, 2) against (0, 1, 2) -> Pearson of the ranks
    assert study.rank_correlation([3, 3, 5], [1, 2, 3]) == pytest.approx(np.corrcoef([0.5, 0.5, 2], [0, 1, 2])[0, 1])
    assert np.isnan(study.rank_correlation([1, 1, 1], [1, 2, 3]))
    assert study.fidelity_summary([1, 2, 3], [5, 5, 5])["rank_correlation"] is None  # JSON has no nan
    with pytest.raises(ValueError, match="equally long"):
        study.rank_correlation([1, 2], [1, 2, 3])


def test_fidelity_summary_of_an_exploited_and_of_a_faithful_dream():
    real = [200.0, 250.0, 180.0, 160.0]
    exploited = study.fidelity_summary(real, [210.0, 240.0, 600.0, 1600.0], trained=3)
    assert exploited["trained_overestimate"] == 1440.0
    assert exploited["mean_overestimate"] == pytest.approx((10 - 10 + 420 + 1440) / 4)
    assert exploited["rank_correlation"] < 0  # the dream ranks the worst real controllers best
    faithful = study.fidelity_summary(real, [205.0, 260.0, 170.0, 150.0], trained=3)
    assert faithful["rank_correlation"] == pytest.approx(1.0)
    assert faithful["overestimate_ratio"] == pytest.approx(785 / 790)
    assert "trained_overestimate" not in study.fidelity_summary(real, real)


def test_temperature_study_trains_and_scores_one_controller_per_temperature(run_copy):
    d = run_copy("DoomTakeCover")
    cfg = make_config("DoomTakeCover", "smoke")
    main_controller = (d / "controller" / "controller.pt").read_bytes()
    rows = study.temperature_study(
        cfg, d, temperatures=(1.0, 1.3), generations=1, test_episodes=1, dream_episodes=3, progress=False
    )
    assert [r["temperature"] for r in rows] == [1.0, 1.3]
    for r in rows:
        sub = d / "temperatures" / f"tau_{r['temperature']:.2f}"
        saved = json.loads((sub / "config.json").read_text())
        assert saved["temperature"] == r["temperature"] and saved["in_dream"]
        assert (sub / "controller" / "controller.pt").exists()
        assert (sub / "vision" / "vision.pt").stat().st_size == (d / "vision" / "vision.pt").stat().st_size
        assert len(episodes.list_series(sub)) == len(episodes.list_series(d))
        assert 1 <= r["dream_mean"] <= cfg.dream_max_len and 1 <= r["real_mean"] <= cfg.max_steps
        assert r["generations"] == 1
    assert (d / "controller" / "controller.pt").read_bytes() == main_controller  # the run's own C is untouched
    again = study.temperature_study(
        cfg, d, temperatures=(1.0, 1.3), generations=1, test_episodes=1, dream_episodes=3, progress=False
    )
    assert again == rows  # everything resumed: same controllers, same seeds, same scores
    assert isinstance(plot_temperature_study(rows, random_score=10.0), Figure)


def test_real_scores_reuses_a_matching_test_result(run_copy):
    d = run_copy("DoomTakeCover")
    cfg = make_config("DoomTakeCover", "smoke")
    first = study.real_scores(cfg, d, rollouts=1, progress=False)
    path = d / "test" / "scores.json"
    stamp = path.stat().st_mtime_ns
    assert study.real_scores(cfg, d, rollouts=1, progress=False) == first and path.stat().st_mtime_ns == stamp
    study.real_scores(cfg, d, rollouts=2, progress=False)
    assert json.loads(path.read_text())["episodes"] == 2


def test_temperature_study_lets_the_runs_own_controller_stand_for_its_temperature(run_copy):
    d = run_copy("DoomTakeCover")
    cfg = make_config("DoomTakeCover", "smoke")  # a dream-trained controller at tau 1.15
    before = (d / "controller" / "controller.pt").read_bytes()
    rows = study.temperature_study(
        cfg, d, temperatures=(cfg.temperature,), test_episodes=1, dream_episodes=2, progress=False
    )
    assert not (d / "temperatures" / f"tau_{cfg.temperature:.2f}").exists()
    assert (d / "controller" / "controller.pt").read_bytes() == before
    assert rows[0]["generations"] == cfg.generations and rows[0]["real_episodes"] == 1
    assert study.read_study(d) == rows


def test_temperature_studies_run_one_at_a_time_fill_one_table(run_copy):
    d = run_copy("DoomTakeCover")
    cfg = make_config("DoomTakeCover", "smoke")
    other = study.temperature_study(
        cfg, d, temperatures=(1.3,), generations=1, test_episodes=1, dream_episodes=2, progress=False
    )
    own = study.temperature_study(
        cfg, d, temperatures=(cfg.temperature,), test_episodes=1, dream_episodes=2, progress=False
    )
    assert (d / "temperatures" / "tau_1.30" / "controller" / "controller.pt").exists()
    assert study.read_study(d) == own + other  # sorted by temperature, both kept
    again = study.temperature_study(
        cfg, d, temperatures=(1.3,), generations=1, test_episodes=1, dream_episodes=2, progress=False
    )
    assert study.read_study(d) == own + again and again[0]["real_mean"] == other[0]["real_mean"]  # resumed


def wm_study(*args) -> str:
    from conftest import wm

    return wm("study", *args).stdout


def test_the_z_only_ablation_trains_on_the_runs_v_and_m_and_plays_the_same_test_episodes(run_copy):
    from conftest import wm

    d = run_copy("CarRacing-v3")
    own = (d / "controller" / "controller.pt").read_bytes()
    parent = (d / rundir.CONFIG).read_text()
    run = rundir.load_config(d)
    sub = d / rundir.Z_ONLY
    # a setting of the z-only C without --z_only is named, and nothing is made
    proc = wm("study", "--data_dir", d, "--early_stop", 7, check=False)
    assert proc.returncode != 0 and "--early_stop" in proc.stderr and "--z_only" in proc.stderr
    assert not sub.exists()
    out = wm_study(
        "--data_dir", d, "--z_only", "--generations", 1, "--episodes", 2, "--early_stop", 7, "--sigma0", 0.05
    )
    assert "C reads z only" in out and "C reads z and h" in out
    record = json.loads((d / rundir.ABLATION).read_text())
    params, ckpt = load_controller(sub)
    cfg = rundir.load_config(sub)
    assert cfg.z_only and ckpt["spec"]["z_only"] and params.shape == (cfg.z_dim * 3 + 3,)
    assert record["generations"] == 1 and record["z_only"]["controller"] == str(rundir.path(sub, rundir.CONTROLLER))
    assert record["z_only"]["episodes"] == record["z_and_h"]["episodes"] == 2
    assert record["z_and_h"] == json.loads((d / "test" / "scores.json").read_text())  # the run's own `wm test`
    assert record["z_only"] == json.loads((sub / "test" / "scores.json").read_text())
    # the z-only C's own settings, the run's config.json untouched
    assert (cfg.early_stop, cfg.sigma0, cfg.generations) == (7, 0.05, 1) and run.early_stop != 7
    assert (d / rundir.CONFIG).read_text() == parent
    # V and M are the run's own files, and the run's controller is untouched
    for rel in (rundir.VISION, rundir.MEMORY):
        assert (sub / rel).read_bytes() == (d / rel).read_bytes()
    assert (d / "controller" / "controller.pt").read_bytes() == own
    # the agent a worker rebuilds from the run (or from its state) reads z alone too
    agent = Agent.from_run(sub)
    assert agent.spec.z_only and Agent.from_state(agent.state()).spec == agent.spec
    assert not Agent.from_run(d).spec.z_only
    # resumed without the flags: the z-only C's settings hold, and its search goes on to generation 2
    wm_study("--data_dir", d, "--z_only", "--generations", 2, "--episodes", 1)
    cfg = rundir.load_config(sub)
    assert (cfg.early_stop, cfg.sigma0, cfg.generations) == (7, 0.05, 2)
    with open(rundir.log_path(sub, "controller")) as f:
        assert [row["generation"] for row in csv.DictReader(f)] == ["1", "2"]
    # a population that the search's state fixes is refused by name, config.json left as it was
    before = (sub / rundir.CONFIG).read_text()
    proc = wm("study", "--data_dir", d, "--z_only", "--pop", run.pop + 1, check=False)
    assert proc.returncode != 0 and f"--pop {run.pop + 1}" in proc.stderr, proc.stderr
    assert (sub / rundir.CONFIG).read_text() == before
