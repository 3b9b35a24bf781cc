"""Controller evaluation on a Dask cluster: :class:`DaskEvaluator`, behind the same interface as the others.

    from wmlib.distributed import DaskEvaluator, local_cluster
    ev = DaskEvaluator(Agent.from_run(run_dir), client=client)            # a notebook's Client
    ev = DaskEvaluator(Agent.from_run(run_dir), scheduler="tcp://host:8786")  # attach to a running cluster
    ev = DaskEvaluator(Agent.from_run(run_dir), workers=2)                # a LocalCluster on 127.0.0.1, TLS
    scores = ev.evaluate(settings, jobs)                                   # [(params, seeds), ...] -> [scores]

How the work is shipped:

* The agent (V, M and the dream's first-frame pool, as :meth:`Agent.state`) reaches every worker once per
  evaluator, not once per task: it travels in a Dask worker plugin, which the scheduler hands to every worker that
  is connected or joins later (a restarted worker included). On its first task a worker builds an :class:`Agent`
  from it and keeps it, with its game environments, for the following tasks (keyed by a per-evaluator token).
  A task carries only a candidate's parameters and seeds. (Scattered data would do the first part too, but as a
  task dependency it pulls tasks towards the workers holding it, and Dask's memory manager drops the extra copies
  between generations, so a generation's tasks would crowd onto one worker.)
* The jobs are cut into tasks as every evaluator cuts them (:func:`wmlib.jobs.plan_tasks`). Real game: one task per
  chunk of at most ``REAL_ENVS_PER_BATCH`` episodes of one candidate, the chunks the in-process evaluator plays in
  lockstep too. Dream: the generation's episodes are split into ``batches`` contiguous groups (default: the
  cluster's thread count when the evaluator starts), one batched dream per task.
* V and M compute on the agent's ``--device`` as each worker resolves it on its own machine (:attr:`Agent.device_flag`):
  ``cpu`` (the default) everywhere; ``auto``: a worker's GPU where it has one, so the dream batches a GPU worker is
  given run there, else its CPU. A worker that lacks a device named outright (``cuda``) is named when the evaluator
  starts (:meth:`DaskEvaluator.worker_devices`), or by the task it was given, if it joined later.
* Each task runs torch on one thread. Task keys name the evaluation, the task and the attempt, so Dask never
  mistakes two evaluations for one.

Reproducibility. Every episode's seed comes from (run seed, generation, candidate, trial) and every random number of
an episode from its own counter-based key (:mod:`wmlib.seeding`), so:

* a real-game generation gives IDENTICAL fitness values in-process, in local processes and on any Dask cluster,
  whichever worker runs which task and however often a task is retried;
* a dream generation gives IDENTICAL values whenever its episodes are batched the same way (same ``batches``), and
  otherwise values that agree to float rounding (a batch of another size may round differently; in a rare episode
  that can move the step at which the dream ends);
* both hold on the CPU (``--device cpu``, the default). On a GPU, float arithmetic runs in another order, so values
  agree with the CPU's to rounding only (:mod:`wmlib.devices`), and on a cluster whose workers differ (``auto``: some
  with a GPU, some without) they depend on which worker plays what.

Fault tolerance. A worker that dies mid-generation costs a retry: the scheduler runs its tasks again elsewhere, and
tasks that still fail that way are submitted again (``retries`` times), as are the tasks of a scheduler that came
back (the agent is then sent again). A task that raises an ordinary exception raises it here. If the scheduler cannot
be reached, or the cluster has no worker, for ``timeout`` seconds (default: Dask's
``distributed.comm.timeouts.connect``, 30 s), :meth:`DaskEvaluator.evaluate` raises a RuntimeError naming the
scheduler; ``wm controller`` then stops, and the same command resumes from the last saved generation.

Security. Dask runs pickled code: whoever can reach a scheduler can run any code on its workers. Clusters started
here listen on 127.0.0.1 only and, unless ``tls=False``, encrypt and authenticate every connection with a temporary
self-signed certificate (:func:`local_security`), so another user of the machine cannot connect. For a remote cluster
pass a :class:`distributed.Security` (or set Dask's ``distributed.comm.tls.*`` configuration) and a ``tls://``
address.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import uuid

import numpy as np
import torch

from . import devices
from .agent import Agent, EvalSettings, Evaluator, run_jobs
from .cluster import LOOPBACK, has_bokeh, local_cluster, local_security
from .farm import ClusterWatch, kill_point
from .jobs import plan_tasks, task_jobs  # noqa: F401 (importable from here, as before)

try:
    import dask
    from dask.utils import parse_timedelta
    from distributed import CancelledError, Client, KilledWorker, Security, WorkerPlugin, get_worker
except ImportError as exc:  # pragma: no cover - dask[distributed] is a dependency of the package
    raise ImportError("the Dask evaluator needs dask.distributed: pip install 'dask[distributed]'") from exc

logger = logging.getLogger(__name__)


# -- on the workers -------------------------------------------------------------------------------------------
_STATES: dict[str, dict] = {}  # evaluator token -> Agent.state(), put there by AgentPlugin
_AGENTS: dict[tuple[str, int], Agent] = {}  # (evaluator token, worker thread) -> Agent built from the state
_BUSY: set[tuple[str, int]] = set()  # keys of the agents a task is using right now
_AGENTS_LOCK = threading.Lock()


class AgentMissing(RuntimeError):
    """A worker has no agent for this evaluator (its plugin was removed, or has not reached it)."""


class AgentPlugin(WorkerPlugin):
    """Carries an evaluator's :meth:`Agent.state` to every worker, present and future."""

    def __init__(self, token: str, state: dict):
        self.token, self.state = token, state
        self.name = plugin_name(token)

    def setup(self, worker):
        with _AGENTS_LOCK:
            _STATES[self.token] = self.state

    def teardown(self, worker):
        _release(self.token)


