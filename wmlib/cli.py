"""The ``wm`` command: one sub-command per stage of World Models, and ``wm run`` for all of them.

    wm rollouts   --game G --num_rollouts N --workers K --data_dir D   random-policy episodes -> D/episodes/
    wm vision     --data_dir D --z_dim 32 --epochs 10                   ConvVAE -> D/vision/vision.pt
    wm memory     --data_dir D --hidden_dim 256 --mixtures 5           encode -> D/series/, MDN-RNN -> D/memory/
    wm controller --data_dir D --pop 64 --trials 16 [--in_dream]       CMA-ES -> D/controller/
                  [--scheduler tcp://HOST:8786 | --evaluator dask --workers K]   ... scored on a Dask cluster
    wm test       --data_dir D --rollouts 100 [--record 3]             real-game score -> D/test/scores.json
    wm test       --pretrained NAME [--rollouts 10]                    play an agent kept in pretrained/NAME
    wm run        --game G --preset {smoke,small,reproduce,paper} --data_dir D   every stage, in order
    wm iterate    --data_dir D --out D2                                 real play by D's controller -> M continues in D2

Settings start from the run directory's saved ``config.json`` or, for a new run directory or a different
``--preset``, from the preset (default ``small``; ``smoke`` when WM_SMOKE=1); then any flag given wins.
Every stage resumes where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import sys
from pathlib import Path

import torch

from . import episodes, iterate, pretrained, rundir
from .config import GAMES, PRESETS, Config, flag_name, make_config, smoke_mode
from .evaluators import make_evaluator
from .evolution import train_controller
from .games import CARRACING_RENDERERS as RENDERERS
from .io import load_checkpoint
from .memory import encode_episodes, train_memory
from .play import score_agent
from .rollouts import collect_rollouts
from .runlock import run_lock
from .vision import train_vision

STAGES = ("rollouts", "vision", "memory", "controller", "test")

# (Config field, type, help), grouped by the stage that reads them; the flag is config.flag_name(field)
FLAGS = {
    "rollouts": [
        ("num_rollouts", int, "random-policy episodes to collect"),
        ("max_frames", int, "longest random episode"),
        ("min_frames", int, "shorter random episodes are replaced"),
    ],
    "vision": [
        ("z_dim", int, "latent size N_z"),
        ("vae_epochs", int, "V training epochs"),
        ("vae_batch", int, "V batch size"),
        ("vae_lr", float, "V learning rate"),
        ("vae_episodes", int, "train V on the first N episodes (0: all)"),
    ],
    "memory": [
        ("hidden_dim", int, "LSTM units"),
        ("mixtures", int, "Gaussians per latent dimension"),
        ("rnn_steps", int, "M optimiser steps"),
        ("seq_len", int, "M training sequence length"),
        ("rnn_batch", int, "M batch size"),
        ("rnn_lr", float, "M learning rate"),
    ],
    "controller": [
        ("pop", int, "CMA-ES population (the reference's --lambda_)"),
        ("trials", int, "episodes per candidate"),
        ("sigma0", float, "CMA-ES initial step size"),
        ("generations", int, "CMA-ES generations"),
        ("eval_every", int, "score the CMA-ES mean every this many generations"),
        ("eval_episodes", int, "episodes for that score"),
        ("temperature", float, "M's sampling temperature in the dream"),
        ("dream_max_len", int, "longest dream episode"),
        ("initial_z_noise", float, "extra noise on the dream's first z"),
        ("done_threshold", float, "dream ends when M's done probability passes this"),
        ("target_cumulative_reward", float, "stop when the evaluated mean reaches it"),
        ("early_stop", int, "end a training episode after this many frames of negative reward in a row (0: never)"),
    ],
    "test": [
        ("max_steps", int, "longest real-game episode when training or testing C"),
    ],
}


def _curriculum(text: str):
    try:
        start, step = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--curriculum expects START,STEP (two integers), got {text!r}") from None
    return (start, step)


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--game", choices=GAMES, help="which game (default: the run directory's)")
    g.add_argument("--preset", choices=PRESETS, help="scale preset (default: small, or smoke when WM_SMOKE=1)")
    g.add_argument("--data_dir", help="run directory (default: runs/GAME-PRESET)")
    g.add_argument("--seed", type=int, help="run seed")
    g.add_argument("--workers", type=int, help="worker processes (rollouts, real-game evaluation)")
    g.add_argument("--renderer", choices=RENDERERS, help="CarRacing observation renderer")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def _stage_flags(p: argparse.ArgumentParser, stage: str) -> None:
    g = p.add_argument_group(stage)
    for field, typ, text in FLAGS[stage]:
        g.add_argument(flag_name(field), dest=field, type=typ, help=text)
    if stage == "memory":
        g.add_argument("--predict_done", action=argparse.BooleanOptionalAction, default=None,
                       help="M also predicts the end of the episode")
    if stage == "controller":
        g.add_argument("--in_dream", action=argparse.BooleanOptionalAction, default=None,
                       help="train C inside M's dream")
        g.add_argument("--paired_seeds", action=argparse.BooleanOptionalAction, default=None,
                       help="score every candidate of a generation on the same episodes")
        g.add_argument("--curriculum", type=_curriculum, help="START,STEP: dream length grows when the mean improves")
        g.add_argument("--start_from", metavar="CONTROLLER",
                       help="centre a new CMA-ES search on this controller (controller.pt or a run directory whose "
                            "V and M have this run's sizes, e.g. an installed pretrained agent or the previous round "
                            "of wm iterate) instead of zero")
        g.add_argument("--evaluator", choices=("inprocess", "processes", "dask"),
                       help="where candidates are scored (default: dream in-process, real game in processes; "
                            "dask: a local Dask cluster of --workers processes on 127.0.0.1)")
        g.add_argument("--scheduler", metavar="ADDRESS",
                       help="score candidates on the Dask cluster at this scheduler (tcp://HOST:8786 or tls://...)")
        g.add_argument("--tls", action=argparse.BooleanOptionalAction, default=None,
                       help="a local Dask cluster encrypts and authenticates every connection with a temporary "
                            "certificate (default; --no-tls turns it off); for --scheduler tls://, certificates "
                            "come from Dask's distributed.comm.tls configuration")
    if stage == "test":
        g.add_argument("--rollouts", type=int, help="real-game test episodes")
        g.add_argument("--record", type=int, nargs="?", const=3, help="write GIFs of the first N test episodes")
        g.add_argument("--policy", choices=("controller", "random"), default="controller",
                       help="test the trained controller or the random policy")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wm", description="World Models: Vision, Memory, Controller.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = dict(rollouts="collect random-policy episodes", vision="train the ConvVAE",
                 memory="encode episodes and train the MDN-RNN", controller="evolve the controller with CMA-ES",
                 test="score the agent in the real game", run="every stage, end to end")
    for name in (*STAGES, "run"):
        p = sub.add_parser(name, help=helps[name], description=helps[name])
        _common(p)
        for stage in STAGES if name == "run" else (name,):
            _stage_flags(p, stage)
        if name == "memory":
            _stage_flags(p, "vision")  # z_dim must agree with V
        if name == "test":
            p.add_argument("--pretrained", metavar="NAME",
                           help="play the agent kept in pretrained/NAME instead of a run of your own; it is copied "
                                "into --data_dir (default runs/GAME-pretrained) first")
            p.add_argument("--pretrained_dir", metavar="PATH",
                           help="the same for an agent folder elsewhere (made by python -m wmlib.pretrained): only "
                                "its known weight, settings and score files are copied, never code")
    text = "real episodes by a run's controller join the data; M continues on them in a new run (paper Sec. 5)"
    iterate.add_arguments(sub.add_parser("iterate", help=text, description=text, epilog=iterate.__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter))
    return parser


def agent_source(args) -> tuple[str, Path] | None:
    """(the flag as given, the folder) of the agent ``--pretrained NAME`` or ``--pretrained_dir PATH`` names."""
    name, folder = getattr(args, "pretrained", None), getattr(args, "pretrained_dir", None)
    if name and folder:
        raise ValueError("--pretrained and --pretrained_dir name one agent each; give one of them")
    if name:
        return f"--pretrained {name}", pretrained.pretrained_dir(name)
    if folder:
        return f"--pretrained_dir {folder}", pretrained.agent_dir(folder)
    return None


def resolve_config(args) -> tuple[Config, Path]:
    """Preset, then the run directory's config.json, then flags."""
    preset = args.preset
    data_dir = Path(args.data_dir) if args.data_dir else None
    shipped = None
    if agent_source(args) is not None:
        flag, src = agent_source(args)
        shipped = rundir.load_config(src)
        if args.game and args.game != shipped.game:
            raise ValueError(f"{flag} plays {shipped.game}, but --game is {args.game}")
        if preset not in (None, shipped.preset):
            raise ValueError(f"{flag} was trained with --preset {shipped.preset}; drop --preset")
        data_dir = data_dir or Path("runs") / f"{shipped.game}-pretrained"
    saved = None
    if data_dir is not None and rundir.path(data_dir, rundir.CONFIG).exists():
        saved = rundir.load_config(data_dir)
        if args.game and args.game != saved.game:
            raise ValueError(f"{rundir.path(data_dir, rundir.CONFIG)}: this run directory is for {saved.game}, but "
                             f"--game is {args.game}; use another --data_dir")
    elif shipped is not None:  # installed (under the run lock) before the test runs
        saved = shipped
    game = args.game or (saved.game if saved else None)
    if game is None:
        if data_dir is not None and args.command not in ("rollouts", "run"):
            raise ValueError(f"{data_dir}: not a run directory (no {rundir.CONFIG}); start one with `wm run --game "
                             f"GAME --data_dir {data_dir}` or `wm rollouts --game GAME ...` (GAME: {', '.join(GAMES)})")
        raise ValueError(f"--game is required for a new run directory (valid: {', '.join(GAMES)})")
    if saved is not None and preset in (None, saved.preset):
        base = saved
    else:  # a new run directory (or a new preset): WM_SMOKE=1 picks the smoke preset when none is given
        base = make_config(game, preset or ("smoke" if smoke_mode() else "small"))
    if data_dir is None:
        data_dir = Path("runs") / f"{game}-{base.preset}"
    return dataclasses.replace(base, **given_settings(args)), data_dir  # Config checks every value, naming its flag


