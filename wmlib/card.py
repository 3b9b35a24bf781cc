"""The CARD.md of an exported agent: how it was trained, with which command, and what it scored (written by
:func:`wmlib.pretrained.export` from the run directory's checkpoints, logs and test results)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import rundir
from .io import load_checkpoint, read_csv


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
    lines = [
        f"# {cfg.game}: a World Models agent (V + M + C)",
        "",
        "Made with this package by",
        "",
        *(f"    {line}" for line in command.splitlines()),
        "",
        "and exported with `wm export RUN_DIR pretrained/NAME`. Play it with "
        "`wm test --pretrained NAME`; every checkpoint loads with `torch.load(..., weights_only=True)`.",
        "",
        "## How it was trained",
        "",
        "| stage | settings | result | minutes |",
        "|---|---|---|---|",
    ]
    rows = world_model_rows(cfg, data_dir) + iteration_rows(data_dir) + controller_rows(cfg, data_dir)
    for stage, settings, result, minutes in rows:
        lines.append(f"| {stage} | {settings} | {result} | {'' if minutes is None else f'{minutes:.0f}'} |")
    lines += ["", "Minutes are the training loops' own time from each stage's log.csv.", ""]
    return "\n".join(lines + score_lines(cfg, data_dir) + study_lines(data_dir))


def world_model_rows(cfg, data_dir: Path) -> list[tuple]:
    """The table's rows for the random rollouts, V and M: (stage, settings, result, minutes)."""
    vlog, mlog = rundir.log_path(data_dir, "vision"), rundir.log_path(data_dir, "memory")
    frames = int(read_csv(vlog)["frames"].sum()) if vlog.exists() else 0
    used = f"the first {cfg.vae_episodes:,}" if cfg.vae_episodes else "all"
    memory_result = ""
    if mlog.exists():
        m = read_csv(mlog)
        memory_result = f"z loss {m['z_loss'][-1]:.3f}" + (
            f", done loss {m['done_loss'][-1]:.3f}" if cfg.predict_done else ""
        )
    return [
        (
            "random rollouts",
            f"{cfg.num_rollouts:,} episodes, actions held {cfg.hold_min}-{cfg.hold_max} frames",
            "",
            None,
        ),
        (
            "V (ConvVAE)",
            f"N_z {cfg.z_dim}; {cfg.vae_epochs} epoch(s) over {used} episodes ({frames:,} frames), "
            f"batch {cfg.vae_batch}, lr {cfg.vae_lr:g}",
            f"loss {read_csv(vlog)['loss'][-1]:.1f}" if vlog.exists() else "",
            _minutes(vlog),
        ),
        (
            "M (MDN-RNN)",
            f"LSTM {cfg.hidden_dim}, {cfg.mixtures} Gaussians per dimension, done head "
            f"{'on' if cfg.predict_done else 'off'}; {cfg.rnn_steps} steps of {cfg.rnn_batch} x {cfg.seq_len}",
            memory_result,
            _minutes(mlog),
        ),
    ]


def iteration_rows(data_dir: Path) -> list[tuple]:
    """A row per round of iterative training (wm iterate): real play by the previous dream's C, first round first."""
    path = rundir.path(data_dir, rundir.ITERATION)
    rounds, it = [], json.loads(path.read_text()) if path.exists() else None
    while it:
        rounds.insert(0, it)
        it = it.get("previous")
    rows = []
    for it in rounds:
        trained = next((c for c in it.get("controllers", []) if c["name"] == "trained"), None)
        result = f"that controller in the real game: {_pm(trained)}" if trained else ""
        if trained and "dream_mean" in trained:
            result += f"; in its dream {trained['dream_mean']:.1f}"
        f = it.get("fidelity")
        if f:
            result += (
                f"; dream fidelity over the {f['controllers']} controllers: rank correlation "
                f"{optional_number(f['rank_correlation'])}, dream / real "
                f"{optional_number(f['overestimate_ratio'])}"
            )
        rows.append(
            (
                f"iterative training, round {it['round']}",
                f"{it['episodes']} real episodes ({it['episodes_each']} each) by the controller of the previous "
                f"dream (generation {it['source_controller_generation']}), {len(it['controllers']) - 1} "
                f"neighbours and fresh draws; M continued {it['rnn_steps_before']} -> {it['rnn_steps']} steps on "
                "all episodes",
                result,
                it.get("seconds", {}).get("play", 0) / 60,
            )
        )
    return rows


