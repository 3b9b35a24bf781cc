"""Integration: the real pipeline at smoke scale, through the `wm` command line, on both real games."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import wm
from wmlib import episodes
from wmlib.evaluators import Agent, EvalSettings, ProcessPoolEvaluator, run_jobs
from wmlib.games import GAMES


@pytest.mark.parametrize("game", GAMES)
def test_wm_run_smoke_writes_every_artifact(smoke_runs, game):
    d = smoke_runs(game)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["game"] == game and cfg["preset"] == "smoke"
    assert len(episodes.list_episodes(d)) == cfg["num_rollouts"] == len(episodes.list_series(d))
    for f in ["vision/vision.pt", "vision/reconstructions.png", "vision/log.csv", "memory/memory.pt",
              "memory/log.csv", "memory/loss.png", "controller/controller.pt", "controller/es_state.pkl",
              "controller/log.csv", "controller/learning_curve.png", "test/episode_000.gif"]:
        assert (d / f).stat().st_size > 0, f
    for ckpt in ["vision/vision.pt", "memory/memory.pt", "controller/controller.pt"]:
        assert torch.load(d / ckpt, weights_only=True)["config"]["game"] == game
    scores = json.loads((d / "test/scores.json").read_text())
    assert len(scores["scores"]) == cfg["test_rollouts"]
    assert scores["mean"] == pytest.approx(np.mean(scores["scores"]))
    assert scores["std"] == pytest.approx(np.std(scores["scores"]))
    assert json.loads((d / "test/random_scores.json").read_text())["policy"] == "random"
    log = (d / "controller/log.csv").read_text().splitlines()
    assert len(log) == 1 + cfg["generations"]
    if game == "CarRacing-v3":
        assert json.loads((d / "test/scores.json").read_text())["renderer"] == cfg["renderer"]


def test_real_game_fitness_is_the_same_in_process_and_in_worker_processes(smoke_runs):
    d = smoke_runs("DoomTakeCover")
    agent = Agent.from_run(d)
    rng = np.random.default_rng(0)
    jobs = [(rng.normal(0, 0.1, agent.spec.n_params).astype(np.float32), [11 + i, 29 + i]) for i in range(3)]
    settings = EvalSettings(mode="real", max_len=40)
    here = run_jobs(agent, settings, jobs)
    agent.close()
    with ProcessPoolEvaluator(d, "DoomTakeCover", workers=2) as ev:
        there = ev.evaluate(settings, jobs)
    assert [s.tolist() for s in here] == [s.tolist() for s in there]


def test_controller_resume_is_exact(run_copy, tmp_path):
    d = run_copy("DoomTakeCover")
    shutil.rmtree(d / "controller")
    straight = tmp_path / "straight"
    shutil.copytree(d, straight)
    wm("controller", "--data_dir", straight, "--generations", 3, "--quiet")
    wm("controller", "--data_dir", d, "--generations", 1, "--quiet")
    wm("controller", "--data_dir", d, "--generations", 3, "--quiet")
    a = torch.load(d / "controller/controller.pt", weights_only=True)
    b = torch.load(straight / "controller/controller.pt", weights_only=True)
    assert a["generation"] == b["generation"] == 3
    assert torch.equal(a["mean"], b["mean"]) and torch.equal(a["params"], b["params"])
    drop_seconds = lambda p: [r.rsplit(",", 1)[0] for r in p.read_text().splitlines()]  # noqa: E731
    assert drop_seconds(d / "controller/log.csv") == drop_seconds(straight / "controller/log.csv")


def _wait_for(pred, timeout=120):
    t0 = time.time()
    while not pred():
        if time.time() - t0 > timeout:
            raise TimeoutError
        time.sleep(0.05)


def test_killed_rollouts_resume_without_losing_finished_episodes(tmp_path):
    d = tmp_path / "run"
    args = ["--game", "DoomTakeCover", "--preset", "smoke", "--data_dir", str(d), "--num_rollouts", "12",
            "--max_frames", "300", "--workers", "1", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "wmlib.cli", "rollouts", *args], start_new_session=True)
    try:
        _wait_for(lambda: len(episodes.list_episodes(d)) >= 3)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and the ViZDoom process it started
        proc.wait()
    before = {p.name: p.read_bytes() for p in episodes.list_episodes(d)}
    for p in episodes.list_episodes(d):
        episodes.load_episode(p)  # every file under its real name is whole
    assert len(before) < 12
    wm("rollouts", *args)
    after = episodes.list_episodes(d)
    assert len(after) == 12
    assert all(before[n] == (d / "episodes" / n).read_bytes() for n in before)


def test_killed_controller_resumes_from_last_generation(run_copy):
    d = run_copy("DoomTakeCover")
    shutil.rmtree(d / "controller")
    log = d / "controller/log.csv"
    proc = subprocess.Popen([sys.executable, "-m", "wmlib.cli", "controller", "--data_dir", str(d),
                             "--generations", "1000", "--quiet"], start_new_session=True)
    try:
        _wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 3)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = torch.load(d / "controller/controller.pt", weights_only=True)["generation"]
    assert done >= 2
    wm("controller", "--data_dir", d, "--generations", done + 1, "--quiet")
    rows = log.read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, done + 2))


def test_vision_resumes_and_reencodes(run_copy):
    d = run_copy("DoomTakeCover")
    wm("vision", "--data_dir", d, "--epochs", 2, "--quiet")
    ckpt = torch.load(d / "vision/vision.pt", weights_only=True)
    assert ckpt["epoch"] == 2
    assert [r.split(",")[0] for r in (d / "vision/log.csv").read_text().splitlines()] == ["epoch", "1", "2"]
    wm("memory", "--data_dir", d, "--quiet")
    tag = json.loads(str(np.load(episodes.list_series(d)[0])["meta"]))["vision"]
    assert tag.endswith(":2")  # series re-encoded with the newer V


def test_truncated_episode_is_named(run_copy):
    d = run_copy("DoomTakeCover")
    bad = episodes.list_episodes(d)[1]
    bad.write_bytes(bad.read_bytes()[:1000])
    shutil.rmtree(d / "vision")
    proc = wm("vision", "--data_dir", d, "--quiet", check=False)
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "corrupt or truncated" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_game_or_preset_lists_valid_ones(tmp_path):
    proc = wm("run", "--game", "Pong", "--data_dir", tmp_path, check=False)
    assert proc.returncode != 0 and "CarRacing-v3" in proc.stderr and "DoomTakeCover" in proc.stderr
    proc = wm("run", "--game", "DoomTakeCover", "--preset", "huge", "--data_dir", tmp_path, check=False)
    assert proc.returncode != 0 and "smoke" in proc.stderr and "paper" in proc.stderr
    proc = wm("test", "--data_dir", tmp_path / "new", check=False)
    assert proc.returncode == 2 and "--game is required" in proc.stderr


def test_memory_from_another_vision_is_refused(run_copy, tmp_path):
    d = run_copy("DoomTakeCover")
    other = tmp_path / "other"
    shutil.copytree(d / "episodes", other / "episodes")
    wm("vision", "--game", "DoomTakeCover", "--data_dir", other, "--z_dim", 32, "--quiet")
    shutil.copy(other / "vision/vision.pt", d / "vision/vision.pt")
    proc = wm("test", "--data_dir", d, "--quiet", check=False)
    assert proc.returncode == 2
    err = proc.stderr
    assert "memory.pt has z_dim=64" in err and "vision.pt has z_dim=32" in err, err


def test_run_directory_of_another_game_is_refused(smoke_runs):
    d = smoke_runs("DoomTakeCover")
    proc = wm("test", "--game", "CarRacing-v3", "--data_dir", d, check=False)
    assert proc.returncode == 2 and "config.json" in proc.stderr and "DoomTakeCover" in proc.stderr