def given_settings(args) -> dict:
    """The settings the command line gives (a flag left out is not there)."""
    fields = {f.name for f in dataclasses.fields(Config)}
    names = [field for group in FLAGS.values() for field, _, _ in group]
    names += ["seed", "workers", "renderer", "predict_done", "in_dream", "paired_seeds", "curriculum"]
    overrides = {n: getattr(args, n) for n in names if n in fields and getattr(args, n, None) is not None}
    if getattr(args, "rollouts", None) is not None:
        overrides["test_rollouts"] = args.rollouts
    if getattr(args, "record", None) is not None:
        overrides["record"] = args.record
    return overrides


# What a stage reads, and the command that writes it.
NEEDS = {
    "vision": [(episodes.EPISODES, "rollouts")],
    "memory": [(episodes.EPISODES, "rollouts"), (rundir.VISION, "vision")],
    "controller": [(rundir.VISION, "vision"), (rundir.MEMORY, "memory")],
    "test": [(rundir.VISION, "vision"), (rundir.MEMORY, "memory"), (rundir.CONTROLLER, "controller")],
}


def check_inputs(command: str, data_dir: Path, policy: str = "controller") -> None:
    """Before anything is written: the files the stage reads are there, or the message names the command that
    writes them."""
    for rel, stage in NEEDS.get(command, []):
        path = rundir.path(data_dir, rel)
        missing = not any(path.glob("ep_*.npz")) if rel == episodes.EPISODES else not path.exists()
        if missing and not (rel == rundir.CONTROLLER and policy == "random"):
            raise FileNotFoundError(f"{path}: not found; run `wm {stage} --data_dir {data_dir}` first")


