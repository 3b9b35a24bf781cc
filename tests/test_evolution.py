"""wmlib.evolution: CMA-ES (real pycma) on the controller, at smoke scale on a real run: seeded jobs, the curriculum,
a resume (after a clean stop or a kill at any write) that continues exactly where the run was, and a CMA-ES state
that is never unpickled."""

import dataclasses
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import traceback

import numpy as np
import pytest
import torch
from conftest import wait_for, wm

from wmlib import esstate, pretrained, rundir
from wmlib.config import make_config
from wmlib.evolution import chosen_generation, generation_jobs, train_controller
from wmlib.io import CRASH_ENV, atomic_write_bytes, read_csv
from wmlib.seeding import EVAL, TRAIN, episode_seed


def test_generation_jobs_are_one_per_candidate_with_a_training_seed_per_trial():
    cfg = make_config("DoomTakeCover", "smoke", seed=5, trials=3)
    solutions = [np.full(4, i, np.float64) for i in range(6)]
    jobs = generation_jobs(cfg, solutions, generation=7)
    assert len(jobs) == 6
    for i, (params, seeds) in enumerate(jobs):
        assert params.dtype == np.float32 and np.array_equal(params, solutions[i])
        assert seeds == [episode_seed(5, 7, i, t, TRAIN) for t in range(3)]
    every = [s for _, seeds in jobs for s in seeds]
    assert len(set(every)) == 18  # no two episodes of a generation share a seed
    assert not set(every) & {s for _, seeds in generation_jobs(cfg, solutions, 8) for s in seeds}
    assert not set(every) & {episode_seed(5, 7, 0, t, EVAL) for t in range(100)}  # nor the mean's evaluation


def test_paired_seeds_give_every_candidate_the_same_tracks():
    cfg = make_config("CarRacing-v3", "smoke", seed=5, trials=3, paired_seeds=True)
    jobs = generation_jobs(cfg, [np.zeros(4)] * 4, generation=7)
    assert all(seeds == [episode_seed(5, 7, 0, t, TRAIN) for t in range(3)] for _, seeds in jobs)
    assert generation_jobs(cfg, [np.zeros(4)], 8)[0][1] != jobs[0][1]  # new tracks every generation


def test_the_curriculum_lengthens_the_dream_when_the_mean_improves(run_copy):
    d = run_copy("DoomTakeCover")
    shutil.rmtree(d / "controller")
    cfg = make_config("DoomTakeCover", "smoke", curriculum=(5, 4), generations=5, dream_max_len=15)
    train_controller(cfg, d, progress=False)
    log = read_csv(rundir.log_path(d, "controller"))
    lengths, means = log["max_len"].tolist(), log["fitness_mean"]
    assert lengths[0] == 5 and lengths[1] == 9  # the first generation is an improvement on nothing
    best = -np.inf
    for g in range(len(lengths) - 1):
        grown = min(15, lengths[g] + 4) if means[g] > best else lengths[g]
        assert lengths[g + 1] == grown, (g, lengths, means.tolist())
        best = max(best, means[g])
    assert (log["fitness_best"] <= np.array(lengths)).all()  # +1 per step: no one outlives the dream
    assert max(lengths) > 5


def test_a_saved_state_of_another_population_is_refused(run_copy):
    d = run_copy("DoomTakeCover")
    before = (d / "controller" / "es_state.npz").read_bytes()
    with pytest.raises(ValueError, match=r"es_state\.npz: saved with population 4, but --pop is 6"):
        train_controller(make_config("DoomTakeCover", "smoke", pop=6, generations=3), d, progress=False)
    assert (d / "controller" / "es_state.npz").read_bytes() == before


