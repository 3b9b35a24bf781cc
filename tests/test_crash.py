"""Crash consistency: every stage but the controller, killed (SIGKILL) at any write of any file it makes and run
again, leaves the run directory as an uninterrupted run does, and no temporary file.

For each stage, its prerequisites come from one real smoke run (Doom); the stage is run once uninterrupted (the
reference), then, for each file it writes and each moment of that write (``create``: the temporary file exists,
empty; ``write``: it is written, not renamed; ``rename``: the new file is in place), in a fresh copy: run as
``wm STAGE`` in a child process that ``WM_CRASH_AT`` kills there, then run again to the end. Every file must then
be the reference's, byte for byte (a checkpoint: every key, value and tensor byte it holds), with one exception that
no rerun can honour: wall-clock time. The ``seconds`` column of a ``log.csv`` (and the same numbers where a
checkpoint keeps them) says how long the work took, which differs between any two runs, killed or not; those cells
alone are left out of the comparison.

Every run happens at the same path (files record where their inputs were), one after another.
"""

from __future__ import annotations

import functools
import hashlib
import io
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from wmlib.cli import main as wm_main

GAME = "DoomTakeCover"
WALL_TIME = "seconds"  # a log column (and checkpoint key) of wall-clock time: the one thing a rerun cannot repeat

# stage: (the flags of every run of it, the folders it writes: removed from the smoke run, with later stages')
STAGES = {
    "rollouts": ([], ["episodes"]),
    "vision": (["--vae_episodes", "1", "--vae_batch", "20"], ["vision"]),  # 3 batches: checkpoints at 1, 2, end
    "memory": (["--rnn_steps", "3", "--hidden_dim", "32"], ["series", "memory"]),  # 3 steps, 3 checkpoints
    "test": (["--record", "2", "--max_steps", "30"], ["test"]),  # 2 episodes, 2 GIFs
}
ORDER = ["episodes", "vision", "series", "memory", "controller", "test"]

# (stage, the text of the path the kill waits for, which write of it): a middle one where there are several
KILLS = [
    ("rollouts", "episodes/ep_", 2),
    ("vision", "vision/frames.u8", 1),
    ("vision", "vision/frames.json", 1),
    ("vision", "vision/vision.pt", 2),
    ("vision", "vision/log.csv", 1),
    ("vision", "vision/reconstructions.png", 1),
    ("memory", "series/ep_", 2),
    ("memory", "memory/memory.pt", 2),
    ("memory", "memory/log.csv", 2),
    ("memory", "memory/loss.png", 1),
    ("test", "test/scores.json", 1),
    ("test", "test/episode_", 1),
]
PHASES = ["create", "write", "rename"]


def _wm_killed_at(spec: str, stage: str, d: Path) -> None:
    """In a forked child of this process (torch already imported, one thread): ``WM_CRASH_AT=spec wm STAGE``."""
    os.environ["WM_CRASH_AT"] = spec
    sys.exit(wm_main(_args(stage, d)))


def kill_during(spec: str, stage: str, d: Path) -> int:
    """Run ``wm STAGE`` on ``d`` in a child process that ``WM_CRASH_AT=spec`` kills; its exit code (-9: killed).

    The child is a fork of this process, so the kills cost no start-up (importing torch and the rest); a test
    below runs one kill as the real command line does, ``python -m wmlib.cli``."""
    child = multiprocessing.get_context("fork").Process(target=_wm_killed_at, args=(spec, stage, d))
    child.start()
    child.join(600)
    if child.exitcode is None:
        child.kill()
        child.join()
    return child.exitcode


def _args(stage: str, d: Path) -> list[str]:
    return [stage, "--data_dir", str(d), "--quiet", *STAGES[stage][0]]


def _run_to_the_end(stage: str, d: Path) -> None:
    """``wm STAGE`` run to the end, in this process (where torch runs one thread, as the subprocesses do)."""
    assert torch.get_num_threads() == 1
    assert "WM_CRASH_AT" not in os.environ
    assert wm_main(_args(stage, d)) == 0


@pytest.fixture(scope="module")
def crash_dirs(smoke_runs, tmp_path_factory):
    """For each stage: the run directory before it (``before/STAGE``), the reference made from it without a kill
    (``reference/STAGE``) and the path every run happens at (``run``)."""
    base = tmp_path_factory.mktemp("crash")
    source, run, made = smoke_runs(GAME), base / "run", {}

    def get(stage: str):
        if stage not in made:
            before = base / "before" / stage
            shutil.copytree(source, before)
            first = ORDER.index(STAGES[stage][1][0])
            for folder in ORDER[first:]:
                shutil.rmtree(before / folder, ignore_errors=True)
            reference = base / "reference" / stage
            shutil.rmtree(run, ignore_errors=True)
            shutil.copytree(before, run)
            _run_to_the_end(stage, run)
            reference.parent.mkdir(exist_ok=True)
            run.rename(reference)
            made[stage] = before, reference
        return (*made[stage], run)

    return get


