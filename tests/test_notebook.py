"""wmlib.notebook: the notebooks' run helpers and the callbacks that their sliders and Play buttons call.

test_course.py runs the notebooks top to bottom but never moves a slider, so what a slider does is checked here, on tiny
real models (randomly initialised Vision and Memory) and, for the run helpers, on the real smoke runs.
"""

import json

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from wmlib import episodes, notebook
from wmlib.memory import Memory
from wmlib.mixtures import mixture_density
from wmlib.vision import Vision, reconstruct


@pytest.fixture(scope="module")
def vision():
    torch.manual_seed(0)
    return Vision(32).eval()


@pytest.fixture(scope="module")
def doom_memory():
    """A small random Doom-style M (done head, restart flag) whose done head fires now and then."""
    torch.manual_seed(1)
    m = Memory(z_dim=8, action_dim=1, hidden_dim=16, mixtures=5, predict_done=True, restart_flag=True).eval()
    with torch.no_grad():
        m.head.bias[-1] = -0.5
        m.head.weight[-1] *= 8.0
    return m


# -- run directories -------------------------------------------------------------------------------------------


def test_notebook_config_keeps_a_saved_run_config(tmp_path):
    cfg = notebook.notebook_config("DoomTakeCover", "smoke", tmp_path / "run")
    assert cfg.preset == "smoke" and (tmp_path / "run" / "config.json").exists()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    saved["pop"] = 6  # as if `wm run --pop 6` had made the directory
    (tmp_path / "run" / "config.json").write_text(json.dumps(saved))
    assert notebook.notebook_config("DoomTakeCover", "small", tmp_path / "run").pop == 6
    assert notebook.notebook_config("DoomTakeCover", "small", tmp_path / "run", pop=8).pop == 8
    with pytest.raises(ValueError, match="is for DoomTakeCover"):
        notebook.notebook_config("CarRacing-v3", "smoke", tmp_path / "run")


def test_runs_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(notebook.DATA_DIR_ENV, str(tmp_path / "elsewhere"))
    assert notebook.runs_root() == tmp_path / "elsewhere"
    monkeypatch.delenv(notebook.DATA_DIR_ENV)
    monkeypatch.chdir(notebook.find_repo_root(__file__) / "notebooks")
    assert notebook.runs_root() == notebook.find_repo_root(__file__) / "runs"


def test_find_repo_root_falls_back_to_where_it_started(tmp_path):
    assert notebook.find_repo_root(tmp_path) == tmp_path.resolve()


# -- 03: rollouts ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("game, raw_shape", [("CarRacing-v3", (96, 96, 3)), ("DoomTakeCover", (120, 160, 3))])
def test_raw_frames_are_the_game_screens_and_their_64x64_frames(game, raw_shape):
    pairs = notebook.raw_frames(game, steps=(10, 0, 5), seed=3)  # in any order: pairs come in step order
    assert len(pairs) == 3
    for raw, small in pairs:
        assert raw.shape == raw_shape and small.shape == (64, 64, 3)
        assert raw.dtype == small.dtype == np.uint8
    if game == "CarRacing-v3":
        from wmlib.games.carracing_render import preprocess_frame

        assert all(np.array_equal(preprocess_frame(raw), small) for raw, small in pairs)
    else:
        from wmlib.games.doom import preprocess_screen

        assert all(np.array_equal(preprocess_screen(raw), small) for raw, small in pairs)
    # The first pair is the frame the wrapped 64x64 environment shows after reset with the same seed.
    from wmlib.games import make_env

    env = make_env(game)
    try:
        assert np.array_equal(env.reset(seed=3)[0], pairs[0][1])
    finally:
        env.close()


def test_episode_stats_match_the_episode_files(smoke_runs):
    d = smoke_runs("DoomTakeCover")
    stats = notebook.episode_stats(d)
    eps = [episodes.load_episode(p) for p in episodes.list_episodes(d)]
    assert len(eps) == 3
    assert stats["lengths"].tolist() == [len(e["frames"]) for e in eps]
    assert stats["returns"].tolist() == pytest.approx([float(e["rewards"].sum()) for e in eps])


# -- 04: vision ---------------------------------------------------------------------------------------------------