def test_a_search_can_start_from_a_trained_controller_and_resumes_from_its_own_start(run_copy, smoke_runs, tmp_path):
    d = run_copy("DoomTakeCover")  # its controller: the start
    start = torch.load(d / rundir.CONTROLLER, weights_only=True)
    x0, g0 = start["params"].double().numpy(), start["generation"]
    assert np.abs(x0).max() > 0.01 and g0 >= 1
    cont = rundir.share_world_model(d, tmp_path / "cont")
    shutil.copy(d / rundir.CONFIG, cont / rundir.CONFIG)
    short = wm("controller", "--data_dir", cont, "--start_from", d, "--generations", g0, "--quiet", check=False)
    assert short.returncode == 2 and f"--generations {g0}" in short.stderr and not (cont / "controller").exists()
    wm("controller", "--data_dir", cont, "--start_from", d, "--sigma0", 1e-4, "--generations", g0 + 1, "--quiet")
    state_path = cont / rundir.ES_STATE
    state = esstate.load(state_path)
    assert state["start_from"] == str(d) and np.array_equal(state["x0"], x0)
    assert np.abs(state["es"].mean - x0).max() < 0.01  # the search is centred on the start, not on zero
    # generations count on from the start's: one row, generation g0 + 1, on episodes the start never played
    assert read_csv(rundir.log_path(cont, "controller"))["generation"].tolist() == [g0 + 1]
    wm("controller", "--data_dir", cont, "--start_from", d, "--generations", g0 + 2, "--quiet")  # resumes
    ckpt = torch.load(cont / rundir.CONTROLLER, weights_only=True)
    assert ckpt["generation"] == g0 + 2 and (ckpt["start_from"], ckpt["start_generation"]) == (str(d), g0)
    # the card says which generations are this search's and whose controller it started from
    assert (
        f"generations {g0 + 1}-{g0 + 2}: a new search centred on the generation-{g0} controller of "
        f"{d.parent.name}/{d.name}"
    ) in pretrained.card(cont)
    agent = pretrained.export(cont, tmp_path / "agent", sample_episodes=1)  # the start named, not located
    assert torch.load(agent / rundir.CONTROLLER, weights_only=True)["start_from"] == f"{d.parent.name}/{d.name}"
    before = {p: p.read_bytes() for p in (cont / "controller").rglob("*") if p.is_file()}
    other = tmp_path / "zero.pt"
    ckpt = torch.load(d / rundir.CONTROLLER, weights_only=True)
    ckpt["params"] = torch.zeros_like(ckpt["params"])
    torch.save(ckpt, other)
    out = wm("controller", "--data_dir", cont, "--start_from", other, "--generations", g0 + 3, "--quiet", check=False)
    assert out.returncode == 2 and "es_state.npz" in out.stderr and "zero.pt" in out.stderr
    car = smoke_runs("CarRacing-v3")
    out = wm("controller", "--data_dir", cont, "--start_from", car, "--generations", g0 + 3, "--quiet", check=False)
    assert out.returncode == 2 and "--start_from" in out.stderr and str(car) in out.stderr
    assert {p: p.read_bytes() for p in (cont / "controller").rglob("*") if p.is_file()} == before  # nothing changed
    # once the start is gone (say, replaced by the agent this search made), the search resumes without it
    wm("controller", "--data_dir", cont, "--generations", g0 + 3, "--quiet")
    ckpt = torch.load(cont / rundir.CONTROLLER, weights_only=True)
    assert ckpt["generation"] == g0 + 3 and (ckpt["start_from"], ckpt["start_generation"]) == (str(d), g0)


def test_controller_resume_is_exact(run_copy, tmp_path):
    d = run_copy("DoomTakeCover")
    shutil.rmtree(d / "controller")
    straight = tmp_path / "straight"
    shutil.copytree(d, straight)
    wm("controller", "--data_dir", straight, "--generations", 3, "--quiet")
    wm("controller", "--data_dir", d, "--generations", 1, "--quiet")
    wm("controller", "--data_dir", d, "--generations", 3, "--quiet")
    a = torch.load(d / "controller/controller.pt", weights_only=True)
    b = torch.load(straight / "controller/controller.pt", weights_only=True)
    assert a["generation"] == b["generation"] == 3
    assert torch.equal(a["mean"], b["mean"]) and torch.equal(a["params"], b["params"])
    drop_seconds = lambda p: [r.rsplit(",", 1)[0] for r in p.read_text().splitlines()]  # noqa: E731
    assert drop_seconds(d / "controller/log.csv") == drop_seconds(straight / "controller/log.csv")


