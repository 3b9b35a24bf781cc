"""The shipped agents (pretrained/doom, pretrained/carracing), and exporting / installing a pretrained agent."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import REPO, notebook_with_solutions, wm

from wmlib import episodes, pretrained, study
from wmlib.agent import Agent
from wmlib.config import Config

SHIPPED = REPO / "pretrained" / "doom"
shipped = pytest.mark.skipif(not (SHIPPED / "config.json").exists(), reason="no agent in pretrained/doom")
CARRACING = REPO / "pretrained" / "carracing"
shipped_carracing = pytest.mark.skipif(not (CARRACING / "config.json").exists(),
                                       reason="no agent in pretrained/carracing")


@shipped
def test_the_shipped_doom_agent_is_small_weights_only_and_documented():
    assert "doom" in pretrained.available()
    size = sum(f.stat().st_size for f in SHIPPED.rglob("*") if f.is_file())
    assert size < 64 * 2**20  # V, M, and the M of each of the four earlier rounds' dreams
    for rel in pretrained.CHECKPOINTS:
        ckpt = torch.load(SHIPPED / rel, map_location="cpu", weights_only=True)
        assert "optimizer" not in ckpt
    cfg = Config.from_dict(json.loads((SHIPPED / "config.json").read_text()))
    assert (cfg.game, cfg.preset, cfg.in_dream) == ("DoomTakeCover", "reproduce", True)
    # the card quotes the shipped test results, which are 100 real episodes
    card = (SHIPPED / "CARD.md").read_text()
    for name in ("scores.json", "random_scores.json"):
        s = json.loads((SHIPPED / "test" / name).read_text())
        assert s["episodes"] == 100 and s["max_steps"] == 2100
        assert f"{s['mean']:.1f} ± {s['std']:.1f}" in card
    if study.study_path(SHIPPED).exists():
        for row in study.read_study(SHIPPED):
            assert f"{row['real_mean']:.1f} ± {row['real_std']:.1f}" in card


@shipped
def test_wm_test_pretrained_plays_real_episodes_and_leaves_the_shipped_files_alone(tmp_path):
    before = {rel: (SHIPPED / rel).read_bytes() for rel in pretrained.files_of(SHIPPED)}
    d = tmp_path / "doom"
    out = wm("test", "--pretrained", "doom", "--data_dir", d, "--rollouts", 3, "--max_steps", 150, "--quiet")
    assert "controller score over 3 episodes of DoomTakeCover" in out.stdout
    scores = json.loads((d / "test" / "scores.json").read_text())
    assert scores["episodes"] == 3 and all(1 <= n <= 150 for n in scores["lengths"])
    assert scores["scores"] == [float(n) for n in scores["lengths"]]  # +1 per tic survived
    assert {rel: (SHIPPED / rel).read_bytes() for rel in pretrained.files_of(SHIPPED)} == before
    # the installed agent dreams from the training episodes' first frames, not only the few shipped episodes
    agent = Agent.from_run(d)
    n = json.loads((SHIPPED / "config.json").read_text())["num_rollouts"]
    record = json.loads((SHIPPED / "iteration.json").read_text()) if (SHIPPED / "iteration.json").exists() else None
    while record:  # and the real episodes each round of iterative training added
        n += record["episodes"]
        record = record.get("previous")
    assert len(agent.pool_mu) == n
    cfg = Config.from_dict(json.loads((d / "config.json").read_text()))
    dreams = study.dream_scores(cfg, d, episodes=4)
    assert dreams.shape == (4,) and np.all((dreams >= 1) & (dreams <= cfg.dream_max_len))


def test_an_unknown_pretrained_name_is_named_in_the_error(tmp_path):
    out = wm("test", "--pretrained", "nope", "--data_dir", tmp_path / "x", check=False)
    assert out.returncode == 2
    assert "--pretrained nope" in out.stderr and "available: " in out.stderr
    assert not (tmp_path / "x").exists()


def test_installing_over_another_run_is_refused_and_changes_nothing(run_copy, tmp_path):
    d = run_copy("DoomTakeCover")
    agent = pretrained.export(d, tmp_path / "agent", sample_episodes=1)
    ckpt = torch.load(d / "vision" / "vision.pt", weights_only=True)  # the run trains on after the export
    next(iter(ckpt["model"].values())).add_(1.0)
    torch.save(ckpt, d / "vision" / "vision.pt")
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="vision.pt"):
        pretrained.install(str(agent), d)
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before


def test_export_then_install_gives_a_run_that_plays_and_dreams(run_copy, tmp_path):
    d = run_copy("DoomTakeCover")
    dest = pretrained.export(d, tmp_path / "agent", sample_episodes=1)
    for rel in pretrained.CHECKPOINTS:
        assert "optimizer" not in torch.load(dest / rel, weights_only=True)
    series = episodes.list_series(d)
    assert len(episodes.list_episodes(dest)) == 1 and len(episodes.list_series(dest)) == 1
    card = (dest / "CARD.md").read_text()  # written from the run's own results
    for name in ("scores.json", "random_scores.json"):
        s = json.loads((d / "test" / name).read_text())
        assert f"{s['mean']:.1f} ± {s['std']:.1f} |" in card
    assert "--preset smoke" in card and "in the dream at tau 1.15" in card
    target = tmp_path / "installed"
    wm("test", "--pretrained", dest, "--data_dir", target, "--rollouts", 1, "--quiet")
    agent = Agent.from_run(target)
    assert np.array_equal(agent.pool_mu, np.stack([episodes.load_series(f)["mu"][0] for f in series]))
    # installing again keeps what was made there (the test result just written)
    made = (target / "test" / "scores.json").read_bytes()
    pretrained.install(str(dest), target)
    assert (target / "test" / "scores.json").read_bytes() == made


@pytest.mark.parametrize("name, game", [
    pytest.param("04_vision", "CarRacing-v3", marks=shipped_carracing),
    pytest.param("05_memory", "DoomTakeCover", marks=shipped),
    pytest.param("07_dream_training", "DoomTakeCover", marks=shipped)])
def test_notebooks_run_on_the_shipped_agent(name, game, tmp_path, monkeypatch):
    """The notebooks' PRETRAINED path (what a learner gets outside the smoke scale), executed for real."""
    from nbclient import NotebookClient

    nb = notebook_with_solutions(REPO / "notebooks" / f"{name}.ipynb")
    setup = [c for c in nb.cells if c.cell_type == "code" and "PRETRAINED = not SMOKE" in c.source]
    assert len(setup) == 1
    setup[0].source = setup[0].source.replace("PRETRAINED = not SMOKE", "PRETRAINED = True")
    monkeypatch.setenv("WM_DATA_DIR", str(tmp_path / "runs"))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert (tmp_path / "runs" / f"{game}-pretrained" / "vision" / "vision.pt").exists()
    assert not (tmp_path / "runs" / f"{game}-smoke").exists()  # nothing was trained
    assert not [c for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]


