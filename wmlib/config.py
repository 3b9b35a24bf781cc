"""Hyperparameters: one dataclass holds every setting; each game and scale preset fills it differently.

Each setting is declared once, as a :class:`Config` field made by :func:`setting`: its default, its valid values (a
:class:`Rule`), the one-line help of its ``wm`` flag, where its number comes from (**paper**: Ha & Schmidhuber 2018;
**code**: the authors' original implementation, where it differs from the paper; **ours**: a choice of this package,
usually for speed) and the commands that read it. From that one declaration come the ``wm`` flags
(:func:`add_setting`), the check of every value when a Config is made (a bad one raises ValueError naming the flag
that sets it, :func:`flag_name`, before it can reach a run's config.json) and docs/settings.md (:func:`settings_page`;
``python -m wmlib.settings > docs/settings.md`` writes it).

``Config()`` holds the paper's CarRacing settings (preset ``paper``); :func:`make_config` gives either game at any
preset. docs/pipeline.md's Presets section puts the four presets side by side:

* ``smoke``: every stage runs in seconds, for CI and for trying the command line. Learns nothing.
* ``small``: a laptop CPU in well under an hour; the agent learns something real (Doom clearly beats random play).
* ``reproduce``: the paper's agents on 2 CPU cores: Doom trained in the dream in an afternoon, CarRacing in the
  real game in about 12 hours; fewer rollouts, V and M steps than the paper, the paper's architecture and CMA-ES.
* ``paper``: the paper's numbers. V trains 10 epochs (code; the paper says 1), Doom's temperature is 1.15 (paper; the
  code used 1.25).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, NamedTuple

from .games import CARRACING_RENDERERS, GAMES, check_game
from .io import atomic_write_text
from .presets import GAME_DEFAULTS, PRESET_OVERRIDES  # noqa: F401 (read with the settings, from here)

PRESETS = ("smoke", "small", "reproduce", "paper")
STAGES = ("rollouts", "vision", "memory", "controller", "test")  # the `wm` commands of the pipeline, in order
SMOKE_ENV = "WM_SMOKE"  # the one smoke switch, honoured by every notebook and by `wm`

# Settings of older versions that a config.json may still hold; they are ignored when it is read.
OBSOLETE = frozenset({"vae_buffer_episodes"})

# Settings added in later versions, with the value every run made before them had: a config.json without one (an
# older run, a shipped agent) reads as the run was made.
ADDED = {"mu": None}


class InvalidSetting(ValueError):
    """A setting with a value outside its rule; the message names the setting's ``wm`` flag."""

    def __init__(self, field: str, what: str):
        super().__init__(f"{flag_name(field)} {what}")
        self.field, self.what = field, what


def smoke_mode() -> bool:
    """True when the environment asks for the tiny scale (``WM_SMOKE=1``)."""
    return os.environ.get(SMOKE_ENV, "0") == "1"


# --- what a valid value is ------------------------------------------------------------------------------------


class Rule(NamedTuple):
    """A field's valid values. ``expected`` completes "--flag must be ..."; ``{bound}`` in it stands for the field
    ``bound`` (its flag, and its value when a config is at hand), which is checked first. ``convert`` stores an
    accepted value as a plain Python value (a numpy integer becomes an int), so that config.json can always be
    written. ``choices``: the only values (they become the flag's choices)."""

    check: Callable[[Any, Any], bool]
    expected: str
    convert: Callable[[Any], Any] = lambda value: value
    bound: str | None = None
    choices: tuple[str, ...] | None = None

    def describe(self, cfg: Config | None = None) -> str:
        if self.bound is None:
            return self.expected
        value = f" ({getattr(cfg, self.bound)})" if cfg is not None else ""
        return self.expected.format(bound=flag_name(self.bound) + value)


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)  # True is an int to Python, not to us


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def integer(low: int, high: str | None = None) -> Rule:
    """An integer >= low, and <= the field named ``high`` when given."""
    if high is None:
        return Rule(lambda v, c: _is_int(v) and v >= low, f"an integer >= {low}", int)
    return Rule(
        lambda v, c: _is_int(v) and low <= v <= getattr(c, high), f"an integer from {low} to {{bound}}", int, high
    )


