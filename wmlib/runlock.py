"""One command at a time per run directory.

Every stage appends to and resumes from files in its run directory (``controller/log.csv``, checkpoints,
episodes). Two commands on the same directory at once (a notebook and a terminal, say) would both run and each
write every generation, so the second one must stop before it starts. :func:`run_lock` is that guard::

    with run_lock(data_dir, "wm controller"):
        ...

The lock is the file ``data_dir/.lock``, holding who took it: pid, the process's start time, the command, when
and on which host. A lock left behind by a process that no longer runs (killed, crashed, or the machine
restarted) is noticed and taken over, so nobody ever has to delete it by hand after a crash.

Only the process that called :func:`run_lock` holds the lock; the worker processes it starts do not take it
(another process asking for the lock, a child included, is refused while the holder runs).

Taking the lock also removes the temporary files (``.NAME.XXXX.tmp``) that a killed atomic write left in the
directory: nobody else writes there while the lock is held.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import inspect
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .io import remove_stale_tmp

LOCK_NAME = ".lock"
FRESH_SECONDS = 1.0
"""A lock file that cannot be read yet is this young may still be being written by its creator: it is only
judged stale once older than this."""
POLL_SECONDS = 0.05


class RunDirectoryLocked(RuntimeError):
    """Another live process holds the run directory's lock."""

    def __init__(self, path: Path, holder: dict, message: str):
        super().__init__(message)
        self.path = path
        self.holder = holder


def lock_path(data_dir) -> Path:
    return Path(data_dir) / LOCK_NAME


def read_lock(data_dir) -> dict | None:
    """The lock's record (pid, start_time, command, started, hostname), or None when the directory is not locked
    or the lock file cannot be read."""
    return _read(lock_path(data_dir))