# What each artifact fixes: once it exists, these settings can no longer change in its run directory.
FIXED_BY = [
    (rundir.VISION, ("game", "z_dim"), None),
    (rundir.MEMORY, ("game", "z_dim", "hidden_dim", "mixtures", "predict_done", "restart_flag"), None),
    (rundir.CONTROLLER, ("game", "pop", "in_dream", "z_only"), rundir.ES_STATE),  # while a search can resume
]


def check_artifacts(cfg: Config, data_dir: Path, given: dict) -> None:
    """Refuse settings that disagree with what the run directory already holds, before config.json is written:
    a refused command leaves config.json as it was. The message names the flag given, or config.json's key."""
    for rel, fields, only_with in FIXED_BY:
        path = rundir.path(data_dir, rel)
        if not path.exists() or (only_with is not None and not rundir.path(data_dir, only_with).exists()):
            continue
        ckpt = load_checkpoint(path, str(rel))
        made = ckpt.get("config") if isinstance(ckpt, dict) else None
        made = made if isinstance(made, dict) else {}  # (a wrong structure is named by the stage that reads it)
        for field in fields:
            if field in made and made[field] != getattr(cfg, field):
                said = (f"{flag_name(field)} {getattr(cfg, field)}" if field in given else
                        f"{rundir.path(data_dir, rundir.CONFIG)}'s {field!r} {getattr(cfg, field)!r}")
                raise ValueError(f"{said}: {path} was made with {field} {made[field]!r}; keep {made[field]!r} "
                                 "or use another --data_dir (config.json is unchanged)")


