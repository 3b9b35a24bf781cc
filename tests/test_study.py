"""wmlib.study: the dream-fidelity check (dream vs real game for the same controllers) on a real smoke run."""

from __future__ import annotations

import numpy as np

from wmlib import study
from wmlib.config import make_config


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


def wm_study(*args) -> str:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "wmlib.study", *map(str, args)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
