"""Trained agents that ship with the source tree, in ``pretrained/NAME/``, and how to make one from a run.

A pretrained directory is a run directory cut down to what playing and exploring need:

| path                          | what                                                                        |
|-------------------------------|-----------------------------------------------------------------------------|
| ``CARD.md``                   | how the agent was trained, the command, the scores                         |
| ``config.json``               | the run's settings                                                          |
| ``vision/vision.pt``          | V's weights (no optimiser state)                                            |
| ``memory/memory.pt``          | M's weights (no optimiser state)                                            |
| ``memory/initial_z.npz``      | mu, logvar of the first frame of every training episode: where dreams start |
| ``controller/controller.pt``  | C's parameters                                                              |
| ``episodes/``, ``series/``    | a few random-play episodes and their codes, for the notebooks' players      |
| ``test/*.json``               | the real-game scores the card reports                                       |
| ``temperatures/study.json``   | the temperature study (dream and real scores at each tau)                   |
| ``iteration.json``            | what the iterative training round played (``wm iterate``), when there was one |
| ``rounds/round_K/``           | each earlier round's controller and the M of its dream (``wm iterate``)     |
| ``fidelity.json``             | the same controllers in the dream and the real game (``study --fidelity``)  |
| ``*/log.csv``, ``*.png``      | the training logs and their plots                                           |

Every checkpoint loads with ``torch.load(weights_only=True)``. :func:`install` copies one into a run directory, where
``wm test`` and the notebooks use it like a run of their own; the files under ``pretrained/`` are never written.

    python -m wmlib.pretrained RUN_DIR pretrained/NAME     # export a finished run
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from . import episodes, rundir
from .io import atomic_save, atomic_torch_save, atomic_write_text, load_checkpoint, read_csv
from .plots import plot_learning_curve

ROOT = Path(__file__).resolve().parent.parent / "pretrained"
"""Where the shipped agents live: ``pretrained/`` at the top of the source tree."""

CHECKPOINTS = (rundir.VISION, rundir.MEMORY, rundir.CONTROLLER)
CURVE = Path("controller/learning_curve.png")
LOGS = tuple(Path(p) for p in ("vision/log.csv", "vision/reconstructions.png", "memory/log.csv", "memory/loss.png",
                                "controller/log.csv"))


def available() -> list[str]:
    """Names of the shipped agents."""
    if not ROOT.is_dir():
        return []
    return sorted(p.name for p in ROOT.iterdir() if (p / rundir.CONFIG).exists())


def pretrained_dir(name: str) -> Path:
    """The directory of the shipped agent ``name`` (or of a pretrained directory given by its path)."""
    path = Path(name)
    if not (path.is_dir() and (path / rundir.CONFIG).exists()):
        path = ROOT / name
    if not (path / rundir.CONFIG).exists():
        names = ", ".join(available()) or "none found"
        raise FileNotFoundError(
            f"--pretrained {name}: no pretrained agent of that name in {ROOT} (available: {names}); agents are kept "
            "in the source repository (install this package from a clone of it), and "
            "`python -m wmlib.pretrained RUN_DIR pretrained/NAME` makes one from a finished run"
        )
    return path


def files_of(src: Path) -> list[Path]:
    """Every file of a pretrained directory, relative to it."""
    return sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file())


def install(name: str, data_dir) -> Path:
    """Copy the shipped agent ``name`` into ``data_dir`` (made if needed) and return it.

    Files already there are kept (so settings and test results made there survive a second install); a
    ``data_dir`` holding another run stops with an error naming the file, so nothing trained is overwritten.
    """
    src, data_dir = pretrained_dir(name), Path(data_dir)
    other = f"choose another --data_dir for the pretrained agent {name!r}"
    for rel in CHECKPOINTS:
        target = data_dir / rel
        if target.exists() and not filecmp.cmp(src / rel, target, shallow=False):
            raise ValueError(f"{target}: this run directory already holds another model; {other}")
    installed = all((data_dir / rel).exists() for rel in CHECKPOINTS)
    if (data_dir / rundir.CONFIG).exists() and not installed:
        raise ValueError(f"{data_dir / rundir.CONFIG}: this run directory already holds another run; {other}")
    # files already there (the settings, test results made here) are kept
    todo = [rel for rel in files_of(src) if not (data_dir / rel).exists()]
    for rel in todo:
        target = data_dir / rel
        data = (src / rel).read_bytes()
        atomic_save(target, lambda f, data=data: f.write(data))
    return data_dir


def export(data_dir, dest, sample_episodes: int = 3, command: str | None = None) -> Path:
    """Write the finished run ``data_dir`` as a pretrained directory ``dest`` (weights only, a few episodes), with a
    CARD.md (:func:`card`; ``command`` is the command that trained it)."""
    data_dir, dest = Path(data_dir), Path(dest)
    for rel in CHECKPOINTS:
        ckpt = load_checkpoint(data_dir / rel, str(rel))
        ckpt.pop("optimizer", None)
        ckpt.pop("path", None)
        if "vision" in ckpt:  # M names the V it was trained with: within the exported directory
            ckpt["vision"] = str(CHECKPOINTS[0])
        if ckpt.get("start_from"):  # where a search started: named, not located
            ckpt["start_from"] = _short(ckpt["start_from"])
        for a in ckpt.get("averaged", []):  # the controllers an average was made of (python -m wmlib.average)
            a["path"] = _short(a["path"])
        atomic_torch_save(dest / rel, ckpt)
    pool = rundir.first_frame_pool(data_dir)
    if pool is None:
        raise FileNotFoundError(f"{episodes.series_dir(data_dir)}: no encoded series; run `wm memory` first")
    mu, logvar = pool
    atomic_save(dest / rundir.INITIAL_Z, lambda f: np.savez_compressed(f, mu=mu, logvar=logvar))
    for f in episodes.list_episodes(data_dir)[:sample_episodes]:
        for sub in ("episodes", "series"):
            shutil.copyfile(data_dir / sub / f.name, _fresh(dest / sub / f.name))
    clog = rundir.log_path(data_dir, "controller")
    if clog.exists():  # drawn afresh: C writes its plot only when it finishes, and a run may go on after that
        plot_learning_curve(clog, _fresh(dest / CURVE))
    for rel in [Path(rundir.CONFIG), *LOGS, rundir.STUDY, Path(rundir.FIDELITY),
                *(f.relative_to(data_dir) for f in sorted((data_dir / rundir.TEST).glob("*.json"))),
                *(f.relative_to(data_dir) for f in sorted((data_dir / rundir.ROUNDS).glob("round_*/*/*.pt")))]:
        if (data_dir / rel).exists():
            shutil.copyfile(data_dir / rel, _fresh(dest / rel))
    for f in sorted((dest / rundir.TEST).glob("*.json")):  # the controller a test played: within the directory
        result = json.loads(f.read_text())
        if "controller" in result:
            result["controller"] = str(CHECKPOINTS[2])
            atomic_write_text(f, json.dumps(result, indent=2))
    if (data_dir / rundir.ITERATION).exists():  # the source runs are named, not located (paths mean nothing elsewhere)
        record = json.loads((data_dir / rundir.ITERATION).read_text())
        r = record
        while r:
            r["source"] = Path(r["source"]).name
            r = r.get("previous")
        atomic_write_text(dest / rundir.ITERATION, json.dumps(record, indent=2))
    atomic_write_text(dest / "CARD.md", card(data_dir, command))
    return dest


def _minutes(log: Path) -> float | None:
    """Training minutes recorded in a stage's log.csv (its 'seconds' column), or None without a log."""
    if not log.exists():
        return None
    return float(np.sum(read_csv(log)["seconds"])) / 60


