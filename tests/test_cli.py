"""wmlib.cli, the `wm` command: the whole pipeline at smoke scale on both real games (the integration test of
every stage), how settings are resolved, and how errors reach the user.

The stages' own behaviour through the command line (resuming, refusing a mismatched run) is tested with the module
of each stage: test_rollouts, test_vision, test_memory, test_evolution.
"""

import json
import runpy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import wm

from wmlib import episodes, esstate, settings
from wmlib.cli import TOOLS, build_parser, given_settings, main, resolve_config
from wmlib.config import FIELDS, flag_name
from wmlib.games import GAMES


@pytest.mark.parametrize("game", GAMES)
def test_wm_run_smoke_writes_every_artifact(smoke_runs, game):
    d = smoke_runs(game)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["game"] == game and cfg["preset"] == "smoke"
    assert len(episodes.list_episodes(d)) == cfg["num_rollouts"] == len(episodes.list_series(d))
    for f in [
        "vision/vision.pt",
        "vision/reconstructions.png",
        "vision/log.csv",
        "memory/memory.pt",
        "memory/log.csv",
        "memory/loss.png",
        "controller/controller.pt",
        "controller/es_state.npz",
        "controller/log.csv",
        "controller/learning_curve.png",
        "test/episode_000.gif",
    ]:
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
    assert proc.returncode == 2 and "not a run directory (no config.json)" in proc.stderr
    assert "wm run --game GAME --data_dir" in proc.stderr and not (tmp_path / "new").exists()
    proc = wm("rollouts", "--data_dir", tmp_path / "new", check=False)
    assert proc.returncode == 2 and "--game is required" in proc.stderr


@pytest.mark.parametrize(
    "command, missing, writer",
    [
        ("vision", "episodes", "rollouts"),
        ("memory", "episodes", "rollouts"),
        ("controller", "vision/vision.pt", "vision"),
        ("test", "vision/vision.pt", "vision"),
    ],
)
def test_a_stage_without_its_inputs_names_the_command_and_writes_nothing(tmp_path, command, missing, writer):
    d = tmp_path / "new"
    proc = wm(command, "--game", "DoomTakeCover", "--data_dir", d, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        f"wm {command}: error: {d / missing}: not found; run `wm {writer} --data_dir {d}` first"
    )
    assert not d.exists()  # no config.json left behind


def test_a_misspelled_flag_gets_a_suggestion(tmp_path):
    proc = wm("controller", "--data_dir", tmp_path, "--generatons", "3", check=False)
    assert proc.returncode == 2 and "did you mean --generations?" in proc.stderr
    proc = wm("vision", "--data_dir", tmp_path, "--scheduler", "tcp://127.0.0.1:9", check=False)
    assert proc.returncode == 2 and "--scheduler is not a flag of wm vision" in proc.stderr


def test_wm_run_prints_its_plan_and_each_stage(tmp_path):
    proc = wm(
        "run",
        "--game",
        "DoomTakeCover",
        "--data_dir",
        tmp_path / "r",
        "--num_rollouts",
        "2",
        "--rnn_steps",
        "2",
        "--generations",
        "1",
        "--quiet",
    )
    out = proc.stdout
    assert "wm run: DoomTakeCover, preset smoke" in out and "2 random-policy episodes" in out
    assert "1 generations of 4 candidates x 2 episodes" in out
    assert [line for line in out.splitlines() if line.startswith("== stage")] == [
        f"== stage {k}/5: {s}" for k, s in enumerate(["rollouts", "vision", "memory", "controller", "test"], 1)
    ]


def test_run_directory_of_another_game_is_refused(smoke_runs):
    d = smoke_runs("DoomTakeCover")
    proc = wm("test", "--game", "CarRacing-v3", "--data_dir", d, check=False)
    assert proc.returncode == 2 and "config.json" in proc.stderr and "DoomTakeCover" in proc.stderr


def resolve(*argv):
    return resolve_config(build_parser().parse_args([str(a) for a in argv]))


def test_settings_come_from_the_preset_then_the_saved_config_then_the_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("WM_SMOKE", "1")
    d = tmp_path / "run"
    cfg, data_dir = resolve("controller", "--game", "DoomTakeCover", "--data_dir", d)
    assert cfg.preset == "smoke" and data_dir == d and not d.exists()  # resolving writes nothing
    d.mkdir()
    resolve("controller", "--game", "DoomTakeCover", "--data_dir", d, "--pop", 6)[0].save(d / "config.json")
    assert resolve("controller", "--data_dir", d)[0].pop == 6  # the run directory's own settings
    assert resolve("controller", "--data_dir", d, "--pop", 8)[0].pop == 8  # a flag wins
    fresh = resolve("controller", "--data_dir", d, "--preset", "small")[0]  # another preset starts from it
    assert fresh.preset == "small" and fresh.pop != 6
    cfg = resolve("test", "--data_dir", d, "--rollouts", 5, "--record")[0]
    assert cfg.test_rollouts == 5 and cfg.record == 3
    assert resolve("controller", "--data_dir", d, "--curriculum", "5,3")[0].curriculum == (5, 3)
    assert resolve("vision", "--game", "CarRacing-v3")[1] == Path("runs") / "CarRacing-v3-smoke"  # the default


