"""The figures and widgets of the course notebooks: the callbacks that sliders and Play buttons call.

nbmake runs the notebooks top to bottom but never moves a slider, so what a slider does is checked here, on tiny
real models (randomly initialised Vision and Memory) and, for the stages, on the real smoke runs.
"""

import json

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from wmlib import episodes, study, viz
from wmlib.config import make_config
from wmlib.controller import ControllerSpec
from wmlib.dream import dream_rollouts, initial_latents
from wmlib.memory import Memory, MDNOutput, mdn_nll, sample_mixture
from wmlib.seeding import episode_keys
from wmlib.vision import Vision


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


def random_mixture(k=5, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=k)
    return logits - np.log(np.exp(logits).sum()), rng.normal(0, 2, k), rng.normal(-0.5, 0.5, k)


# -- run directories -------------------------------------------------------------------------------------------


def test_notebook_config_keeps_a_saved_run_config(tmp_path):
    cfg = viz.notebook_config("DoomTakeCover", "smoke", tmp_path / "run")
    assert cfg.preset == "smoke" and (tmp_path / "run" / "config.json").exists()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    saved["pop"] = 6  # as if `wm run --pop 6` had made the directory
    (tmp_path / "run" / "config.json").write_text(json.dumps(saved))
    assert viz.notebook_config("DoomTakeCover", "small", tmp_path / "run").pop == 6
    assert viz.notebook_config("DoomTakeCover", "small", tmp_path / "run", pop=8).pop == 8
    with pytest.raises(ValueError, match="is for DoomTakeCover"):
        viz.notebook_config("CarRacing-v3", "smoke", tmp_path / "run")


def test_runs_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(viz.DATA_DIR_ENV, str(tmp_path / "elsewhere"))
    assert viz.runs_root() == tmp_path / "elsewhere"
    monkeypatch.delenv(viz.DATA_DIR_ENV)
    monkeypatch.chdir(viz.find_repo_root(__file__) / "notebooks")
    assert viz.runs_root() == viz.find_repo_root(__file__) / "runs"


# -- 03: rollouts ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("game, raw_shape", [("CarRacing-v3", (96, 96, 3)), ("DoomTakeCover", (120, 160, 3))])
def test_raw_frames_are_the_game_screens_and_their_64x64_frames(game, raw_shape):
    pairs = viz.raw_frames(game, steps=(0, 5, 10), seed=3)
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
    assert isinstance(viz.plot_raw_frames(pairs, game), Figure)


def test_episode_stats_match_the_episode_files(tmp_path):
    from wmlib.rollouts import collect_rollouts

    cfg = make_config("DoomTakeCover", "smoke", num_rollouts=2)
    collect_rollouts(cfg, tmp_path, progress=False)
    stats = viz.episode_stats(tmp_path)
    eps = [episodes.load_episode(p) for p in episodes.list_episodes(tmp_path)]
    assert stats["lengths"].tolist() == [len(e["frames"]) for e in eps]
    assert stats["returns"].tolist() == pytest.approx([float(e["rewards"].sum()) for e in eps])
    assert isinstance(viz.plot_episode_stats({"DoomTakeCover": stats}), Figure)


# -- 04: vision ---------------------------------------------------------------------------------------------------


def test_decode_is_vision_decoder_as_uint8_images(vision):
    z = torch.randn(3, 32)
    images = viz.decode(vision, z.numpy())
    assert images.shape == (3, 64, 64, 3) and images.dtype == np.uint8
    with torch.no_grad():
        expected = vision.decode(z).permute(0, 2, 3, 1).numpy() * 255
    assert np.abs(images.astype(np.float64) - expected).max() <= 0.5 + 1e-3
    assert viz.decode(vision, z[0].numpy()).shape == (64, 64, 3)


def test_latent_explorer_callback_changes_the_image(vision):
    explorer = viz.LatentExplorer(vision)
    first = explorer.image()
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8
    moved = explorer.set(5, 2.5)
    assert explorer.z[5] == 2.5 and moved.shape == (64, 64, 3)
    assert not np.array_equal(first, moved)
    assert np.array_equal(moved, viz.decode(vision, explorer.z))
    assert np.array_equal(explorer.reset(), first)