def number(low: float, high: float | None = None, *, open_low: bool = False, open_high: bool = False) -> Rule:
    """A finite number from low (excluded with open_low) up to high (excluded with open_high), if given."""

    def check(v, c) -> bool:
        if not _is_number(v) or v < low or (open_low and v == low):
            return False
        return high is None or v < high or (v == high and not open_high)

    if high is None:
        expected = f"a number {'>' if open_low else '>='} {low:g}"
    else:
        expected = f"a number in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    return Rule(check, expected, float)


def one_of(choices: tuple[str, ...]) -> Rule:
    return Rule(lambda v, c: v in choices, f"one of {', '.join(choices)}", choices=tuple(choices))


def _is_curriculum(value) -> bool:
    if value is None:
        return True
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(_is_int(x) for x in value):
        return False
    return value[0] >= 1 and value[1] >= 0


def _is_share_of_pop(value, cfg) -> bool:
    return value is None or (_is_number(value) and 0 < value <= 1 and round(value * cfg.pop) >= 1)


_optional_float = lambda v: None if v is None else float(v)  # noqa: E731
SWITCH = Rule(lambda v, c: isinstance(v, bool), "True or False")
CURRICULUM = Rule(
    lambda v, c: _is_curriculum(v),
    "two integers START,STEP with START >= 1 and STEP >= 0 (or None)",
    lambda v: None if v is None else (int(v[0]), int(v[1])),
)
OPTIONAL_NUMBER = Rule(lambda v, c: v is None or _is_number(v), "None or a finite number", _optional_float)
SHARE_OF_POP = Rule(
    _is_share_of_pop,
    "a share in (0, 1] of {bound} that keeps at least one parent, or None (half)",
    _optional_float,
    "pop",
)

EVERY = "every"  # a setting of the whole run: a flag of every command of the pipeline


def setting(
    default, rule: Rule, help: str, source: str, stage: str, *, flag: str | None = None, doc: str = "", const=None
):
    """A :class:`Config` field, declared with all there is to say about it: ``default``; ``rule``, its valid values;
    ``help``, the one line of its ``wm`` flag; ``source``, where the number comes from (``"paper: ..."``,
    ``"code: ..."``, ``"ours: ..."``); ``stage``, the commands whose flags set it (``"controller test"``, or
    :data:`EVERY`); ``flag``, when it is not ``--<field>``; ``doc``, more on what it means (docs/settings.md);
    ``const``, the value of the flag given without one (``--record`` alone is ``--record 3``)."""
    stages = STAGES if stage == EVERY else tuple(stage.split())
    assert set(stages) <= set(STAGES), stage
    return dataclasses.field(
        default=default,
        metadata=dict(
            rule=rule, help=help, source=source, stages=stages, every=stage == EVERY, flag=flag, doc=doc, const=const
        ),
    )


