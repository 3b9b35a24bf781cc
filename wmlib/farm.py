"""Independent tasks run here, in local worker processes or on a Dask cluster, their results handed back to this
process as they complete: :class:`Farm`.

    with Farm("dask", workers=2) as farm:                  # a local Dask cluster on 127.0.0.1, over TLS
        for i, result in farm.run(play, [(cfg, 0), (cfg, 1)], names=["episode 0", "episode 1"], stage="rollout"):
            write(i, result)                               # i: the task's position in the list; completion order

A task is a top-level function and its arguments, both picklable. Its result comes back to this process, and only
this process writes files: workers need no shared filesystem and never touch a run directory. Every kind runs the
same function, so a seeded task gives the same result wherever it runs.

| kind      | where the tasks run                                                                                    |
|-----------|--------------------------------------------------------------------------------------------------------|
| inprocess | this process, one after another (the default with one worker)                                          |
| processes | ``workers`` local spawn processes that die with this one (:func:`exit_with_parent`; default with more) |
| dask      | a Dask cluster: the ``client`` given (left open), the one at ``scheduler``, or else a                  |
|           | :func:`wmlib.cluster.local_cluster` of ``workers`` processes on 127.0.0.1, TLS unless ``tls=False``    |

A Dask client, a scheduler address or a TLS setting means ``dask``. Every task runs torch on one thread.

Failures. A task that raises raises :class:`TaskFailed` here, naming the task. A worker that dies costs a retry: a
local pool broken by a dead process is started again and the tasks it had not finished are submitted again; on Dask
the scheduler runs a dead worker's tasks elsewhere (up to Dask's ``distributed.scheduler.allowed-failures``), and
tasks that end in KilledWorker all the same, or are lost with the connection to the scheduler, are submitted again.
Either way ``retries`` more attempts, then a RuntimeError. A scheduler that cannot be reached, or a cluster without
workers, for ``timeout`` seconds (default: Dask's connect timeout) is a RuntimeError naming the scheduler. Dask task
keys name the stage, the call and the attempt, so two calls never share a key.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch

from .games import ENGINE_WATCHER
from .io import one_line

logger = logging.getLogger(__name__)

KINDS = ("inprocess", "processes", "dask")
KILL_ENV = "WM_KILL_TASK"  # "NAME[,NAME]:MARKER": a worker starting task NAME kills itself once (tests of deaths)


class TaskFailed(RuntimeError):
    """A task raised an exception (the ``__cause__``); the message names the task."""

    def __init__(self, name: str, exc: BaseException):
        super().__init__(f"{name} failed: {one_line(exc)}")
        self.task = name


# -- worker processes that die with their parent ------------------------------------------------------------------
PARENT_POLL_SECONDS = 0.25


def exit_with_parent(parent: int, poll: float = PARENT_POLL_SECONDS) -> None:
    """In a worker process started by process ``parent``: exit once that process is gone (within ``poll`` seconds,
    at once if it already is), killing this worker's own child processes (a ViZDoom game) first.

    A daemon thread watches :func:`os.getppid`, which changes when the parent dies (the worker is then adopted by
    another process). Linux's PR_SET_PDEATHSIG is not used: it fires when the *thread* that started the worker
    ends, and a spawn-context ProcessPoolExecutor starts its workers from whichever thread submits work, so a pool
    used from a short-lived thread would lose its workers while its process lives on.
    """
    if os.getppid() != parent:
        exit_orphaned()
    threading.Thread(target=_watch_parent, args=(parent, poll), name="wm-parent-watch", daemon=True).start()


def _watch_parent(parent: int, poll: float) -> None:
    while os.getppid() == parent:
        time.sleep(poll)
    exit_orphaned()


def exit_orphaned() -> None:
    """Kill this process's children, then exit at once (no cleanup: the run directory is no longer ours). A ViZDoom
    engine's watcher is spared: once this process is gone it removes the engine's folder."""
    for pid in _child_pids():
        if _is_engine_watcher(pid):
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:  # already gone
            pass
    os._exit(1)


def _is_engine_watcher(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f"\0{ENGINE_WATCHER}\0".encode() in f.read()
    except OSError:
        return False


def _child_pids() -> list[int]:
    """The pids of this process's children, from /proc (none where there is no /proc)."""
    me, children = os.getpid(), []
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()  # after the command name, which may hold spaces
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me:  # fields: state, ppid, ...
            children.append(int(entry))
    return children