def plugin_name(token: str) -> str:
    return f"wmlib-agent-{token}"


def _worker_agent(token: str) -> Agent:
    """The agent of evaluator ``token`` for the calling thread, built once; this thread's older agents are closed."""
    key = (token, threading.get_ident())
    agent = _AGENTS.get(key)
    if agent is None:
        state = _STATES.get(token)
        if state is None:
            raise AgentMissing(f"no agent for evaluator {token} on this worker")
        with _AGENTS_LOCK:
            stale = [k for k in _AGENTS if k[1] == key[1] and k[0] != token]
            old = [_AGENTS.pop(k) for k in stale]
        for a in old:
            a.close()
        try:
            agent = Agent.from_state(state)  # on the state's --device as this worker resolves it
        except ValueError as exc:  # a device this worker lacks
            raise ValueError(f"Dask worker {_worker_address()}: {exc}") from None
        with _AGENTS_LOCK:
            _AGENTS[key] = agent
    return agent


def _worker_address() -> str:
    try:
        return get_worker().address
    except ValueError:  # not on a worker (called in this process by a test)
        return "(none)"


def _device_here(flag: str) -> str:
    """On a worker (``Client.run``): the device ``--device flag`` names on its machine, or why it has none."""
    try:
        return devices.name(flag)
    except ValueError as exc:
        return f"error: {exc}"


_PROCESS_READY = False


def _prepare_process() -> None:
    """Once per worker process: one torch thread, and glibc's malloc thresholds out of Dask's trimming setting.

    Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also pins glibc's mmap threshold at
    128 KiB: every step's conv activations are then mapped and unmapped afresh, and an episode costs about twice
    the CPU time. Raising both thresholds (as glibc's own dynamic setting would) restores the in-process speed.
    """
    global _PROCESS_READY
    if _PROCESS_READY:
        return
    torch.set_num_threads(1)  # one thread per task: a worker's threads and its neighbours' do not compete
    if os.environ.get("MALLOC_TRIM_THRESHOLD_") is not None:
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: 32 MiB, glibc's largest
            libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD
        except (OSError, AttributeError):  # not glibc: nothing to undo
            pass
    _PROCESS_READY = True


def _score(token: str, settings: EvalSettings, jobs, name: str = "") -> list[np.ndarray]:
    """A Dask task (``name``: 'score I', the I-th of its evaluation): score ``jobs`` with the worker's cached
    agent."""
    _prepare_process()
    kill_point(name)
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    key = (token, threading.get_ident())
    agent = _worker_agent(token)
    with _AGENTS_LOCK:
        _BUSY.add(key)
    try:
        return run_jobs(agent, settings, jobs)
    finally:
        with _AGENTS_LOCK:
            _BUSY.discard(key)
            released = _AGENTS.get(key) is not agent
        if released:  # its evaluator closed while this task ran
            agent.close()


