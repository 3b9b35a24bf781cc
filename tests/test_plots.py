"""wmlib.plots: figures, GIFs and frame grids drawn from arrays and CSV logs (no model runs here)."""

import io

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from wmlib import plots
from wmlib.controller import ControllerSpec
from wmlib.io import append_csv


def frames(n=4, h=8, w=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_save_gif_writes_a_readable_looping_gif(tmp_path):
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 200, 0], [30, 60, 250]], np.uint8)  # few colours: GIF is exact
    f = palette[np.random.default_rng(0).integers(0, 4, (5, 8, 8))]
    path = tmp_path / "sub" / "ep.gif"
    plots.save_gif(path, f, fps=20, scale=3)
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 5 and gif.size == (24, 24)
        assert gif.info["loop"] == 0 and gif.info["duration"] == 50
        gif.seek(2)
        assert np.array_equal(np.asarray(gif.convert("RGB"))[::3, ::3], f[2])
    assert [p.name for p in path.parent.iterdir()] == ["ep.gif"]  # written atomically: no temporary file left


def test_upscale_png_bytes_and_frame_grid():
    f = frames(3)
    big = plots.upscale(f[0], 4)
    assert big.shape == (32, 32, 3) and np.array_equal(big[::4, ::4], f[0])
    png = Image.open(io.BytesIO(plots.png_bytes(f[1], scale=2)))
    assert png.format == "PNG" and np.array_equal(np.asarray(png)[::2, ::2], f[1])
    grid = plots.frame_grid([f[:3], f[:3][::-1]], scale=1)
    assert grid.shape == (16, 24, 3) and np.array_equal(grid[8:, :8], f[2])


def controller_log(path, generations=4):
    for g in range(1, generations + 1):
        evaluated = g % 2 == 0
        append_csv(
            path,
            dict(
                generation=g,
                max_len=40,
                fitness_mean=10.0 + g,
                fitness_best=12.0 + g,
                fitness_worst=8.0 + g,
                sigma=0.1,
                eval_mean=11.0 + g if evaluated else "",
                eval_std=1.0 if evaluated else "",
                seconds=0.1,
            ),
        )


def test_learning_curve_and_log_plots_are_saved_as_png(tmp_path):
    log = tmp_path / "log.csv"
    controller_log(log)
    fig = plots.plot_learning_curve(log, tmp_path / "curve.png")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()][:2] == ["population mean", "best candidate"]
    evaluated = [c for c in ax.containers if c.get_label() == "CMA-ES mean, evaluated"]
    assert len(evaluated) == 1 and evaluated[0].lines[0].get_xdata().tolist() == [2.0, 4.0]  # only evaluated rows
    assert Image.open(tmp_path / "curve.png").format == "PNG"
    fig = plots.plot_log(log, ["fitness_mean", "missing"], tmp_path / "log.png", x="generation")
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["fitness_mean"]
    assert (tmp_path / "log.png").stat().st_size > 0


def test_learning_curves_of_several_runs_share_one_plot_a_colour_each(tmp_path):
    logs = {}
    for name in ("first", "second"):
        logs[name] = tmp_path / f"{name}.csv"
        controller_log(logs[name])
    fig = plots.plot_learning_curves(logs, tmp_path / "curves.png")
    ax = fig.axes[0]
    means = [line for line in ax.get_lines() if line.get_label().endswith("population mean")]
    assert [line.get_label() for line in means] == ["first: population mean", "second: population mean"]
    evaluated = {c.get_label(): c for c in ax.containers}
    assert set(evaluated) == {"first: CMA-ES mean, evaluated", "second: CMA-ES mean, evaluated"}
    assert evaluated["second: CMA-ES mean, evaluated"].lines[0].get_xdata().tolist() == [2.0, 4.0]
    assert means[0].get_color() != means[1].get_color()
    assert Image.open(tmp_path / "curves.png").format == "PNG"


def test_frame_figures():
    f = frames(3, 64, 64)
    fig = plots.plot_frames({"a": f, "b": f[:2]}, titles=["x", "y", "z"])
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes[:3]] == ["x", "y", "z"] and not fig.axes[5].axison
    raw = frames(2, 120, 160)
    fig = plots.plot_raw_frames(list(zip(raw, f[:2])), "DoomTakeCover")
    assert fig.axes[0].get_title() == "raw 160x120" and fig.axes[2].get_title() == "V's input 64x64"


def test_statistics_figures():
    stats = dict(lengths=np.array([40, 60, 55]), returns=np.array([40.0, 60.0, 55.0]))
    fig = plots.plot_episode_stats({"DoomTakeCover": stats, "CarRacing-v3": stats})
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert "3 episodes, 155 frames" in fig.axes[0].get_title()
    fig = plots.plot_latent_kl(np.linspace(0, 1, 32))
    assert len(fig.axes[0].patches) == 32
    rows = [dict(temperature=t, dream_mean=50.0, dream_std=5.0, real_mean=30.0, real_std=3.0) for t in (1.0, 1.3)]
    fig = plots.plot_temperature_study(rows, random_score=10.0)
    assert len(fig.axes[0].patches) == 4 and fig.axes[0].get_lines()[-1].get_ydata()[0] == 10.0


@pytest.mark.parametrize("done", [True, False])
def test_plot_predictions_has_a_row_per_dimension_and_one_for_done(done):
    rng = np.random.default_rng(0)
    t, n = 11, 8
    pred = dict(
        actual=rng.normal(size=(t, n)),
        mean=rng.normal(size=(t, n)),
        std=np.ones((t, n)),
        done_prob=rng.uniform(size=t) if done else None,
        dones=np.r_[np.zeros(t - 1, bool), True],
    )
    fig = plots.plot_predictions(pred, dims=(0, 3, 99))
    assert isinstance(fig, Figure) and len(fig.axes) == 2 + done  # dimension 99 does not exist: skipped


@pytest.mark.parametrize(
    "game, z_dim, hidden, n_params", [("CarRacing-v3", 32, 256, 867), ("DoomTakeCover", 64, 512, 1088)]
)
def test_plot_controller_shows_the_paper_sized_controller(game, z_dim, hidden, n_params):
    spec = ControllerSpec(game, z_dim, hidden)
    assert spec.n_params == n_params
    fig = plots.plot_controller(np.random.default_rng(0).normal(size=n_params), spec)
    assert str(n_params) in fig.axes[0].get_title()
    assert fig.axes[0].images[0].get_array().shape == (spec.n_out, spec.n_in)
