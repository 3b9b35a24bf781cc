"""Config: each setting declared once (its flag, rule, help and source, and docs/settings.md made from them); every
preset is valid; a bad value is refused when the config is made, naming its `wm` flag; --mu reaches pycma."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from wmlib import settings
from wmlib.config import ADDED, FIELD_FLAGS, FIELDS, PRESET_OVERRIDES, RULES, STAGES, Config, flag_name, make_config

REPO = Path(__file__).resolve().parents[1]
PAIRS = [(preset, game) for preset, games in PRESET_OVERRIDES.items() for game in games]


def test_every_field_has_a_rule():
    assert list(RULES) != [] and set(RULES) == {f.name for f in dataclasses.fields(Config)}


def test_flag_names():
    assert flag_name("vae_epochs") == "--epochs"
    assert flag_name("test_rollouts") == "--rollouts"
    assert flag_name("pop") == "--pop"
    assert set(FIELD_FLAGS) <= set(RULES)
    with pytest.raises(ValueError, match="unknown setting"):
        flag_name("popsize")


@pytest.mark.parametrize("preset, game", PAIRS)
def test_every_preset_is_valid(preset, game):
    cfg = make_config(game, preset)
    assert Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # round trip through config.json


def test_shipped_agent_config_loads():
    data = json.loads((REPO / "pretrained" / "doom" / "config.json").read_text())
    cfg = Config.from_dict(data).to_dict()
    assert {k: cfg[k] for k in data if k in cfg} == {k: v for k, v in data.items() if k in cfg}
    assert set(data) <= set(cfg)
    older = dict(data, vae_buffer_episodes=8)  # a setting of older versions, ignored when a config is read
    assert Config.from_dict(older).to_dict() == cfg


def test_the_defaults_are_the_papers_carracing_agent():
    assert Config() == make_config("CarRacing-v3", "paper") and Config().preset == "paper"


def test_every_setting_is_declared_whole():
    flags = [flag_name(name) for name in FIELDS]
    assert len(set(flags)) == len(flags)  # one flag per setting
    for name, field in FIELDS.items():
        meta = field.metadata
        assert meta["help"] and meta["stages"] and set(meta["stages"]) <= set(STAGES), name
        assert meta["source"] or name in ("game", "preset"), name
        assert settings.value_type(name) in (int, float, bool, str) or name == "curriculum", name


def test_the_settings_page_is_current():
    page = REPO / settings.PAGE
    assert page.exists() and page.read_text() == settings.settings_page(), (
        f"{settings.PAGE} is out of date with wmlib/config.py; rewrite it: {settings.REWRITE}"
    )
    assert all(f"`{flag_name(name)}" in page.read_text() for name in FIELDS)


def test_a_config_json_of_an_older_version_reads_as_the_run_was_made():
    """Settings added later (mu) take the value every older run had; the shipped agents' config.json lack it."""
    assert ADDED == {"mu": None}
    for name in ("doom", "carracing"):
        data = json.loads((REPO / "pretrained" / name / "config.json").read_text())
        assert "mu" not in data and Config.from_dict(data).mu is None
    data = make_config("CarRacing-v3", "small", mu=0.25).to_dict()
    assert Config.from_dict(data).mu == 0.25
    del data["mu"]
    assert Config.from_dict(data).mu is None


def test_mu_is_the_share_of_the_population_pycma_recombines():
    from wmlib.controller import ControllerSpec
    from wmlib.evolution import new_state

    spec = ControllerSpec("CarRacing-v3", z_dim=4, hidden_dim=3)
    cfg = make_config("CarRacing-v3", "smoke", pop=64)
    for mu, parents in ((0.25, 16), (1.0, 64), (None, 32)):
        es = new_state(dataclasses.replace(cfg, mu=mu), spec)["es"]
        assert es.sp.weights.mu == parents and es.popsize == 64
    assert dataclasses.replace(cfg, mu=0.25).parents() == 16 and cfg.parents() is None
    # the default is pycma's own: the same search as one made without the option
    import cma

    ours = new_state(cfg, spec)["es"].ask()  # (pycma seeds numpy's global generator: one search at a time)
    plain = cma.CMAEvolutionStrategy(
        np.zeros(spec.n_params),
        cfg.sigma0,
        {"popsize": 64, "seed": cfg.seed + 1, "verbose": -9, "signals_filename": ""},
    )
    assert np.array_equal(ours, plain.ask())


