"""The shipped agents (pretrained/doom, pretrained/carracing), and exporting / installing a pretrained agent."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, assert_notebook_06_left, notebook_with_solutions, wm

from wmlib import episodes, pretrained, study
from wmlib.agent import Agent
from wmlib.config import Config
from wmlib.runlock import RunDirectoryLocked

SHIPPED = REPO / "pretrained" / "doom"
shipped = pytest.mark.skipif(not (SHIPPED / "config.json").exists(), reason="no agent in pretrained/doom")
CARRACING = REPO / "pretrained" / "carracing"
shipped_carracing = pytest.mark.skipif(
    not (CARRACING / "config.json").exists(), reason="no agent in pretrained/carracing"
)


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
        pretrained.install(agent, d)
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
    wm("test", "--pretrained_dir", dest, "--data_dir", target, "--rollouts", 1, "--quiet")
    agent = Agent.from_run(target)
    assert np.array_equal(agent.pool_mu, np.stack([episodes.load_series(f)["mu"][0] for f in series]))
    # installing again keeps what was made there (the test result just written)
    made = (target / "test" / "scores.json").read_bytes()
    pretrained.install(dest, target)
    assert (target / "test" / "scores.json").read_bytes() == made


@pytest.mark.parametrize(
    "name, game",
    [
        pytest.param("04_vision", "CarRacing-v3", marks=shipped_carracing),
        pytest.param("05_memory", "DoomTakeCover", marks=shipped),
        pytest.param("07_dream_training", "DoomTakeCover", marks=shipped),
    ],
)
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
    out = wm(
        "test", "--data_dir", d, "--rollouts", 2, "--max_steps", 300, "--policy", "random", "--record", 1, "--quiet"
    )
    random = json.loads((d / "test" / "random_scores.json").read_text())
    (shown,) = random["recorded"]  # the typical episode: the lower of the two, for two
    assert f"random_000.gif: test episode {shown['episode']}, score {shown['score']:.1f}" in out.stdout
    assert trained["episodes"] == 2 and all(n == 300 for n in trained["lengths"])  # no lap is done in 300 frames
    # 300 frames are about a third of a lap: the agent has visited tiles worth ~+3 each; random driving has not
    assert min(trained["scores"]) > 100 > max(random["scores"])
    assert {rel: (CARRACING / rel).read_bytes() for rel in pretrained.files_of(CARRACING)} == before


def test_notebook_06_trains_its_own_agent_without_the_shipped_one(tmp_path, monkeypatch):
    """Notebook 06 loads pretrained/carracing when the source tree has it (tests/test_course.py runs that path and
    checks what it leaves) and otherwise trains a whole agent at the smoke preset: that path, executed for real."""
    from nbclient import NotebookClient

    nb = notebook_with_solutions(REPO / "notebooks" / "06_controller.ipynb")
    switch = 'PRETRAINED = "carracing" in pretrained.available()'
    setup = [c for c in nb.cells if c.cell_type == "code" and switch in c.source]
    assert len(setup) == 1
    setup[0].source = setup[0].source.replace(switch, "PRETRAINED = False")
    monkeypatch.setenv("WM_DATA_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("WM_SMOKE", "1")
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert_notebook_06_left(tmp_path / "runs", shipped_agent=False)


# --- a shared agent folder can never run code or reach outside it ----------------------------------------------------


class MakesAMarker:
    """Unpickling this creates the file ``marker``: what a shared file that runs code on loading would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def tree(d: Path) -> dict:
    """Every entry under ``d`` (links not followed) and the bytes of its plain files; {} when ``d`` is absent."""
    if not d.exists():
        return {}
    return {
        p.relative_to(d): (
            p.read_bytes() if p.is_file() and not p.is_symlink() else os.readlink(p) if p.is_symlink() else "dir"
        )
        for p in sorted(d.rglob("*"))
    }


@pytest.fixture(scope="module")
def exported(smoke_runs, tmp_path_factory):
    """A smoke run of Doom, exported as a pretrained agent (once for the module; tests change copies of it)."""
    return pretrained.export(
        smoke_runs("DoomTakeCover"), tmp_path_factory.mktemp("exported") / "agent", sample_episodes=1
    )


@pytest.fixture
def agent(exported, tmp_path):
    """A private copy of the exported agent."""
    return Path(shutil.copytree(exported, tmp_path / "agent"))


