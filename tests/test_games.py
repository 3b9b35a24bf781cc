"""wmlib.games: the two real games behind one interface, each usable without the other's engine."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from wmlib.games import GAMES, action_dim, check_game, controller_to_action, make_env
from wmlib.games.doom import start_in

REPO = Path(__file__).resolve().parents[1]


def test_unknown_game_lists_valid_ones():
    with pytest.raises(ValueError, match="CarRacing-v3, DoomTakeCover"):
        check_game("Pong")


def test_doom_truncates_at_max_steps():
    env = make_env("DoomTakeCover", max_steps=5)
    try:
        env.reset(seed=1)
        out = [env.step(np.array([0.0])) for _ in range(5)]
    finally:
        env.close()
    assert [o[1] for o in out] == [1.0] * 5  # +1 per tic survived
    assert out[-1][3] and not any(o[3] for o in out[:-1])


def test_action_mapping():
    car = controller_to_action("CarRacing-v3", np.array([[-0.5, -1.0, -0.3], [1.0, 1.0, 0.7]], np.float32))
    assert np.allclose(car, [[-0.5, 0.0, 0.0], [1.0, 1.0, 0.7]])
    doom = controller_to_action("DoomTakeCover", np.array([[-0.9], [-0.2], [0.2], [0.5]], np.float32))
    assert doom[:, 0].tolist() == [-1.0, 0.0, 0.0, 1.0]
    t = controller_to_action("DoomTakeCover", torch.tensor([[0.34]]))
    assert isinstance(t, torch.Tensor) and t.item() == 1.0


@pytest.mark.parametrize("game", GAMES)
def test_the_games_frames_and_actions(game):
    env = make_env(game, max_steps=3)
    try:
        obs, _ = env.reset(seed=0)
        assert obs.shape == env.observation_space.shape == (64, 64, 3) and obs.dtype == np.uint8
        assert env.action_space.shape == (action_dim(game),)
        out = controller_to_action(game, np.zeros((1, 3 if game == "CarRacing-v3" else 1), np.float32))
        assert out.shape == (1, action_dim(game)) and env.action_space.contains(out[0])
        steps = [env.step(out[0]) for _ in range(3)]
    finally:
        env.close()
    assert steps[-1][3] or steps[-1][2]  # truncated at max_steps (or over already)
    with pytest.raises(ValueError, match="valid games"):
        action_dim("Pong")


BLOCK = "import sys; sys.modules[{mod!r}] = None\n"


def test_carracing_works_without_vizdoom_and_doom_says_what_is_missing():
    code = BLOCK.format(mod="vizdoom") + (
        "from wmlib.games import make_env\n"
        "env = make_env('CarRacing-v3', max_steps=3); env.reset(seed=0); env.close()\n"
        "try:\n    make_env('DoomTakeCover')\nexcept ImportError as e:\n    print('ERR', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "ERR DoomTakeCover needs ViZDoom" in out and "pip install" in out


def test_doom_works_without_box2d():
    code = BLOCK.format(mod="Box2D") + (
        "from wmlib.games import make_env\n"
        "env = make_env('DoomTakeCover', max_steps=3); env.reset(seed=0); env.close(); print('OK')\n"
        "import wmlib.cli, wmlib.evaluators\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout


def read_only(folder: Path) -> bool:
    """Make ``folder`` read-only: mode 0o555 and, for root (whom modes do not stop), immutable where the file system
    allows it. Returns whether writing in it now really fails."""
    folder.chmod(0o555)
    if os.geteuid() == 0 and shutil.which("chattr"):
        subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    try:
        (folder / "probe").touch()
    except OSError:
        return True
    (folder / "probe").unlink()
    return False


def writable(folder: Path) -> None:
    if os.geteuid() == 0 and shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)


def test_doom_starts_from_a_read_only_working_directory_and_leaves_nothing_there(tmp_path):
    """ViZDoom's engine writes its settings file and a folder where it starts: they go to a temporary folder of the
    environment's (removed by close), not to the working directory, which may be read-only."""
    here = tmp_path / "here"
    here.mkdir()
    code = (
        "import os, numpy as np\nfrom wmlib.games import make_env\n"
        "env = make_env('DoomTakeCover', max_steps=3)\nenv.reset(seed=0)\nfolder = env.engine_folder\n"
        "print('ENGINE', sorted(os.listdir(folder)))\n"
        "print('REWARDS', [env.step(np.array([1.0]))[1] for _ in range(3)])\n"
        "env.close()\nprint('REMOVED', not os.path.exists(folder))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    locked = read_only(here)
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=here, env=env, capture_output=True, text=True, timeout=300
        )
    finally:
        writable(here)
    assert out.returncode == 0, f"exit {out.returncode} (read-only: {locked}):\n{out.stdout}\n{out.stderr}"
    assert "ENGINE ['_vizdoom']" in out.stdout and "REWARDS [1.0, 1.0, 1.0]" in out.stdout
    assert "REMOVED True" in out.stdout
    assert list(here.iterdir()) == []  # nothing written where it started


