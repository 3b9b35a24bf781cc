"""The teaching CMA-ES (toy/cmaes.py), its plots, widget callback and GIF script."""

import math

import cma
import numpy as np
import pytest

from toy import cmaes, plots
from toy.cmaes import CMAES, ellipsoid, rosenbrock, schaffer, sphere


def test_default_popsize_and_weights_match_pycma():
    for n in (2, 5, 10, 867):
        assert cmaes.default_popsize(n) == 4 + math.floor(3 * math.log(n))
    assert cmaes.default_popsize(867) == 24  # the CarRacing controller
    for n, popsize in ((2, None), (10, None), (2, 64)):
        ours = CMAES(np.zeros(n), 1.0, popsize=popsize, seed=1)
        ref = cma.CMAEvolutionStrategy(np.zeros(n), 1.0, {"popsize": popsize or ours.popsize, "verbose": -9, "seed": 1})
        assert ours.popsize == ref.popsize
        mu = ours.mu
        assert np.allclose(ours.weights[:mu], np.asarray(ref.sp.weights)[:mu])
        assert np.isclose(ours.mu_eff, ref.sp.weights.mueff)
        assert np.isclose(ours.c_1, ref.sp.c1)
    w = CMAES(np.zeros(5), 1.0, seed=0).weights
    assert np.isclose(w[w > 0].sum(), 1.0) and np.all(np.diff(w) <= 0) and w[-1] < 0


def test_ask_tell_interface():
    es = CMAES([1.0, 2.0, 3.0], 0.5, popsize=7, seed=0)
    X = es.ask()
    assert X.shape == (7, 3)
    assert es.generation == 0 and es.best is None
    es.tell(X, sphere(X))
    assert es.generation == 1 and es.countevals == 7
    assert es.best.f == pytest.approx(sphere(X).min()) and np.array_equal(es.best.x, X[np.argmin(sphere(X))])
    assert es.mean.shape == (3,) and es.C.shape == (3, 3) and es.sigma > 0
    with pytest.raises(ValueError):
        es.tell(X[:3], sphere(X[:3]))
    with pytest.raises(ValueError):
        es.tell(X, np.full(7, np.nan))
    with pytest.raises(ValueError):
        CMAES([0.0], -1.0)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_reaches_schaffer_optimum_from_far_away(seed):
    es = CMAES([-20.0, 30.0], 10.0, popsize=64, seed=seed)
    es.optimize(schaffer, iterations=150, ftarget=1e-12)
    assert np.linalg.norm(es.best.x - cmaes.SCHAFFER_OPTIMUM) < 1e-3
    assert np.linalg.norm(es.mean - cmaes.SCHAFFER_OPTIMUM) < 1e-2
    assert es.generation < 150


@pytest.mark.parametrize(
    "fun, n, x0",
    [
        (sphere, 10, "uniform"),
        (ellipsoid, 5, "uniform"),
        (ellipsoid, 10, "uniform"),
        (rosenbrock, 5, "zeros"),
        (rosenbrock, 10, "zeros"),
    ],
)
def test_evaluations_comparable_to_pycma(fun, n, x0):
    ours, theirs = [], []
    for seed in (1, 2, 3):
        start = np.random.default_rng(seed).uniform(-1, 1, n) if x0 == "uniform" else np.zeros(n)
        es = CMAES(start, 0.5, seed=seed)
        ours.append(cmaes.evaluations_to_target(es, fun, ftarget=1e-8))
        ref = cma.CMAEvolutionStrategy(
            start,
            0.5,
            {
                "popsize": es.popsize,
                "seed": seed,
                "verbose": -9,
                "tolfun": 0,
                "tolx": 0,
                "tolfunhist": 0,
                "tolflatfitness": 1e9,
            },
        )
        theirs.append(cmaes.evaluations_to_target(ref, fun, ftarget=1e-8))
    assert np.median(ours) <= 2 * np.median(theirs), (ours, theirs)


@pytest.mark.parametrize(
    "fun, x0, sigma0, popsize",
    [
        (ellipsoid, np.ones(10), 0.5, None),
        (rosenbrock, np.zeros(5), 0.5, None),
        (schaffer, [-20.0, 30.0], 10.0, 64),
        (schaffer, [-20.0, 30.0], 10.0, 6),
    ],
)
def test_covariance_stays_symmetric_positive_definite(fun, x0, sigma0, popsize):
    es = CMAES(x0, sigma0, popsize=popsize, seed=4)
    for _ in range(300):
        X = es.ask()
        es.tell(X, fun(X))
        assert np.allclose(es.C, es.C.T, rtol=0, atol=1e-12 * np.abs(es.C).max())
        eigenvalues = np.linalg.eigvalsh(es.C)
        assert np.all(np.isfinite(es.C)) and eigenvalues.min() > 0, eigenvalues
        assert np.allclose((es.B * es.D**2) @ es.B.T, es.C, rtol=1e-8, atol=1e-12 * eigenvalues.max())
        assert math.isfinite(es.sigma) and es.sigma > 0
        if es.stop():
            break


