"""One command at a time per run directory.

Every stage appends to and resumes from files in its run directory (``controller/log.csv``, checkpoints,
episodes). Two commands on the same directory at once (a notebook and a terminal, say) would both run and each
write every generation, so the second one must stop before it starts. :func:`run_lock` is that guard::

    with run_lock(data_dir, "wm controller"):
        ...

The lock is an exclusive ``flock`` on the file ``data_dir/.lock``, which also records who took it (the command,
pid, host and when) for the message a second command gets. The kernel releases a flock when the process holding it
ends, however it ends (killed, crashed, the machine restarted), so a lock is never left behind: a lock file whose
lock nobody holds is simply taken by the next command.

Only the process that called :func:`run_lock` holds the lock; the worker processes it starts do not take it
(another process asking for the lock, a child included, is refused while the holder runs, and a child made by
``fork`` does not keep its parent's lock alive).

Taking the lock also removes the temporary files (``.NAME.XXXX.tmp``) that a killed atomic write left in the
directory: nobody else writes there while the lock is held.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import functools
import inspect
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import rundir
from .io import remove_stale_tmp

LOCK_NAME = rundir.LOCK
RECORD_WAIT_SECONDS = 1.0
"""How long a refused command waits for the holder's record, which the holder writes just after taking the lock."""
READER_SECONDS = 0.2
"""How long a refusal must last to be believed (a process looking with :func:`read_lock` holds it for an instant)."""
POLL_SECONDS = 0.02


class RunDirectoryLocked(RuntimeError):
    """Another live process holds the run directory's lock."""

    def __init__(self, path: Path, holder: dict, message: str):
        super().__init__(message)
        self.path = path
        self.holder = holder


def lock_path(data_dir) -> Path:
    return rundir.path(data_dir, LOCK_NAME)


def read_lock(data_dir) -> dict | None:
    """The record (pid, command, started, hostname) of the process that holds the directory's lock now, or None
    when nobody holds it (a lock file left by a process that has ended holds no lock)."""
    path = lock_path(Path(data_dir).resolve())
    with _registry_lock:
        held = _held.get(str(path))
        if held is not None and held.pid == os.getpid():
            return dict(held.record)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _wait_for_record(fd)
        return None  # we got it: nobody holds it (released when fd closes)
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_lock(data_dir, command: str) -> Iterator[dict]:
    """Hold ``data_dir``'s lock for the duration of the ``with`` block; yields the lock's record.

    Raises :class:`RunDirectoryLocked` at once if another process holds it. Calls nested in one process (a command
    running another stage on the same directory) share the lock; the outermost releases it. The lock file is
    removed on leaving the block, exception or not.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = lock_path(data_dir.resolve())
    key = str(path)
    with _registry_lock:
        held = _held.get(key)
        if held is not None and held.pid == os.getpid():  # nested: this process already holds it
            held.depth += 1
        else:
            held = _take(path, command)
            _held[key] = held
            try:
                remove_stale_tmp(data_dir)  # what a killed command's atomic writes left behind
            except BaseException:
                del _held[key]
                _release(path, held)
                raise
    try:
        yield dict(held.record)
    finally:
        with _registry_lock:
            held.depth -= 1
            if held.depth == 0 and _held.get(key) is held:
                del _held[key]
                _release(path, held)


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
    fd: int
    record: dict
    depth: int = 1


_held: dict[str, _Held] = {}  # resolved lock path -> this process's hold on it
_registry_lock = threading.RLock()


def _forget_in_child() -> None:
    """In a child made by ``fork``: close the inherited lock files, so that the lock ends with the parent."""
    for held in _held.values():
        with contextlib.suppress(OSError):
            os.close(held.fd)
    _held.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def _my_record(command: str) -> dict:
    return dict(
        pid=os.getpid(),
        command=command,
        hostname=socket.gethostname(),
        started=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    )


def _take(path: Path, command: str) -> _Held:
    """Lock ``path`` for this process (creating it if needed) and write our record into it; raise
    :class:`RunDirectoryLocked` naming the holder if another process has it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if not _lock_now(fd):
            record = _wait_for_record(fd)
            os.close(fd)
            raise _locked_error(path, record)
        if _same_file(fd, path):
            break
        os.close(fd)  # its holder removed that file as we opened it: lock the one at the path now
    record = _my_record(command)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record, indent=2).encode(), 0)
    return _Held(pid=os.getpid(), fd=fd, record=record)


def _lock_now(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` if nobody holds it. :func:`read_lock` holds a shared lock for an instant
    to look, so a refusal is believed only when it lasts READER_SECONDS."""
    deadline = time.monotonic() + READER_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_SECONDS)


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _release(path: Path, held: _Held) -> None:
    """Remove the lock file (while still holding it, so nobody locks a file that is going away), then unlock."""
    try:
        if _same_file(held.fd, path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    finally:
        os.close(held.fd)


def _wait_for_record(fd: int) -> dict:
    """The record in a lock file whose lock another process holds; it writes the record just after taking the
    lock, so an empty or partial one is read again for up to RECORD_WAIT_SECONDS."""
    deadline = time.monotonic() + RECORD_WAIT_SECONDS
    while True:
        record = _parse(os.pread(fd, 1 << 16, 0))
        if record is not None or time.monotonic() > deadline:
            return record or {}
        time.sleep(POLL_SECONDS)


def _parse(data: bytes) -> dict | None:
    try:
        record = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None


def _locked_error(path: Path, record: dict) -> RunDirectoryLocked:
    command = record.get("command", "another command")
    pid = record.get("pid", "?")
    started = record.get("started", "an unknown time")
    host = record.get("hostname")
    where = f"pid {pid}" if host in (None, socket.gethostname()) else f"pid {pid} on host {host}"
    message = (
        f"{path.parent} is in use by `{command}` ({where}, started {started}); wait for it to finish or stop "
        f"it (kill {pid}), then run this again. Lock file: {path}"
    )
    return RunDirectoryLocked(path, record, message)


__all__ = ["LOCK_NAME", "RunDirectoryLocked", "holds_lock", "holds_run_lock", "lock_path", "read_lock", "run_lock"]
