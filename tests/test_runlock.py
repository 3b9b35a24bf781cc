"""The run directory lock: a second command on a directory in use stops at once; a lock left by a dead process
is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from wmlib.runlock import (FRESH_SECONDS, LOCK_NAME, RunDirectoryLocked, lock_path, process_start_time, read_lock,
                           run_lock)

REPO = Path(__file__).resolve().parents[1]

# Another process asks for the lock: prints OK (and holds it for `hold` seconds) or LOCKED and the message.
OTHER = textwrap.dedent("""
    import sys, time
    from wmlib.runlock import RunDirectoryLocked, run_lock
    try:
        with run_lock(sys.argv[1], sys.argv[2]):
            print("OK", flush=True)
            time.sleep(float(sys.argv[3]))
    except RunDirectoryLocked as exc:
        print("LOCKED", exc, flush=True)
        sys.exit(3)
""")


def other_process(data_dir, command="wm memory", hold=0.0, wait=True):
    args = [sys.executable, "-c", OTHER, str(data_dir), command, str(hold)]
    if not wait:
        return subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=REPO)
    return subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=60)


def exited_pid() -> int:
    """The pid of a process that has run and exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(data_dir: Path, **fields) -> Path:
    record = dict(pid=os.getpid(), start_time=process_start_time(os.getpid()), command="wm controller --old",
                  started="2020-01-01T00:00:00+00:00", hostname=socket.gethostname(), token="old")
    record.update(fields)
    path = data_dir / LOCK_NAME
    path.write_text(json.dumps(record))
    return path


def assert_clean(data_dir: Path) -> None:
    assert sorted(p.name for p in data_dir.iterdir()) == [], "lock (or a moved-aside stale lock) left behind"


def test_second_process_is_refused_while_the_first_holds_it(tmp_path):
    d = tmp_path / "run"
    with run_lock(d, "wm controller --pop 64") as mine:
        assert read_lock(d)["pid"] == os.getpid() == mine["pid"]
        assert read_lock(d)["command"] == "wm controller --pop 64"
        t0 = time.monotonic()
        proc = other_process(d)
        assert time.monotonic() - t0 < 30  # refused at once, not after waiting for the lock
        assert proc.returncode == 3, proc.stdout + proc.stderr
        message = proc.stdout
        assert message.startswith("LOCKED")
        for part in ("wm controller --pop 64", f"pid {os.getpid()}", mine["started"], str(lock_path(d.resolve())),
                     "wait for it"):
            assert part in message
        assert read_lock(d)["token"] == mine["token"]  # the refused process left our lock alone
    assert_clean(d)
    assert other_process(d).returncode == 0  # free again


def test_refused_while_another_process_holds_it(tmp_path):
    d = tmp_path / "run"
    holder = other_process(d, command="wm vision", hold=60, wait=False)
    try:
        assert holder.stdout.readline().strip() == "OK"
        with pytest.raises(RunDirectoryLocked, match="wm vision") as err:
            with run_lock(d, "wm memory"):
                pass
        assert err.value.holder["pid"] == holder.pid
        assert str(lock_path(d.resolve())) in str(err.value)
    finally:
        holder.kill()
        holder.wait()
    # killed without cleaning up: its lock is stale now and is taken over
    assert read_lock(d)["pid"] == holder.pid
    with run_lock(d, "wm memory"):
        assert read_lock(d)["command"] == "wm memory"
    assert_clean(d)


def test_lock_of_an_exited_process_is_taken_over(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    pid = exited_pid()
    write_lock(d, pid=pid, start_time=12345)
    with run_lock(d, "wm test") as mine:
        assert read_lock(d) == mine and mine["pid"] == os.getpid()
    assert_clean(d)


@pytest.mark.skipif(process_start_time(os.getpid()) is None, reason="no /proc to read a start time from")
def test_reused_pid_is_taken_over(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    # a live pid (this process's parent) whose start time is not the one the lock recorded: the pid was reused
    write_lock(d, pid=os.getppid(), start_time=process_start_time(os.getppid()) + 1)
    with run_lock(d, "wm test"):
        assert read_lock(d)["pid"] == os.getpid()
    assert_clean(d)
    # the same with this very process's pid
    write_lock(d, start_time=process_start_time(os.getpid()) - 1)
    with run_lock(d, "wm test"):
        assert read_lock(d)["command"] == "wm test"
    assert_clean(d)


def test_live_holder_with_matching_start_time_is_not_taken_over(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    write_lock(d, pid=os.getppid(), start_time=process_start_time(os.getppid()))
    with pytest.raises(RunDirectoryLocked, match=f"pid {os.getppid()}"):
        with run_lock(d, "wm test"):
            pass
    assert read_lock(d)["token"] == "old"


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", '{"pid": "x"}', "\xff\xfe"])
def test_unreadable_lock_file_is_stale(tmp_path, content):
    d = tmp_path / "run"
    d.mkdir()
    (d / LOCK_NAME).write_text(content, errors="surrogateescape")
    assert read_lock(d) is None
    t0 = time.monotonic()
    with run_lock(d, "wm vision") as mine:  # a fresh one may still be being written: it is given FRESH_SECONDS
        assert read_lock(d) == mine
    assert time.monotonic() - t0 < FRESH_SECONDS + 5
    assert_clean(d)
    # an old unreadable file is taken over at once
    (d / LOCK_NAME).write_text(content, errors="surrogateescape")
    os.utime(d / LOCK_NAME, (time.time() - 3600, time.time() - 3600))
    t0 = time.monotonic()
    with run_lock(d, "wm vision"):
        pass
    assert time.monotonic() - t0 < FRESH_SECONDS
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
    d = tmp_path / "run"
    with run_lock(d, "wm controller"):
        write_lock(d, token="someone else")
    assert read_lock(d)["token"] == "someone else"


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
    write_lock(d, pid=exited_pid(), start_time=1)
    procs = [other_process(d, command=f"wm n{i}", hold=3, wait=False) for i in range(4)]
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
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path(run).write_text(json.dumps(dict(pid=dead.pid, start_time=1, command="wm vision", token="x",
                                              started="2026-01-01T00:00:00", hostname=socket.gethostname())))
    proc = wm("test", "--data_dir", run, "--rollouts", "1", "--quiet", check=False)
    assert proc.returncode == 0, proc.stderr
    assert not lock_path(run).exists()