def _pm(d: dict) -> str:
    return f"{d['mean']:.1f} ± {d['std']:.1f}"


def card(data_dir, command: str | None = None) -> str:
    """CARD.md of a pretrained agent, written from the run's own files (config, logs, test results, study), so the
    numbers it quotes are the ones that ship beside it."""
    data_dir = Path(data_dir)
    cfg = rundir.load_config(data_dir)
    command = command or f"wm run --game {cfg.game} --preset {cfg.preset} --seed {cfg.seed} --data_dir RUN_DIR"
    where = "in the dream" if cfg.in_dream else "in the real game"
    lines = [f"# {cfg.game}: a World Models agent (V + M + C)", "",
             "Made with this package by", "", *(f"    {line}" for line in command.splitlines()), "",
             "and exported with `python -m wmlib.pretrained RUN_DIR pretrained/NAME`. Play it with "
             "`wm test --pretrained NAME`; every checkpoint loads with `torch.load(..., weights_only=True)`.", "",
             "## How it was trained", "",
             "| stage | settings | result | minutes |", "|---|---|---|---|"]
    vlog, mlog, clog = (rundir.log_path(data_dir, s) for s in ("vision", "memory", "controller"))
    frames = int(read_csv(vlog)["frames"].sum()) if vlog.exists() else 0
    used = f"the first {cfg.vae_episodes:,}" if cfg.vae_episodes else "all"
    rows = [("random rollouts", f"{cfg.num_rollouts:,} episodes, actions held {cfg.hold_min}-{cfg.hold_max} frames",
             "", None),
            ("V (ConvVAE)", f"N_z {cfg.z_dim}; {cfg.vae_epochs} epoch(s) over {used} episodes ({frames:,} frames), "
             f"batch {cfg.vae_batch}, lr {cfg.vae_lr:g}",
             f"loss {read_csv(vlog)['loss'][-1]:.1f}" if vlog.exists() else "", _minutes(vlog)),
            ("M (MDN-RNN)", f"LSTM {cfg.hidden_dim}, {cfg.mixtures} Gaussians per dimension, done head "
             f"{'on' if cfg.predict_done else 'off'}; {cfg.rnn_steps} steps of {cfg.rnn_batch} x {cfg.seq_len}",
             (lambda m: f"z loss {m['z_loss'][-1]:.3f}" + (f", done loss {m['done_loss'][-1]:.3f}"
                                                           if cfg.predict_done else ""))(read_csv(mlog))
             if mlog.exists() else "", _minutes(mlog))]
    if (data_dir / rundir.ITERATION).exists():  # iterative training (wm iterate): real play by the previous dream's C
        rounds, it = [], json.loads((data_dir / rundir.ITERATION).read_text())
        while it:
            rounds.insert(0, it)
            it = it.get("previous")
        for it in rounds:
            trained = next((c for c in it.get("controllers", []) if c["name"] == "trained"), None)
            rows.append((
                f"iterative training, round {it['round']}",
                f"{it['episodes']} real episodes ({it['episodes_each']} each) by the controller of the previous "
                f"dream (generation {it['source_controller_generation']}), {len(it['controllers']) - 1} neighbours "
                f"and fresh draws; M continued {it['rnn_steps_before']} -> {it['rnn_steps']} steps on all episodes",
                (f"that controller in the real game: {_pm(trained)}" if trained else "")
                + (f"; in its dream {trained['dream_mean']:.1f}" if trained and "dream_mean" in trained else "")
                + (lambda f: f"; dream fidelity over the {f['controllers']} controllers: rank correlation "
                   f"{_num(f['rank_correlation'])}, dream / real {_num(f['overestimate_ratio'])}" if f else "")(
                    it.get("fidelity")),
                it.get("seconds", {}).get("play", 0) / 60))
    if clog.exists():
        c = read_csv(clog)
        evaluated = ~np.isnan(c["eval_mean"])
        gens = int(c["generation"][-1])
        cpath = rundir.path(data_dir, rundir.CONTROLLER)
        ckpt = load_checkpoint(cpath, "controller checkpoint") if cpath.exists() else {}
        start, g0 = ckpt.get("start_from"), ckpt.get("start_generation")
        # a search centred on a trained controller (--start_from): the settings below are its own, not the start's
        continued = (f"generations {g0 + 1}-{gens}: a new search centred on the generation-{g0} controller of "
                     f"{_short(start)} (generations 1-{g0} are that controller's own training); " if start else "")
        averaged = ckpt.get("averaged")
        if averaged:  # python -m wmlib.average: the mean of several controllers, the search's means as a rule
            gs = [str(a["generation"]) for a in averaged]
            result = (f"{gens} generations; ships the average of the means of generations "
                      f"{', '.join(gs[:-1])} and {gs[-1]} (`python -m wmlib.average`)")
            if evaluated.any():
                result += (f"; the means' best evaluation {np.nanmax(c['eval_mean']):.1f} ({cfg.eval_episodes} "
                           f"episodes {where})")
        elif evaluated.any():
            best = int(np.argmax(np.where(evaluated, c["eval_mean"], -np.inf)))
            result = (f"{gens} generations; ships the mean of generation {int(c['generation'][best])}, its "
                      f"evaluation {c['eval_mean'][best]:.1f} the best ({cfg.eval_episodes} episodes {where})")
        else:
            result = f"{gens} generations"
        rows.append(("C (CMA-ES)", continued + where + (f" at tau {cfg.temperature:g}" if cfg.in_dream else "")
                     + f"; population {cfg.pop} x {cfg.trials} episodes, sigma0 {cfg.sigma0:g}"
                     + ((f"; training episodes end after {cfg.early_stop} frames in a row of negative reward"
                         if cfg.early_stop else "; whole training episodes") if not cfg.in_dream else "")
                     + ("; all candidates of a generation on the same tracks" if cfg.paired_seeds else ""),
                     result, _minutes(clog)))
    for stage, settings, result, minutes in rows:
        lines.append(f"| {stage} | {settings} | {result} | {'' if minutes is None else f'{minutes:.0f}'} |")
    lines += ["", "Minutes are the training loops' own time from each stage's log.csv.", ""]
    test = rundir.path(data_dir, rundir.TEST)
    if (test / "scores.json").exists():
        s = json.loads((test / "scores.json").read_text())
        lines += ["## Scores in the real game", "",
                  f"`wm test` on {s['episodes']} held-out episodes (up to {s['max_steps']} steps; the score is "
                  + ("the number of steps survived" if cfg.game == "DoomTakeCover" else "the game's reward")
                  + "):", "",
                  "| policy | mean ± std |", "|---|---|", f"| this agent | **{_pm(s)}** |"]
        if (test / "random_scores.json").exists():
            r = json.loads((test / "random_scores.json").read_text())
            lines.append(f"| random policy, the same {r['episodes']} episodes | {_pm(r)} |")
        lines.append("")
    study = rundir.path(data_dir, rundir.STUDY)
    if study.exists():
        lines += ["## Temperature", "",
                  "One controller trained in the dream at each temperature (`python -m wmlib.study`), scored in the "
                  "dream and in the real game:", "",
                  "| tau | generations | in the dream | in the real game |", "|---|---|---|---|"]
        for r in json.loads(study.read_text()):
            lines.append(f"| {r['temperature']:g} | {r['generations']} | {r['dream_mean']:.1f} ± {r['dream_std']:.1f}"
                         f" ({r['dream_episodes']}) | {r['real_mean']:.1f} ± {r['real_std']:.1f}"
                         f" ({r['real_episodes']}) |")
        lines.append("")
    return "\n".join(lines)


def _short(path) -> str:
    """A start's path as the card quotes it: the last two parts (``pretrained/carracing``), not this machine's."""
    return "/".join(Path(path).parts[-2:])


def _num(value, fmt: str = ".2f") -> str:
    return "undefined" if value is None else format(value, fmt)


def _fresh(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m wmlib.pretrained",
                                description="export a finished run directory as a pretrained agent")
    p.add_argument("data_dir", help="the run directory (with vision, memory, controller, series, test)")
    p.add_argument("dest", help="where to write it, e.g. pretrained/doom")
    p.add_argument("--episodes", type=int, default=3, help="sample episodes to include (for the notebooks)")
    p.add_argument("--command", help="the command that trained the run, quoted on the card")
    args = p.parse_args(argv)
    try:
        dest = export(args.data_dir, args.dest, args.episodes, args.command)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = sum((dest / f).stat().st_size for f in files_of(dest))
    print(f"{dest}: {len(files_of(dest))} files, {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