BAD = [  # field, value, what the message must contain
    ("pop", -3, "--pop must be an integer >= 2, got -3"),
    ("pop", 1, "--pop"),
    ("temperature", -1, "--temperature must be a number > 0, got -1"),
    ("temperature", 0.0, "--temperature"),
    ("z_dim", 0, "--z_dim must be an integer >= 1, got 0"),
    ("done_threshold", 1.5, "--done_threshold must be a number in (0, 1), got 1.5"),
    ("done_threshold", 0.0, "--done_threshold"),
    ("hold_min", 11, "--hold_min must be an integer from 1 to --hold_max (10), got 11"),
    ("min_frames", 5000, "--min_frames must be an integer from 0 to --max_frames"),
    ("seed", -1, "--seed must be an integer >= 0, got -1"),
    ("pop", 64.0, "--pop must be an integer >= 2, got 64.0"),
    ("num_rollouts", True, "--num_rollouts"),
    ("seq_len", "100", "--seq_len"),
    ("predict_done", "yes", "--predict_done must be True or False, got 'yes'"),
    ("in_dream", 1, "--in_dream"),
    ("curriculum", (5,), "--curriculum"),
    ("curriculum", (0, 10), "--curriculum"),
    ("curriculum", (10, -1), "--curriculum"),
    ("curriculum", (10.0, 5), "--curriculum"),
    ("curriculum", 10, "--curriculum"),
    ("rnn_lr_decay", 0, "--rnn_lr_decay must be a number in (0, 1], got 0"),
    ("rnn_lr_decay", 1.01, "--rnn_lr_decay"),
    ("vae_epochs", 0, "--epochs must be"),
    ("test_rollouts", 0, "--rollouts must be"),
    ("vae_lr", float("inf"), "--vae_lr"),
    ("rnn_lr", float("nan"), "--rnn_lr"),
    ("kl_tolerance", -0.5, "--kl_tolerance"),
    ("target_cumulative_reward", float("nan"), "--target_cumulative_reward"),
    ("target_cumulative_reward", "900", "--target_cumulative_reward"),
    ("game", "Pong", "--game must be one of CarRacing-v3, DoomTakeCover, got 'Pong'"),
    ("preset", "huge", "--preset"),
    ("renderer", "gpu", "--renderer"),
    ("workers", 0, "--workers"),
    ("generations", -1, "--generations"),
    ("eval_every", 0, "--eval_every"),
    ("record", -1, "--record"),
    ("mu", 0, "--mu must be a share in (0, 1] of --pop (4) that keeps at least one parent, or None (half), got 0"),
    ("mu", 1.5, "--mu"),
    ("mu", 0.1, "--mu"),  # round(0.1 * 4) = 0 parents
    ("mu", "0.25", "--mu"),
]


@pytest.mark.parametrize("field, value, message", BAD, ids=[f"{f}={v!r}" for f, v, _ in BAD])
def test_bad_value_names_its_flag(field, value, message):
    cfg = make_config("DoomTakeCover", "smoke")
    with pytest.raises(ValueError) as err:
        dataclasses.replace(cfg, **{field: value})
    assert message in str(err.value)
    data = cfg.to_dict() | {field: value}
    with pytest.raises(ValueError, match=flag_name(field)):  # a config.json holding it is refused too
        Config.from_dict(data)
    if field not in ("game", "preset"):  # (make_config names an unknown game or preset in its own words)
        with pytest.raises(ValueError, match=flag_name(field)):
            make_config("DoomTakeCover", "smoke", **{field: value})


def test_bounds_follow_the_other_field():
    cfg = make_config("DoomTakeCover", "smoke")  # min_frames 10
    assert dataclasses.replace(cfg, max_frames=10).max_frames == 10
    with pytest.raises(ValueError, match=r"--min_frames .* --max_frames \(9\), got 10"):
        dataclasses.replace(cfg, max_frames=9)
    assert dataclasses.replace(cfg, hold_min=4, hold_max=4).hold_min == 4


