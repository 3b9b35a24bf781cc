"""Integration: controller evaluation on a real Dask scheduler and real Dask workers, all on 127.0.0.1.

The scheduler and workers are separate processes started with Dask's own command line, as on a real cluster.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest
import torch
from conftest import wm
from distributed import Client, Security, get_task_stream

from wmlib import devices
from wmlib.agent import REAL_ENVS_PER_BATCH, Agent, EvalSettings, plan_tasks, run_jobs, task_jobs
from wmlib.cluster import LOOPBACK, local_security
from wmlib.distributed import DaskEvaluator, _release
from wmlib.farm import KILL_ENV
from wmlib.games import ENGINE_WATCHER

PY = sys.executable


class Cluster:
    """`dask scheduler` + `dask worker` subprocesses on loopback; each worker is one process with one thread."""

    def __init__(self, tmp, workers: int = 2, tls: dict | None = None, env: dict | None = None):
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp, self.file, self.env = tmp, tmp / "scheduler.json", dict(env or {})
        self.procs = []
        # tls: certificate files {"ca": ..., "cert": ..., "key": ...}, used by every process of the cluster
        self.tls = (
            [] if tls is None else ["--tls-ca-file", tls["ca"], "--tls-cert", tls["cert"], "--tls-key", tls["key"]]
        )
        self.security = (
            None
            if tls is None
            else Security(
                tls_ca_file=tls["ca"], tls_client_cert=tls["cert"], tls_client_key=tls["key"], require_encryption=True
            )
        )
        self.scheduler = self._spawn(
            "scheduler",
            [
                PY,
                "-m",
                "distributed.cli.dask_scheduler",
                "--host",
                LOOPBACK,
                "--port",
                "0",
                "--dashboard-address",
                f"{LOOPBACK}:0",
                "--scheduler-file",
                str(self.file),
                *self.tls,
                *(["--protocol", "tls"] if tls else []),
            ],
        )
        t0 = time.monotonic()
        while not (self.file.exists() and self.file.stat().st_size > 0):
            if time.monotonic() - t0 > 60 or self.scheduler.poll() is not None:
                raise RuntimeError(f"dask scheduler did not start: {(tmp / 'scheduler.log').read_text()}")
            time.sleep(0.1)
        self.address = json.loads(self.file.read_text())["address"]
        for i in range(workers):
            self.add_worker(f"w{i}")
        with Client(self.address, timeout=30, security=self.security) as c:
            c.wait_for_workers(workers, timeout=120)

    def _spawn(self, name, cmd):
        log = open(self.tmp / f"{name}.log", "ab")
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, WM_SMOKE="1", **self.env)
        )
        log.close()
        self.procs.append(proc)
        return proc

    def add_worker(self, name):
        return self._spawn(
            name,
            [
                PY,
                "-m",
                "distributed.cli.dask_worker",
                "--scheduler-file",
                str(self.file),
                "--host",
                LOOPBACK,
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--name",
                name,
                "--dashboard-address",
                f"{LOOPBACK}:0",
                "--death-timeout",
                "30",
                *self.tls,
            ],
        )

    def _tree(self):
        procs = []
        for p in self.procs:
            try:
                ps = psutil.Process(p.pid)
                procs += [ps, *ps.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        return procs

    def kill(self):
        """SIGKILL every process of the cluster at once (and the games its workers started)."""
        kill_tree(self._tree())
        for p in self.procs:
            p.wait(timeout=30)

    def close(self):
        self.kill()  # a test cluster keeps nothing worth a graceful shutdown


def kill_tree(procs):
    """SIGKILL ``procs``, sparing ViZDoom engines' watchers, which then kill their engines (if still alive) and
    remove their folders."""
    procs = [p for p in procs if not _is_engine_watcher(p)]
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def _is_engine_watcher(p) -> bool:
    try:
        return ENGINE_WATCHER in p.cmdline()
    except psutil.Error:
        return False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two workers, armed (:func:`a_worker_dies`) to kill themselves at the start of a task of these names."""
    tmp = tmp_path_factory.mktemp("dask")
    marker = tmp / "a-worker-died"
    marker.touch()  # disarmed
    armed = "episode 1,score 0,controller perturbed 1"  # a rollout, an evaluator's first task, an iterate task
    c = Cluster(tmp, workers=2, env={KILL_ENV: f"{armed}:{marker}"})
    c.marker = marker
    yield c
    c.close()


