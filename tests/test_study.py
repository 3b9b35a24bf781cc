"""wmlib.study: the dream-fidelity check (dream vs real game for the same controllers) and the temperature study,
on a real smoke run."""

from __future__ import annotations

import json

import numpy as np
from matplotlib.figure import Figure

from wmlib import episodes, study
from wmlib.config import make_config
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
    out = wm_study("--data_dir", d, "--fidelity", "--candidates", 1, "--episodes", 1, "--temperatures", 1.15)
    assert "random 1" in out and "trained (generation 2)" in out and "dream 1.15" in out


def test_temperature_study_trains_and_scores_one_controller_per_temperature(run_copy):
    d = run_copy("DoomTakeCover")
    cfg = make_config("DoomTakeCover", "smoke")
    main_controller = (d / "controller" / "controller.pt").read_bytes()
    rows = study.temperature_study(cfg, d, temperatures=(1.0, 1.3), generations=1, test_episodes=1, dream_episodes=3,
                                 progress=False)
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
    again = study.temperature_study(cfg, d, temperatures=(1.0, 1.3), generations=1, test_episodes=1, dream_episodes=3,
                                  progress=False)
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
    rows = study.temperature_study(cfg, d, temperatures=(cfg.temperature,), test_episodes=1, dream_episodes=2,
                                 progress=False)
    assert not (d / "temperatures" / f"tau_{cfg.temperature:.2f}").exists()
    assert (d / "controller" / "controller.pt").read_bytes() == before
    assert rows[0]["generations"] == cfg.generations and rows[0]["real_episodes"] == 1
    assert study.read_study(d) == rows


def test_temperature_studies_run_one_at_a_time_fill_one_table(run_copy):
    d = run_copy("DoomTakeCover")
    cfg = make_config("DoomTakeCover", "smoke")
    other = study.temperature_study(cfg, d, temperatures=(1.3,), generations=1, test_episodes=1, dream_episodes=2,
                                    progress=False)
    own = study.temperature_study(cfg, d, temperatures=(cfg.temperature,), test_episodes=1, dream_episodes=2,
                                  progress=False)
    assert (d / "temperatures" / "tau_1.30" / "controller" / "controller.pt").exists()
    assert study.read_study(d) == own + other  # sorted by temperature, both kept
    again = study.temperature_study(cfg, d, temperatures=(1.3,), generations=1, test_episodes=1, dream_episodes=2,
                                    progress=False)
    assert study.read_study(d) == own + again and again[0]["real_mean"] == other[0]["real_mean"]  # resumed


def wm_study(*args) -> str:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "wmlib.study", *map(str, args)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