def controller_rows(cfg, data_dir: Path) -> list[tuple]:
    """C's row, from its log and checkpoint (none before C was trained)."""
    clog = rundir.log_path(data_dir, "controller")
    if not clog.exists():
        return []
    c = read_csv(clog)
    gens = int(c["generation"][-1])
    cpath = rundir.path(data_dir, rundir.CONTROLLER)
    ckpt = load_checkpoint(cpath, "controller checkpoint") if cpath.exists() else {}
    start, g0 = ckpt.get("start_from"), ckpt.get("start_generation")
    # a search centred on a trained controller (--start_from): the settings below are its own, not the start's
    continued = (
        f"generations {g0 + 1}-{gens}: a new search centred on the generation-{g0} controller of "
        f"{short_path(start)} (generations 1-{g0} are that controller's own training); "
        if start
        else ""
    )
    where = "in the dream" if cfg.in_dream else "in the real game"
    settings = (
        continued
        + where
        + (f" at tau {cfg.temperature:g}" if cfg.in_dream else "")
        + f"; population {cfg.pop} x {cfg.trials} episodes, sigma0 {cfg.sigma0:g}"
        + (
            (
                f"; training episodes end after {cfg.early_stop} frames in a row of negative reward"
                if cfg.early_stop
                else "; whole training episodes"
            )
            if not cfg.in_dream
            else ""
        )
        + ("; all candidates of a generation on the same tracks" if cfg.paired_seeds else "")
    )
    return [("C (CMA-ES)", settings, _shipped(c, ckpt, gens, f"{cfg.eval_episodes} episodes {where}"), _minutes(clog))]


def _shipped(c: dict, ckpt: dict, gens: int, evaluation: str) -> str:
    """What C's row says the agent ships: an average of the search's means, its best-evaluated mean, or its end."""
    evaluated = ~np.isnan(c["eval_mean"])
    averaged = ckpt.get("averaged")
    if averaged:  # wm average: the mean of several controllers, the search's means as a rule
        gs = [str(a["generation"]) for a in averaged]
        result = (
            f"{gens} generations; ships the average of the means of generations "
            f"{', '.join(gs[:-1])} and {gs[-1]} (`wm average`)"
        )
        if evaluated.any():
            result += f"; the means' best evaluation {np.nanmax(c['eval_mean']):.1f} ({evaluation})"
        return result
    if evaluated.any():
        best = int(np.argmax(np.where(evaluated, c["eval_mean"], -np.inf)))
        return (
            f"{gens} generations; ships the mean of generation {int(c['generation'][best])}, its "
            f"evaluation {c['eval_mean'][best]:.1f} the best ({evaluation})"
        )
    return f"{gens} generations"


def score_lines(cfg, data_dir: Path) -> list[str]:
    """The real-game scores `wm test` wrote, the agent's and the random policy's."""
    scores, random = rundir.scores_path(data_dir, "controller"), rundir.scores_path(data_dir, "random")
    if not scores.exists():
        return []
    s = json.loads(scores.read_text())
    lines = [
        "## Scores in the real game",
        "",
        f"`wm test` on {s['episodes']} held-out episodes (up to {s['max_steps']} steps; the score is "
        + ("the number of steps survived" if cfg.game == "DoomTakeCover" else "the game's reward")
        + "):",
        "",
        "| policy | mean ± std |",
        "|---|---|",
        f"| this agent | **{_pm(s)}** |",
    ]
    if random.exists():
        r = json.loads(random.read_text())
        lines.append(f"| random policy, the same {r['episodes']} episodes | {_pm(r)} |")
    return lines + [""]


def study_lines(data_dir: Path) -> list[str]:
    """The temperature study's table, when the run has one."""
    study = rundir.path(data_dir, rundir.STUDY)
    if not study.exists():
        return []
    lines = [
        "## Temperature",
        "",
        "One controller trained in the dream at each temperature (`wm study`), scored in the "
        "dream and in the real game:",
        "",
        "| tau | generations | in the dream | in the real game |",
        "|---|---|---|---|",
    ]
    for r in json.loads(study.read_text()):
        lines.append(
            f"| {r['temperature']:g} | {r['generations']} | {r['dream_mean']:.1f} ± {r['dream_std']:.1f}"
            f" ({r['dream_episodes']}) | {r['real_mean']:.1f} ± {r['real_std']:.1f}"
            f" ({r['real_episodes']}) |"
        )
    return lines + [""]


def short_path(path) -> str:
    """A start's path as the card quotes it: the last two parts (``pretrained/carracing``), not this machine's."""
    return "/".join(Path(path).parts[-2:])


def optional_number(value, fmt: str = ".2f") -> str:
    """``value`` formatted, or 'undefined' for None (a rank correlation of equal scores, say)."""
    return "undefined" if value is None else format(value, fmt)