@pytest.mark.parametrize(
    "field, value",
    [
        ("pop", 2),
        ("generations", 0),
        ("rnn_steps", 0),
        ("vae_episodes", 0),
        ("record", 0),
        ("rnn_lr_decay", 1),
        ("temperature", 1e-3),
        ("initial_z_noise", 0),
        ("kl_tolerance", 0),
        ("curriculum", (1, 0)),
        ("curriculum", None),
        ("target_cumulative_reward", -20),
        ("min_frames", 0),
        ("hold_min", 1),
        ("mu", 1),
        ("mu", 0.25),
        ("mu", None),  # 0.25 of 4: one parent
    ],
)
def test_edge_values_are_accepted(field, value):
    dataclasses.replace(make_config("DoomTakeCover", "smoke"), **{field: value})


def test_values_are_stored_as_plain_python():
    """A numpy number or a JSON list is accepted and stored so config.json can be written."""
    cfg = dataclasses.replace(
        make_config("DoomTakeCover", "smoke"),
        pop=np.int64(8),
        temperature=np.float32(1.25),
        done_weight=5,
        curriculum=[20, 10],
    )
    assert type(cfg.pop) is int and cfg.pop == 8
    assert type(cfg.temperature) is float and cfg.temperature == 1.25
    assert type(cfg.done_weight) is float
    assert cfg.curriculum == (20, 10)
    json.dumps(cfg.to_dict())
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_from_dict_refuses_unknown_keys_naming_them():
    data = make_config("CarRacing-v3", "small").to_dict() | {"popp": 8}
    with pytest.raises(ValueError, match=r"^run/config.json: unknown setting 'popp' \(did you mean 'pop'\?\)$"):
        Config.from_dict(data, source="run/config.json")
    with pytest.raises(ValueError, match="unknown settings 'old_setting', 'batch_size'$"):
        Config.from_dict(make_config("CarRacing-v3", "small").to_dict() | {"old_setting": 3, "batch_size": "x"})


def test_from_dict_refuses_missing_keys_naming_them():
    """A missing key never takes a default (the paper's 64 x 1800 once started from a config.json without them)."""
    data = make_config("CarRacing-v3", "small").to_dict()
    del data["pop"], data["generations"]
    with pytest.raises(ValueError, match=r"^c.json: missing settings pop, generations \("):
        Config.from_dict(data, source="c.json")
    del data["game"]
    with pytest.raises(ValueError, match="missing settings game, pop, generations") as err:
        Config.from_dict(data, source="c.json")
    assert "--game" not in str(err.value)  # nobody passed a flag: the file's key is named


def test_from_dict_names_the_key_of_a_bad_value():
    data = make_config("CarRacing-v3", "small").to_dict() | {"pop": -3}
    with pytest.raises(ValueError, match=r"^c.json: 'pop' must be an integer >= 2, got -3 \(the setting of --pop\)$"):
        Config.from_dict(data, source="c.json")


def test_make_config_unknown_setting():
    with pytest.raises(ValueError, match="unknown setting 'popsize'"):
        make_config("DoomTakeCover", "smoke", popsize=3)


def test_doom_dream_needs_the_done_head():
    cfg = make_config("DoomTakeCover", "small")  # trains in the real game
    assert not cfg.in_dream
    dataclasses.replace(cfg, predict_done=False)  # fine: no dream
    for make in (
        lambda: dataclasses.replace(cfg, predict_done=False, in_dream=True),
        lambda: make_config("DoomTakeCover", "reproduce", predict_done=False),
        lambda: Config.from_dict(cfg.to_dict() | {"predict_done": False, "in_dream": True}),
    ):
        with pytest.raises(ValueError) as err:
            make()
        assert "--in_dream" in str(err.value) and "--no-predict_done" in str(err.value)
    # CarRacing's dream has no done head and needs none
    car = make_config("CarRacing-v3", "small")
    assert dataclasses.replace(car, in_dream=True).predict_done is False


# -- through the command line: a bad flag value never reaches the run's config.json ------------------------------


