"""The run directory lock: a second command on a directory in use stops at once; a lock whose holder ended, however
it ended, is free at once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from wmlib.runlock import LOCK_NAME, RunDirectoryLocked, lock_path, read_lock, run_lock

REPO = Path(__file__).resolve().parents[1]

# Another process asks for the lock: prints OK (and holds it for `hold` seconds) or LOCKED and the message. With a
# gate folder, it first says it is ready (its imports done) and waits there for the file `go`, so that processes
# started together ask at the same moment however long each took to start.
OTHER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from wmlib.runlock import RunDirectoryLocked, run_lock
    if len(sys.argv) > 4:
        gate = Path(sys.argv[4])
        (gate / f"ready_{os.getpid()}").touch()
        while not (gate / "go").exists():
            time.sleep(0.01)
    try:
        with run_lock(sys.argv[1], sys.argv[2]):
            print("OK", flush=True)
            time.sleep(float(sys.argv[3]))
    except RunDirectoryLocked as exc:
        print("LOCKED", exc, flush=True)
        sys.exit(3)
""")


def other_process(data_dir, command="wm memory", hold=0.0, wait=True, gate=None):
    args = [sys.executable, "-c", OTHER, str(data_dir), command, str(hold)] + ([str(gate)] if gate else [])
    if not wait:
        return subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=REPO)
    return subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=60)