@contextlib.contextmanager
def a_worker_dies(cluster):
    """Within this block, the first worker to start an armed task (the ``cluster`` fixture's names) kills itself
    there (SIGKILL, with the game it had started); its nanny starts a new worker, which this waits for."""
    before = set(_workers(cluster))
    cluster.marker.unlink()
    try:
        yield
    finally:
        died = cluster.marker.exists()
        cluster.marker.touch(exist_ok=True)
    assert died, "no worker started an armed task"
    with Client(cluster.address, timeout=30) as c:
        c.wait_for_workers(2, timeout=120)
        assert set(c.scheduler_info()["workers"]) != before  # one of them is new


def _workers(cluster):
    with Client(cluster.address, timeout=30) as c:
        return list(c.scheduler_info()["workers"])


def _jobs(agent, n_jobs, seeds_per_job, seed=0):
    rng = np.random.default_rng(seed)
    return [
        (
            rng.normal(0, 0.5, agent.spec.n_params).astype(np.float32),
            [1000 * j + 7 * t + 1 for t in range(seeds_per_job)],
        )
        for j in range(n_jobs)
    ]


def _same(a, b):
    return [s.tolist() for s in a] == [s.tolist() for s in b]


def _rows(run_dir):
    """Controller log rows without the wall-clock column."""
    return [r.rsplit(",", 1)[0] for r in (run_dir / "controller/log.csv").read_text().splitlines()]


def test_plan_tasks_cover_every_episode_once_in_order():
    counts = [REAL_ENVS_PER_BATCH + 3, 2, 5]
    jobs = [(np.full(3, j, np.float32), list(range(100 * j, 100 * j + n))) for j, n in enumerate(counts)]
    real = plan_tasks(EvalSettings(mode="real"), jobs, batches=2)
    assert real == [
        [(0, 0, REAL_ENVS_PER_BATCH)],
        [(0, REAL_ENVS_PER_BATCH, REAL_ENVS_PER_BATCH + 3)],
        [(1, 0, 2)],
        [(2, 0, 5)],
    ]  # a job's seeds in lockstep chunks, as run_jobs plays them
    for batches in (1, 2, 3, 50):
        tasks = plan_tasks(EvalSettings(mode="dream"), jobs, batches)
        assert len(tasks) == min(batches, sum(counts))
        pieces = [task_jobs(jobs, t) for t in tasks]
        flat = [(int(p[0]), s) for piece in pieces for p, seeds in piece for s in seeds]
        assert flat == [(j, s) for j, (_, seeds) in enumerate(jobs) for s in seeds]  # each episode once, in order
        sizes = [sum(b - a for _, a, b in t) for t in tasks]
        assert max(sizes) - min(sizes) <= 1  # even batches


def test_importing_the_package_does_not_import_dask():
    code = (
        "import sys, wmlib, wmlib.cli, wmlib.evaluators, wmlib.evolution; "
        "assert 'distributed' not in sys.modules and 'dask' not in sys.modules, 'dask imported'"
    )
    subprocess.run([PY, "-c", code], check=True, timeout=120)


def test_wm_controller_on_the_cluster_gives_the_in_process_fitness(cluster, run_copy, tmp_path):
    d = run_copy("DoomTakeCover")
    shutil.rmtree(d / "controller")
    here = tmp_path / "here"
    shutil.copytree(d, here)
    args = ["--no-in_dream", "--generations", 1, "--quiet"]  # the real game: fitness must be identical
    wm("controller", "--data_dir", here, "--evaluator", "inprocess", *args)
    out = wm("controller", "--data_dir", d, "--scheduler", cluster.address, "--device", "cpu", *args)
    assert f"dask: scheduler {cluster.address}, 2 workers" in out.stdout
    assert out.stdout.count(" computes on cpu: ") == 2  # each worker names its device
    assert _rows(d) == _rows(here) and len(_rows(d)) == 2
    a = torch.load(d / "controller/controller.pt", weights_only=True)
    b = torch.load(here / "controller/controller.pt", weights_only=True)
    assert torch.equal(a["mean"], b["mean"]) and torch.equal(a["params"], b["params"])