def test_killed_controller_resumes_from_last_generation(run_copy):
    d = run_copy("DoomTakeCover")
    shutil.rmtree(d / "controller")
    log = d / "controller/log.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wmlib.cli", "controller", "--data_dir", str(d), "--generations", "1000", "--quiet"],
        start_new_session=True,
    )
    try:
        wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 3)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = torch.load(d / "controller/controller.pt", weights_only=True)["generation"]
    assert done >= 2
    wm("controller", "--data_dir", d, "--generations", done + 1, "--quiet")
    rows = log.read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, done + 2))


# -- the CMA-ES state: never unpickled, checked, and the commit point of every generation --------------------------


class _Payload:
    """What a crafted pickle does when loaded: here, make a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def _files(folder) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_pickled_state_is_never_loaded(run_copy, tmp_path):
    d = run_copy("DoomTakeCover")
    marker = tmp_path / "ran"
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(_Payload(live)))  # the payload works: unpickled, it runs
    assert live.exists()
    state = d / rundir.ES_STATE
    saved = state.read_bytes()
    state.unlink()  # as an older version left it: a pickle, and no es_state.npz
    pickled = d / "controller" / "es_state.pkl"
    pickled.write_bytes(pickle.dumps(_Payload(marker)))
    before = _files(d / "controller")
    out = wm("controller", "--data_dir", d, "--generations", 3, "--quiet", check=False)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == (
        f"wm controller: error: {pickled}: pickled CMA-ES state can run code when loaded, so it is not read; delete "
        f"{d / 'controller'} to start C again, or move it aside and start a new search from its controller.pt "
        "with --start_from"
    )
    assert not marker.exists() and _files(d / "controller") == before
    state.write_bytes(saved)  # beside a state of its own, the pickle is left alone, unread
    train_controller(make_config("DoomTakeCover", "smoke", generations=3), d, progress=False)
    assert not marker.exists() and read_csv(d / "controller/log.csv")["generation"].tolist() == [1, 2, 3]


def test_a_log_without_its_state_is_refused_and_kept(run_copy):
    d = run_copy("DoomTakeCover")
    (d / rundir.ES_STATE).unlink()
    before = _files(d / "controller")
    with pytest.raises(ValueError, match=rf"^{d / 'controller/log.csv'}: a controller log without the CMA-ES state"):
        train_controller(make_config("DoomTakeCover", "smoke", generations=3), d, progress=False)
    assert _files(d / "controller") == before


def test_a_state_that_names_a_signals_file_is_refused(run_copy):
    d = run_copy("DoomTakeCover")
    path = d / rundir.ES_STATE
    state = esstate.load(path)
    dict.__setitem__(state["es"].opts, "signals_filename", str(d / "signals.in"))  # pycma would eval its options
    atomic_write_bytes(path, esstate.dumps(state))
    with pytest.raises(ValueError, match=rf"^{path}: names a pycma signals file"):
        train_controller(make_config("DoomTakeCover", "smoke", generations=3), d, progress=False)


@pytest.mark.parametrize("option, value", [("verb_log", 1), ("verbose", 1)])
def test_a_state_that_asks_pycma_to_log_is_refused(run_copy, option, value):
    d = run_copy("DoomTakeCover")
    path = d / rundir.ES_STATE
    state = esstate.load(path)
    dict.__setitem__(state["es"].opts, option, value)  # pycma would write data files where the state says
    atomic_write_bytes(path, esstate.dumps(state))
    with pytest.raises(ValueError, match=rf"^{path}: asks pycma to log or print \({{'{option}': {value}}}\)"):
        train_controller(make_config("DoomTakeCover", "smoke", generations=3), d, progress=False)


def test_a_damaged_state_is_refused_naming_it(run_copy):
    d = run_copy("DoomTakeCover")
    path = d / rundir.ES_STATE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    out = wm("controller", "--data_dir", d, "--generations", 3, "--quiet", check=False)
    assert out.returncode == 2 and out.stderr.startswith(f"wm controller: error: {path}: ")
    assert "\n" not in out.stderr.strip() and bytes(data) == path.read_bytes()


# Crash consistency: a kill at each step of each atomic write of the stage, in a middle generation (the learning
# curve is drawn once, at the end), then a rerun, gives the files of an uninterrupted run. And a kill right after the
# last state is in place: the rerun has no generation left to run, only the log and the curve to write.
CRASH_GENERATIONS = 3
CRASH_POINTS = {
    "means/gen_NNNN.pt": ("gen_0", 2),
    "controller.pt": ("controller.pt", 2),
    "es_state.npz": ("es_state.npz", 2),
    "log.csv": ("log.csv", 2),
    "learning_curve.png": ("learning_curve.png", 1),
    "the last es_state.npz": ("es_state.npz", 3),
}
CRASHES = [(f, p) for f in CRASH_POINTS if f != "the last es_state.npz" for p in ("create", "write", "rename")] + [
    ("the last es_state.npz", "rename")
]


def _without_clock(node):
    """A state document with its wall-clock readings (pycma's timers, the log's seconds) left out."""
    if isinstance(node, list):
        return [_without_clock(v) for v in node]
    if not isinstance(node, dict):
        return node
    if node.get("class", "").endswith(".ElapsedWCTime"):
        return dict(node, attrs="clock")
    if node.get("t") == "dict":
        return dict(node, items=[[k, "clock" if k == "seconds" else _without_clock(v)] for k, v in node["items"]])
    return {k: _without_clock(v) for k, v in node.items()}


def _controller_files(d) -> dict:
    """Every file under controller/, as it must be after any kill and a rerun: byte for byte, but for the time
    each generation took (log.csv's seconds, and the state's clocks)."""
    out = {}
    for p in sorted((d / "controller").rglob("*")):
        rel = str(p.relative_to(d))
        if not p.is_file():
            continue
        if p.name == "log.csv":
            out[rel] = [line.rsplit(",", 1)[0] for line in p.read_text().splitlines()]
        elif p.name == "es_state.npz":
            with np.load(p, allow_pickle=False) as z:
                entries = {k: z[k] for k in z.files}
            doc = json.loads(entries.pop(esstate.DOCUMENT).tobytes())
            entries.pop(esstate.CHECKSUM)
            out[rel] = (_without_clock(doc), {k: (a.dtype.str, a.shape, a.tobytes()) for k, a in entries.items()})
        else:
            out[rel] = p.read_bytes()
    return out


def _pre_controller_copy(src, dst):
    rundir.share_world_model(src, dst)
    shutil.copy(src / rundir.CONFIG, dst / rundir.CONFIG)
    return dst


@pytest.fixture(scope="module")
def uninterrupted(smoke_runs, tmp_path_factory):
    """A smoke run's V and M, and the controller/ files of an uninterrupted search on them."""
    src = smoke_runs("DoomTakeCover")
    d = _pre_controller_copy(src, tmp_path_factory.mktemp("uninterrupted") / "run")
    train_controller(make_config("DoomTakeCover", "smoke", generations=CRASH_GENERATIONS), d, progress=False)
    files = _controller_files(d)
    assert len(files["controller/log.csv"]) == 1 + CRASH_GENERATIONS
    assert {f"controller/means/gen_{g:04d}.pt" for g in range(1, 4)} < set(files)
    return src, files