# -- on the workers ----------------------------------------------------------------------------------------------
def _process_init(parent: int) -> None:
    """A local worker process: dies with ``parent``, one torch thread."""
    exit_with_parent(parent)
    torch.set_num_threads(1)


def _run_task(fn: Callable, args: tuple, name: str):
    """How a worker (a local process or a Dask worker) runs a task: on one torch thread."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)  # one thread per task: a worker's threads and its neighbours' do not compete
    kill_point(name)
    return fn(*args)


def kill_point(name: str) -> None:
    """Kill this worker process if ``WM_KILL_TASK`` (``NAME[,NAME...]:MARKER``) names this task and its marker file
    does not exist yet (the file is made first, so the task's next attempt runs, and one worker dies per marker):
    tests of dead workers only."""
    spec = os.environ.get(KILL_ENV)
    if not spec or name not in spec.split(":", 1)[0].split(","):
        return
    try:
        os.close(os.open(spec.split(":", 1)[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except (FileExistsError, IndexError):
        return
    os.kill(os.getpid(), signal.SIGKILL)


# -- choosing where tasks run ------------------------------------------------------------------------------------
def farm_kind(
    kind: str | None = None, workers: int = 1, client=None, scheduler: str | None = None, tls: bool | None = None
) -> str:
    """The kind of :class:`Farm` these arguments ask for: ``kind`` when named; a Dask client, scheduler or TLS
    setting means 'dask' (and contradicts any other kind); else 'processes' for more than one worker, 'inprocess'
    for one."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r} of workers; valid: {', '.join(KINDS)}")
    if client is not None and scheduler:
        raise ValueError("give a Dask client or a scheduler address, not both")
    if client is not None or scheduler or tls is not None:
        if kind not in (None, "dask"):
            raise ValueError(f"a Dask client, scheduler or TLS setting goes with 'dask', not {kind!r}")
        return "dask"
    return kind or ("processes" if int(workers) > 1 else "inprocess")


class ClusterWatch:
    """What a user of a Dask cluster checks while it waits (:class:`Farm`, :class:`wmlib.distributed.DaskEvaluator`):
    ``client``, ``address`` and ``timeout`` are the user's; ``_lost(why)`` makes the user's error."""

    client: Any
    address: str
    timeout: float
    _no_workers_since: float | None = None
    _last_workers_check: float = 0.0

    def _lost(self, why: str) -> RuntimeError:
        raise NotImplementedError

    def _wait_ready(self) -> None:
        """Connected, with at least one worker; else a RuntimeError (:meth:`_lost`) within ``timeout``."""
        import distributed  # (Dask only where a cluster is used)

        deadline = time.monotonic() + self.timeout
        while self.client.status != "running":
            if self.client.status in ("closing", "closed") or time.monotonic() > deadline:
                raise self._lost(f"no connection to the scheduler for {self.timeout:g} s")
            time.sleep(0.1)
        try:
            self.client.wait_for_workers(1, timeout=max(0.1, deadline - time.monotonic()))
        except (TimeoutError, distributed.TimeoutError):
            raise self._lost(
                f"no worker joined within {self.timeout:g} s (start some with `dask worker {self.address}`)"
            ) from None
        except (OSError, distributed.CancelledError) as exc:
            raise self._lost(one_line(exc)) from exc
        self._no_workers_since = None

    def _check_health(self) -> None:
        """Raise if the client closed, or the cluster has had no worker for longer than ``timeout``."""
        now = time.monotonic()
        if self.client.status in ("closing", "closed"):
            raise self._lost("the client was closed")
        if self.client.status != "running" or now - self._last_workers_check < 2.0:
            return  # reconnecting: the futures are cancelled, and the next attempt's _wait_ready bounds the wait
        self._last_workers_check = now
        try:
            n = self.client.scheduler_info(n_workers=0).get("n_workers", 1)
        except Exception:  # the connection just broke; the next poll sees the client's status
            return
        if n:
            self._no_workers_since = None
        elif self._no_workers_since is None:
            self._no_workers_since = now
        elif now - self._no_workers_since > self.timeout:
            raise self._lost(f"no worker for {self.timeout:g} s")