def test_latent_explorer_widget_sliders_drive_their_dimensions(vision):
    explorer = viz.LatentExplorer(vision, per_page=16)
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
    explorer = viz.LatentExplorer(Vision(64).eval(), per_page=12)
    dims = [d for p in range(explorer.pages) for d in explorer.dims(p)]
    assert dims == list(range(64))
    with pytest.raises(IndexError):
        explorer.set(64, 0.0)


def test_interpolation_starts_and_ends_at_the_reconstructions(vision):
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    path = viz.interpolate(vision, a, b, steps=5)
    assert path.shape == (5, 64, 64, 3)
    recon = viz.reconstruct(vision, np.stack([a, b]))
    assert np.array_equal(path[0], recon[0]) and np.array_equal(path[-1], recon[1])


def test_latent_kl_and_sensitivity_are_per_dimension(vision):
    frames = np.random.default_rng(1).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    kl = viz.latent_kl(vision, frames)
    assert kl.shape == (32,) and np.all(kl >= -1e-6)
    mu, logvar = viz.encode(vision, frames)
    total = (-0.5 * (1 + logvar - mu**2 - np.exp(logvar))).sum(1).mean()
    assert kl.sum() == pytest.approx(total, rel=1e-5)
    sens = viz.latent_sensitivity(vision, np.zeros(32))
    assert sens.shape == (32,) and np.all(sens >= 0) and sens.max() > 0
    assert isinstance(viz.plot_latent_kl(kl), Figure)
    assert isinstance(viz.plot_reconstructions(vision, frames[:3]), Figure)


# -- 05: memory ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.3])
def test_mixture_density_integrates_to_one(temperature):
    logpi, mu, logsigma = random_mixture()
    x = np.linspace(-40, 40, 200_001)
    assert np.trapezoid(viz.mixture_density(x, logpi, mu, logsigma, temperature), x) == pytest.approx(1.0, abs=1e-4)
    mean, std = viz.mixture_moments(logpi, mu, logsigma, temperature)
    p = viz.mixture_density(x, logpi, mu, logsigma, temperature)
    assert np.trapezoid(x * p, x) == pytest.approx(mean, abs=1e-4)
    assert np.sqrt(np.trapezoid((x - mean) ** 2 * p, x)) == pytest.approx(std, rel=1e-4)


def test_mixture_density_is_the_likelihood_memory_is_trained_on():
    logpi, mu, logsigma = random_mixture(seed=2)
    out = MDNOutput(*(torch.tensor(v, dtype=torch.float64).view(1, 1, 5) for v in (logpi, mu, logsigma)), None)
    for x in (-3.0, 0.1, 2.5):
        nll = mdn_nll(out, torch.tensor([[x]], dtype=torch.float64)).item()
        assert viz.mixture_density(x, logpi, mu, logsigma) == pytest.approx(np.exp(-nll), rel=1e-9)


def test_mixture_density_at_temperature_is_what_sample_mixture_draws():
    logpi, mu, logsigma = random_mixture(seed=3)
    tau, n = 1.3, 40_000
    out = MDNOutput(*(torch.tensor(v, dtype=torch.float32).expand(n, 1, 5) for v in (logpi, mu, logsigma)), None)
    draws = sample_mixture(out, tau, episode_keys(np.arange(n)), step=0)[:, 0].numpy()
    mean, std = viz.mixture_moments(logpi, mu, logsigma, tau)
    assert draws.mean() == pytest.approx(mean, abs=4 * std / np.sqrt(n))
    assert draws.std() == pytest.approx(std, rel=0.02)
    fig = viz.plot_mixture(logpi, mu, logsigma, actual=0.3, temperatures=(1.0, tau))
    assert isinstance(fig, Figure)