def _release(token: str) -> int:
    """When an evaluator closes, on every worker: drop its state and agents (a running task closes its own)."""
    with _AGENTS_LOCK:
        _STATES.pop(token, None)
        keys = [k for k in _AGENTS if k[0] == token]
        agents = [(_AGENTS.pop(k), k in _BUSY) for k in keys]
    for agent, busy in agents:
        if not busy:
            agent.close()
    return len(agents)


# -- waiting for the cluster ------------------------------------------------------------------------------------
def default_timeout() -> float:
    """Seconds a lost scheduler (or a cluster without workers) is waited for: Dask's connect timeout."""
    return float(parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), default="s"))


# -- the evaluator -----------------------------------------------------------------------------------------------
class DaskEvaluator(Evaluator, ClusterWatch):
    """Score jobs on Dask workers; see the module docstring.

    Exactly one of: ``client`` (an existing :class:`distributed.Client`, left open by :meth:`close`),
    ``scheduler`` (an address such as ``tcp://host:8786`` or ``tls://host:8786``), or neither (a
    :func:`local_cluster` of ``workers`` processes is started, and closed by :meth:`close`; it uses mutual TLS with a
    temporary certificate unless ``tls=False``; ``tls=None`` means the default, on). ``security`` is used to connect
    to ``scheduler`` (default: Dask's configuration), or by the local cluster instead of a temporary certificate.
    """

    def __init__(
        self,
        agent: Agent,
        client: Client | None = None,
        *,
        scheduler: str | None = None,
        workers: int = 2,
        security: Security | None = None,
        tls: bool | None = None,
        batches: int | None = None,
        retries: int = 2,
        timeout: float | None = None,
        poll: float = 0.5,
    ):
        if client is not None and scheduler is not None:
            raise ValueError("give a Dask client or a scheduler address, not both")
        self.retries, self.poll = int(retries), float(poll)
        self.timeout = default_timeout() if timeout is None else float(timeout)
        self.cluster = self.client = None
        self.batches = int(batches) if batches else 1
        self._own_client = client is None
        self._token = uuid.uuid4().hex[:12]
        self._calls = 0
        self.agent = agent
        self._agent_state = agent.state()
        self._plugin_on: str | None = None  # id of the scheduler that holds our AgentPlugin
        self._no_workers_since: float | None = None
        self._last_workers_check = 0.0
        self.address = str(scheduler or "")
        try:
            if client is None and scheduler is None:
                self.cluster = local_cluster(workers, security=security, tls=tls is not False)
                client = self._connect(self.cluster, self.cluster.security)
            elif client is None:
                client = self._connect(scheduler, security)
            self.client = client
            self.address = client.scheduler.address if client.scheduler is not None else self.address
            self._ensure_ready()
            self.devices = self.worker_devices()
            self.batches = int(batches) if batches else max(1, sum(self.client.nthreads().values()))
        except BaseException:
            self.close()
            raise

    def _connect(self, target, security) -> Client:
        name = getattr(target, "scheduler_address", target)
        try:
            return Client(target, security=security, timeout=self.timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise RuntimeError(f"cannot reach the Dask scheduler at {name}: {exc}") from exc

    # -- information ----------------------------------------------------------------------------------------------
    @property
    def dashboard_link(self) -> str:
        """The dashboard's address, or '' when it is off (the dashboard needs bokeh)."""
        if not has_bokeh():
            return ""
        try:
            return self.client.dashboard_link or ""
        except (KeyError, AttributeError):
            return ""

    def worker_devices(self) -> dict[str, str]:
        """Each worker's address and the device it computes on (the agent's ``--device``, resolved on the worker's
        machine: ``auto`` is its GPU where it has one, else its CPU). A worker without the device named is a
        ValueError naming the workers and the flag."""
        flag = self.agent.device_flag
        found = self.client.run(_device_here, flag)
        lacking = sorted(address for address, name in found.items() if name.startswith("error: "))
        if lacking:
            raise ValueError(
                f"--device {flag}: {len(lacking)} of {len(found)} Dask workers lack it ({', '.join(lacking)}); "
                "use --device auto (each worker its own GPU, or its CPU) or --device cpu"
            )
        return dict(sorted(found.items()))

    @property
    def n_workers(self) -> int:
        return len(self.client.nthreads())

    def __repr__(self) -> str:
        return f"DaskEvaluator({self.address!r}, batches={self.batches})"

    # -- the cluster's health ---------------------------------------------------------------------------------------
    def _lost(self, why: str) -> RuntimeError:
        return RuntimeError(
            f"lost the Dask cluster at {self.address}: {why}; once it is back (or with another "
            "--scheduler), run the same command again to resume from the last saved generation"
        )

    def _ensure_ready(self) -> None:
        """Connected, at least one worker, and the agent on the cluster; else a RuntimeError within timeout."""
        self._wait_ready()
        try:
            scheduler_id = self.client.scheduler_info(n_workers=0)["id"]
            if self._plugin_on != scheduler_id:  # first time, or a new scheduler at the same address
                self.client.register_plugin(AgentPlugin(self._token, self._agent_state), name=plugin_name(self._token))
                self._plugin_on = scheduler_id
        except (OSError, TimeoutError, CancelledError) as exc:
            raise self._lost(f"could not send the agent to the workers ({type(exc).__name__}: {exc})") from exc
        except Exception as exc:  # raised on a worker: typically wmlib (or torch, ViZDoom) not installed there
            raise RuntimeError(
                f"the Dask workers at {self.address} could not take the agent "
                f"({type(exc).__name__}: {exc}); install wmlib on every worker"
            ) from exc

    # -- scoring ------------------------------------------------------------------------------------------------------
    def run_tasks(self, settings: EvalSettings, tasks) -> list[list[np.ndarray]]:
        """Submit every task (the scheduler runs a task again elsewhere when its worker dies), collect the results,
        and submit again those that were lost, up to ``retries`` times."""
        self._calls += 1
        results: list = [None] * len(tasks)
        todo = list(range(len(tasks)))
        for attempt in range(self.retries + 1):
            self._ensure_ready()
            futures = {
                i: self.client.submit(
                    _score,
                    self._token,
                    settings,
                    tasks[i],
                    f"score {i}",
                    key=f"wm-score-{self._token}-{self._calls}-{i}-{attempt}",
                    retries=self.retries,
                )
                for i in todo
            }
            todo = self._collect(futures, results)
            if not todo:
                return results
            logger.warning(
                "%d of %d evaluation tasks were lost (a worker or the scheduler went away); submitting them again",
                len(todo),
                len(tasks),
            )
        raise RuntimeError(
            f"{len(todo)} evaluation tasks on the Dask cluster at {self.address} failed "
            f"{self.retries + 1} times (their workers kept dying); giving up"
        )

    def _collect(self, futures: dict, results: list) -> list[int]:
        """Wait for ``futures``, store their results; return the indices of tasks to submit again."""
        pending, again = dict(futures), []
        self._no_workers_since = None
        news = threading.Event()
        for f in futures.values():
            f.add_done_callback(lambda _: news.set())
        try:
            while pending:
                if not news.wait(self.poll):
                    self._check_health()
                    continue
                news.clear()
                finished = []
                for i, f in list(pending.items()):
                    if f.status == "pending":
                        continue
                    del pending[i]
                    if f.status == "finished":
                        finished.append(i)
                    elif f.status == "error":
                        exc = f.exception()
                        if isinstance(exc, AgentMissing):
                            self._plugin_on = None  # send the agent again before the next attempt
                        elif not isinstance(exc, KilledWorker):
                            raise exc
                        again.append(i)
                    else:  # cancelled: the connection to the scheduler was lost
                        again.append(i)
                if finished:
                    try:
                        for i, r in zip(finished, self.client.gather([futures[i] for i in finished])):
                            results[i] = r
                    except (CancelledError, OSError):
                        again.extend(finished)
        finally:
            for f in pending.values():
                f.release()
        return sorted(again)

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None and client.status == "running" and self._plugin_on is not None:
            try:  # the workers drop the agent (AgentPlugin.teardown) and the scheduler forgets it
                client.unregister_worker_plugin(plugin_name(self._token))
            except Exception:  # best effort: the scheduler may be another one by now
                pass
            self._plugin_on = None
        if client is not None and self._own_client:
            try:
                client.close(timeout=5)
            except Exception:
                pass
        if self.cluster is not None:
            try:
                self.cluster.close(timeout=10)
            except Exception:
                pass
            self.cluster = None


__all__ = [
    "DaskEvaluator",
    "AgentPlugin",
    "AgentMissing",
    "local_cluster",
    "local_security",
    "plan_tasks",
    "task_jobs",
    "default_timeout",
    "LOOPBACK",
]