class Farm(ClusterWatch):
    """Where independent tasks run; see the module docstring. Close it (or use it in a ``with`` block) to stop its
    worker processes or the local cluster it started; a ``client`` given is left open."""

    def __init__(
        self,
        kind: str | None = None,
        workers: int = 1,
        *,
        client=None,
        scheduler: str | None = None,
        tls: bool | None = None,
        security=None,
        retries: int = 2,
        timeout: float | None = None,
        poll: float = 0.5,
    ):
        self.kind = farm_kind(kind, workers, client, scheduler, tls)
        self.workers, self.retries, self.poll = max(1, int(workers)), int(retries), float(poll)
        self.timeout = timeout
        self.client = self.cluster = self._pool = None
        self._own_client = client is None
        self.address = str(scheduler or "")
        self._token, self._calls = uuid.uuid4().hex[:12], 0
        self._no_workers_since: float | None = None
        self._last_workers_check = 0.0
        if self.kind == "dask":
            try:
                self._start_dask(client, scheduler, security, tls)
            except BaseException:
                self.close()
                raise

    def __enter__(self) -> Farm:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def __repr__(self) -> str:
        where = f", {self.address!r}" if self.kind == "dask" else f", workers={self.workers}"
        return f"Farm({self.kind!r}{where})"

    def run(
        self, fn: Callable, tasks: Sequence[tuple], names: Sequence[str] | None = None, stage: str = "task"
    ) -> Iterator[tuple[int, Any]]:
        """Run ``fn(*args)`` for every ``args`` in ``tasks``; yields (position in ``tasks``, result) as each task
        completes. ``names`` name the tasks in errors (default: 'task 0', ...); ``stage`` goes into Dask's keys."""
        tasks = [tuple(args) for args in tasks]
        names = [f"task {i}" for i in range(len(tasks))] if names is None else [str(n) for n in names]
        if len(names) != len(tasks):
            raise ValueError(f"{len(names)} names for {len(tasks)} tasks")
        self._calls += 1
        if self.kind == "inprocess":
            return _run_here(fn, tasks, names)
        if self.kind == "processes":
            return self._run_processes(fn, tasks, names)
        return self._run_dask(fn, tasks, names, f"wm-{stage}-{self._token}-{self._calls}")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self.client is not None and self._own_client:
            try:
                self.client.close(timeout=5)
            except Exception:  # best effort: the scheduler may be gone
                pass
        self.client = None
        if self.cluster is not None:
            try:
                self.cluster.close(timeout=10)
            except Exception:
                pass
            self.cluster = None

    # -- local processes -------------------------------------------------------------------------------------------
    def _run_processes(self, fn, tasks, names) -> Iterator[tuple[int, Any]]:
        todo = list(range(len(tasks)))
        for _attempt in range(self.retries + 1):
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.workers, mp_context=mp.get_context("spawn"), initializer=_process_init, initargs=(os.getpid(),)
                )
            futures = {self._pool.submit(_run_task, fn, tasks[i], names[i]): i for i in todo}
            todo = yield from _collect_local(futures, names)
            if not todo:
                return
            self._pool.shutdown(wait=False, cancel_futures=True)  # broken: a worker process died
            self._pool = None
            logger.warning(
                "a worker process died; submitting the %d of %d tasks it left unfinished again", len(todo), len(tasks)
            )
        raise RuntimeError(f"worker processes died {self.retries + 1} times; {len(todo)} tasks not done, giving up")

    # -- Dask ----------------------------------------------------------------------------------------------------
    def _start_dask(self, client, scheduler, security, tls) -> None:
        from distributed import Client  # (Dask only where a Dask farm runs)

        from .cluster import local_cluster  # (as above)

        if self.timeout is None:
            self.timeout = default_timeout()
        if client is None and not scheduler:
            self.cluster = local_cluster(self.workers, security=security, tls=tls is not False)
            target, security = self.cluster, self.cluster.security
        else:
            target = scheduler
        if client is None:
            try:
                client = Client(target, security=security, timeout=self.timeout, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                name = getattr(target, "scheduler_address", target)
                raise RuntimeError(f"cannot reach the Dask scheduler at {name}: {exc}") from exc
        self.client = client
        self.address = client.scheduler.address if client.scheduler is not None else self.address
        self._wait_ready()

    @property
    def n_workers(self) -> int:
        """Worker processes (Dask: the cluster's workers now)."""
        if self.client is not None:
            return len(self.client.nthreads())
        return 1 if self.kind == "inprocess" else self.workers

    @property
    def dashboard_link(self) -> str:
        """The Dask dashboard's address, or '' (not Dask, or bokeh, which serves it, is not installed)."""
        from .cluster import has_bokeh  # (as above)

        if self.client is None or not has_bokeh():
            return ""
        try:
            return self.client.dashboard_link or ""
        except (KeyError, AttributeError):
            return ""

    def _lost(self, why: str) -> RuntimeError:
        return RuntimeError(
            f"lost the Dask cluster at {self.address}: {why}; once it is back (or with another "
            "--scheduler), run the same command again to resume"
        )

    def _run_dask(self, fn, tasks, names, prefix: str) -> Iterator[tuple[int, Any]]:
        todo = list(range(len(tasks)))
        for attempt in range(self.retries + 1):
            self._wait_ready()
            futures = {
                i: self.client.submit(_run_task, fn, tasks[i], names[i], key=f"{prefix}-{i}-{attempt}", pure=False)
                for i in todo
            }
            todo = yield from self._collect_dask(futures, names)
            if not todo:
                return
            logger.warning(
                "%d of %d tasks were lost (a worker or the scheduler went away); submitting them again",
                len(todo),
                len(tasks),
            )
        raise RuntimeError(
            f"{len(todo)} tasks on the Dask cluster at {self.address} failed {self.retries + 1} times "
            "(their workers kept dying); giving up"
        )

    def _collect_dask(self, futures: dict, names) -> Iterator[tuple[int, Any]]:
        """Yield (i, result) as ``futures`` {i: future} complete; return the tasks to submit again."""
        done: queue.SimpleQueue = queue.SimpleQueue()
        index = {f.key: i for i, f in futures.items()}
        for f in futures.values():
            f.add_done_callback(done.put)
        pending, again = set(index), []
        try:
            while pending:
                try:
                    f = done.get(timeout=self.poll)
                except queue.Empty:
                    self._check_health()
                    continue
                if f.key not in pending:
                    continue
                pending.discard(f.key)
                i = index[f.key]
                ok, result = _dask_outcome(f, names[i])
                f.release()
                if ok:
                    yield i, result
                else:
                    again.append(i)
        finally:
            if pending and self.client is not None and self.client.status == "running":
                self.client.cancel([futures[index[k]] for k in pending])
        return sorted(again)


def default_timeout() -> float:
    """Seconds a lost scheduler (or a cluster without workers) is waited for: Dask's connect timeout."""
    import dask  # (Dask only where a Dask farm runs)
    from dask.utils import parse_timedelta  # (as above)

    return float(parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), default="s"))