def test_the_engine_starts_in_the_folder_it_is_given_and_the_caller_stays_where_it_is(tmp_path):
    seen = []
    before = os.getcwd()
    start_in(str(tmp_path), lambda: seen.append(os.getcwd()))
    assert seen == [str(tmp_path)] and os.getcwd() == before
    with pytest.raises(ZeroDivisionError):  # what the start raises, the caller gets
        start_in(str(tmp_path), lambda: 1 / 0)
    assert os.getcwd() == before


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the engine's watcher needs /proc")
@pytest.mark.parametrize("death", ["kill -9", "orphaned worker", "kill -9, the engine not yet named"])
def test_a_player_that_dies_without_closing_its_game_takes_its_engine_and_its_folder_with_it(death):
    """ViZDoom's engine does not notice that the process playing it died: its watcher kills it and removes its
    folder, whether the player was killed (SIGKILL: no close, no atexit), was a worker that lost its parent
    (farm.exit_orphaned, which kills its children but spares the watcher), or died before it told the watcher
    which process the engine is (the watcher then finds it by its folder)."""
    code = (
        "import sys, time\nfrom wmlib.games import make_env\nfrom wmlib.games import doom\n"
        "from wmlib.farm import exit_orphaned\nfind = doom.engine_pid\n"
        f"if {death.endswith('named')}:\n    doom.engine_pid = lambda folder: None\n"
        "env = make_env('DoomTakeCover', max_steps=3)\nenv.reset(seed=0)\n"
        "print(find(env.engine_folder), env.engine_folder, flush=True)\nsys.stdin.readline()\nexit_orphaned()\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    player = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        pid, folder = player.stdout.readline().split()
        engine = int(pid)
        assert _alive(engine) and os.path.isdir(folder)
        if death.startswith("kill -9"):
            player.kill()
        else:
            player.stdin.write("go\n")
            player.stdin.flush()
        assert player.wait(timeout=30) != 0
    finally:
        player.kill()
        player.wait()
    deadline = time.monotonic() + 10
    while (_alive(engine) or os.path.exists(folder)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(engine), "the engine outlived the process that played it"
    assert not os.path.exists(folder), "the engine's folder outlived the process that played it"


def test_closing_a_game_ends_its_watcher_and_leaves_nothing():
    env = make_env("DoomTakeCover", max_steps=3)
    env.reset(seed=0)
    folder, watch = env.engine_folder, env._watch
    assert (watch is not None) == sys.platform.startswith("linux")
    env.reset(seed=1)  # the same engine plays on
    assert env._watch is watch
    env.close()
    assert not os.path.exists(folder)
    if watch is not None:
        assert watch._proc.returncode == 0  # told "closed": it touched nothing


@pytest.mark.parametrize("kept_in", ["a global", "builtins"])
def test_a_process_that_exits_with_its_game_open_closes_the_engine_before_removing_its_folder(kept_in):
    """A process may end with a game still open (a Dask worker does, when its cluster closes): at the interpreter's
    exit the engine is closed first, and saves its settings, and then its folder goes. (The folder used to go
    first, and each engine complained that it could not save its settings.)"""
    keep = "env" if kept_in == "a global" else "import builtins\nbuiltins.kept"
    code = (
        "from wmlib.games import make_env\nfrom wmlib.games import doom\n"
        f"{keep} = env = make_env('DoomTakeCover', max_steps=3)\nenv.reset(seed=0)\nenv.step([1.0])\n"
        "print(doom.engine_pid(env.engine_folder), env.engine_folder, flush=True)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pid, folder = done.stdout.splitlines()[0].split()
    said = done.stdout + done.stderr  # the engine writes to the player's stdout
    assert "could not be saved" not in said, said
    assert not os.path.exists(folder)
    deadline = time.monotonic() + 10
    while _alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(int(pid)), "the engine outlived the process that played it"
