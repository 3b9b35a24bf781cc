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
from wmlib.memory import Memory, mixture_density
from wmlib.plots import png_bytes
from wmlib.vision import Vision, decode, encode, latent_kl, reconstruct


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


def test_latent_explorer_callback_changes_the_image(vision):
    explorer = notebook.LatentExplorer(vision)
    first = explorer.image()
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8
    moved = explorer.set(5, 2.5)
    assert explorer.z[5] == 2.5 and moved.shape == (64, 64, 3)
    assert not np.array_equal(first, moved)
    assert np.array_equal(moved, decode(vision, explorer.z))
    assert np.array_equal(explorer.reset(), first)


def test_latent_explorer_widget_sliders_drive_their_dimensions(vision):
    explorer = notebook.LatentExplorer(vision, per_page=16)
    widget = explorer.widget
    assert explorer.pages == 2 and len(explorer.sliders) == 16
    before = explorer.picture.value
    explorer.sliders[2].value = 1.5  # what dragging the slider does
    assert explorer.z[2] == 1.5 and explorer.picture.value != before
    explorer.dropdown.value = 1  # the second page: dimensions 16-31
    assert explorer.sliders[2].description == "z[18]" and explorer.sliders[2].value == 0.0
    assert explorer.z[2] == 1.5  # switching pages does not change z
    explorer.sliders[2].value = -1.0
    assert explorer.z[18] == -1.0 and explorer.z[2] == 1.5
    assert widget is explorer.widget


def test_latent_explorer_pages_cover_every_dimension_of_doom():
    explorer = notebook.LatentExplorer(Vision(64).eval(), per_page=12)
    dims = [d for p in range(explorer.pages) for d in explorer.dims(p)]
    assert dims == list(range(64))
    with pytest.raises(IndexError):
        explorer.set(64, 0.0)


def test_latent_explorer_ordered_by_use_puts_the_used_dimensions_on_the_first_sliders(vision):
    frames = np.random.default_rng(2).integers(0, 256, (40, 64, 64, 3), dtype=np.uint8)
    kl = latent_kl(vision, frames)
    order = np.argsort(kl)[::-1]
    explorer = notebook.LatentExplorer(vision, per_page=16, order=order)
    assert explorer.dims(0) == [int(j) for j in order[:16]] and explorer.dims(1) == [int(j) for j in order[16:]]
    explorer.widget
    assert explorer.sliders[0].description == f"z[{order[0]}]"
    assert explorer.dropdown.options[0][0] == "the 1.-16. most used"
    explorer.sliders[0].value = 2.0  # the first slider moves the most used dimension
    assert explorer.z[order[0]] == 2.0
    with pytest.raises(ValueError, match="each of the 32 latent dimensions once"):
        notebook.LatentExplorer(vision, order=[0, 0, *range(2, 32)])


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


def test_dream_player_frames_steps_and_temperature(vision):
    torch.manual_seed(2)
    memory = Memory(32, 3, 32, 5).eval()  # CarRacing-style: no done head
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (10, 64, 64, 3), dtype=np.uint8)
    actions = rng.uniform(0, 1, (10, 3)).astype(np.float32)
    z0 = encode(vision, real[:1])[0][0]
    player = notebook.DreamPlayer(vision, memory, z0, actions=actions, real_frames=real, temperature=1.0)
    assert player.steps == 11
    assert np.array_equal(player.frame(0), reconstruct(vision, real[:1])[0])
    assert np.array_equal(player.frame(7), decode(vision, player.episode["z"][7]))
    assert not np.array_equal(player.frame(7), player.frame(8))
    assert np.array_equal(player.real_frame(4), real[4])
    assert player.done_probability(3) is None
    with pytest.raises(IndexError):
        player.frame(11)
    player.widget
    player.slider.value = 6  # what the Play button does
    assert player.dream_picture.value == png_bytes(player.frame(6), player.scale)
    assert player.real_picture.value == png_bytes(real[6], player.scale)
    before = player.episode["z"].copy()
    player.tau_slider.value = 1.6
    assert player.temperature == 1.6 and not np.array_equal(before, player.episode["z"])
    assert player.dream_picture.value == png_bytes(player.frame(6), player.scale)


def test_dream_player_shows_doom_done_probability(doom_memory):
    player = notebook.DreamPlayer(Vision(8).eval(), doom_memory, np.zeros(8), actions=np.zeros((20, 1)), seed=1)
    player.widget
    player.slider.value = 9
    assert player.done_probability(9) == pytest.approx(player.episode["done_prob"][9])
    assert player.done_bar.value == pytest.approx(player.done_probability(9))
    assert "P(done)" in player.label.value


# -- 06: controller -----------------------------------------------------------------------------------------------


def test_frame_player_steps_through_the_frames():
    frames = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((5, 8, 8, 3), np.uint8)
    player = notebook.FramePlayer(frames, scale=2)
    assert np.array_equal(player.frame(3), frames[3])
    player.widget
    player.slider.value = 4
    assert player.picture.value == png_bytes(frames[4], 2)
    with pytest.raises(ValueError):
        notebook.FramePlayer(np.zeros((0, 8, 8, 3)))