@dataclass
class Config:
    """Every setting of a World Models run; each field is declared by :func:`setting`, which says what it means and
    where its number comes from. The defaults are the paper's CarRacing agent (preset ``paper``)."""

    game: str = setting(
        "CarRacing-v3",
        one_of(GAMES),
        "which game (default: the run directory's)",
        "",
        EVERY,
        doc="the game the run plays",
    )
    preset: str = setting(
        "paper",
        one_of(PRESETS),
        "scale preset (default: small, or smoke when WM_SMOKE=1)",
        "",
        EVERY,
        doc="the scale preset this config started from (docs/pipeline.md, Presets)",
    )
    seed: int = setting(
        0,
        integer(0),
        "run seed",
        "ours",
        EVERY,
        doc="every episode's seed, and every random number of the run, is derived from it",
    )

    # --- rollouts -------------------------------------------------------------------------------------------
    num_rollouts: int = setting(10_000, integer(1), "random-policy episodes to collect", "paper: 10,000", "rollouts")
    max_frames: int = setting(
        1000, integer(1), "longest random episode, in frames", "paper: 1000 CarRacing, 2100 Doom", "rollouts"
    )
    min_frames: int = setting(
        0,
        integer(0, "max_frames"),
        "shorter random episodes are dropped and replaced",
        "paper: 100 for Doom",
        "rollouts",
    )
    hold_min: int = setting(
        1, integer(1, "hold_max"), "fewest frames a random action is held", "paper: 1 for Doom", "rollouts"
    )
    hold_max: int = setting(
        10, integer(1), "most frames a random action is held", "paper: 10 for Doom; ours for CarRacing", "rollouts"
    )
    renderer: str = setting(
        "fast",
        one_of(CARRACING_RENDERERS),
        "CarRacing observation renderer",
        "ours",
        EVERY,
        doc="who draws CarRacing's observation (wmlib.games.carracing_render; docs/performance.md)",
    )
    workers: int = setting(
        2, integer(1), "worker processes (rollouts, real-game evaluation)", "ours: the machine's 2 cores", EVERY
    )

    # --- V: ConvVAE ----------------------------------------------------------------------------------------
    z_dim: int = setting(32, integer(1), "latent size N_z", "paper: 32 CarRacing, 64 Doom", "vision memory")
    vae_epochs: int = setting(
        10,
        integer(1),
        "V training epochs (passes over all frames)",
        "code: 10; the paper says 1",
        "vision",
        flag="--epochs",
    )
    vae_batch: int = setting(100, integer(1), "V batch size, in frames", "paper: 100", "vision")
    vae_lr: float = setting(1e-4, number(0, open_low=True), "V's Adam learning rate", "paper: 1e-4", "vision")
    kl_tolerance: float = setting(0.5, number(0), "V's KL term is floored at this times N_z", "code: 0.5", "vision")
    vae_episodes: int = setting(
        0,
        integer(0),
        "train V on the first N episodes (0: all)",
        "ours",
        "vision",
        doc="V's cost grows with frames, and a few hundred thousand random-play frames "
        "already cover what Take Cover shows",
    )

    # --- M: MDN-RNN ----------------------------------------------------------------------------------------
    hidden_dim: int = setting(256, integer(1), "LSTM units", "paper: 256 CarRacing, 512 Doom", "memory")
    mixtures: int = setting(5, integer(1), "Gaussians per latent dimension", "paper: 5", "memory")
    predict_done: bool = setting(False, SWITCH, "M also predicts the end of the episode", "paper: Doom only", "memory")
    restart_flag: bool = setting(
        False, SWITCH, "M reads a 'first frame of an episode' flag", "code: Doom only", "memory"
    )
    done_weight: float = setting(
        10.0, number(0, open_low=True), "weight of positive examples in M's done loss", "code: 10", "memory"
    )
    seq_len: int = setting(
        999, integer(1), "M training sequence length", "paper: 999 CarRacing; code: 500 Doom", "memory"
    )
    rnn_batch: int = setting(100, integer(1), "M batch size, in sequences", "paper: 100", "memory")
    rnn_steps: int = setting(4000, integer(0), "M optimiser steps", "code: 4000", "memory")
    rnn_lr: float = setting(1e-3, number(0, open_low=True), "M's Adam learning rate", "paper: 1e-3", "memory")
    rnn_lr_decay: float = setting(
        1.0,
        number(0, 1, open_low=True),
        "M's learning rate is multiplied by this every step",
        "code: 0.99999 Doom",
        "memory",
    )
    grad_clip: float = setting(1.0, number(0, open_low=True), "M's gradient norm clip", "code: 1.0", "memory")
    recent_share: float = setting(
        0.0,
        number(0, 1, open_high=True),
        "share of M's training windows drawn from the latest `wm iterate` round's episodes",
        "ours",
        "memory",
        doc="0: every episode in proportion to its length, as the original (a round's new "
        "episodes are then a few % of M's windows)",
    )

    # --- C: controller and CMA-ES --------------------------------------------------------------------------
    pop: int = setting(
        64,
        integer(2),
        "CMA-ES population (the reference's --lambda_)",
        "paper: 64",
        "controller",
        doc="lambda: candidates per generation; CMA-ES needs two to rank",
    )
    mu: float | None = setting(
        None,
        SHARE_OF_POP,
        "share of the population CMA-ES recombines (the reference's --mu; default: half)",
        "ours: pycma's default, popsize // 2 (the reference scripts' --mu 0.5)",
        "controller",
        doc="the best round(mu * pop) candidates of a generation move "
        "CMA-ES's mean (pycma's CMA_mu); None: pycma's default",
    )
    trials: int = setting(
        16, integer(1), "episodes per candidate; its fitness is their mean", "paper: 16", "controller"
    )
    sigma0: float = setting(
        0.1, number(0, open_low=True), "CMA-ES initial step size, around a zero mean", "paper: 0.1", "controller"
    )
    generations: int = setting(
        1800,
        integer(0),
        "CMA-ES generations",
        "paper: ~1800 CarRacing; ~200 are enough for Doom in the dream",
        "controller",
    )
    eval_every: int = setting(
        25, integer(1), "score the CMA-ES mean every this many generations", "paper: 25", "controller"
    )
    eval_episodes: int = setting(1024, integer(1), "episodes for that score", "paper: 1024", "controller")
    max_steps: int = setting(
        1000,
        integer(1),
        "longest real-game episode when training or testing C",
        "paper: 1000 CarRacing, 2100 Doom",
        "controller test",
    )
    early_stop: int = setting(
        0,
        integer(0),
        "end a training episode after this many frames of negative reward in a row (0: never)",
        "ours, as in the AttentionAgent and neuroevolution CarRacing papers",
        "controller",
        doc="counted after the opening zoom; the CMA-ES mean's evaluation and `wm test` always play whole episodes",
    )
    paired_seeds: bool = setting(
        False,
        SWITCH,
        "score every candidate of a generation on the same episodes",
        "code: the original paired its candidates' tracks",
        "controller",
        doc="so that candidates are ranked on the same tracks",
    )
    in_dream: bool = setting(False, SWITCH, "train C inside M's dream", "paper: Doom", "controller")
    z_only: bool = setting(
        False,
        SWITCH,
        "C reads z alone, not M's hidden state",
        "paper: the 'V model only' ablation, Table 1: 632 +- 251",
        "controller",
    )
    temperature: float = setting(
        1.0,
        number(0, open_low=True),
        "M's sampling temperature in the dream",
        "paper: 1.15 Doom; code: 1.25",
        "controller",
        doc="tau; sampling divides M's mixture logits by it",
    )
    dream_max_len: int = setting(1000, integer(1), "longest dream episode", "paper: 2100 Doom", "controller")
    initial_z_noise: float = setting(
        0.0,
        number(0),
        "extra noise on the dream's first z",
        "ours; 0 = off",
        "controller",
        doc="the std of Gaussian noise added to it",
    )
    done_threshold: float = setting(
        0.5,
        number(0, 1, open_low=True, open_high=True),
        "dream ends when M's done probability passes this",
        "code: logit > 0, i.e. 0.5",
        "controller",
    )
    curriculum: tuple[int, int] | None = setting(
        None,
        CURRICULUM,
        "START,STEP: dream length grows when the mean improves",
        "code",
        "controller",
        doc="the dream length starts at START and grows by STEP when the mean score improves",
    )
    target_cumulative_reward: float | None = setting(
        None,
        OPTIONAL_NUMBER,
        "stop when the evaluated mean reaches it",
        "code; 900 CarRacing / 750 Doom are the 'solved' lines",
        "controller",
    )

    # --- test ------------------------------------------------------------------------------------------------
    test_rollouts: int = setting(100, integer(1), "real-game test episodes", "paper: 100", "test", flag="--rollouts")
    record: int = setting(
        3,
        integer(0),
        "write GIFs of N typical test episodes (the median score first)",
        "ours",
        "test",
        const=3,
        doc="`wm test --record` alone writes 3; `wm run` always writes them",
    )

    def __post_init__(self) -> None:
        """Check every field against its rule, so a bad value fails here, naming its flag, instead of being saved in
        a run's config.json and failing hours later deep inside a stage. A field bounded by another comes after it."""
        for field in sorted(dataclasses.fields(self), key=lambda f: f.metadata["rule"].bound is not None):
            rule, value = field.metadata["rule"], getattr(self, field.name)
            if not rule.check(value, self):
                raise InvalidSetting(field.name, f"must be {rule.describe(self)}, got {value!r}")
            setattr(self, field.name, rule.convert(value))
        for check, message in JOINT_RULES:
            if not check(self):
                raise ValueError(message)

    def parents(self) -> int | None:
        """pycma's ``CMA_mu``: how many of a generation's best candidates are recombined (None: pycma's default)."""
        return None if self.mu is None else round(self.mu * self.pop)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["curriculum"] = list(self.curriculum) if self.curriculum else None
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> Config:
        """The Config a run's ``config.json`` holds. Every setting must be there, and nothing else (but the settings
        of older versions in :data:`OBSOLETE`, and those in :data:`ADDED`, which a run made before them lacks): a
        missing key would silently take a default, and a misspelled one would be ignored. Errors name ``source``
        (the file) and the key, in the file's own words."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in names and k not in OBSOLETE]
        if unknown:
            close = {k: difflib.get_close_matches(k, names, 1, 0.75) for k in unknown}
            hints = [f"{k!r}" + (f" (did you mean {close[k][0]!r}?)" if close[k] else "") for k in unknown]
            raise ValueError(f"{source}: unknown setting{'s' * (len(unknown) > 1)} {', '.join(hints)}")
        missing = [k for k in names if k not in d and k not in ADDED]
        if missing:
            raise ValueError(
                f"{source}: missing setting{'s' * (len(missing) > 1)} {', '.join(missing)} (a run's "
                f"config.json holds every setting; add {'them' if len(missing) > 1 else 'it'}, with "
                "the values the run was made with)"
            )
        values = {k: d[k] if k in d else ADDED[k] for k in names}
        if isinstance(values["curriculum"], list):
            values["curriculum"] = tuple(values["curriculum"])
        try:
            return cls(**values)
        except InvalidSetting as exc:
            raise ValueError(f"{source}: {exc.field!r} {exc.what} (the setting of {flag_name(exc.field)})") from None

    def save(self, path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))


FIELDS = {f.name: f for f in dataclasses.fields(Config)}
RULES: dict[str, Rule] = {name: f.metadata["rule"] for name, f in FIELDS.items()}  # every field's valid values
FIELD_FLAGS = {name: f.metadata["flag"] for name, f in FIELDS.items() if f.metadata["flag"]}  # not --<field>


def flag_name(field: str) -> str:
    """The `wm` command-line flag that sets ``field``: error messages speak in flags, the user's words."""
    if field not in FIELDS:
        raise ValueError(f"unknown setting {field!r}")
    return FIELD_FLAGS.get(field, f"--{field}")