def test_scores_match_run_jobs_in_the_real_game_and_the_dream(cluster, smoke_runs):
    def agent_ids():  # run on each worker (a nested function travels by value)
        import wmlib.distributed

        return sorted(id(a) for a in wmlib.distributed._AGENTS.values())

    agent = Agent.from_run(smoke_runs("DoomTakeCover"))
    try:
        # Real game: a job with more seeds than one lockstep batch is split into several tasks.
        real = EvalSettings(mode="real", max_len=15)
        big = _jobs(agent, 2, REAL_ENVS_PER_BATCH + 3)
        assert len(plan_tasks(real, big, 2)) == 4
        dream = EvalSettings(mode="dream", max_len=40, temperature=1.15)
        jobs = _jobs(agent, 5, 3, seed=1)
        with DaskEvaluator(agent, scheduler=cluster.address) as ev:
            assert ev.batches == 2  # the cluster's threads
            assert _same(ev.evaluate(real, big), run_jobs(agent, real, big))
            built = ev.client.run(agent_ids)
            assert sum(map(len, built.values())) >= 1
            there = ev.evaluate(dream, jobs)
            assert ev.client.run(agent_ids) == built  # each worker built its agent once and kept it
        # Dream: identical to in-process dreams batched the same way (here 2 batches of 8 and 7 episodes) ...
        pieces = [run_jobs(agent, dream, task_jobs(jobs, t)) for t in plan_tasks(dream, jobs, 2)]
        flat = np.concatenate([s for p in pieces for s in p])
        assert np.concatenate(there).tolist() == flat.tolist()
        # ... and to the in-process evaluator's single batch when the cluster uses one batch too.
        with DaskEvaluator(agent, scheduler=cluster.address, batches=1) as ev:
            assert _same(ev.evaluate(dream, jobs), run_jobs(agent, dream, jobs))
            with Client(cluster.address, timeout=30) as other:
                assert sum(other.run(_release, ev._token).values()) >= 1  # the workers forget the agent ...
            assert _same(ev.evaluate(dream, jobs), run_jobs(agent, dream, jobs))  # ... and are sent it again
    finally:
        agent.close()


def test_each_worker_resolves_the_device_itself_and_one_that_lacks_it_is_named(cluster, smoke_runs):
    def worker_agents_devices():  # run on each worker
        import wmlib.distributed

        return sorted({str(a.device) for a in wmlib.distributed._AGENTS.values()})

    agent = Agent.from_run(smoke_runs("DoomTakeCover")).on("auto")
    assert agent.device_flag == "auto" and agent.state()["device"] == "auto"
    here = devices.resolve("auto")  # these workers share this machine: they resolve 'auto' as it does
    try:
        dream = EvalSettings(mode="dream", max_len=30, temperature=1.15)
        with DaskEvaluator(agent, scheduler=cluster.address) as ev:
            assert len(ev.devices) == 2 and set(ev.devices.values()) == {devices.name(here)}
            ev.evaluate(dream, _jobs(agent, 2, 2))
            assert set(map(tuple, ev.client.run(worker_agents_devices).values())) == {(str(here),)}
        if not torch.cuda.is_available():  # a worker without a GPU, told --device cuda: named, before any task
            agent.device_flag = "cuda"
            with pytest.raises(ValueError, match=r"^--device cuda: 2 of 2 Dask workers lack it \(tcp://127\.0\.0\.1:"):
                DaskEvaluator(agent, scheduler=cluster.address)
    finally:
        agent.close()


def test_a_worker_killed_mid_generation_costs_a_retry_not_a_wrong_fitness(cluster, smoke_runs):
    agent = Agent.from_run(smoke_runs("DoomTakeCover"))
    settings = EvalSettings(mode="real", max_len=150)
    jobs = _jobs(agent, 10, 2, seed=2)
    out = {}

    def generation():
        try:
            out["scores"] = ev.evaluate(settings, jobs)
        except BaseException as exc:  # reported below
            out["error"] = exc

    with Client(cluster.address, timeout=30) as watcher, DaskEvaluator(agent, scheduler=cluster.address) as ev:
        ev_workers = list(watcher.scheduler_info()["workers"])
        thread = threading.Thread(target=generation)
        thread.start()
        t0, victim = time.monotonic(), None
        while victim is None and thread.is_alive() and time.monotonic() - t0 < 120:
            busy = [w for w, keys in watcher.processing().items() if any("wm-score" in str(k) for k in keys)]
            victim = busy[0] if len(busy) == 2 else None
            time.sleep(0.2)
        assert victim is not None, "the generation ended before both workers were busy"
        time.sleep(1.0)  # well into the victim's task
        pid = watcher.run(os.getpid, workers=[victim])[victim]
        worker = psutil.Process(pid)
        kill_tree([worker, *worker.children(recursive=True)])  # the worker and the game it was playing
        thread.join(timeout=240)
        assert not thread.is_alive(), "the generation hung after a worker died"
        assert "error" not in out, out.get("error")
        assert victim not in watcher.scheduler_info()["workers"]
        watcher.wait_for_workers(2, timeout=120)  # the worker's nanny starts a new one ...
        new = set(watcher.scheduler_info()["workers"]) - set(ev_workers)
        short = EvalSettings(mode="real", max_len=10)
        with get_task_stream(client=watcher) as ts:
            again = ev.evaluate(short, jobs)
        assert new & {t["worker"] for t in ts.data}  # ... which got the agent without being sent it again
    here = run_jobs(agent, settings, jobs)
    assert _same(again, run_jobs(agent, short, jobs))
    agent.close()
    assert _same(out["scores"], here)
    assert max(s.max() for s in here) > 60  # episodes long enough to be interrupted