def evaluator_kind(args) -> str | None:
    """Where `wm controller` scores candidates, as its flags say (None: the default for the game and mode)."""
    kind, scheduler = getattr(args, "evaluator", None), getattr(args, "scheduler", None)
    if scheduler or getattr(args, "tls", None) is not None:
        if kind not in (None, "dask"):
            raise ValueError(f"--scheduler and --tls go with --evaluator dask, not --evaluator {kind}")
        kind = "dask"
    return kind


def run_stage(stage: str, cfg: Config, data_dir: Path, args) -> None:
    progress = not args.quiet
    if stage == "rollouts":
        collect_rollouts(cfg, data_dir, progress=progress)
        print(f"episodes: {rundir.path(data_dir, 'episodes')}")
    elif stage == "vision":
        print(f"vision: {train_vision(cfg, data_dir, progress=progress)}")
    elif stage == "memory":
        encode_episodes(data_dir, progress=progress)
        print(f"memory: {train_memory(cfg, data_dir, progress=progress)}")
    elif stage == "controller":
        evaluator, kind, scheduler = None, evaluator_kind(args), getattr(args, "scheduler", None)
        if kind:
            evaluator = make_evaluator(kind, data_dir, cfg.game, cfg.workers, scheduler=scheduler,
                                       tls=getattr(args, "tls", None))
        if kind == "dask":
            link = evaluator.dashboard_link or "off (install bokeh for it)"
            n = evaluator.n_workers
            print(f"dask: scheduler {evaluator.address}, {n} worker{'s' * (n != 1)}, dashboard {link}", flush=True)
        try:
            out = train_controller(cfg, data_dir, evaluator, progress=progress,
                                   start_from=getattr(args, "start_from", None))
            print(f"controller: {out}")
        finally:
            if evaluator is not None:
                evaluator.close()
    elif stage == "test":
        policy = getattr(args, "policy", "controller")
        result = score_agent(cfg, data_dir, record=cfg.record if args.command == "run" or args.record else 0,
                             policy=policy, progress=progress)
        print(f"{policy} score over {result['episodes']} episodes of {cfg.game}: "
              f"{result['mean']:.1f} +- {result['std']:.1f}  ({rundir.path(data_dir, rundir.TEST)})")
        if args.command == "run":
            rnd = score_agent(cfg, data_dir, record=0, policy="random", progress=progress)
            print(f"random policy on the same episodes: {rnd['mean']:.1f} +- {rnd['std']:.1f}")