# Rules on several fields together: (check, message).
JOINT_RULES: list[tuple[Callable[[Config], bool], str]] = [
    (
        lambda c: not (c.game == "DoomTakeCover" and c.in_dream and not c.predict_done),
        "--in_dream for DoomTakeCover needs M's done head to end dream episodes; drop --no-predict_done, "
        "or train in the real game with --no-in_dream",
    ),
]


def make_config(game: str, preset: str = "small", **overrides) -> Config:
    """The config for ``game`` at ``preset`` scale, with any field overridden by keyword (None = keep)."""
    check_game(game)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    if game not in PRESET_OVERRIDES[preset]:
        games = ", ".join(PRESET_OVERRIDES[preset])
        raise ValueError(f"preset {preset!r} is defined for {games} only; for {game} use small or paper")
    values = dict(game=game, preset=preset)
    values.update(GAME_DEFAULTS[game])
    values.update(PRESET_OVERRIDES[preset][game])
    for key, value in overrides.items():
        if key not in FIELDS:
            raise ValueError(f"unknown setting {key!r}")
        if value is not None:
            values[key] = value
    return Config(**values)


__all__ = [
    "ADDED",
    "Config",
    "FIELD_FLAGS",
    "FIELDS",
    "GAMES",
    "PRESETS",
    "RULES",
    "SMOKE_ENV",
    "STAGES",
    "flag_name",
    "make_config",
    "setting",
    "smoke_mode",
]