def test_plot_reconstructions_shows_frames_over_their_reconstructions(vision):
    frames = np.random.default_rng(1).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    fig = notebook.plot_reconstructions(vision, frames)
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    assert np.array_equal(fig.axes[3].images[0].get_array(), reconstruct(vision, frames)[0])


# -- 05: memory ---------------------------------------------------------------------------------------------------


def test_plot_mixture_draws_each_component_and_each_temperature():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=5)
    logpi, mu, logsigma = logits - np.log(np.exp(logits).sum()), rng.normal(0, 2, 5), rng.normal(-0.5, 0.5, 5)
    fig = notebook.plot_mixture(logpi, mu, logsigma, actual=0.3, temperatures=(1.0, 1.3))
    assert isinstance(fig, Figure)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 5 + 2 + 1  # the weighted components, the mixture at each tau, the value that came next
    x, p = lines[6].get_data()
    assert np.allclose(p, mixture_density(x, logpi, mu, logsigma, 1.3))
    components = sum(line.get_data()[1] for line in lines[:5])
    assert np.allclose(components, lines[5].get_data()[1])  # at tau 1 the mixture is the sum of its components
    assert lines[7].get_xdata()[0] == 0.3


def test_round_story_plays_every_kept_round_in_its_dream_and_in_the_real_game(run_copy, tmp_path):
    from conftest import wm

    from wmlib import iterate, pretrained
    from wmlib.config import make_config

    src = run_copy("DoomTakeCover")
    cfg = make_config("DoomTakeCover", "smoke")
    assert notebook.round_story(cfg, src) == []  # no iterative training: nothing to tell
    shipped = pretrained.install("doom", tmp_path / "shipped")  # it keeps every round it was made with
    kept = iterate.rounds(shipped)
    assert [r["generation"] for r in kept] == [4, 10, 10, 30, 10]
    assert kept[0]["dream_mean"] > 5 * kept[0]["real_mean"]  # the first dream's controller exploited that dream
    told = notebook.round_story(cfg, shipped, episodes=1)
    assert [r["round"] for r in told] == [0, 1, 2, 3, 4]
    assert all(r["player"].frame(0).shape == (64, 64, 3) for r in told)
    out = tmp_path / "round1"
    iterate.iterate(src, out, draws=0, perturbed=0, episodes_each=1, more_rnn_steps=1, progress=False)
    assert notebook.round_story(cfg, out) == []  # round 1's controller is not trained yet
    wm("controller", "--data_dir", out, "--quiet")
    story = notebook.round_story(cfg, out, episodes=2)
    assert [r["round"] for r in story] == [0, 1] and [r["generation"] for r in story] == [2, 2]
    for r in story:
        assert 1 <= r["dream_mean"] <= cfg.dream_max_len and 1 <= r["real_mean"] <= cfg.max_steps
        player = r["player"]
        assert player.frame(0).shape == (64, 64, 3) and player.real_frame(0).shape == (64, 64, 3)
        assert player.controller is not None and player.episode["done_prob"] is not None
    # round 0 plays the source run's controller in the source's dream: what wm iterate scored in that dream
    again = notebook.round_story(cfg, out, episodes=2)
    assert [r["dream_mean"] for r in again] == [r["dream_mean"] for r in story]
    assert [r["real_mean"] for r in again] == [r["real_mean"] for r in story]


# -- exercises: the checks' helpers and the library's versions that stand in for a stub ------------------------------


def test_check_keeps_a_right_answer_stands_in_for_a_stub_and_rejects_a_wrong_one(capsys):
    def stub(x):
        raise NotImplementedError("write it")

    def test(f):
        notebook.expect_close(f(2.0), 4.0, "f(2)", "square it")

    assert notebook.check("square", lambda x: x * x, test, stand_in=np.square) is not np.square
    assert "Check passed: square" in capsys.readouterr().out
    assert notebook.check("square", stub, test, stand_in=np.square) is np.square
    assert notebook.NOT_ATTEMPTED in capsys.readouterr().out
    with pytest.raises(notebook.CheckFailed, match=r"f\(2\): yours 2, expected 4\nWhere to look: square it") as info:
        notebook.check("square", lambda x: x, test, stand_in=np.square)
    assert info.value._render_traceback_()[-1] == "Where to look: square it"  # IPython shows this, not a traceback
    with pytest.raises(NotImplementedError):
        notebook.check("square", stub, test)  # nothing to stand in: the stub stops


