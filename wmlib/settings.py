"""What is made from the settings declared in :mod:`wmlib.config`: their ``wm`` flags, and the page that lists them.

Every setting is declared once, as a field of :class:`wmlib.config.Config`; :func:`add_setting` makes its flag (the
type from the field's type, a boolean as ``--x`` / ``--no-x``, the choices from its rule) and :func:`settings_page`
writes docs/settings.md, which tests/test_config.py keeps current:

    python -m wmlib.settings > docs/settings.md
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import types
import typing

from .config import FIELDS, GAME_DEFAULTS, PRESET_OVERRIDES, PRESETS, Config, flag_name, make_config

PAGE = "docs/settings.md"
REWRITE = f"python -m wmlib.settings > {PAGE}"


@functools.cache
def value_type(name: str):
    """The type of setting ``name``'s values, None left out (``float | None`` is float)."""
    hint = typing.get_type_hints(Config)[name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def pair(flag: str):
    """The argparse type of a ``START,STEP`` flag: two integers."""

    def parse(text: str) -> tuple[int, int]:
        try:
            start, step = (int(x) for x in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} expects START,STEP (two integers), got {text!r}") from None
        return (start, step)

    return parse


def add_setting(parser, name: str, help: str | None = None) -> argparse.Action:
    """Add setting ``name``'s flag to ``parser`` (a parser or an argument group): its value lands in ``args.<name>``,
    None when the flag is not given. ``help`` replaces the declared one where a command uses the setting its own way
    (``wm study --generations``: per temperature)."""
    meta, kind, flag = FIELDS[name].metadata, value_type(name), flag_name(name)
    extra = dict(dest=name, help=help or meta["help"])
    if kind is bool:
        return parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, **extra)
    if typing.get_origin(kind) is tuple:
        return parser.add_argument(flag, type=pair(flag), metavar="START,STEP", **extra)
    if meta["rule"].choices:
        extra["choices"] = meta["rule"].choices
    if meta["const"] is not None:
        extra.update(nargs="?", const=meta["const"], metavar="N")
    return parser.add_argument(flag, type=kind, **extra)


def stage_settings(stage: str) -> list[str]:
    """The settings whose flags a stage's command takes (besides the run's own, :func:`run_settings`)."""
    return [name for name, f in FIELDS.items() if stage in f.metadata["stages"] and not f.metadata["every"]]


def run_settings() -> list[str]:
    """The settings of a whole run, whose flags every command of the pipeline takes."""
    return [name for name, f in FIELDS.items() if f.metadata["every"]]


def given(args) -> dict:
    """The settings the command line gives (a flag left out is not there)."""
    return {name: getattr(args, name) for name in FIELDS if getattr(args, name, None) is not None}


# --- docs/settings.md ------------------------------------------------------------------------------------------


def _shown(value) -> str:
    """A value as config.json writes it (a string without its quotes)."""
    return value if isinstance(value, str) else json.dumps(value)


def _flag_cell(name: str) -> str:
    flag, meta = flag_name(name), FIELDS[name].metadata
    if value_type(name) is bool:
        return f"`{flag}`, `--no-{flag[2:]}`"
    if typing.get_origin(value_type(name)) is tuple:
        return f"`{flag} START,STEP`"
    return f"`{flag} [N]`" if meta["const"] is not None else f"`{flag}`"


def _row(cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _settings_rows() -> list[str]:
    paper = {game: make_config(game, "paper") for game in GAME_DEFAULTS}
    rows = [
        _row(["flag", "commands", *(f"{game} (paper)" for game in paper), "valid values", "meaning", "source"]),
        _row(["---"] * (5 + len(paper))),
    ]
    for name, f in FIELDS.items():
        meta = f.metadata
        commands = "every command" if meta["every"] else ", ".join(f"`wm {s}`" for s in meta["stages"])
        meaning = meta["help"] + (f"; {meta['doc']}" if meta["doc"] else "")
        rows.append(
            _row(
                [
                    _flag_cell(name),
                    commands,
                    *(_shown(getattr(c, name)) for c in paper.values()),
                    meta["rule"].describe(),
                    f"`{name}`: {meaning}",
                    meta["source"],
                ]
            )
        )
    return rows


def _preset_rows() -> list[str]:
    configs = {
        (game, preset): make_config(game, preset)
        for game in GAME_DEFAULTS
        for preset in PRESETS
        if game in PRESET_OVERRIDES[preset]
    }
    changed = [
        name
        for name in FIELDS
        if name not in ("game", "preset") and len({json.dumps(getattr(c, name)) for c in configs.values()}) > 1
    ]
    rows = [_row(["setting", *(f"{game}: {preset}" for game, preset in configs)]), _row(["---"] * (1 + len(configs)))]
    rows += [_row([f"`{name}`", *(_shown(getattr(c, name)) for c in configs.values())]) for name in changed]
    return rows


def settings_page() -> str:
    """docs/settings.md: every setting (flag, commands, the paper's values, valid values, meaning, source), then what
    each preset gives the settings that differ between presets or games."""
    head = [
        "# Settings",
        "",
        "Every setting of a run, as `wmlib/config.py` declares it. This page is written from those declarations by",
        f"`{REWRITE}`: edit the declaration, not the page.",
        "",
        "A run's `config.json` holds every setting. A new run directory starts from a preset (`--preset`, default",
        "`small`), an existing one from its own `config.json`; then every flag given wins, and is checked before",
        "anything is written. `wm run` takes the flags of every stage. Where a number comes from: **paper** (Ha &",
        "Schmidhuber 2018), **code** (the authors' original implementation, where it differs from the paper) or",
        "**ours** (a choice of this package).",
        "",
    ]
    presets = [
        "",
        "## The presets",
        "",
        "The settings the presets or the games set differently (the rest are the paper's, in the table above;",
        "[the pipeline](pipeline.md#presets) says what each preset is for):",
        "",
    ]
    return "\n".join(head + _settings_rows() + presets + _preset_rows()) + "\n"


if __name__ == "__main__":
    sys.stdout.write(settings_page())