def test_bad_flags_are_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["controller", "--curriculum", "5"])
    assert exit_.value.code == 2 and "START,STEP" in capsys.readouterr().err
    d = tmp_path / "run"
    code = main(
        [
            "controller",
            "--game",
            "DoomTakeCover",
            "--data_dir",
            str(d),
            "--scheduler",
            "tcp://127.0.0.1:1",
            "--evaluator",
            "processes",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--scheduler and --tls go with --evaluator dask" in err and "Traceback" not in err
    assert not (d / "controller").exists()


@pytest.mark.parametrize("stage, rel", [("vision", "vision/vision.pt"), ("memory", "memory/memory.pt")])
def test_a_checkpoint_of_another_structure_is_named_when_a_stage_resumes(run_copy, stage, rel):
    from wmlib.io import atomic_torch_save

    d = run_copy("DoomTakeCover")
    atomic_torch_save(d / rel, {"weights": torch.zeros(3)})  # a valid, checksummed file of the wrong structure
    proc = wm(stage, "--data_dir", d, "--quiet", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"wm {stage}: error: {d / rel}: not a {stage} checkpoint of this version")


def flag_and_value(name: str) -> tuple[list[str], object]:
    """A command line that gives setting ``name``, and the value it gives."""
    flag, kind, meta = flag_name(name), settings.value_type(name), FIELDS[name].metadata
    if kind is bool:
        return [flag], True
    if name == "curriculum":
        return [flag, "5,3"], (5, 3)
    if meta["const"] is not None:
        return [flag], meta["const"]
    if meta["rule"].choices:
        return [flag, meta["rule"].choices[-1]], meta["rule"].choices[-1]
    return ([flag, "7"], 7) if kind is int else ([flag, "0.5"], 0.5)


def test_every_setting_is_a_flag_of_the_commands_that_read_it_and_of_wm_run():
    """The flags come from wmlib.config's declarations: `--epochs` sets vae_epochs, `--rollouts` test_rollouts,
    `--record` alone records 3, a boolean has its `--no-` form."""
    parser = build_parser()
    for name, field in FIELDS.items():
        argv, value = flag_and_value(name)
        for command in (*field.metadata["stages"], "run"):
            assert given_settings(parser.parse_args([command, *argv])) == {name: value}, (command, argv)
        if value is True:
            no = f"--no-{argv[0][2:]}"
            assert given_settings(parser.parse_args([field.metadata["stages"][0], no])) == {name: False}
    assert given_settings(parser.parse_args(["vision", "--epochs", "4"])) == {"vae_epochs": 4}
    assert given_settings(parser.parse_args(["test", "--rollouts", "5", "--record"])) == {
        "test_rollouts": 5,
        "record": 3,
    }
    with pytest.raises(SystemExit):
        parser.parse_args(["vision", "--pop", "8"])  # a flag only where a stage reads it


@pytest.mark.parametrize(
    "argv, message",
    [
        (["average", "--out", "{tmp}/avg.pt", "{tmp}/one.pt"], "name at least two controllers to average (got 1)"),
        (["study", "--data_dir", "{tmp}/none"], "{tmp}/none/config.json: not a run directory"),
        (["compare", "--data_dir", "{tmp}/none", "{tmp}/c.pt"], "{tmp}/none/config.json: not a run directory"),
        (["export", "{tmp}/none", "{tmp}/agent"], "{tmp}/none/vision/vision.pt: vision/vision.pt not found"),
        (["iterate", "--data_dir", "{tmp}/none", "--out", "{tmp}/out"], "{tmp}/none/config.json: not a run directory"),
    ],
)
def test_every_command_reports_an_error_the_same_way(tmp_path, capsys, argv, message):
    code = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"wm {argv[0]}: error: {message.format(tmp=tmp_path)}"), err
    assert "\n" not in err.strip() and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.filterwarnings("ignore:.*found in sys.modules")  # runpy runs a module the package already imported
@pytest.mark.parametrize(
    "module, command", [("study", "study"), ("compare", "compare"), ("average", "average"), ("pretrained", "export")]
)
def test_python_m_wmlib_module_is_the_wm_command(module, command, tmp_path, capsys, monkeypatch):
    assert command in TOOLS
    monkeypatch.setattr("sys.argv", [f"wmlib/{module}.py", "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module(f"wmlib.{module}", run_name="__main__")
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith(f"usage: wm {command} ")
    if module == "average":
        monkeypatch.setattr("sys.argv", ["wmlib/average.py", "--out", str(tmp_path / "a.pt"), str(tmp_path / "b.pt")])
        with pytest.raises(SystemExit) as exit_:
            runpy.run_module("wmlib.average", run_name="__main__")
        assert exit_.value.code == 2 and capsys.readouterr().err.startswith("wm average: error: name at least two")


def test_mu_reaches_pycma_and_is_kept_while_the_search_can_resume(run_copy):
    d = run_copy("DoomTakeCover")
    shutil.rmtree(d / "controller")
    wm("controller", "--data_dir", d, "--pop", 8, "--mu", 0.25, "--generations", 1, "--eval_episodes", 1, "--quiet")
    assert json.loads((d / "config.json").read_text())["mu"] == 0.25
    es = esstate.load(d / "controller" / "es_state.npz")["es"]
    assert es.popsize == 8 and es.sp.weights.mu == 2  # CMA_mu = 0.25 * 8 (test_config: 16 of 64)
    before = (d / "config.json").read_bytes()
    proc = wm("controller", "--data_dir", d, "--mu", 0.5, "--quiet", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("wm controller: error: --mu 0.5: ")
    assert "was made with mu 0.25" in proc.stderr and (d / "config.json").read_bytes() == before