def test_the_payload_used_below_does_run_code_when_unpickled(tmp_path):
    """(So that the tests below, where the marker never appears, could fail.)"""
    marker = tmp_path / "ran"
    torch.save({"params": torch.zeros(3), "x": MakesAMarker(marker)}, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("existing", [False, True], ids=["new-data-dir", "data-dir-with-files"])
def test_a_checkpoint_that_would_run_code_is_refused_and_nothing_is_written(agent, tmp_path, existing):
    marker = tmp_path / "ran"
    ckpt = torch.load(agent / "controller" / "controller.pt", weights_only=True)
    ckpt["hook"] = MakesAMarker(marker)
    torch.save(ckpt, agent / "controller" / "controller.pt")
    target = tmp_path / "installed"
    if existing:
        (target / "test").mkdir(parents=True)
        (target / "test" / "notes.json").write_text("{}")
    before = tree(target)
    with pytest.raises(ValueError, match=f"^{re.escape(str(agent / 'controller' / 'controller.pt'))}: "):
        pretrained.install(agent, target)
    assert not marker.exists()
    assert tree(target) == before  # nothing written, not even the lock


@pytest.mark.parametrize(
    "rel, make",
    [
        ("controller/es_state.pkl", lambda p, m: p.write_bytes(pickle.dumps(MakesAMarker(m)))),
        ("hook.py", lambda p, m: p.write_text(f"open({str(m)!r}, 'w')\n")),
        ("memory/extra.pt", lambda p, m: torch.save({"x": MakesAMarker(m)}, p)),
        ("run", lambda p, m: (p.write_text(f"#!/bin/sh\ntouch {m}\n"), p.chmod(0o755))),
    ],
)
def test_a_pickle_or_a_program_in_an_agent_folder_is_refused_naming_it(agent, tmp_path, rel, make):
    marker = tmp_path / "ran"
    make(agent / rel, marker)
    target = tmp_path / "installed"
    with pytest.raises(ValueError, match=f"^{re.escape(str(agent / rel))}: holds code or a pickle"):
        pretrained.install(agent, target)
    assert not marker.exists() and not target.exists()


@pytest.mark.parametrize(
    "rel, make, error",
    [
        (
            "series/ep_000000.npz",
            lambda p, m: np.savez(p, mu=np.array([MakesAMarker(m)], dtype=object)),
            "not a readable .npz of arrays",
        ),
        ("vision/vision.pt", lambda p, m: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), ""),
        ("config.json", lambda p, m: p.write_text(p.read_text().replace('"seed"', '"sed"')), "unknown setting 'sed'"),
        ("test/scores.json", lambda p, m: p.write_text("[1, 2]"), "expected a JSON object"),
        ("controller/learning_curve.png", lambda p, m: p.write_bytes(b"GIF89a"), "not a PNG image"),
    ],
)
def test_an_agent_file_that_fails_its_check_is_refused_naming_it(agent, tmp_path, rel, make, error):
    marker = tmp_path / "ran"
    make(agent / rel, marker)
    target = tmp_path / "installed"
    with pytest.raises(ValueError, match=f"^{re.escape(str(agent / rel))}: .*{error}"):
        pretrained.install(agent, target)
    assert not marker.exists() and not target.exists()


def test_other_unknown_files_are_left_out_and_listed_on_one_line(agent, tmp_path, capsys):
    (agent / "README.txt").write_text("shared by a friend")
    (agent / "vision" / ".DS_Store").write_bytes(b"\0\1")
    target = pretrained.install(agent, tmp_path / "installed")
    assert not (target / "README.txt").exists() and not (target / "vision" / ".DS_Store").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{agent}: left out 2 file(s) that are not part of an agent: README.txt, vision/.DS_Store"]
    assert (target / "vision" / "vision.pt").read_bytes() == (agent / "vision" / "vision.pt").read_bytes()


def test_a_run_directory_is_not_an_agent(smoke_runs, tmp_path):
    """Its CMA-ES state is a pickle: ``--pretrained_dir RUN_DIR`` stops (export the run first)."""
    with pytest.raises(ValueError, match="holds code or a pickle"):
        pretrained.install(smoke_runs("DoomTakeCover"), tmp_path / "installed")
    assert not (tmp_path / "installed").exists()


@pytest.mark.parametrize("name", ["../x", "../../tmp", "a/b", "..", ".", ".hidden", "", "doom/", "/abs"])
def test_pretrained_takes_only_the_name_of_a_shipped_agent(name, tmp_path):
    with pytest.raises(
        ValueError,
        match=f"^--pretrained {re.escape(name)}: expected the name of a shipped agent.*--pretrained_dir PATH",
    ):
        pretrained.pretrained_dir(name)
    with pytest.raises(ValueError, match="--pretrained"):
        pretrained.install(name, tmp_path / "installed")
    assert not (tmp_path / "installed").exists()


def test_a_path_to_a_real_agent_is_not_a_name(agent, tmp_path):
    with pytest.raises(ValueError, match="--pretrained_dir PATH"):
        pretrained.install(str(agent), tmp_path / "installed")
    assert not (tmp_path / "installed").exists()
    with pytest.raises(FileNotFoundError, match="--pretrained nope: .*available: "):
        pretrained.pretrained_dir("nope")
    with pytest.raises(
        FileNotFoundError, match=f"^--pretrained_dir {re.escape(str(tmp_path))}: not a pretrained agent"
    ):
        pretrained.agent_dir(tmp_path)