def test_expect_close_names_the_shape_the_value_and_where_they_differ():
    for yours, expected, message in [
        ([1, 2], [1, 2, 3], r"shape \(2,\), expected \(3,\)"),
        ([1.0, np.nan], [1.0, 2.0], "holds nan"),
        ([[1, 2], [3, 5]], [[1, 2], [3, 4]], r"index \(1, 1\): 5 instead of 4"),
        (torch.tensor(1.5, requires_grad=True), 1.0, "yours 1.5, expected 1"),
    ]:
        with pytest.raises(notebook.CheckFailed, match=message):
            notebook.expect_close(yours, expected, "x")
    notebook.expect_close(torch.ones(3), np.ones(3), "x")


def test_a_moment_matched_gaussian_fails_the_distribution_test_and_a_right_sampler_passes():
    rng = np.random.default_rng(0)
    pi, mu, sigma = np.array([0.7, 0.3]), np.array([-2.0, 3.0]), np.array([0.5, 1.0])

    def mixture(seed):
        return mu[(k := np.random.default_rng(seed).choice(2, 40_000, p=pi))] + sigma[k] * rng.standard_normal(40_000)

    reference = mixture(1)
    notebook.expect_same_distribution(mixture(2), reference, "x", n=40_000)
    mean, std = pi @ mu, np.sqrt(pi @ (sigma**2 + mu**2) - (pi @ mu) ** 2)
    gaussian = rng.normal(mean, std, 40_000)
    with pytest.raises(notebook.CheckFailed, match="do not follow the distribution"):
        notebook.expect_same_distribution(gaussian, reference, "x", n=40_000)
    assert "between its branches" in notebook.sampler_hint(gaussian, reference)
    assert "one component" in notebook.sampler_hint(rng.normal(-2, 0.5, 40_000), reference)
    d, _ = notebook.ks_distance(mixture(3), reference)
    assert d < notebook.ks_limit(40_000, 40_000)


def test_the_stand_ins_agree_with_the_library(vision, doom_memory):
    torch.manual_seed(0)
    x, h, c = torch.randn(3, doom_memory.input_dim), torch.randn(3, 16), torch.randn(3, 16)
    x[:, -1] = 0.0  # the restart flag: not an episode's first step
    h1, c1 = notebook.lstm_step(doom_memory, x, h, c)
    z, a, restart = x[:, :8], x[:, 8:9], torch.zeros(3)
    with torch.no_grad():
        _, h2, c2 = doom_memory.step(z, a, restart, h, c)  # the dream's own step, on the same input
    assert torch.allclose(h1, h2, atol=1e-5) and torch.allclose(c1, c2, atol=1e-5)
    logpi, mu, logsigma = np.log([0.6, 0.4]), np.array([-1.5, 1.5]), np.log([0.3, 0.3])
    draws = notebook.sample_next(logpi, mu, logsigma, 1.3, 40_000, np.random.default_rng(0))
    from wmlib.mixtures import mixture_moments

    mean, std = mixture_moments(logpi, mu, logsigma, temperature=1.3)
    assert abs(draws.mean() - mean) < 0.03 and abs(draws.std() / std - 1) < 0.02
    frames = torch.rand(2, 3, 64, 64)
    m, lv = vision.encode(frames)
    eps = torch.randn_like(m)
    z, loss = notebook.vae_sample_and_loss(vision, frames, m, lv, eps)
    assert torch.allclose(z, m + torch.exp(0.5 * lv) * eps)
    assert notebook.dream_length([0.1, 0.5, 0.7]) == 3 and notebook.dream_length([0.1, 0.2]) == 2
    assert notebook.training_length([-0.1] * 300, 100, 50) == 150 and notebook.training_length([-0.1] * 40) == 40
    row = dict(real_mean=900, real_std=100, real_episodes=4)
    assert notebook.clearly_better(row, dict(row, real_mean=700)) and not notebook.clearly_better(row, row)
    scores = np.random.default_rng(1).normal(500, 300, 20)
    assert notebook.paired_better(scores + 10, scores) and not notebook.paired_better(scores - 10, scores)