def plan(cfg: Config, data_dir: Path) -> str:
    """What ``wm run`` is about to do, stage by stage, at this config's sizes."""
    where = "in M's dream" if cfg.in_dream else "in the real game"
    v_eps = cfg.vae_episodes or cfg.num_rollouts
    return "\n".join([
        f"wm run: {cfg.game}, preset {cfg.preset}, seed {cfg.seed}, in {data_dir} (every stage resumes if stopped)",
        f"  1 rollouts   {cfg.num_rollouts} random-policy episodes of up to {cfg.max_frames} frames",
        f"  2 vision     V (N_z {cfg.z_dim}): {cfg.vae_epochs} epoch(s) over the frames of {v_eps} episodes",
        f"  3 memory     encode every episode; M (LSTM {cfg.hidden_dim}): {cfg.rnn_steps} steps of "
        f"{cfg.rnn_batch} x {cfg.seq_len}",
        f"  4 controller CMA-ES {where}: {cfg.generations} generations of {cfg.pop} candidates x {cfg.trials} "
        "episodes",
        f"  5 test       {cfg.test_rollouts} held-out real episodes, then the random policy on the same ones",
        "  docs/results-doom.md and docs/results-carracing.md give the wall times measured on a 2-core CPU",
    ])


class _Parser(argparse.ArgumentParser):
    """argparse, with a suggestion for a misspelled flag."""

    def error(self, message):
        if message.startswith("unrecognized arguments:"):
            flags = [a for action in self._actions for a in action.option_strings]
            for sub in (a for a in self._actions if isinstance(a, argparse._SubParsersAction)):
                flags += [f for p in sub.choices.values() for act in p._actions for f in act.option_strings]
            hints = [f"{w} (did you mean {m[0]}?)" for w in message.split(":", 1)[1].split()
                     if w.startswith("--") and (m := difflib.get_close_matches(w.split("=")[0], set(flags), 1))]
            if hints:
                message += "; " + ", ".join(hints)
        super().error(message)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "iterate":
        return iterate.run(args)
    try:
        cfg, data_dir = resolve_config(args)  # every value checked: a bad flag never reaches config.json
        evaluator_kind(args)  # contradictory flags are named before anything else
        if agent_source(args) is None:
            check_inputs(args.command, data_dir, getattr(args, "policy", "controller"))
        if args.command == "run":
            print(plan(cfg, data_dir), flush=True)
        with run_lock(data_dir, "wm " + " ".join(argv if argv is not None else sys.argv[1:])):
            if agent_source(args) is not None:  # copied only while this command holds the run directory
                pretrained.install(agent_source(args)[1], data_dir)
            check_artifacts(cfg, data_dir, given_settings(args))
            cfg.save(rundir.path(data_dir, rundir.CONFIG))
            torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
            for k, stage in enumerate(STAGES if args.command == "run" else (args.command,)):
                if args.command == "run":
                    print(f"== stage {k + 1}/{len(STAGES)}: {stage}", flush=True)
                run_stage(stage, cfg, data_dir, args)
    except (ValueError, OSError, ImportError, RuntimeError) as exc:  # OSError: FileNotFoundError, a full disk
        print(f"wm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"wm {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
