"""wmlib.farm: independent tasks in this process, in local worker processes and on a real Dask cluster (scheduler
and two one-thread worker processes on 127.0.0.1, over TLS); random-policy episodes played through it are
byte-identical files wherever they were played, also when a worker is killed mid-stage."""

import logging
import math
import os
import re

import pytest
from distributed import Client

from wmlib import episodes
from wmlib.cluster import local_cluster
from wmlib.config import make_config
from wmlib.farm import KILL_ENV, Farm, TaskFailed, farm_kind
from wmlib.rollouts import collect_rollouts


@pytest.fixture(scope="module")
def kill_marker(tmp_path_factory):
    """While this file is missing, the first Dask worker to start episode 1 makes it and kills itself."""
    marker = tmp_path_factory.mktemp("kill") / "episode-1-killed"
    marker.touch()
    return marker


@pytest.fixture(scope="module")
def cluster(kill_marker):
    # as `wm` starts one (127.0.0.1, mutual TLS with a temporary certificate), the workers armed to die at will
    c = local_cluster(2, env={KILL_ENV: f"episode 1:{kill_marker}"})
    yield c
    c.close(timeout=10)


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster, security=cluster.security, set_as_default=False) as c:
        c.wait_for_workers(2, timeout=60)
        yield c


@pytest.fixture(scope="module")
def processes(tmp_path_factory):
    """Two local worker processes, armed like the cluster's workers to die at will in episode 2."""
    marker = tmp_path_factory.mktemp("kill") / "episode-2-killed"
    marker.touch()
    with Farm("processes", 2) as farm:
        os.environ[KILL_ENV] = f"episode 2:{marker}"
        try:
            assert dict(farm.run(math.sqrt, [(4,), (9,)])) == {0: 2.0, 1: 3.0}  # the workers start, with KILL_ENV
        finally:
            del os.environ[KILL_ENV]
        farm.kill_marker = marker
        yield farm


CFG = make_config("CarRacing-v3", "smoke", num_rollouts=4, max_frames=30)
DOOM = make_config("DoomTakeCover", "smoke", num_rollouts=3, max_frames=130, min_frames=126)  # episode 0 retries


def files(d) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in episodes.list_episodes(d)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The episodes of CFG and DOOM played in this process."""
    out = {}
    for cfg in (CFG, DOOM):
        d = tmp_path_factory.mktemp("here")
        collect_rollouts(cfg, d, kind="inprocess", progress=False)
        out[cfg.game] = files(d)
        assert len(out[cfg.game]) == cfg.num_rollouts
    return out


@pytest.mark.parametrize("cfg", [CFG, DOOM], ids=lambda c: c.game)
def test_local_processes_and_dask_write_the_bytes_written_in_process(cfg, reference, processes, client, tmp_path):
    collect_rollouts(cfg, tmp_path / "processes", farm=processes, progress=False)
    collect_rollouts(cfg, tmp_path / "dask", client=client, progress=False)
    assert files(tmp_path / "processes") == reference[cfg.game]
    assert files(tmp_path / "dask") == reference[cfg.game]
    if cfg is DOOM:  # the min_frames retries happened, and were made the same way everywhere
        metas = [episodes.load_episode(p)["meta"] for p in episodes.list_episodes(tmp_path / "dask")]
        assert any(m["attempt"] > 0 for m in metas)


def test_a_dask_worker_killed_mid_stage_costs_a_retry_not_an_episode(
    cluster, client, kill_marker, reference, tmp_path, caplog
):
    """Episode 1's first attempt kills its worker. With allowed-failures 0 the scheduler does not run it again
    itself (its default, 3, would) but fails it with KilledWorker; the farm submits it again. Same files."""
    before = set(client.nthreads())
    kill_marker.unlink()  # armed
    saved, cluster.scheduler.allowed_failures = cluster.scheduler.allowed_failures, 0
    try:
        with caplog.at_level(logging.WARNING, logger="wmlib.farm"):
            collect_rollouts(CFG, tmp_path, client=client, progress=False)
    finally:
        cluster.scheduler.allowed_failures = saved
        kill_marker.touch(exist_ok=True)
    assert kill_marker.exists() and not before <= set(client.nthreads()), "no worker was killed"
    assert re.search(
        r"[12] of 4 tasks were lost \(a worker or the scheduler went away\); submitting them again", caplog.text
    )  # the killed worker's task, and the one it had queued
    assert files(tmp_path) == reference[CFG.game]


def test_a_local_worker_process_killed_mid_stage_costs_a_retry(processes, reference, tmp_path, caplog):
    processes.kill_marker.unlink()  # armed
    with caplog.at_level(logging.WARNING, logger="wmlib.farm"):
        collect_rollouts(CFG, tmp_path / "run", farm=processes, progress=False)
    assert processes.kill_marker.exists() and "a worker process died; submitting the" in caplog.text
    assert files(tmp_path / "run") == reference[CFG.game]


@pytest.mark.parametrize("kind", ["inprocess", "processes", "dask"])
def test_a_failing_task_raises_here_naming_it(kind, processes, client):
    farm = processes if kind == "processes" else Farm(client=client if kind == "dask" else None)
    assert farm.kind == kind
    assert dict(farm.run(math.sqrt, [(4,), (9,)], stage="sqrt")) == {0: 2.0, 1: 3.0}
    with pytest.raises(TaskFailed, match=r"^square root of -1 failed: ValueError: math domain error$"):
        list(farm.run(math.sqrt, [(1,), (-1,)], names=["square root of 1", "square root of -1"]))
    # keys are unique per call: the same stage and positions again give this call's results, not the last's
    assert dict(farm.run(math.sqrt, [(16,), (25,)], stage="sqrt")) == {0: 4.0, 1: 5.0}


def test_the_kind_follows_the_arguments_and_contradictions_are_named(client):
    assert farm_kind(None, 1) == "inprocess" and farm_kind(None, 3) == "processes"
    assert farm_kind(None, 1, scheduler="tls://127.0.0.1:8786") == "dask" == farm_kind(None, 2, tls=False)
    assert farm_kind(None, 1, client=client) == "dask"
    with pytest.raises(ValueError, match="not 'processes'"):
        farm_kind("processes", 2, scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="not both"):
        farm_kind(None, 2, client=client, scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="unknown kind 'threads'"):
        farm_kind("threads")
    with pytest.raises(RuntimeError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"):
        Farm(scheduler="tcp://127.0.0.1:9", timeout=1)
