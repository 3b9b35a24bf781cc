"""wmlib.widgets: what the notebooks' sliders, Play buttons and action buttons call, on tiny real models (randomly
initialised Vision and Memory). The course tests run the notebooks, but never move a slider or press a button.
"""

import numpy as np
import pytest
import torch

from wmlib import widgets
from wmlib.dream import dream_episode
from wmlib.memory import Memory
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


def test_latent_explorer_callback_changes_the_image(vision):
    explorer = widgets.LatentExplorer(vision)
    first = explorer.image()
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8
    moved = explorer.set(5, 2.5)
    assert explorer.z[5] == 2.5 and moved.shape == (64, 64, 3)
    assert not np.array_equal(first, moved)
    assert np.array_equal(moved, decode(vision, explorer.z))
    assert np.array_equal(explorer.reset(), first)


def test_latent_explorer_widget_sliders_drive_their_dimensions(vision):
    explorer = widgets.LatentExplorer(vision, per_page=16)
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
    explorer = widgets.LatentExplorer(Vision(64).eval(), per_page=12)
    dims = [d for p in range(explorer.pages) for d in explorer.dims(p)]
    assert dims == list(range(64))
    with pytest.raises(IndexError):
        explorer.set(64, 0.0)


def test_latent_explorer_ordered_by_use_puts_the_used_dimensions_on_the_first_sliders(vision):
    frames = np.random.default_rng(2).integers(0, 256, (40, 64, 64, 3), dtype=np.uint8)
    kl = latent_kl(vision, frames)
    order = np.argsort(kl)[::-1]
    explorer = widgets.LatentExplorer(vision, per_page=16, order=order)
    assert explorer.dims(0) == [int(j) for j in order[:16]] and explorer.dims(1) == [int(j) for j in order[16:]]
    assert explorer.widget is not None  # (built on first use)
    assert explorer.sliders[0].description == f"z[{order[0]}]"
    assert explorer.dropdown.options[0][0] == "the 1.-16. most used"
    explorer.sliders[0].value = 2.0  # the first slider moves the most used dimension
    assert explorer.z[order[0]] == 2.0
    with pytest.raises(ValueError, match="each of the 32 latent dimensions once"):
        widgets.LatentExplorer(vision, order=[0, 0, *range(2, 32)])


def test_dream_player_frames_steps_and_temperature(vision):
    torch.manual_seed(2)
    memory = Memory(32, 3, 32, 5).eval()  # CarRacing-style: no done head
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (10, 64, 64, 3), dtype=np.uint8)
    actions = rng.uniform(0, 1, (10, 3)).astype(np.float32)
    z0 = encode(vision, real[:1])[0][0]
    player = widgets.DreamPlayer(vision, memory, z0, actions=actions, real_frames=real, temperature=1.0)
    assert player.steps == 11
    assert np.array_equal(player.frame(0), reconstruct(vision, real[:1])[0])
    assert np.array_equal(player.frame(7), decode(vision, player.episode["z"][7]))
    assert not np.array_equal(player.frame(7), player.frame(8))
    assert np.array_equal(player.real_frame(4), real[4])
    assert player.done_probability(3) is None
    with pytest.raises(IndexError):
        player.frame(11)
    assert player.widget is not None  # (built on first use)
    player.slider.value = 6  # what the Play button does
    assert player.dream_picture.value == png_bytes(player.frame(6), player.scale)
    assert player.real_picture.value == png_bytes(real[6], player.scale)
    before = player.episode["z"].copy()
    player.tau_slider.value = 1.6
    assert player.temperature == 1.6 and not np.array_equal(before, player.episode["z"])
    assert player.dream_picture.value == png_bytes(player.frame(6), player.scale)


def test_dream_player_shows_doom_done_probability(doom_memory):
    player = widgets.DreamPlayer(Vision(8).eval(), doom_memory, np.zeros(8), actions=np.zeros((20, 1)), seed=1)
    assert player.widget is not None  # (built on first use)
    player.slider.value = 9
    assert player.done_probability(9) == pytest.approx(player.episode["done_prob"][9])
    assert player.done_bar.value == pytest.approx(player.done_probability(9))
    assert "P(done)" in player.label.value


def test_frame_player_steps_through_the_frames():
    frames = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((5, 8, 8, 3), np.uint8)
    player = widgets.FramePlayer(frames, scale=2)
    assert np.array_equal(player.frame(3), frames[3])
    assert player.widget is not None  # (built on first use)
    player.slider.value = 4
    assert player.picture.value == png_bytes(frames[4], 2)
    with pytest.raises(ValueError):
        widgets.FramePlayer(np.zeros((0, 8, 8, 3)))


def test_dream_game_steps_like_a_dream_in_training(doom_memory):
    vision = Vision(8).eval()
    game = widgets.DreamGame(vision, doom_memory, np.zeros(8), temperature=1.15, seed=4)
    presses = ["left", "stay", "right", "right", "stay", "left"]
    frames = [game.act(name) for name in presses if not game.over]
    played = len(frames)
    assert game.step == played >= 1
    actions = np.array([[{"left": -1.0, "stay": 0.0, "right": 1.0}[n]] for n in presses[:played]], np.float32)
    same = dream_episode(doom_memory, np.zeros(8), actions=actions, temperature=1.15, seed=4)
    assert np.array_equal(game.z[0].numpy(), same["z"][played])  # the dream's own step: the same numbers
    assert game.p_done == same["done_prob"][played - 1]
    assert np.array_equal(frames[-1], decode(vision, game.z[0].numpy()))


def test_dream_game_ends_when_m_predicts_death_and_starts_again():
    torch.manual_seed(3)
    deadly = Memory(z_dim=8, action_dim=1, hidden_dim=16, mixtures=5, predict_done=True, restart_flag=True).eval()
    with torch.no_grad():
        deadly.head.bias[-1] = 2.0  # M expects death at once, whatever happens
    game = widgets.DreamGame(Vision(8).eval(), deadly, np.zeros(8), seed=0)
    game.act("stay")
    assert game.over and game.step == 1 and game.p_done > 0.5 and "you died after 1 step in" in game.status()
    z, step = game.z.clone(), game.step
    game.act("left")  # a dream that is over stays over
    assert game.step == step and torch.equal(game.z, z)
    first = game.reset()
    assert game.step == 0 and not game.over and game.games == 2
    assert np.array_equal(first, decode(game.vision, np.zeros(8, np.float32)))
    with pytest.raises(ValueError, match="left, stay, right"):
        game.act("jump")


def test_dream_game_buttons_drive_it(doom_memory):
    game = widgets.DreamGame(Vision(8).eval(), doom_memory, np.zeros(8), seed=2)
    assert game.widget is not None  # (built on first use)
    before = game.picture.value
    game.buttons["right"].click()  # what pressing the button does
    assert game.step == 1 and game.picture.value != before and "step 1" in game.label.value
    assert game.done_bar.value == pytest.approx(game.p_done)
    car = widgets.DreamGame(Vision(32).eval(), Memory(32, 3, 16, 5).eval(), np.zeros(32))
    assert set(car.actions) == {"left", "straight", "right"}
    car.act("straight")
    assert car.p_done is None and not car.over
