"""The ``wm`` command: one sub-command per stage of World Models, ``wm run`` for all of them, and the experiments.

    wm rollouts   --game G --num_rollouts N --workers K --data_dir D   random-policy episodes -> D/episodes/
    wm vision     --data_dir D --z_dim 32 --epochs 10                   ConvVAE -> D/vision/vision.pt
    wm memory     --data_dir D --hidden_dim 256 --mixtures 5           encode -> D/series/, MDN-RNN -> D/memory/
    wm controller --data_dir D --pop 64 --trials 16 [--in_dream]       CMA-ES -> D/controller/
    wm test       --data_dir D --rollouts 100 [--record 3]             real-game score -> D/test/scores.json
    wm test       --pretrained NAME [--rollouts 10]                    play an agent kept in pretrained/NAME
    wm run        --game G --preset {smoke,small,reproduce,paper} --data_dir D   every stage, in order
    wm iterate    --data_dir D --out D2                                 real play by D's controller -> M continues in D2
    wm study      --data_dir D [--temperatures 1.0 1.15 1.3 | --fidelity | --z_only]   the paper's experiments
    wm compare    --data_dir D A.pt RUN2 [--episodes 400]              controllers side by side on fresh episodes
    wm average    --out AVG.pt C1.pt C2.pt ...                          the mean of several controllers
    wm export     D pretrained/NAME                                     a finished run as a shareable agent

Where the work runs: ``--device {auto,cpu,cuda,mps}`` (vision, memory, controller, test, run: V's and M's
training, the encoding, the batched dream, the agent that wm test plays, on every worker; default cpu), and
``--scheduler tcp://HOST:8786`` or ``--evaluator dask --workers K`` (rollouts, controller, test, run, compare, study,
iterate: the episodes, played on a Dask cluster; the same bytes as here).

Settings start from the run directory's saved ``config.json`` or, for a new run directory or a different
``--preset``, from the preset (default ``small``; ``smoke`` when WM_SMOKE=1); then any flag given wins.
Every stage resumes where it stopped. docs/settings.md lists every setting's flag; ``wm COMMAND --help`` the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import sys
from pathlib import Path

import torch

from . import average, compare, devices, episodes, iterate, pretrained, rundir, study
from .config import GAMES, STAGES, Config, make_config, smoke_mode
from .evaluators import add_flags, choose, named_kind
from .evolution import train_controller
from .memory import encode_episodes, train_memory
from .play import score_agent
from .rollouts import collect_rollouts
from .runlock import run_lock
from .settings import add_setting, given, run_settings, stage_settings
from .vision import train_vision

HELPS = dict(
    rollouts="collect random-policy episodes",
    vision="train the ConvVAE",
    memory="encode episodes and train the MDN-RNN",
    controller="evolve the controller with CMA-ES",
    test="score the agent in the real game",
    run="every stage, end to end",
)

# The commands besides the stages, each a module with add_arguments(parser), its flags, and run(args), which carries
# the command out and returns its exit code (an error it raises reaches the user through main's one error path).
TOOLS = {
    "iterate": (
        iterate,
        "real episodes by a run's controller join the data; M continues on them in a new run (paper Sec. 5)",
    ),
    "study": (
        study,
        "the paper's temperature study on a run (--fidelity: dream against real game; --z_only: the "
        "'V model only' ablation)",
    ),
    "compare": (compare, "score controllers on the same fresh real episodes (not the test's)"),
    "average": (average, "write the controller whose parameters are the mean of several others'"),
    "export": (pretrained, "export a finished run directory as a pretrained agent"),
}
RESUMABLE = (*STAGES, "run", "iterate", "study")  # run again, these go on where an interrupted one stopped


def _controller_options(g) -> None:
    g.add_argument(
        "--start_from",
        metavar="CONTROLLER",
        help="centre a new CMA-ES search on this controller (controller.pt or a run directory whose V and "
        "M have this run's sizes, e.g. an installed pretrained agent or the previous round of wm "
        "iterate) instead of zero",
    )


def device_option(g) -> None:
    """Where torch computes: V's and M's training, encoding, the batched dream, the agent of `wm test`
    (:mod:`wmlib.devices`)."""
    g.add_argument(
        "--device",
        default="cpu",
        metavar="DEVICE",
        help=f"where V and M compute (training, encoding, the batched dream, wm test's agent, and the agent of "
        f"every evaluator's worker): {devices.CHOICES} (default cpu, where every published score was computed; "
        "auto: a GPU when there is one, resolved by each worker on its own machine)",
    )


def _test_options(g) -> None:
    g.add_argument(
        "--policy",
        choices=("controller", "random"),
        default="controller",
        help="test the trained controller or the random policy",
    )


def _agent_options(p) -> None:
    p.add_argument(
        "--pretrained",
        metavar="NAME",
        help="play the agent kept in pretrained/NAME instead of a run of your own; it is copied into "
        "--data_dir (default runs/GAME-pretrained) first",
    )
    p.add_argument(
        "--pretrained_dir",
        metavar="PATH",
        help="the same for an agent folder elsewhere (made by wm export): only its known weight, "
        "settings and score files are copied, never code",
    )


# Each stage's flags that are not settings.
OPTIONS = {
    "rollouts": [add_flags],
    "vision": [device_option],
    "memory": [device_option],
    "controller": [_controller_options, add_flags, device_option],
    "test": [_test_options, add_flags, device_option],
}


def _stage_arguments(p: argparse.ArgumentParser, command: str) -> None:
    """The flags of a stage's command (of every stage, for `wm run`): the run's, then each stage's settings (as
    wmlib.config declares them) and options."""
    g = p.add_argument_group("run")
    g.add_argument("--data_dir", help="run directory (default: runs/GAME-PRESET)")
    for name in run_settings():
        add_setting(g, name)
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    shown: set = set()
    for stage in STAGES if command == "run" else (command,):
        g = p.add_argument_group(stage)
        for name in (n for n in stage_settings(stage) if n not in shown):
            add_setting(g, name)
            shown.add(name)
        for options in (o for o in OPTIONS.get(stage, []) if o not in shown):  # (wm run: each once)
            options(g)
            shown.add(options)
    if command == "test":
        _agent_options(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="wm",
        description="World Models: Vision, Memory, Controller.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in (*STAGES, "run"):
        _stage_arguments(sub.add_parser(name, help=HELPS[name], description=HELPS[name]), name)
    for name, (module, text) in TOOLS.items():
        module.add_arguments(
            sub.add_parser(
                name,
                help=text,
                description=text,
                epilog=module.__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
        )
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
            raise ValueError(
                f"{rundir.path(data_dir, rundir.CONFIG)}: this run directory is for {saved.game}, but "
                f"--game is {args.game}; use another --data_dir"
            )
    elif shipped is not None:  # installed (under the run lock) before the test runs
        saved = shipped
    game = args.game or (saved.game if saved else None)
    if game is None:
        if data_dir is not None and args.command not in ("rollouts", "run"):
            raise ValueError(
                f"{data_dir}: not a run directory (no {rundir.CONFIG}); start one with `wm run --game "
                f"GAME --data_dir {data_dir}` or `wm rollouts --game GAME ...` (GAME: {', '.join(GAMES)})"
            )
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
    return given(args)


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


def evaluator_kind(args) -> str | None:
    """Where a command plays its episodes, as its flags say (None: the default for the game and mode); flags that
    contradict each other are named (:func:`wmlib.evaluators.named_kind`)."""
    return named_kind(getattr(args, "evaluator", None), getattr(args, "scheduler", None), getattr(args, "tls", None))


def device_of(args) -> torch.device:
    """The torch device ``--device`` names (the CPU when the command has no such flag); a device this machine
    lacks is an error naming the flag."""
    return devices.resolve(getattr(args, "device", None))


def device_flag(args) -> str | None:
    """``--device`` as given (None: the command has no such flag), checked on this machine: an evaluator's workers
    resolve it again on theirs (``auto``: each its own GPU, or its CPU)."""
    device_of(args)
    return getattr(args, "device", None)


def evaluator_of(cfg: Config, data_dir: Path, args, mode: str | None = None, agent=None):
    """The evaluator the command's flags name (:func:`wmlib.evaluators.choose`), V and M loaded once; a Dask
    cluster is announced with its scheduler, workers and dashboard."""
    evaluator = choose(
        cfg,
        data_dir,
        evaluator_kind(args),
        agent=agent,
        mode=mode,
        scheduler=getattr(args, "scheduler", None),
        tls=getattr(args, "tls", None),
        device=device_flag(args),
    )
    if evaluator_kind(args) == "dask":
        link = evaluator.dashboard_link or "off (install bokeh for it)"
        n = evaluator.n_workers
        print(f"dask: scheduler {evaluator.address}, {n} worker{'s' * (n != 1)}, dashboard {link}", flush=True)
        for address, name in evaluator.devices.items():
            print(f"  worker {address} computes on {name}", flush=True)
    return evaluator


def run_stage(stage: str, cfg: Config, data_dir: Path, args) -> None:
    progress = not args.quiet
    if stage == "rollouts":
        collect_rollouts(
            cfg,
            data_dir,
            progress=progress,
            kind=evaluator_kind(args),
            scheduler=getattr(args, "scheduler", None),
            tls=getattr(args, "tls", None),
        )
        print(f"episodes: {rundir.path(data_dir, rundir.EPISODES)}")
    elif stage == "vision":
        print(f"vision: {train_vision(cfg, data_dir, progress=progress, device=device_of(args))}")
    elif stage == "memory":
        encode_episodes(data_dir, progress=progress, device=device_of(args))
        print(f"memory: {train_memory(cfg, data_dir, progress=progress, device=device_of(args))}")
    elif stage == "controller":
        with evaluator_of(cfg, data_dir, args) as evaluator:
            out = train_controller(
                cfg, data_dir, evaluator, progress=progress, start_from=getattr(args, "start_from", None)
            )
            print(f"controller: {out}")
    elif stage == "test":
        policy = getattr(args, "policy", "controller")
        evaluator = None
        if policy == "controller" and evaluator_kind(args) is not None:  # (default: this process, as always)
            evaluator = evaluator_of(cfg, data_dir, args, mode="real")
        try:
            result = score_agent(
                cfg,
                data_dir,
                record=cfg.record if args.command == "run" or args.record else 0,
                policy=policy,
                progress=progress,
                evaluator=evaluator,
                device=device_flag(args),
            )
        finally:
            if evaluator is not None:
                evaluator.close()
        print(
            f"{policy} score over {result['episodes']} episodes of {cfg.game}: "
            f"{result['mean']:.1f} +- {result['std']:.1f}  ({rundir.path(data_dir, rundir.TEST)})"
        )
        for r in result["recorded"]:  # typical episodes: the median score's first
            gif = rundir.path(data_dir, rundir.TEST) / r["gif"]
            print(f"  {gif}: test episode {r['episode']}, score {r['score']:.1f}")
        if args.command == "run":
            rnd = score_agent(cfg, data_dir, record=0, policy="random", progress=progress)
            print(f"random policy on the same episodes: {rnd['mean']:.1f} +- {rnd['std']:.1f}")


def plan(cfg: Config, data_dir: Path) -> str:
    """What ``wm run`` is about to do, stage by stage, at this config's sizes."""
    where = "in M's dream" if cfg.in_dream else "in the real game"
    v_eps = cfg.vae_episodes or cfg.num_rollouts
    return "\n".join(
        [
            f"wm run: {cfg.game}, preset {cfg.preset}, seed {cfg.seed}, in {data_dir} (every stage resumes if stopped)",
            f"  1 rollouts   {cfg.num_rollouts} random-policy episodes of up to {cfg.max_frames} frames",
            f"  2 vision     V (N_z {cfg.z_dim}): {cfg.vae_epochs} epoch(s) over the frames of {v_eps} episodes",
            f"  3 memory     encode every episode; M (LSTM {cfg.hidden_dim}): {cfg.rnn_steps} steps of "
            f"{cfg.rnn_batch} x {cfg.seq_len}",
            f"  4 controller CMA-ES {where}: {cfg.generations} generations of {cfg.pop} candidates x {cfg.trials} "
            "episodes",
            f"  5 test       {cfg.test_rollouts} held-out real episodes, then the random policy on the same ones",
            "  docs/results-doom.md and docs/results-carracing.md give the wall times measured on a 2-core CPU",
        ]
    )