def test_tls_cluster_then_losing_it_stops_with_a_clear_error_and_the_run_resumes(cluster, run_copy, tmp_path):
    """`wm controller --scheduler tls://...` with certificates from Dask's configuration; then the cluster dies."""
    d = run_copy("DoomTakeCover")
    shutil.rmtree(d / "controller")
    here = tmp_path / "here"
    shutil.copytree(d, here)
    log = d / "controller/log.csv"
    sec = local_security()  # a self-signed certificate, written to files as an administrator would hand them out
    tls = {}
    for name, text in [("ca", sec.tls_ca_file), ("cert", sec.tls_scheduler_cert), ("key", sec.tls_scheduler_key)]:
        tls[name] = str(tmp_path / f"{name}.pem")
        (tmp_path / f"{name}.pem").write_text(text)
    env = dict(
        os.environ,
        DASK_DISTRIBUTED__COMM__TLS__CA_FILE=tls["ca"],
        DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT=tls["cert"],
        DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY=tls["key"],
        DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION="True",
        DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="8s",
    )  # how long a lost scheduler is awaited
    doomed, proc = Cluster(tmp_path / "doomed", workers=1, tls=tls), None
    try:
        assert doomed.address.startswith(f"tls://{LOOPBACK}:")
        with pytest.raises(OSError):  # no certificate, no entry
            Client(doomed.address.replace("tls://", "tcp://"), timeout=3)
        proc = subprocess.Popen(
            [
                PY,
                "-m",
                "wmlib.cli",
                "controller",
                "--data_dir",
                str(d),
                "--scheduler",
                doomed.address,
                "--generations",
                "1000",
                "--quiet",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        t0 = time.monotonic()
        while not (log.exists() and len(log.read_text().splitlines()) >= 3):
            assert proc.poll() is None and time.monotonic() - t0 < 180, proc.communicate()
            time.sleep(0.05)
        t_kill = time.monotonic()
        doomed.kill()
        out, err = proc.communicate(timeout=120)
        stopped_after = time.monotonic() - t_kill
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        doomed.close()
    assert proc.returncode == 2, err
    assert f"dask: scheduler {doomed.address}, 1 worker," in out
    assert f"wm controller: error: lost the Dask cluster at {doomed.address}" in err
    assert stopped_after < 60
    done = torch.load(d / "controller/controller.pt", weights_only=True)["generation"]
    before = log.read_text().splitlines()
    assert done >= 2 and len(before) == done + 1
    # The generations scored over TLS (one worker: one dream batch, as in-process) are the in-process ones.
    wm("controller", "--data_dir", here, "--evaluator", "inprocess", "--generations", done, "--quiet")
    assert _rows(d) == _rows(here)
    # The same command, pointed at a live cluster, resumes from the last saved generation.
    wm("controller", "--data_dir", d, "--scheduler", cluster.address, "--generations", done + 2, "--quiet")
    rows = log.read_text().splitlines()
    assert rows[: len(before)] == before
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(1, done + 3))


def test_local_cluster_listens_on_loopback_only_takes_only_its_certificate_and_runs_a_generation(smoke_runs):
    """A cluster the evaluator starts is TLS by default: a plain client, or one with another certificate, cannot
    connect (and so cannot Client.run anything on the workers)."""
    agent = Agent.from_run(smoke_runs("DoomTakeCover"))
    settings = EvalSettings(mode="real", max_len=30)
    jobs = _jobs(agent, 3, 2, seed=3)
    try:
        with DaskEvaluator(agent, workers=1) as ev:
            assert ev.address.startswith(f"tls://{LOOPBACK}:")
            me = psutil.Process()
            listening = [
                c.laddr
                for p in [me, *me.children(recursive=True)]
                for c in p.net_connections("inet")
                if c.status == psutil.CONN_LISTEN
            ]
            assert listening and {a.ip for a in listening} == {LOOPBACK}
            with pytest.raises(OSError):  # no certificate, no entry
                Client(ev.address.replace("tls://", "tcp://"), timeout=3)
            with pytest.raises(OSError, match="certificate"):  # another certificate is refused too
                Client(ev.address, security=local_security(), timeout=3)
            assert ev.client.run(os.getpid)  # the evaluator's own client holds the certificate
            there = ev.evaluate(settings, jobs)
        assert _same(there, run_jobs(agent, settings, jobs))
    finally:
        agent.close()


def _without(record: dict, *keys) -> dict:
    return {k: v for k, v in record.items() if k not in keys}


def test_wm_test_compare_and_study_on_the_cluster_give_this_process_s_numbers_though_a_worker_dies(
    cluster, run_copy, tmp_path
):
    d = run_copy("DoomTakeCover")
    here = tmp_path / "here"
    shutil.copytree(d, here)
    on = ["--scheduler", cluster.address]
    test = ["--rollouts", 4, "--max_steps", 120, "--quiet"]
    wm("test", "--data_dir", here, *test)
    with a_worker_dies(cluster):
        out = wm("test", "--data_dir", d, *test, *on)
    assert f"dask: scheduler {cluster.address}, 2 workers" in out.stdout
    a, b = (json.loads((p / "test/scores.json").read_text()) for p in (d, here))
    assert _without(a, "controller") == _without(b, "controller") and a["episodes"] == 4
    compare = ["--episodes", 3, "--max_steps", 100, "--quiet"]
    wm("compare", "--data_dir", here, here / "controller/controller.pt", here, *compare)
    with a_worker_dies(cluster):
        wm("compare", "--data_dir", d, d / "controller/controller.pt", d, *compare, *on)
    rows = [[r["scores"] for r in json.loads((p / "compare.json").read_text())["rows"]] for p in (d, here)]
    assert rows[0] == rows[1] and len(rows[0]) == 2 and len(rows[0][0]) == 3
    fidelity = ["--fidelity", "--candidates", 1, "--episodes", 2, "--temperatures", 1.0, "--quiet"]
    wm("study", "--data_dir", here, *fidelity)
    with a_worker_dies(cluster):
        wm("study", "--data_dir", d, *fidelity, *on)
    a, b = (json.loads((p / "fidelity.json").read_text()) for p in (d, here))
    assert a["rows"] == b["rows"] and len(a["rows"]) == 2


def test_wm_rollouts_on_the_cluster_write_the_bytes_local_processes_write_though_a_worker_dies(cluster, tmp_path):
    made = {}
    for name, where in (("local", ["--workers", 2]), ("dask", ["--scheduler", cluster.address])):
        d = tmp_path / name
        with a_worker_dies(cluster) if name == "dask" else contextlib.nullcontext():
            wm(
                "rollouts",
                "--game",
                "DoomTakeCover",
                "--preset",
                "smoke",
                "--num_rollouts",
                3,
                "--data_dir",
                d,
                "--quiet",
                *where,
            )
        made[name] = {p.name: p.read_bytes() for p in sorted((d / "episodes").glob("ep_*.npz"))}
    assert made["local"] == made["dask"] and len(made["dask"]) == 3


def test_wm_iterate_on_the_cluster_writes_the_episodes_this_process_writes_though_a_worker_dies(
    cluster, smoke_runs, tmp_path
):
    src = smoke_runs("DoomTakeCover")
    made = {}
    for name, on in (("here", []), ("dask", ["--scheduler", cluster.address])):
        out = tmp_path / name
        args = ["--draws", 0, "--perturbed", 1, "--episodes", 2, "--more_rnn_steps", 1, "--quiet"]
        with a_worker_dies(cluster) if on else contextlib.nullcontext():
            wm("iterate", "--data_dir", src, "--out", out, *args, *on)
        record = json.loads((out / "iteration.json").read_text())
        new = [p for p in sorted((out / "episodes").glob("ep_*.npz")) if not (src / "episodes" / p.name).exists()]
        made[name] = ({p.name: p.read_bytes() for p in new}, record["controllers"])
    assert made["here"] == made["dask"] and len(made["dask"][0]) == 4  # the trained one and a perturbed one