def process_start_time(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (field 22 of /proc/<pid>/stat); None where there is
    no /proc or no such process. A pid is reused once its process has exited; the start time tells the two apart."""
    stat = _proc_stat(pid)
    return int(stat[19]) if stat is not None else None


@contextlib.contextmanager
def run_lock(data_dir, command: str) -> Iterator[dict]:
    """Hold ``data_dir``'s lock for the duration of the ``with`` block; yields the lock's record.

    Raises :class:`RunDirectoryLocked` at once if another live process holds it. Calls nested in one process
    (a command running another stage on the same directory) share the lock; the outermost releases it. The lock
    file is removed on leaving the block, exception or not, unless it is no longer ours.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = lock_path(data_dir.resolve())
    key = str(path)
    with _registry_lock:
        held = _held.get(key)
        if held is not None and held.pid == os.getpid():  # nested: this process already holds it
            held.depth += 1
        else:  # (an entry made by the parent this process was forked from is not ours)
            held = _Held(pid=os.getpid(), record=_acquire(path, command))
            _held[key] = held
            try:
                remove_stale_tmp(data_dir)  # what a killed command's atomic writes left behind
            except BaseException:
                del _held[key]
                _release(path, held.record)
                raise
    try:
        yield dict(held.record)
    finally:
        with _registry_lock:
            held.depth -= 1
            if held.depth == 0:
                del _held[key]
                _release(path, held.record)


def holds_lock(data_dir) -> bool:
    """Whether this process holds ``data_dir``'s lock now (inside :func:`run_lock` on it)."""
    held = _held.get(str(lock_path(Path(data_dir).resolve())))
    return held is not None and held.pid == os.getpid()


def holds_run_lock(command: str, argument: str = "data_dir"):
    """Decorate a stage function so that it runs holding the lock of the run directory it is given (its parameter
    named ``argument``). The stages lock themselves, so a notebook calling one is guarded as ``wm`` is."""

    def decorate(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args, **kwargs):
            with run_lock(signature.bind(*args, **kwargs).arguments[argument], command):
                return fn(*args, **kwargs)

        return locked

    return decorate


# --- implementation -----------------------------------------------------------------------------------------


@dataclass
class _Held:
    pid: int
    record: dict
    depth: int = 1


_held: dict[str, _Held] = {}  # resolved lock path -> this process's hold on it
_registry_lock = threading.RLock()


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3 onwards of /proc/<pid>/stat (the process name, field 2, may itself hold spaces and parentheses)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def _my_record(command: str) -> dict:
    return dict(pid=os.getpid(), start_time=process_start_time(os.getpid()), command=command,
                started=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                hostname=socket.gethostname(), token=uuid.uuid4().hex)


def _read(path: Path) -> dict | None:
    """The record in a lock file; None if it is missing, empty or not a lock record."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
        return None
    return record


def _age(path: Path) -> float | None:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def _is_alive(record: dict) -> bool:
    """Whether the process that wrote ``record`` still runs. A lock from another host cannot be checked from here,
    so it counts as alive (the message says how to remove it)."""
    if record.get("hostname") != socket.gethostname():
        return True
    pid = record["pid"]
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    except OSError:
        return False
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc: a live pid is all we can tell
    if stat[0] == "Z":
        return False  # exited, waiting for its parent to read its status
    recorded = record.get("start_time")
    return recorded is None or recorded == int(stat[19])


def _is_stale(record: dict | None, age: float) -> bool | None:
    """True: take the lock over. False: it is held. None: unreadable but young, look again shortly."""
    if record is None:
        return True if age >= FRESH_SECONDS else None
    if record["pid"] == os.getpid() and record.get("start_time") == process_start_time(os.getpid()) \
            and record.get("hostname") == socket.gethostname():
        return True  # ours, left by a hold this process no longer keeps (it is not in _held)
    return not _is_alive(record)


def _locked_error(path: Path, record: dict) -> RunDirectoryLocked:
    command = record.get("command", "?")
    pid = record["pid"]
    started = record.get("started", "an unknown time")
    host = record.get("hostname")
    if host != socket.gethostname():
        message = (f"{path.parent} is in use by `{command}` (pid {pid} on host {host}, started {started}); "
                   f"wait for it to finish or stop it. If that process is gone, delete {path}.")
    else:
        message = (f"{path.parent} is in use by `{command}` (pid {pid}, started {started}); wait for it to "
                   f"finish or stop it (kill {pid}), then run this again. Lock file: {path}")
    return RunDirectoryLocked(path, record, message)


def _acquire(path: Path, command: str) -> dict:
    """Create the lock file for this process, taking over a stale one; the record written."""
    while True:
        mine = _my_record(command)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(mine, indent=2))
                f.flush()
                os.fsync(f.fileno())
            if (_read(path) or {}).get("token") == mine["token"]:
                return mine
            continue  # (taken from under us between writing and reading: start again)
        record, age = _read(path), _age(path)
        if age is None:
            continue  # removed meanwhile: try to create it again
        stale = _is_stale(record, age)
        if stale is None:
            time.sleep(POLL_SECONDS)
        elif stale:
            _take_over(path)
        else:
            raise _locked_error(path, record)


def _take_over(path: Path) -> None:
    """Move a stale lock file out of the way. Of several processes taking it over at once only one rename
    succeeds; the others find the path gone (or the winner's new lock) and start again. If the file moved turns
    out to be a live lock after all (the stale one was replaced between our reading and our rename), it is put
    back."""
    aside = path.with_name(f"{path.name}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    try:
        record, age = _read(aside), _age(aside)
        if age is not None and _is_stale(record, age) is not True:
            with contextlib.suppress(OSError):
                os.link(aside, path)  # never over a lock created meanwhile
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aside)


def _release(path: Path, mine: dict) -> None:
    """Remove the lock file if it is still the one this process wrote."""
    record = _read(path)
    if record is not None and record.get("token") == mine["token"]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


__all__ = ["LOCK_NAME", "RunDirectoryLocked", "holds_lock", "lock_path", "process_start_time", "read_lock", "run_lock"]