def test_memory_predictions_line_up_each_step_with_the_next_latent(doom_memory):
    rng = np.random.default_rng(0)
    t = 12
    series = dict(mu=rng.normal(size=(t, 8)).astype(np.float32), actions=rng.integers(-1, 2, (t, 1)).astype(np.float32),
                  dones=np.r_[np.zeros(t - 1, bool), True])
    pred = viz.memory_predictions(doom_memory, series)
    assert np.array_equal(pred["actual"], series["mu"][1:])
    assert pred["mean"].shape == pred["std"].shape == (t - 1, 8) and pred["logpi"].shape == (t - 1, 8, 5)
    assert pred["done_prob"].shape == (t - 1,) and pred["dones"].shape == (t - 1,)
    # M's mixture at step 3 is the one Memory.forward gives there.
    z = torch.as_tensor(series["mu"])[None]
    restart = torch.zeros(1, t)
    restart[0, 0] = 1
    with torch.no_grad():
        out, _ = doom_memory(z, torch.as_tensor(series["actions"])[None], restart)
    assert pred["mu"][3] == pytest.approx(out.mu[0, 3].numpy(), abs=1e-6)
    mean, std = viz.mixture_moments(pred["logpi"][3, 2], pred["mu"][3, 2], pred["logsigma"][3, 2])
    assert pred["mean"][3, 2] == pytest.approx(mean, abs=1e-6) and pred["std"][3, 2] == pytest.approx(std, abs=1e-5)
    assert isinstance(viz.plot_predictions(pred), Figure)


def test_dream_episode_follows_the_given_actions_and_is_reproducible(doom_memory):
    actions = np.random.default_rng(0).integers(-1, 2, (15, 1)).astype(np.float32)
    z0 = np.zeros(8, np.float32)
    a = viz.dream_episode(doom_memory, z0, actions, temperature=1.0, seed=4)
    b = viz.dream_episode(doom_memory, z0, actions, temperature=1.0, seed=4)
    c = viz.dream_episode(doom_memory, z0, actions, temperature=1.3, seed=4)
    assert a["z"].shape == (16, 8) and a["length"] == 15 and a["done_prob"].shape == (15,)
    assert np.array_equal(a["actions"], actions) and np.array_equal(a["z"][0], z0)
    assert np.array_equal(a["z"], b["z"]) and not np.array_equal(a["z"], c["z"])


def test_dream_episode_with_a_controller_ends_where_the_training_dream_does(doom_memory):
    spec = ControllerSpec("DoomTakeCover", 8, 16)
    rng = np.random.default_rng(5)
    pool_mu, pool_logvar = rng.normal(size=(4, 8)).astype(np.float32), np.full((4, 8), -2.0, np.float32)
    ended_early = 0
    for seed in range(6):
        params = rng.normal(0, 0.5, spec.n_params).astype(np.float32)
        lengths = dream_rollouts(doom_memory, spec, params[None], [seed], pool_mu, pool_logvar, temperature=1.15,
                                 max_len=60)[1]
        z0 = initial_latents(episode_keys([seed]), pool_mu, pool_logvar)[0].numpy()
        ep = viz.dream_episode(doom_memory, z0, controller=(params, spec), temperature=1.15, max_len=60, seed=seed,
                               stop_at_done=True)
        assert ep["length"] == lengths[0]
        ended_early += int(lengths[0] < 60)
    assert ended_early > 0  # M's done head did end some dreams, so the comparison means something


def test_dream_player_frames_steps_and_temperature(vision):
    torch.manual_seed(2)
    memory = Memory(32, 3, 32, 5).eval()  # CarRacing-style: no done head
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (10, 64, 64, 3), dtype=np.uint8)
    actions = rng.uniform(0, 1, (10, 3)).astype(np.float32)
    z0 = viz.encode(vision, real[:1])[0][0]
    player = viz.DreamPlayer(vision, memory, z0, actions=actions, real_frames=real, temperature=1.0)
    assert player.steps == 11
    assert np.array_equal(player.frame(0), viz.reconstruct(vision, real[:1])[0])
    assert np.array_equal(player.frame(7), viz.decode(vision, player.episode["z"][7]))
    assert not np.array_equal(player.frame(7), player.frame(8))
    assert np.array_equal(player.real_frame(4), real[4])
    assert player.done_probability(3) is None
    with pytest.raises(IndexError):
        player.frame(11)
    player.widget
    player.slider.value = 6  # what the Play button does
    assert player.dream_picture.value == viz.png_bytes(player.frame(6), player.scale)
    assert player.real_picture.value == viz.png_bytes(real[6], player.scale)
    before = player.episode["z"].copy()
    player.tau_slider.value = 1.6
    assert player.temperature == 1.6 and not np.array_equal(before, player.episode["z"])
    assert player.dream_picture.value == viz.png_bytes(player.frame(6), player.scale)