def exited_pid() -> int:
    """The pid of a process that has run and exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(data_dir: Path, **fields) -> Path:
    """A lock file with a record in it, as a process that ended would leave it (nobody holds its lock)."""
    record = dict(
        pid=exited_pid(),
        command="wm controller --old",
        started="2020-01-01T00:00:00+00:00",
        hostname=socket.gethostname(),
    )
    record.update(fields)
    path = data_dir / LOCK_NAME
    path.write_text(json.dumps(record))
    return path


def assert_clean(data_dir: Path) -> None:
    assert sorted(p.name for p in data_dir.iterdir()) == [], "lock file left behind"


def test_second_process_is_refused_while_the_first_holds_it(tmp_path):
    d = tmp_path / "run"
    with run_lock(d, "wm controller --pop 64") as mine:
        assert read_lock(d)["pid"] == os.getpid() == mine["pid"]
        assert read_lock(d)["command"] == "wm controller --pop 64"
        assert json.loads(lock_path(d).read_text()) == mine  # the record, for others to read
        t0 = time.monotonic()
        proc = other_process(d)
        assert time.monotonic() - t0 < 30  # refused at once, not after waiting for the lock
        assert proc.returncode == 3, proc.stdout + proc.stderr
        message = proc.stdout
        assert message.startswith("LOCKED")
        for part in (
            "wm controller --pop 64",
            f"pid {os.getpid()}",
            mine["started"],
            str(lock_path(d.resolve())),
            "wait for it",
        ):
            assert part in message
        assert read_lock(d) == mine  # the refused process left our lock alone
    assert_clean(d)
    assert other_process(d).returncode == 0  # free again


def test_a_lock_held_by_a_killed_process_is_free_at_once(tmp_path):
    d = tmp_path / "run"
    holder = other_process(d, command="wm vision", hold=60, wait=False)
    try:
        assert holder.stdout.readline().strip() == "OK"
        assert read_lock(d)["pid"] == holder.pid  # another process's lock, seen from here
        with pytest.raises(RunDirectoryLocked, match="wm vision") as err:
            with run_lock(d, "wm memory"):
                pass
        assert err.value.holder["pid"] == holder.pid
        assert str(lock_path(d.resolve())) in str(err.value)
    finally:
        holder.send_signal(signal.SIGKILL)  # no cleanup: its lock file stays, with its record
        holder.wait()
    assert json.loads(lock_path(d).read_text())["pid"] == holder.pid
    assert read_lock(d) is None  # ... but the kernel released the lock with the process
    t0 = time.monotonic()
    with run_lock(d, "wm memory"):
        assert time.monotonic() - t0 < 1.0  # free at once: nothing to wait for, nothing to check
        assert read_lock(d)["command"] == "wm memory"
    assert_clean(d)


def test_a_lock_file_nobody_holds_is_taken_whatever_its_record_says(tmp_path):
    """Only the lock counts: a record naming a live process (this one's parent, or a pid that was reused) or no
    readable record at all does not keep anyone out."""
    d = tmp_path / "run"
    d.mkdir()
    for fields in (dict(), dict(pid=os.getppid()), dict(pid=os.getpid()), dict(hostname="elsewhere")):
        write_lock(d, **fields)
        assert read_lock(d) is None
        with run_lock(d, "wm test") as mine:
            assert read_lock(d) == mine and mine["pid"] == os.getpid()
        assert_clean(d)


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", '{"pid": "x"}', "\xff\xfe"])
def test_an_unreadable_lock_file_is_taken_at_once(tmp_path, content):
    d = tmp_path / "run"
    d.mkdir()
    (d / LOCK_NAME).write_text(content, errors="surrogateescape")
    assert read_lock(d) is None
    t0 = time.monotonic()
    with run_lock(d, "wm vision") as mine:
        assert read_lock(d) == mine
    assert time.monotonic() - t0 < 1.0
    assert_clean(d)


def test_nested_locks_in_one_process(tmp_path):
    d = tmp_path / "run"
    with run_lock(d, "wm run") as outer:
        with run_lock(d, "wm vision") as inner:
            assert inner == outer
            with run_lock(tmp_path / "run" / ".." / "run", "wm memory"):  # the same directory, spelled otherwise
                assert read_lock(d) == outer
            assert read_lock(d) == outer
        assert read_lock(d) == outer  # only the outermost exit releases it
        assert other_process(d).returncode == 3
    assert read_lock(d) is None
    assert_clean(d)


def test_released_on_exception(tmp_path):
    d = tmp_path / "run"
    with pytest.raises(KeyError):
        with run_lock(d, "wm controller"):
            with run_lock(d, "wm controller"):
                raise KeyError("boom")
    assert_clean(d)
    with run_lock(d, "wm controller"):
        pass


def test_release_leaves_a_lock_that_is_no_longer_ours(tmp_path):
    """If the lock file is deleted under a holder and another process takes a new one, the first holder's release
    leaves the new one alone."""
    d = tmp_path / "run"
    with run_lock(d, "wm controller"):
        lock_path(d).unlink()
        other = other_process(d, command="wm other", hold=60, wait=False)
        assert other.stdout.readline().strip() == "OK"
    try:
        assert read_lock(d)["pid"] == other.pid
    finally:
        other.kill()
        other.wait()


def test_a_forked_child_does_not_inherit_the_hold(tmp_path):
    d = tmp_path / "run"
    with run_lock(d, "wm controller"):
        pid = os.fork()
        if pid == 0:  # the child: another process, refused although its parent holds the lock
            code = 1
            try:
                with run_lock(d, "wm controller"):
                    pass
            except RunDirectoryLocked:
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert read_lock(d)["pid"] == os.getpid()
    assert_clean(d)


def test_concurrent_take_over_gives_one_holder(tmp_path):
    """Several processes find the same stale lock at once: exactly one gets the directory."""
    d = tmp_path / "run"
    d.mkdir()
    write_lock(d)
    gate = tmp_path / "gate"
    gate.mkdir()
    procs = [other_process(d, command=f"wm n{i}", hold=3, wait=False, gate=gate) for i in range(4)]
    deadline = time.monotonic() + 60
    while len(list(gate.glob("ready_*"))) < len(procs):  # all started and imported, however slow the machine
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a process did not start"
        time.sleep(0.01)
    (gate / "go").touch()
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert sum(out.startswith("OK") for out in outputs) == 1, outputs
    assert sum(out.startswith("LOCKED") for out in outputs) == 3, outputs
    assert_clean(d)


# -- the `wm` command and the stages ------------------------------------------------------------------------------


def test_a_second_wm_command_on_a_locked_run_directory_fails_at_once_naming_the_first(run_copy):
    from conftest import wm

    run = run_copy("DoomTakeCover")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    first = other_process(run, command="wm controller --data_dir RUN", hold=60, wait=False)
    try:
        assert first.stdout.readline().strip() == "OK"
        t0 = time.monotonic()
        proc = wm("controller", "--data_dir", run, "--generations", "5", "--quiet", check=False)
        assert time.monotonic() - t0 < 30  # at once: it did not wait for the first, nor train
        assert proc.returncode == 2
        assert "wm controller --data_dir RUN" in proc.stderr and str(first.pid) in proc.stderr
    finally:
        first.kill()
        first.wait()
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != LOCK_NAME}
    assert after == before  # config.json (--generations 5) and the controller's files untouched


def test_a_stage_called_from_python_takes_the_lock_too(run_copy):
    """A notebook calls the stages directly; they lock the run directory themselves."""
    from wmlib.evolution import train_controller
    from wmlib.rundir import load_config

    run = run_copy("DoomTakeCover")
    first = other_process(run, command="wm controller", hold=60, wait=False)
    try:
        assert first.stdout.readline().strip() == "OK"
        with pytest.raises(RunDirectoryLocked, match="wm controller"):
            train_controller(load_config(run), run, progress=False)
    finally:
        first.kill()
        first.wait()


def test_wm_takes_over_the_lock_of_a_command_that_was_killed(run_copy):
    from conftest import wm

    run = run_copy("DoomTakeCover")
    write_lock(run, command="wm vision")
    proc = wm("test", "--data_dir", run, "--rollouts", "1", "--quiet", check=False)
    assert proc.returncode == 0, proc.stderr
    assert not lock_path(run).exists()