@pytest.mark.parametrize(
    "command, flag, value",
    [
        ("controller", "--pop", "-3"),
        ("controller", "--temperature", "-1"),
        ("controller", "--done_threshold", "1.5"),
        ("vision", "--z_dim", "0"),
        ("vision", "--epochs", "0"),
        ("rollouts", "--min_frames", "100000"),
        ("memory", "--rnn_steps", "-1"),
        ("test", "--rollouts", "0"),
    ],
)
def test_an_invalid_flag_leaves_config_json_byte_identical_and_names_the_flag(run_copy, command, flag, value):
    from conftest import wm

    run = run_copy("DoomTakeCover")
    before = (run / "config.json").read_bytes()
    listing = sorted(p.relative_to(run) for p in run.rglob("*"))
    proc = wm(command, "--data_dir", run, flag, value, "--quiet", check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert flag in proc.stderr, proc.stderr
    assert (run / "config.json").read_bytes() == before
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == listing  # nothing written, nothing lost


def test_an_invalid_flag_on_a_new_run_directory_creates_nothing(tmp_path):
    from conftest import wm

    proc = wm("controller", "--game", "DoomTakeCover", "--data_dir", tmp_path / "new", "--pop", "-3", check=False)
    assert proc.returncode == 2 and "--pop" in proc.stderr
    assert not (tmp_path / "new" / "config.json").exists()


def test_an_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid presets: smoke, small, reproduce, paper"):
        make_config("DoomTakeCover", "huge")


def test_the_carracing_recipe_saves_training_time_only():
    cfg = make_config("CarRacing-v3", "reproduce")
    assert (cfg.pop, cfg.trials, cfg.sigma0, cfg.z_dim, cfg.hidden_dim) == (64, 16, 0.1, 32, 256)  # the paper's
    assert cfg.early_stop > 0 and cfg.paired_seeds and not cfg.in_dream and cfg.max_steps == 1000


# -- settings that disagree with the run's artifacts are refused before config.json changes ----------------------


@pytest.mark.parametrize(
    "command, flag, value, made",
    [
        ("controller", "--pop", "8", "controller/controller.pt was made with pop 4"),
        ("vision", "--z_dim", "16", "vision/vision.pt was made with z_dim 64"),
        ("memory", "--hidden_dim", "16", "memory/memory.pt was made with hidden_dim 512"),
    ],
)
def test_a_flag_that_disagrees_with_the_artifacts_leaves_config_json_byte_identical(
    run_copy, command, flag, value, made
):
    from conftest import wm

    run = run_copy("DoomTakeCover")
    before = (run / "config.json").read_bytes()
    proc = wm(command, "--data_dir", run, flag, value, "--quiet", check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    message = proc.stderr.strip()
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"wm {command}: error: {flag} {value}: ") and made in message, message
    assert (run / "config.json").read_bytes() == before
    assert wm(command, "--data_dir", run, "--quiet").returncode == 0  # the run goes on with its own settings


def test_a_config_json_edited_to_disagree_names_its_key(run_copy):
    from conftest import wm

    run = run_copy("DoomTakeCover")
    data = json.loads((run / "config.json").read_text()) | {"pop": 8}
    (run / "config.json").write_text(json.dumps(data))
    proc = wm("controller", "--data_dir", run, "--quiet", check=False)
    assert proc.returncode == 2 and "config.json's 'pop' 8: " in proc.stderr and "--pop" not in proc.stderr


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("pop") and d.pop("generations"), "missing settings pop, generations"),
        (lambda d: d.update(popp=d.pop("pop")), "unknown setting 'popp' (did you mean 'pop'?)"),
        (lambda d: d.pop("game"), "missing setting game"),
    ],
)
def test_a_config_json_with_a_missing_or_misspelled_key_is_refused_naming_it(run_copy, edit, message):
    from conftest import wm

    run = run_copy("DoomTakeCover")
    data = json.loads((run / "config.json").read_text())
    edit(data)
    (run / "config.json").write_text(json.dumps(data))
    before = (run / "config.json").read_bytes()
    proc = wm("controller", "--data_dir", run, "--quiet", check=False)
    assert proc.returncode == 2 and message in proc.stderr and str(run / "config.json") in proc.stderr, proc.stderr
    assert "--game" not in proc.stderr
    assert (run / "config.json").read_bytes() == before