@shipped_carracing
def test_the_shipped_carracing_agent_is_small_weights_only_and_documented():
    assert "carracing" in pretrained.available()
    size = sum(f.stat().st_size for f in CARRACING.rglob("*") if f.is_file())
    assert size < 64 * 2**20  # V, M, and the M of each of the four earlier rounds' dreams
    for rel in pretrained.CHECKPOINTS:
        ckpt = torch.load(CARRACING / rel, map_location="cpu", weights_only=True)
        assert "optimizer" not in ckpt
    cfg = Config.from_dict(json.loads((CARRACING / "config.json").read_text()))
    assert (cfg.game, cfg.preset, cfg.in_dream) == ("CarRacing-v3", "reproduce", False)
    params = torch.load(CARRACING / "controller" / "controller.pt", weights_only=True)["params"]
    assert params.shape == (867,)  # the paper's controller
    card = (CARRACING / "CARD.md").read_text()
    for name in ("scores.json", "random_scores.json"):  # 100 whole real episodes each, quoted on the card
        s = json.loads((CARRACING / "test" / name).read_text())
        assert s["episodes"] == 100 and s["max_steps"] == 1000
        assert f"{s['mean']:.1f} ± {s['std']:.1f}" in card
    assert (CARRACING / "controller" / "learning_curve.png").exists()
    # the controller that ships: the average of three CMA-ES means, over 850 on the 100 test tracks
    averaged = torch.load(CARRACING / "controller" / "controller.pt", weights_only=True)["averaged"]
    assert [a["generation"] for a in averaged] == [60, 65, 70]
    assert "ships the average of the means of generations 60, 65 and 70" in card
    assert json.loads((CARRACING / "test" / "scores.json").read_text())["mean"] >= 850


@shipped_carracing
def test_wm_test_pretrained_carracing_drives_real_tracks_better_than_random(tmp_path):
    before = {rel: (CARRACING / rel).read_bytes() for rel in pretrained.files_of(CARRACING)}
    d = tmp_path / "car"
    out = wm("test", "--pretrained", "carracing", "--data_dir", d, "--rollouts", 2, "--max_steps", 300, "--quiet")
    assert "controller score over 2 episodes of CarRacing-v3" in out.stdout
    trained = json.loads((d / "test" / "scores.json").read_text())
    wm("test", "--data_dir", d, "--rollouts", 2, "--max_steps", 300, "--policy", "random", "--quiet")
    random = json.loads((d / "test" / "random_scores.json").read_text())
    assert trained["episodes"] == 2 and all(n == 300 for n in trained["lengths"])  # no lap is done in 300 frames
    # 300 frames are about a third of a lap: the agent has visited tiles worth ~+3 each; random driving has not
    assert min(trained["scores"]) > 100 > max(random["scores"])
    assert {rel: (CARRACING / rel).read_bytes() for rel in pretrained.files_of(CARRACING)} == before


@pytest.mark.parametrize("shipped_agent", [
    pytest.param(True, marks=shipped_carracing, id="shipped"), pytest.param(False, id="trained-here")])
def test_notebook_06_runs_on_the_shipped_agent_or_trains_its_own(shipped_agent, tmp_path, monkeypatch):
    """Notebook 06 loads pretrained/carracing when the source tree has it (test_course runs that path too) and
    otherwise trains a whole agent at the smoke preset; both executed for real."""
    from nbclient import NotebookClient

    nb = notebook_with_solutions(REPO / "notebooks" / "06_controller.ipynb")
    switch = 'PRETRAINED = "carracing" in pretrained.available()'
    setup = [c for c in nb.cells if c.cell_type == "code" and switch in c.source]
    assert len(setup) == 1
    setup[0].source = setup[0].source.replace(switch, f"PRETRAINED = {shipped_agent}")
    monkeypatch.setenv("WM_DATA_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("WM_SMOKE", "1")
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    runs = tmp_path / "runs"
    assert (runs / "CarRacing-v3-pretrained").exists() == shipped_agent
    assert (runs / "CarRacing-v3-smoke").exists() != shipped_agent  # with the shipped agent, V and M are not trained
    assert (runs / "CarRacing-v3-own-smoke" / "controller" / "controller.pt").exists()  # evolved in the notebook
    lap = (runs / ("CarRacing-v3-pretrained" if shipped_agent else "CarRacing-v3-smoke") / "notebook" / "lap.gif")
    assert lap.stat().st_size > 0
