"""Hyperparameters: one dataclass holds every setting; each game and scale preset fills it differently.

Where a number comes from is said next to it: **paper** (Ha & Schmidhuber 2018), **code** (the authors' original
implementation, where it differs from the paper) or **ours** (a choice of this package, usually for speed).
docs/pipeline.md's Presets section puts the four presets side by side.

Presets:

* ``smoke``: every stage runs in seconds, for CI and for trying the command line. Learns nothing.
* ``small``: a laptop CPU in well under an hour; the agent learns something real (Doom clearly beats random play).
* ``reproduce``: the paper's agents on 2 CPU cores: Doom trained in the dream in an afternoon, CarRacing in the
  real game in about 12 hours; fewer rollouts, V and M steps than the paper, the paper's architecture and CMA-ES.
* ``paper``: the paper's numbers. V trains 10 epochs (code; the paper says 1), Doom's temperature is 1.15 (paper; the
  code used 1.25).

Every value is checked when a Config is made (:data:`RULES`): a bad one raises ValueError naming the ``wm`` flag
that sets it (:func:`flag_name`), before it can reach a run's config.json.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Callable, NamedTuple

from .games import CARRACING_RENDERERS, GAMES, check_game
from .io import atomic_write_text

PRESETS = ("smoke", "small", "reproduce", "paper")
SMOKE_ENV = "WM_SMOKE"  # the one smoke switch, honoured by every notebook and by `wm`


# The `wm` flag that sets a field, where it is not simply ``--<field>``.
FIELD_FLAGS = {"vae_epochs": "--epochs", "test_rollouts": "--rollouts"}


# Settings of older versions that a config.json may still hold; they are ignored when it is read.
OBSOLETE = frozenset({"vae_buffer_episodes"})


class InvalidSetting(ValueError):
    """A setting with a value outside its rule; the message names the setting's ``wm`` flag."""

    def __init__(self, field: str, what: str):
        super().__init__(f"{flag_name(field)} {what}")
        self.field, self.what = field, what


def smoke_mode() -> bool:
    """True when the environment asks for the tiny scale (``WM_SMOKE=1``)."""
    return os.environ.get(SMOKE_ENV, "0") == "1"


def flag_name(field: str) -> str:
    """The `wm` command-line flag that sets ``field``: error messages speak in flags, the user's words."""
    if field not in {f.name for f in dataclasses.fields(Config)}:
        raise ValueError(f"unknown setting {field!r}")
    return FIELD_FLAGS.get(field, f"--{field}")