def _killed_at(cfg, d, crash: str) -> int:
    """Run the stage in a forked copy of this process with WM_CRASH_AT=crash; its exit code (-9: killed)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns to pytest
        try:
            os.environ[CRASH_ENV] = crash
            train_controller(cfg, d, progress=False)
            os._exit(0)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.parametrize("file, phase", CRASHES)
def test_a_kill_at_any_write_then_a_rerun_gives_the_uninterrupted_files(uninterrupted, tmp_path, file, phase):
    src, expected = uninterrupted
    d = _pre_controller_copy(src, tmp_path / "run")
    cfg = make_config("DoomTakeCover", "smoke", generations=CRASH_GENERATIONS)
    text, n = CRASH_POINTS[file]
    assert _killed_at(cfg, d, f"{phase}:{n}:{text}") == -9
    train_controller(cfg, d, progress=False)
    assert _controller_files(d) == expected
    assert not list(d.rglob("*.tmp"))


def test_chosen_generation_is_the_first_best_evaluation_or_else_the_best_candidate():
    rows = [
        dict(generation=g, fitness_best=f, eval_mean=e)
        for g, f, e in [(1, 5.0, ""), (2, 6.0, 7.0), (3, 9.0, ""), (4, 8.0, 7.0)]
    ]
    state = dict(rows=rows, generation=4, best_eval=7.0, best_eval_params=np.zeros(2), best_fitness=9.0)
    assert chosen_generation(state) == 2  # the mean kept: the first to evaluate best
    assert chosen_generation(dict(state, best_eval_params=None)) == 3  # no evaluation yet: the best candidate's
    assert chosen_generation(dict(state, rows=[])) == 4


def test_the_controller_kept_is_the_best_evaluated_mean_and_names_its_generation(smoke_runs):
    d = smoke_runs("DoomTakeCover")
    ckpt = torch.load(d / rundir.CONTROLLER, weights_only=True)
    log = read_csv(rundir.log_path(d, "controller"))
    best = int(log["generation"][int(np.nanargmax(log["eval_mean"]))])
    assert ckpt["chosen_generation"] == best and ckpt["generation"] == int(log["generation"][-1])
    assert torch.equal(ckpt["params"], torch.load(rundir.mean_path(d, best), weights_only=True)["params"])


_OPENED: list[str] | None = None  # while a test counts them: the files of V and M opened by this process


def _count_opens(event, args):
    if (
        _OPENED is not None
        and event == "open"
        and isinstance(args[0], (str, os.PathLike))
        and os.fspath(args[0]).endswith((str(rundir.VISION), str(rundir.MEMORY)))
    ):
        _OPENED.append(os.fspath(args[0]))


sys.addaudithook(_count_opens)


def test_a_search_loads_v_and_m_once_even_when_worker_processes_score_it(run_copy):
    """V and M are read from disk once per search: the evaluator (here local worker processes, which get the
    weights from this process) plays with the agent loaded by the search."""
    global _OPENED
    from wmlib.agent import Agent
    from wmlib.evaluators import choose
    from wmlib.processes import ProcessPoolEvaluator

    d = run_copy("DoomTakeCover")
    shutil.rmtree(d / "controller")
    cfg = make_config("DoomTakeCover", "smoke", in_dream=False, workers=2, max_steps=20, generations=1)
    _OPENED = []
    try:
        Agent.from_run(d, cfg.game).close()
        once = list(_OPENED)
        _OPENED.clear()
        with choose(cfg, d) as ev:
            assert isinstance(ev, ProcessPoolEvaluator)
            train_controller(cfg, d, ev, progress=False)
        assert _OPENED == once and len(once) == 2
        _OPENED.clear()
        train_controller(dataclasses.replace(cfg, generations=2), d, progress=False)  # its own evaluator
        assert _OPENED == once
    finally:
        _OPENED = None
    assert read_csv(rundir.log_path(d, "controller"))["generation"].tolist() == [1, 2]