def test_cli_pretrained_refuses_a_path(agent, tmp_path):
    out = wm("test", "--pretrained", "../x", "--data_dir", tmp_path / "x", check=False)
    assert out.returncode == 2 and "--pretrained ../x" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "x").exists()


def test_a_shipped_agent_folder_that_is_a_link_is_refused(agent, tmp_path, monkeypatch):
    root = tmp_path / "pretrained"
    root.mkdir()
    shutil.copytree(agent, root / "mine")
    (root / "linked").symlink_to(agent, target_is_directory=True)
    monkeypatch.setattr(pretrained, "ROOT", root)
    assert pretrained.available() == ["mine"]
    assert pretrained.pretrained_dir("mine") == root / "mine"
    with pytest.raises(ValueError, match="linked is a symbolic link"):
        pretrained.install("linked", tmp_path / "installed")
    assert not (tmp_path / "installed").exists()
    assert (pretrained.install("mine", tmp_path / "installed") / "config.json").exists()


@pytest.mark.parametrize(
    "rel, to",
    [
        ("controller/controller.pt", "a copy elsewhere"),
        ("test/scores.json", "/etc/passwd"),
        ("config.json", "a copy elsewhere"),
        ("notes.txt", "/etc/passwd"),
        ("series", "a folder elsewhere"),
    ],
)
def test_a_symbolic_link_in_an_agent_folder_is_refused_naming_it(agent, tmp_path, rel, to):
    link = agent / rel
    elsewhere = tmp_path / "elsewhere" / link.name
    elsewhere.parent.mkdir()
    if to == "/etc/passwd":
        target_of_link = Path("/etc/passwd")
    else:
        target_of_link = Path(shutil.copytree(link, elsewhere) if link.is_dir() else shutil.copy(link, elsewhere))
    if link.is_dir():
        shutil.rmtree(link)
    else:
        link.unlink(missing_ok=True)
    link.symlink_to(target_of_link)
    target = tmp_path / "installed"
    (target / "test").mkdir(parents=True)
    (target / "test" / "notes.json").write_text("{}")
    before = tree(target)
    with pytest.raises(ValueError, match=f"^{re.escape(str(link))}: a symbolic link"):
        pretrained.install(agent, target)
    assert tree(target) == before
    listed = [p.as_posix() for p in pretrained.files_of(agent)]
    assert not [p for p in listed if p == rel or p.startswith(rel + "/")]  # files_of neither lists nor follows it


def test_install_takes_the_run_directory_lock_before_writing(agent, tmp_path):
    target = tmp_path / "installed"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from wmlib.runlock import run_lock\n"
            f"with run_lock({str(target)!r}, 'another command'):\n    print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = tree(target)
        with pytest.raises(RunDirectoryLocked, match="another command"):
            pretrained.install(agent, target)
        assert tree(target) == before  # only the other command's lock file
    finally:
        holder.communicate("", timeout=60)
    assert holder.returncode == 0
    assert (pretrained.install(agent, target) / "config.json").exists()  # once it is free


def test_export_writes_only_what_install_takes_and_install_copies_all_of_it(exported, tmp_path):
    files = pretrained.files_of(exported)
    assert files and all(pretrained.kind_of(rel) for rel in files)
    assert not [p for p in exported.rglob("*") if p.is_symlink()]
    assert sorted(rel.as_posix() for rel in files) == sorted(
        p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file()
    )
    for rel in files:
        if rel.suffix == ".pt":
            torch.load(exported / rel, weights_only=True)
        elif rel.suffix == ".npz":
            with np.load(exported / rel, allow_pickle=False) as z:
                [z[k] for k in z.files]
    target = pretrained.install(exported, tmp_path / "installed")
    assert pretrained.files_of(target) == files
    assert all((target / rel).read_bytes() == (exported / rel).read_bytes() for rel in files)
    assert not (target / ".lock").exists()


def test_wm_export_writes_an_agent_install_takes(smoke_runs, tmp_path):
    from conftest import wm

    dest = tmp_path / "agent"
    out = wm("export", smoke_runs("DoomTakeCover"), dest, "--episodes", "1", check=False)
    assert out.returncode == 0, out.stderr
    files, ignored = pretrained.read_agent(dest)
    assert ignored == [] and set(files) == set(pretrained.files_of(dest))


@shipped
def test_installing_the_shipped_doom_agent_copies_every_file_of_it(tmp_path):
    target = pretrained.install("doom", tmp_path / "doom")
    files = pretrained.files_of(SHIPPED)
    assert pretrained.read_agent(SHIPPED)[1] == []  # every shipped file is an agent file
    assert pretrained.files_of(target) == files
    assert all((target / rel).read_bytes() == (SHIPPED / rel).read_bytes() for rel in files)
    assert pretrained.agent_config(SHIPPED) == Config.from_dict(json.loads((SHIPPED / "config.json").read_text()))