@dataclass
class Config:
    """Every setting of a World Models run. Field docs say what a value means and where it comes from."""

    game: str = "CarRacing-v3"
    """Which game: CarRacing-v3 or DoomTakeCover."""
    preset: str = "small"
    """Scale preset this config started from: smoke, small, reproduce or paper."""
    seed: int = 0
    """Run seed; every episode's seed is derived from it (see wmlib.seeding)."""

    # --- rollouts -------------------------------------------------------------------------------------------
    num_rollouts: int = 10_000
    """Random-policy episodes to collect (paper: 10,000)."""
    max_frames: int = 1000
    """Longest episode in frames (paper: 1000 CarRacing, 2100 Doom)."""
    min_frames: int = 0
    """Random episodes shorter than this are dropped and replaced (paper: 100 for Doom)."""
    hold_min: int = 1
    """Fewest frames a random action is held (paper: 1 for Doom)."""
    hold_max: int = 10
    """Most frames a random action is held (paper: 10 for Doom; ours for CarRacing)."""
    renderer: str = "fast"
    """CarRacing observation renderer: gymnasium, exact or fast (ours; see wmlib.games.carracing_render)."""
    workers: int = 2
    """Worker processes for rollouts and real-game controller evaluation (ours: the machine's 2 cores)."""

    # --- V: ConvVAE ----------------------------------------------------------------------------------------
    z_dim: int = 32
    """N_z, the latent size (paper: 32 CarRacing, 64 Doom)."""
    vae_epochs: int = 10
    """Passes over all frames (code: 10; the paper says 1)."""
    vae_batch: int = 100
    """Frames per batch (paper: 100)."""
    vae_lr: float = 1e-4
    """Adam learning rate (paper: 1e-4)."""
    kl_tolerance: float = 0.5
    """KL term floored at kl_tolerance * N_z (code: 0.5)."""
    vae_episodes: int = 0
    """Train V on the first this many episodes only; 0 = all (ours: V's cost grows with frames, and a few hundred
    thousand random-play frames already cover what Take Cover shows)."""

    # --- M: MDN-RNN ----------------------------------------------------------------------------------------
    hidden_dim: int = 256
    """LSTM units (paper: 256 CarRacing, 512 Doom)."""
    mixtures: int = 5
    """Gaussians per latent dimension (paper: 5)."""
    predict_done: bool = False
    """Also predict the end of the episode (paper: Doom only)."""
    restart_flag: bool = False
    """Feed a 'first frame of an episode' flag to the LSTM (code: Doom only)."""
    done_weight: float = 10.0
    """Weight of positive examples in the done loss (code: 10)."""
    seq_len: int = 999
    """Training sequence length (paper: 999 CarRacing; code: 500 Doom)."""
    rnn_batch: int = 100
    """Sequences per batch (paper: 100)."""
    rnn_steps: int = 4000
    """Optimiser steps for M (code: 4000)."""
    rnn_lr: float = 1e-3
    """Adam learning rate (paper: 1e-3)."""
    rnn_lr_decay: float = 1.0
    """Learning rate multiplied by this every step (code: 0.99999 Doom)."""
    grad_clip: float = 1.0
    """Gradient norm clip (code: 1.0)."""
    recent_share: float = 0.0
    """Share of M's training windows drawn from the latest iterative-training round's episodes (`wm iterate`);
    0: every episode in proportion to its length, as the original (a round's new episodes are then a few % of M's
    windows)."""

    # --- C: controller and CMA-ES --------------------------------------------------------------------------
    pop: int = 64
    """CMA-ES population size lambda (paper: 64)."""
    trials: int = 16
    """Episodes per candidate; fitness is their mean (paper: 16)."""
    sigma0: float = 0.1
    """CMA-ES initial step size, around a zero mean (paper: 0.1)."""
    generations: int = 1800
    """Generations to run (paper: ~1800 CarRacing; ~200 are enough for Doom in the dream)."""
    eval_every: int = 25
    """Every this many generations, score the CMA-ES mean on eval_episodes episodes (paper: 25)."""
    eval_episodes: int = 1024
    """Episodes for that evaluation (paper: 1024)."""
    max_steps: int = 1000
    """Longest real-game episode while training/testing the controller (paper: 1000 CarRacing, 2100 Doom)."""
    early_stop: int = 0
    """End a TRAINING episode in the real game once the reward has been negative for this many frames in a row
    after the opening zoom (ours, as in the AttentionAgent and neuroevolution CarRacing papers; 0 = never). The
    CMA-ES mean's evaluation and `wm test` always play whole episodes."""
    paired_seeds: bool = False
    """Score every candidate of a generation on the same episode seeds (code: the original paired its candidates'
    tracks), so that candidates are ranked on the same tracks."""
    in_dream: bool = False
    """Train the controller inside M's dream instead of the real game (paper: Doom)."""
    z_only: bool = False
    """C reads z alone, not M's hidden state (the paper's "V model only" ablation, Table 1: 632 +- 251)."""
    temperature: float = 1.0
    """Sampling temperature tau of M in the dream (paper: 1.15 Doom; code: 1.25)."""
    dream_max_len: int = 2100
    """Longest dream episode (paper: 2100 Doom)."""
    initial_z_noise: float = 0.0
    """Std of extra Gaussian noise on the dream's first z (ours; 0 = off)."""
    done_threshold: float = 0.5
    """A dream episode ends when M's done probability exceeds this (code: logit > 0, i.e. 0.5)."""
    curriculum: tuple[int, int] | None = None
    """(start, step): the dream length starts at `start` and grows by `step` when the mean score improves (code)."""
    target_cumulative_reward: float | None = None
    """Stop when the evaluated mean reaches this (code; 900 CarRacing / 750 Doom are the 'solved' lines)."""

    # --- test ------------------------------------------------------------------------------------------------
    test_rollouts: int = 100
    """Real-game episodes for the final score (paper: 100)."""
    record: int = 3
    """GIFs written by `wm test --record` (ours)."""

    def __post_init__(self) -> None:
        """Check every field against :data:`RULES`, so a bad value fails here, naming its flag, instead of being
        saved in a run's config.json and failing hours later deep inside a stage."""
        for field, rule in RULES.items():
            value = getattr(self, field)
            if not rule.check(value, self):
                expected = rule.expected.format_map(vars(self))
                raise InvalidSetting(field, f"must be {expected}, got {value!r}")
            setattr(self, field, rule.convert(value))
        for check, message in JOINT_RULES:
            if not check(self):
                raise ValueError(message)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["curriculum"] = list(self.curriculum) if self.curriculum else None
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "Config":
        """The Config a run's ``config.json`` holds. Every setting must be there, and nothing else (but the settings
        of older versions in :data:`OBSOLETE`): a missing key would silently take a default, and a misspelled one
        would be ignored. Errors name ``source`` (the file) and the key, in the file's own words."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in names and k not in OBSOLETE]
        if unknown:
            hints = [f"{k!r}" + (f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, names, 1, 0.75)) else "")
                     for k in unknown]
            raise ValueError(f"{source}: unknown setting{'s' * (len(unknown) > 1)} {', '.join(hints)}")
        missing = [k for k in names if k not in d]
        if missing:
            raise ValueError(f"{source}: missing setting{'s' * (len(missing) > 1)} {', '.join(missing)} (a run's "
                             f"config.json holds every setting; add {'them' if len(missing) > 1 else 'it'}, with "
                             "the values the run was made with)")
        values = {k: d[k] for k in names}
        if isinstance(values["curriculum"], list):
            values["curriculum"] = tuple(values["curriculum"])
        try:
            return cls(**values)
        except InvalidSetting as exc:
            raise ValueError(f"{source}: {exc.field!r} {exc.what} (the setting of {flag_name(exc.field)})") from None

    def save(self, path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))


# --- what a valid value is ------------------------------------------------------------------------------------


class Rule(NamedTuple):
    """A field's valid values. ``expected`` completes "--flag must be ..."; ``{name}`` in it shows another field's
    value. ``convert`` stores an accepted value as a plain Python value (a numpy integer becomes an int), so that
    config.json can always be written."""

    check: Callable[[Any, Config], bool]
    expected: str
    convert: Callable[[Any], Any] = lambda value: value


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)  # True is an int to Python, not to us


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def integer(low: int, high: str | None = None) -> Rule:
    """An integer >= low, and <= the field named ``high`` when given."""
    if high is None:
        return Rule(lambda v, c: _is_int(v) and v >= low, f"an integer >= {low}", int)
    return Rule(lambda v, c: _is_int(v) and low <= v <= getattr(c, high),
                f"an integer from {low} to {flag_name(high)} ({{{high}}})", int)


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
    return Rule(lambda v, c: v in choices, f"one of {', '.join(choices)}")


def _is_curriculum(value) -> bool:
    if value is None:
        return True
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(_is_int(x) for x in value):
        return False
    return value[0] >= 1 and value[1] >= 0


SWITCH = Rule(lambda v, c: isinstance(v, bool), "True or False")
CURRICULUM = Rule(lambda v, c: _is_curriculum(v), "two integers START,STEP with START >= 1 and STEP >= 0 (or None)",
                  lambda v: None if v is None else (int(v[0]), int(v[1])))
OPTIONAL_NUMBER = Rule(lambda v, c: v is None or _is_number(v), "None or a finite number",
                       lambda v: None if v is None else float(v))

# Every field's valid values, checked in this order by Config.__post_init__. A bound that is another field
# ("max_frames" for min_frames) comes after that field, so it has been checked first.
RULES: dict[str, Rule] = {
    "game": one_of(GAMES),
    "preset": one_of(PRESETS),
    "seed": integer(0),
    # rollouts
    "num_rollouts": integer(1),
    "max_frames": integer(1),
    "min_frames": integer(0, high="max_frames"),
    "hold_max": integer(1),
    "hold_min": integer(1, high="hold_max"),
    "renderer": one_of(CARRACING_RENDERERS),
    "workers": integer(1),
    # V
    "z_dim": integer(1),
    "vae_epochs": integer(1),
    "vae_batch": integer(1),
    "vae_lr": number(0, open_low=True),
    "kl_tolerance": number(0),
    "vae_episodes": integer(0),  # 0 = all
    # M
    "hidden_dim": integer(1),
    "mixtures": integer(1),
    "predict_done": SWITCH,
    "restart_flag": SWITCH,
    "done_weight": number(0, open_low=True),
    "seq_len": integer(1),
    "rnn_batch": integer(1),
    "rnn_steps": integer(0),
    "rnn_lr": number(0, open_low=True),
    "rnn_lr_decay": number(0, 1, open_low=True),
    "grad_clip": number(0, open_low=True),
    "recent_share": number(0, 1, open_high=True),
    # C
    "pop": integer(2),  # CMA-ES needs two candidates to rank
    "trials": integer(1),
    "sigma0": number(0, open_low=True),
    "generations": integer(0),
    "eval_every": integer(1),
    "eval_episodes": integer(1),
    "max_steps": integer(1),
    "early_stop": integer(0),  # 0 = never
    "paired_seeds": SWITCH,
    "in_dream": SWITCH,
    "z_only": SWITCH,
    "temperature": number(0, open_low=True),  # sampling divides M's mixture logits by it
    "dream_max_len": integer(1),
    "initial_z_noise": number(0),
    "done_threshold": number(0, 1, open_low=True, open_high=True),
    "curriculum": CURRICULUM,
    "target_cumulative_reward": OPTIONAL_NUMBER,
    # test
    "test_rollouts": integer(1),
    "record": integer(0),
}

# Rules on several fields together: (check, message).
JOINT_RULES: list[tuple[Callable[[Config], bool], str]] = [
    (lambda c: not (c.game == "DoomTakeCover" and c.in_dream and not c.predict_done),
     "--in_dream for DoomTakeCover needs M's done head to end dream episodes; drop --no-predict_done, "
     "or train in the real game with --no-in_dream"),
]


# The paper's per-game numbers (World Models, Sec. 3-4 and the appendix; docs/pipeline.md lists them beside the presets).
GAME_DEFAULTS = {
    "CarRacing-v3": dict(
        z_dim=32, hidden_dim=256, max_frames=1000, min_frames=0, predict_done=False, restart_flag=False,
        seq_len=999, temperature=1.0, max_steps=1000, in_dream=False, generations=1800, dream_max_len=1000,
        target_cumulative_reward=None,
    ),
    "DoomTakeCover": dict(
        z_dim=64, hidden_dim=512, max_frames=2100, min_frames=100, predict_done=True, restart_flag=True,
        seq_len=500, temperature=1.15, max_steps=2100, in_dream=True, generations=200, dream_max_len=2100,
        rnn_lr_decay=0.99999,
    ),
}

# Scale presets. The architecture (N_z, LSTM size, mixtures, controller) is always the paper's; presets change
# only how much data and compute go in.
PRESET_OVERRIDES = {
    "paper": {"CarRacing-v3": {}, "DoomTakeCover": {}},
    "small": {
        "CarRacing-v3": dict(
            num_rollouts=60, max_frames=500, vae_epochs=3, vae_batch=64, seq_len=100, rnn_batch=32, rnn_steps=600,
            pop=16, trials=2, generations=10, eval_every=5, eval_episodes=8, max_steps=500, test_rollouts=10,
        ),
        "DoomTakeCover": dict(
            num_rollouts=300, vae_epochs=1, vae_batch=64, seq_len=100, rnn_batch=32, rnn_steps=600,
            rnn_lr_decay=1.0, in_dream=False, pop=16, trials=4, generations=40, eval_every=5, eval_episodes=16,
            test_rollouts=100,
        ),
    },
    # Doom's dream-trained agent on 2 CPU cores in an afternoon (docs/results-doom.md).
    # The architecture, CMA-ES settings, temperature and dream are the paper's; less data and compute go into V and
    # M, and V learns faster (a higher learning rate) because it sees ~10x fewer batches than the paper's. M: 3500
    # steps of 64 x 100 (a step takes ~1 s on 2 cores). This dream is exploitable; four rounds of the paper's
    # iterative training (`wm iterate --more_rnn_steps 1000`, each round's new episodes a fifth of M's windows:
    # recent_share) repair it, with 10 generations of C per dream (30 in the third, whose controller the fourth
    # round's real play then corrects).
    #
    # CarRacing on 2 CPU cores in about 12 hours, trained in the real game as in the paper. Less data for V and M:
    # 2,000 random episodes, V for one epoch over the first 600 of them (600k frames, shuffled across all), M on
    # 200-step windows. C: the paper's CMA-ES (64 candidates x 16 episodes, sigma 0.1), with two savings that leave
    # the test alone: a training episode ends after 100 frames in a row without a new track tile (early_stop), and
    # the candidates of a generation share their tracks (paired_seeds, as the original code did). The CMA-ES mean
    # is scored on 256 whole episodes every 10 generations (the paper: 1,024 every 25).
    "reproduce": {
        "CarRacing-v3": dict(
            num_rollouts=2000, vae_episodes=600, vae_epochs=1, vae_batch=100, vae_lr=5e-4, seq_len=200,
            rnn_batch=64, rnn_steps=3000, pop=64, trials=16, generations=100, eval_every=10, eval_episodes=256,
            early_stop=100, paired_seeds=True, test_rollouts=100,
        ),
        "DoomTakeCover": dict(
            num_rollouts=2000, vae_episodes=1000, vae_epochs=1, vae_batch=100, vae_lr=5e-4, seq_len=100,
            rnn_batch=64, rnn_steps=3500, recent_share=0.2, in_dream=True, pop=64, trials=16, generations=10,
            eval_every=10, eval_episodes=1024, test_rollouts=100,
        ),
    },
    "smoke": {
        "CarRacing-v3": dict(
            num_rollouts=3, max_frames=40, vae_epochs=1, vae_batch=16, seq_len=16, rnn_batch=4, rnn_steps=4,
            pop=4, trials=2, generations=2, eval_every=1, eval_episodes=2, max_steps=30, test_rollouts=2,
            record=1, workers=1, dream_max_len=30,
        ),
        "DoomTakeCover": dict(
            num_rollouts=3, max_frames=60, min_frames=10, vae_epochs=1, vae_batch=16, seq_len=16, rnn_batch=4,
            rnn_steps=4, pop=4, trials=2, generations=2, eval_every=1, eval_episodes=4, max_steps=60,
            dream_max_len=40, test_rollouts=2, record=1, workers=1,
        ),
    },
}


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
    names = {f.name for f in dataclasses.fields(Config)}
    for key, value in overrides.items():
        if key not in names:
            raise ValueError(f"unknown setting {key!r}")
        if value is not None:
            values[key] = value
    return Config(**values)


__all__ = ["Config", "FIELD_FLAGS", "GAMES", "PRESETS", "RULES", "SMOKE_ENV", "flag_name", "make_config",
           "smoke_mode"]