def _run_here(fn, tasks, names) -> Iterator[tuple[int, Any]]:
    """The tasks in this process, in order, on one torch thread (the caller's setting is restored after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i, args in enumerate(tasks):
            try:
                result = fn(*args)
            except Exception as exc:
                raise TaskFailed(names[i], exc) from exc
            yield i, result
    finally:
        torch.set_num_threads(threads)


def _collect_local(futures: dict, names) -> Iterator[tuple[int, Any]]:
    """Yield (i, result) as the local ``futures`` {future: i} complete; return the tasks a broken pool lost."""
    lost = []
    try:
        for f in as_completed(futures):
            i = futures[f]
            try:
                result = f.result()
            except BrokenProcessPool:  # a worker process died: this task is lost (never a hang)
                lost.append(i)
                continue
            except Exception as exc:
                raise TaskFailed(names[i], exc) from exc
            yield i, result
    finally:
        for f in futures:
            f.cancel()
    return sorted(lost)


def _dask_outcome(future, name: str) -> tuple[bool, Any]:
    """(True, result) for a finished Dask task, (False, None) for one to submit again (its worker died, or the
    connection to the scheduler was lost); TaskFailed for one that raised."""
    from distributed import CancelledError, KilledWorker  # (Dask only where a Dask farm runs)

    if future.status == "finished":
        try:
            return True, future.result()
        except (CancelledError, OSError):  # lost between finishing and being fetched
            return False, None
    if future.status == "error":
        exc = future.exception()
        if isinstance(exc, KilledWorker):
            return False, None
        raise TaskFailed(name, exc) from exc
    return False, None  # cancelled or lost: the connection to the scheduler broke


__all__ = [
    "KINDS",
    "PARENT_POLL_SECONDS",
    "Farm",
    "TaskFailed",
    "default_timeout",
    "exit_orphaned",
    "exit_with_parent",
    "farm_kind",
]