class _Parser(argparse.ArgumentParser):
    """argparse, with a suggestion for a misspelled flag among the command's own flags."""

    def parse_known_args(self, args=None, namespace=None):
        self._argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
        return super().parse_known_args(args, namespace)

    def error(self, message):
        if message.startswith("unrecognized arguments:"):
            subs = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
            commands = {name: p for s in subs for name, p in s.choices.items()}
            command = next((a for a in getattr(self, "_argv", []) if a in commands), None)
            parsers = [self] + ([commands[command]] if command else [])
            flags = {f for p in parsers for action in p._actions for f in action.option_strings}
            hints = []
            for word in (w.split("=")[0] for w in message.split(":", 1)[1].split() if w.startswith("--")):
                if command and any(word in p._option_string_actions for p in commands.values()):
                    hints.append(f"{word} is not a flag of wm {command}")
                elif match := difflib.get_close_matches(word, flags, 1):
                    hints.append(f"{word} (did you mean {match[0]}?)")
            if hints:
                message += "; " + ", ".join(hints)
        super().error(message)


def run_pipeline(args, argv) -> None:
    """A stage's command, or ``wm run``: settings resolved and checked, inputs found, then the stages under the run
    directory's lock."""
    cfg, data_dir = resolve_config(args)  # every value checked: a bad flag never reaches config.json
    evaluator_kind(args)  # contradictory flags, and a device this machine lacks, are named before anything else
    device_of(args)
    if agent_source(args) is None:
        check_inputs(args.command, data_dir, getattr(args, "policy", "controller"))
    if args.command == "run":
        print(plan(cfg, data_dir), flush=True)
    with run_lock(data_dir, "wm " + " ".join(argv if argv is not None else sys.argv[1:])):
        if agent_source(args) is not None:  # copied only while this command holds the run directory
            pretrained.install(agent_source(args)[1], data_dir)
        rundir.check_artifacts(cfg, data_dir, given_settings(args))
        cfg.save(rundir.path(data_dir, rundir.CONFIG))
        torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
        for k, stage in enumerate(STAGES if args.command == "run" else (args.command,)):
            if args.command == "run":
                print(f"== stage {k + 1}/{len(STAGES)}: {stage}", flush=True)
            run_stage(stage, cfg, data_dir, args)


def main(argv=None) -> int:
    """Every ``wm`` command, with one way of reporting what stops it: ``wm COMMAND: error: ...`` (exit 2) or
    ``wm COMMAND: interrupted`` (exit 130), never a traceback for bad input."""
    args = build_parser().parse_args(argv)
    try:
        if args.command in TOOLS:
            return TOOLS[args.command][0].run(args)
        run_pipeline(args, argv)
    except (ValueError, OSError, ImportError, RuntimeError) as exc:  # OSError: FileNotFoundError, a full disk
        print(f"wm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = "; run the same command again to resume" if args.command in RESUMABLE else ""
        print(f"wm {args.command}: interrupted{again}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
