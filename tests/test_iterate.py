"""wm iterate: real episodes played by a run's controller join the data, M continues on them in a new run."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import wm

from wmlib import episodes, iterate, pretrained
from wmlib.config import make_config
from wmlib.controller import load_controller
from wmlib.games import make_env
from wmlib.memory import load_memory


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_round_adds_controller_episodes_and_continues_m(run_copy, tmp_path):
    src = run_copy("DoomTakeCover")
    before = {p.relative_to(src): digest(p) for p in src.rglob("*") if p.is_file()}
    out = tmp_path / "round1"
    rec = iterate.iterate(src, out, draws=1, perturbed=1, episodes_each=2, more_rnn_steps=3, progress=False)

    # the source run is untouched
    assert {p.relative_to(src): digest(p) for p in src.rglob("*") if p.is_file()} == before
    n_src = len(episodes.list_episodes(src))
    assert rec["round"] == 1 and rec["first_episode"] == n_src and rec["episodes"] == 6
    assert [c["name"] for c in rec["controllers"]] == ["trained", "perturbed 1", "draw 1"]
    new = episodes.list_episodes(out)[n_src:]
    assert len(new) == 6 and len(episodes.list_series(out)) == n_src + 6
    cfg = make_config("DoomTakeCover", "smoke")
    for i, path in enumerate(new):
        ep = episodes.load_episode(path)
        assert ep["meta"]["policy"] == "controller" and ep["meta"]["round"] == 1
        assert ep["meta"]["controller"] == rec["controllers"][i // 2]["name"]
        n = len(ep["frames"])
        assert 1 <= n <= cfg.max_frames and ep["actions"].shape == (n, 1) and len(ep["dones"]) == n
        assert set(np.unique(ep["actions"])) <= {-1.0, 0.0, 1.0}
        assert ep["dones"][:-1].sum() == 0 and ep["meta"]["score"] == float(ep["rewards"].sum())
        assert ep["frames"][0].any()
    first = episodes.load_episode(new[0])
    env = make_env("DoomTakeCover")
    try:  # the first stored frame is the one the game started from
        assert np.array_equal(first["frames"][0], env.reset(seed=first["meta"]["seed"])[0])
    finally:
        env.close()
    assert rec["controllers"][0]["scores"] == [float(episodes.load_episode(p)["meta"]["score"]) for p in new[:2]]

    src_step = load_memory(src)[1]["step"]
    assert load_memory(out)[1]["step"] == src_step + 3 == rec["rnn_steps"]
    assert json.loads((out / "config.json").read_text())["rnn_steps"] == src_step + 3
    assert json.loads((out / "iteration.json").read_text())["seconds"].keys() >= {"play", "encode", "memory"}

    # the same seed plays the same episodes; a second round plays new ones
    again = iterate.iterate(
        src, tmp_path / "again", draws=1, perturbed=1, episodes_each=2, more_rnn_steps=3, progress=False
    )
    assert again["controllers"] == rec["controllers"]
    for a, b in zip(new, episodes.list_episodes(tmp_path / "again")[n_src:]):
        assert np.array_equal(episodes.load_episode(a)["actions"], episodes.load_episode(b)["actions"])
    wm("controller", "--data_dir", out, "--quiet")
    rec2 = iterate.iterate(
        out, tmp_path / "round2", draws=0, perturbed=1, episodes_each=1, more_rnn_steps=1, progress=False
    )
    assert rec2["round"] == 2 and rec2["first_episode"] == n_src + 6 and rec2["previous"]["round"] == 1
    seeds = lambda d, r: [episodes.load_episode(p)["meta"]["seed"] for p in episodes.list_episodes(d)[r]]  # noqa
    assert not set(seeds(tmp_path / "round2", slice(n_src + 6, None))) & set(seeds(out, slice(n_src, None)))

    # each round also scores its controllers in the dream the played controller was trained in: its fidelity
    for row in rec["controllers"]:
        assert 1 <= row["dream_mean"] <= cfg.dream_max_len
    fid = rec["fidelity"]
    assert fid["controllers"] == 3 and fid["temperature"] == cfg.temperature
    assert fid["trained_overestimate"] == rec["controllers"][0]["dream_mean"] - rec["controllers"][0]["mean"]
    assert fid == json.loads((out / "iteration.json").read_text())["fidelity"]

    # every round's controller is kept, with the M whose dream it was trained in
    assert [r["round"] for r in iterate.rounds(tmp_path / "round2")] == [0, 1]  # round 2's C: not trained yet
    wm("controller", "--data_dir", tmp_path / "round2", "--quiet")
    kept = iterate.rounds(tmp_path / "round2")
    assert [r["round"] for r in kept] == [0, 1, 2]
    for r, run in zip(kept, (src, out, tmp_path / "round2")):
        assert np.array_equal(load_controller(r["controller"])[0], load_controller(run)[0])
        mine, theirs = load_memory(r["memory"])[0].state_dict(), load_memory(run)[0].state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    assert kept[0]["real_mean"] == rec["controllers"][0]["mean"] and kept[0]["dream_mean"] is not None
    assert kept[1]["real_mean"] == rec2["controllers"][0]["mean"] and kept[2]["real_mean"] is None
    assert iterate.rounds(src) == [
        dict(
            round=0,
            controller=src / "controller" / "controller.pt",
            memory=src / "memory" / "memory.pt",
            generation=2,
            real_mean=None,
            dream_mean=None,
        )
    ]
    # they ship with an exported agent, and load from there (weights only)
    dest = pretrained.export(tmp_path / "round2", tmp_path / "shipped")
    assert [load_controller(r["controller"])[1]["generation"] for r in iterate.rounds(dest)] == [2, 2, 2]
    assert "dream fidelity over the 3 controllers" in (dest / "CARD.md").read_text()


def test_a_round_can_give_its_new_episodes_a_share_of_m_s_windows(run_copy, tmp_path):
    from wmlib.memory import SeriesStream

    src = run_copy("DoomTakeCover")
    out = tmp_path / "r1"
    proc = wm(
        "iterate",
        "--data_dir",
        src,
        "--out",
        out,
        "--draws",
        1,
        "--perturbed",
        0,
        "--episodes",
        1,
        "--more_rnn_steps",
        2,
        "--recent_share",
        0.5,
        "--quiet",
    )
    assert "dream fidelity" in proc.stdout
    assert json.loads((out / "config.json").read_text())["recent_share"] == 0.5
    assert json.loads((out / "iteration.json").read_text())["recent_share"] == 0.5
    stream = SeriesStream(episodes.list_series(out), z_dim=make_config("DoomTakeCover", "smoke").z_dim)
    recent = stream.rounds == 1
    assert recent.sum() == 2 and (stream.rounds[~recent] == 0).all()
    weights = stream.episode_weights(0.5)
    assert weights.sum() == pytest.approx(1.0) and weights[recent].sum() == pytest.approx(0.5)
    assert stream.episode_weights(0.0) is None
    proc = wm("iterate", "--data_dir", src, "--out", tmp_path / "bad", "--recent_share", 1.0, "--quiet", check=False)
    assert proc.returncode == 2 and "--recent_share" in proc.stderr and not (tmp_path / "bad").exists()


def test_perturbed_controllers_are_near_the_trained_one(run_copy):
    src = run_copy("DoomTakeCover")
    cfg = make_config("DoomTakeCover", "smoke")
    params, _ = load_controller(src)
    ctrls = iterate.iteration_controllers(cfg, params, 1, draws=3, perturbed=2, noise=0.01)
    assert [n for n, _ in ctrls] == ["trained", "perturbed 1", "perturbed 2", "draw 1", "draw 2", "draw 3"]
    assert np.array_equal(ctrls[0][1], params)
    assert all(np.abs(p - params).std() < 0.02 for _, p in ctrls[1:3])
    assert all(abs(p.std() - cfg.sigma0) < 0.5 * cfg.sigma0 for _, p in ctrls[3:])
    assert not np.array_equal(ctrls[1][1], iterate.iteration_controllers(cfg, params, 2, 0, 2, 0.01)[1][1])


def test_wm_iterate_then_run_resumes_and_refuses_bad_targets(run_copy, smoke_runs, tmp_path):
    src = run_copy("DoomTakeCover")
    out = tmp_path / "r1"
    proc = wm(
        "iterate",
        "--data_dir",
        src,
        "--out",
        out,
        "--draws",
        1,
        "--perturbed",
        0,
        "--episodes",
        1,
        "--more_rnn_steps",
        2,
        "--quiet",
    )
    assert "draw 1: real" in proc.stdout and "next: wm controller" in proc.stdout
    made = sorted(p.name for p in episodes.list_episodes(out))
    proc = wm("run", "--data_dir", out, "--quiet")  # a complete run directory: nothing is collected again
    assert sorted(p.name for p in episodes.list_episodes(out)) == made
    assert (out / "controller" / "controller.pt").exists() and (out / "test" / "scores.json").exists()
    dest = pretrained.export(out, tmp_path / "shipped", command="wm iterate ...\nwm controller ...")
    card = (dest / "CARD.md").read_text()
    assert "iterative training, round 1" in card and "    wm iterate ...\n    wm controller ..." in card
    assert json.loads((dest / "iteration.json").read_text())["source"] == src.name
    for f in dest.rglob("*"):  # the exported agent names no directory of the machine it was trained on
        assert not f.is_file() or str(tmp_path).encode() not in f.read_bytes(), f

    proc = wm("iterate", "--data_dir", src, "--out", src, "--quiet", check=False)
    assert proc.returncode == 2 and "must be a new run directory" in proc.stderr
    other = shutil.copytree(smoke_runs("DoomTakeCover"), tmp_path / "other")  # a run that is not out's source
    proc = wm("iterate", "--data_dir", other, "--out", out, "--quiet", check=False)
    assert proc.returncode == 2 and "iteration.json" in proc.stderr and str(src) in proc.stderr
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "config.json").write_text((src / "config.json").read_text())
    proc = wm("iterate", "--data_dir", src, "--out", tmp_path / "plain", "--quiet", check=False)
    assert proc.returncode == 2 and "already a run directory" in proc.stderr
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    proc = wm("iterate", "--data_dir", nothing, "--out", tmp_path / "x", "--quiet", check=False)
    assert proc.returncode == 2 and "config.json" in proc.stderr


@pytest.mark.parametrize("flag", ["--episodes", "--more_rnn_steps"])
def test_wm_iterate_rejects_bad_counts(run_copy, tmp_path, flag):
    src = run_copy("DoomTakeCover")
    value = 0 if flag == "--episodes" else -1
    proc = wm("iterate", "--data_dir", src, "--out", tmp_path / "r", flag, value, "--quiet", check=False)
    assert proc.returncode == 2 and flag in proc.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("anywhere", [True, False])
def test_recent_share_is_the_share_of_windows_that_start_in_the_latest_round(tmp_path, anywhere):
    from wmlib.memory import SeriesStream

    lengths, rounds_ = [300, 250, 400, 40, 30], [0, 0, 1, 2, 2]  # the latest round: 70 of 1020 steps (7%)
    for i, (n, r) in enumerate(zip(lengths, rounds_)):
        episodes.save_arrays(
            tmp_path / f"ep_{i:06d}.npz",
            dict(round=r),
            mu=np.full((n, 2), i, np.float32),
            logvar=np.full((n, 2), -30.0, np.float32),
            actions=np.zeros((n, 1), np.float32),
            rewards=np.ones(n, np.float32),
            dones=np.zeros(n, bool),
        )
    stream = SeriesStream(sorted(tmp_path.glob("ep_*.npz")), z_dim=2)
    rng = np.random.default_rng(0)
    starts = lambda b: b["z"][:, 0, 0].round().long().numpy()  # noqa: E731 (mu holds the episode's number)
    plain = starts(stream.batch(rng, 8000, seq_len=8, anywhere=anywhere))
    assert np.isin(plain, [3, 4]).mean() == pytest.approx(70 / 1020, abs=0.015)
    weighted = starts(stream.batch(rng, 8000, seq_len=8, anywhere=anywhere, weights=stream.episode_weights(0.4)))
    assert np.isin(weighted, [3, 4]).mean() == pytest.approx(0.4, abs=0.02)
    # within each group, in proportion to the episodes' lengths
    assert (weighted == 3).sum() / np.isin(weighted, [3, 4]).sum() == pytest.approx(40 / 70, abs=0.04)
    assert (weighted == 2).sum() / np.isin(weighted, [0, 1, 2]).sum() == pytest.approx(400 / 950, abs=0.03)