def test_dream_player_shows_doom_done_probability(doom_memory):
    player = viz.DreamPlayer(Vision(8).eval(), doom_memory, np.zeros(8), actions=np.zeros((20, 1)), seed=1)
    player.widget
    player.slider.value = 9
    assert player.done_probability(9) == pytest.approx(player.episode["done_prob"][9])
    assert player.done_bar.value == pytest.approx(player.done_probability(9))
    assert "P(done)" in player.label.value


# -- 06: controller -----------------------------------------------------------------------------------------------


def test_frame_player_steps_through_the_frames():
    frames = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((5, 8, 8, 3), np.uint8)
    player = viz.FramePlayer(frames, scale=2)
    assert np.array_equal(player.frame(3), frames[3])
    player.widget
    player.slider.value = 4
    assert player.picture.value == viz.png_bytes(frames[4], 2)
    with pytest.raises(ValueError):
        viz.FramePlayer(np.zeros((0, 8, 8, 3)))


@pytest.mark.parametrize("game, z_dim, hidden, n_params", [("CarRacing-v3", 32, 256, 867), ("DoomTakeCover", 64, 512, 1088)])
def test_plot_controller_shows_the_paper_sized_controller(game, z_dim, hidden, n_params):
    spec = ControllerSpec(game, z_dim, hidden)
    assert spec.n_params == n_params
    fig = viz.plot_controller(np.random.default_rng(0).normal(size=n_params), spec)
    assert str(n_params) in fig.axes[0].get_title()
    assert fig.axes[0].images[0].get_array().shape == (spec.n_out, spec.n_in)


# -- 07: dream training, on the real smoke run ----------------------------------------------------------------------


def test_temperature_study_trains_and_scores_one_controller_per_temperature(run_copy):
    d = run_copy("DoomTakeCover")
    cfg = make_config("DoomTakeCover", "smoke")
    main_controller = (d / "controller" / "controller.pt").read_bytes()
    rows = viz.temperature_study(cfg, d, temperatures=(1.0, 1.3), generations=1, test_episodes=1, dream_episodes=3,
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
    again = viz.temperature_study(cfg, d, temperatures=(1.0, 1.3), generations=1, test_episodes=1, dream_episodes=3,
                                  progress=False)
    assert again == rows  # everything resumed: same controllers, same seeds, same scores
    assert isinstance(viz.plot_temperature_study(rows, random_score=10.0), Figure)


def test_real_scores_reuses_a_matching_test_result(run_copy):
    d = run_copy("DoomTakeCover")
    cfg = make_config("DoomTakeCover", "smoke")
    first = viz.real_scores(cfg, d, rollouts=1, progress=False)
    path = d / "test" / "scores.json"
    stamp = path.stat().st_mtime_ns
    assert viz.real_scores(cfg, d, rollouts=1, progress=False) == first and path.stat().st_mtime_ns == stamp
    viz.real_scores(cfg, d, rollouts=2, progress=False)
    assert json.loads(path.read_text())["episodes"] == 2


def test_temperature_study_lets_the_runs_own_controller_stand_for_its_temperature(run_copy):
    d = run_copy("DoomTakeCover")
    cfg = make_config("DoomTakeCover", "smoke")  # a dream-trained controller at tau 1.15
    before = (d / "controller" / "controller.pt").read_bytes()
    rows = viz.temperature_study(cfg, d, temperatures=(cfg.temperature,), test_episodes=1, dream_episodes=2,
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