def contents(obj) -> bytes:
    """A checkpoint's contents, every key, value and tensor byte in order, its wall-clock entries left out.

    (Not torch.save's own bytes: its pickle writes a string once and refers back to it where the same string
    object recurs, so equal contents held by differently shared objects, as a resumed run's are, give other bytes.)
    """
    if isinstance(obj, dict):
        return (
            b"{"
            + b"".join(
                repr(k).encode() + b":" + (b"-" if k == WALL_TIME else contents(v)) + b"," for k, v in obj.items()
            )
            + b"}"
        )
    if isinstance(obj, (list, tuple)):
        return b"[" + b",".join(contents(v) for v in obj) + b"]"
    if isinstance(obj, torch.Tensor):
        return f"tensor({obj.dtype}, {tuple(obj.shape)})".encode() + obj.contiguous().numpy().tobytes()
    return f"{type(obj).__name__}({obj!r})".encode()


def comparable(path: Path) -> bytes:
    """The bytes of ``path``, but for wall-clock time: a log.csv's ``seconds`` cells are blanked (every other byte
    kept); a checkpoint gives its :func:`contents`."""
    data = path.read_bytes()
    if path.name == "log.csv":
        lines = data.split(b"\r\n")
        header = lines[0].split(b",")
        if WALL_TIME.encode() in header:
            j = header.index(WALL_TIME.encode())
            cells = [line.split(b",") for line in lines]
            lines = [
                b",".join(c[:j] + [b"-"] + c[j + 1 :]) if len(c) == len(header) and i else line
                for i, (c, line) in enumerate(zip(cells, lines))
            ]
        return b"\r\n".join(lines)
    if path.suffix == ".pt":
        return contents(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
    return data


def _digest(path: Path) -> str:
    return hashlib.sha256(comparable(path)).hexdigest()


@functools.cache
def _reference_digest(path: Path) -> str:
    """:func:`_digest` of a reference file (they never change): read once."""
    return _digest(path)


def _files(d: Path) -> dict[str, Path]:
    return {str(p.relative_to(d)): p for p in sorted(d.rglob("*")) if p.is_file() and p.name != ".lock"}


def assert_same_files(d: Path, reference: Path) -> None:
    """Every file of ``d`` is the reference's (but for wall-clock time), none is missing or extra, no *.tmp."""
    assert not [p for p in d.rglob("*.tmp")], "a temporary file was left behind"
    got, want = _files(d), _files(reference)
    assert sorted(got) == sorted(want)
    differ = [name for name in want if _digest(got[name]) != _reference_digest(want[name])]
    assert not differ, f"differ from an uninterrupted run: {differ}"


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("stage,target,n", KILLS, ids=[f"{s}-{t.split('/')[-1]}" for s, t, _ in KILLS])
def test_a_stage_killed_at_any_write_and_run_again_leaves_the_files_of_an_uninterrupted_run(
    crash_dirs, stage, target, n, phase
):
    before, reference, run = crash_dirs(stage)
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(before, run)
    assert kill_during(f"{phase}:{n}:{target}", stage, run) == -9, f"not killed at {phase} of write {n} of {target}"
    _run_to_the_end(stage, run)
    assert_same_files(run, reference)


def test_the_wm_command_killed_right_after_its_last_checkpoint_and_run_again_finishes_its_files(crash_dirs):
    """The same, with ``python -m wmlib.cli`` in a subprocess of its own (the command line as a user runs it),
    killed as V's last checkpoint lands: its log.csv and reconstructions.png are still to be written."""
    before, reference, run = crash_dirs("vision")
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(before, run)
    env = {k: v for k, v in os.environ.items() if k != "WM_CRASH_AT"}
    env.update(WM_SMOKE="1", OMP_NUM_THREADS="1", WM_CRASH_AT="rename:3:vision/vision.pt")  # one thread, as here
    killed = subprocess.run(
        [sys.executable, "-m", "wmlib.cli", *_args("vision", run)], capture_output=True, text=True, env=env, timeout=600
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not (run / "vision" / "log.csv").exists() and not (run / "vision" / "reconstructions.png").exists()
    _run_to_the_end("vision", run)
    assert_same_files(run, reference)


def test_the_comparison_sees_a_changed_byte_and_a_doubled_log_row(crash_dirs):
    """The check above is not blind: a log row written twice, a changed loss, a header lost or one weight
    changed are all differences; only the wall-clock cells are not."""
    _, reference, run = crash_dirs("memory")
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(reference, run)
    assert_same_files(run, reference)
    log = run / "memory" / "log.csv"
    lines = log.read_bytes().split(b"\r\n")
    timed = [lines[0]] + [line.rsplit(b",", 1)[0] + b",12345.6" for line in lines[1:-1]] + [lines[-1]]
    log.write_bytes(b"\r\n".join(timed))  # other wall-clock times: the same run
    assert_same_files(run, reference)
    loss = lines[1].split(b",")
    loss[1] += b"1"
    for changed in (lines[:2] + lines[1:], lines[1:], [lines[0], b",".join(loss), *lines[2:]]):
        log.write_bytes(b"\r\n".join(changed))
        with pytest.raises(AssertionError, match="memory/log.csv"):
            assert_same_files(run, reference)
    log.write_bytes(b"\r\n".join(lines))
    ckpt = torch.load(run / "memory" / "memory.pt", weights_only=True)
    next(iter(ckpt["model"].values())).view(-1)[0] += 1e-6
    torch.save(ckpt, run / "memory" / "memory.pt")
    with pytest.raises(AssertionError, match="memory/memory.pt"):
        assert_same_files(run, reference)