def test_same_seed_same_trajectory():
    a = cmaes.run(schaffer, [-20, 30], 10.0, popsize=12, seed=3, generations=25)
    b = cmaes.run(schaffer, [-20, 30], 10.0, popsize=12, seed=3, generations=25)
    c = cmaes.run(schaffer, [-20, 30], 10.0, popsize=12, seed=4, generations=25)
    assert len(a) == len(b) == 25
    for sa, sb in zip(a, b):
        assert np.array_equal(sa.population, sb.population) and np.array_equal(sa.C, sb.C)
        assert np.array_equal(sa.mean, sb.mean) and sa.sigma == sb.sigma
    assert not np.array_equal(a[1].population, c[1].population)


def test_run_records_the_distribution_it_sampled_from():
    snaps = cmaes.run(sphere, np.ones(2), 1.0, popsize=8, seed=0, generations=5)
    assert [s.generation for s in snaps] == list(range(5))
    assert np.array_equal(snaps[0].mean, np.ones(2)) and snaps[0].sigma == 1.0
    assert np.array_equal(snaps[0].C, np.eye(2))
    assert np.array_equal(snaps[2].fitnesses, sphere(snaps[2].population))
    assert all(s2.best_f <= s1.best_f for s1, s2 in zip(snaps, snaps[1:]))


def test_covariance_ellipse_is_the_two_sigma_contour():
    mean, sigma, C = np.array([3.0, -1.0]), 1.5, np.array([[4.0, 1.2], [1.2, 1.0]])
    center, width, height, angle = plots.covariance_ellipse(mean, sigma, C, n_std=2.0)
    from matplotlib.patches import Ellipse

    patch = Ellipse(center, width, height, angle=angle)
    theta = np.linspace(0, 2 * np.pi, 50)
    unit_circle = np.stack([np.cos(theta), np.sin(theta)], axis=1)  # the patch transform maps it onto the ellipse
    boundary = patch.get_patch_transform().transform(unit_circle) - mean
    mahalanobis2 = np.einsum("ij,jk,ik->i", boundary, np.linalg.inv(sigma**2 * C), boundary)
    assert np.allclose(mahalanobis2, 4.0, rtol=1e-6)


def test_player_callback_draws_the_requested_generation():
    snaps = cmaes.run(schaffer, [-20, 30], 10.0, popsize=16, seed=2, generations=12)
    player = plots.CMAESPlayer(snaps, schaffer, resolution=40)
    for g in (7, 2, 11):
        player.on_value_change({"new": g})  # what the generation slider calls
        s = snaps[g]
        assert player.generation == g
        assert np.array_equal(player.scatter.get_offsets(), s.population)
        assert np.allclose(player.ellipse.center, s.mean)
        _, width, height, _ = plots.covariance_ellipse(s.mean, s.sigma, s.C)
        assert np.isclose(player.ellipse.width, width) and np.isclose(player.ellipse.height, height)
        assert len(player.path.get_xdata()) == g + 1
        assert player.ax.get_title().startswith(f"generation {g}:")
    with pytest.raises(IndexError):
        player.draw(len(snaps))
    frame = player.frame(3, dpi=30)
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3 and player.generation == 3


def test_player_widget_is_a_play_button_linked_to_a_slider():
    ipywidgets = pytest.importorskip("ipywidgets")
    snaps = cmaes.run(schaffer, [-20, 30], 10.0, popsize=8, seed=2, generations=6)
    player = plots.CMAESPlayer(snaps, schaffer, resolution=30)
    box = player.widget
    assert isinstance(player.play, ipywidgets.Play) and isinstance(player.slider, ipywidgets.IntSlider)
    assert player.slider.max == player.play.max == 5
    assert isinstance(box, ipywidgets.VBox)
    first = player._picture.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"  # the figure, as a picture
    player.slider.value = 4  # what dragging the slider (or pressing play) does
    assert player.generation == 4 and player._picture.value != first


def test_gif_script_writes_a_readable_gif(tmp_path):
    from PIL import Image

    from toy import cmaes_gif

    out = tmp_path / "sub" / "cmaes.gif"
    assert cmaes_gif.main(["--out", str(out), "--generations", "6", "--dpi", "30", "--popsize", "12"]) == out
    with Image.open(out) as im:
        assert im.format == "GIF" and im.n_frames == 6 and im.size[0] > 50 and im.size[1] > 50
        im.seek(0)
        first = np.asarray(im.convert("RGB"))
        im.seek(5)
        last = np.asarray(im.convert("RGB"))
    assert not np.array_equal(first, last)  # the frames show different generations
