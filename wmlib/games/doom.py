"""ViZDoom Take Cover as a gymnasium environment with 64x64 frames (the paper's DoomTakeCover).

The scenario is ViZDoom's bundled ``take_cover.cfg``: fireballs come from the far wall and the agent can only strafe
left or right; the reward is +1 for every tic survived. As in the paper an episode ends on death or after 2100 tics
(60 seconds of game time). The game runs headless (no window, no display needed). No HUD is rendered, so the whole
160x120 RGB screen is resized to 64x64.

ViZDoom's engine writes its own files where it starts: its settings (``_vizdoom.ini``) and a folder
``_vizdoom/``. Each environment gives its engine a private temporary folder for them, so the game runs from any
working directory, a read-only one included, and leaves nothing in it. ``close`` (or, for a game left open, the
garbage collector or the interpreter's exit) quits the engine first, which saves its settings there, and then
removes the folder.

The engine is a process of its own, which does not notice when the process that plays it dies without closing it
(``kill -9``, a worker killed by its pool): it would wait, idle, for ever. So on Linux each engine gets a watcher, a
small shell process reading a pipe whose writing end only the playing process holds. ``close`` tells it the game
was closed; a playing process that died closes the pipe without a word, and the watcher then kills the engine and
removes its folder.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import weakref

import gymnasium as gym
import numpy as np
from PIL import Image

from . import ENGINE_WATCHER

try:
    import vizdoom as vzd
except ImportError as exc:  # pragma: no cover - exercised only where ViZDoom is absent
    raise ImportError(
        "DoomTakeCover needs ViZDoom, which is not installed: pip install 'vizdoom>=1.2' "
        "(CarRacing-v3 works without it)"
    ) from exc

FRAME_SIZE = 64
MAX_STEPS = 2100  # paper: episodes are capped at 2100 time steps


def preprocess_screen(screen: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB screen -> (64, 64, 3) uint8 frame."""
    return np.asarray(Image.fromarray(screen).resize((FRAME_SIZE, FRAME_SIZE), Image.BILINEAR), dtype=np.uint8)


_CLONE_FS = 0x200  # unshare(2): this thread's working directory becomes its own
_CHDIR_LOCK = threading.Lock()


def start_in(folder: str, init) -> None:
    """Call ``init`` (which starts the engine's process) so that the process starts in ``folder``, where the engine
    makes its files. On Linux ``init`` runs in a thread of its own whose working directory alone is changed;
    elsewhere (or where that is not allowed) the whole process's is, for the call, under a lock."""
    if sys.platform.startswith("linux") and _start_in_own_thread(folder, init):
        return
    with _CHDIR_LOCK:
        here = os.getcwd()
        os.chdir(folder)
        try:
            init()
        finally:
            os.chdir(here)


def _start_in_own_thread(folder: str, init) -> bool:
    """``init()`` in a new thread that has a working directory of its own (``unshare(CLONE_FS)``), ``folder``;
    False, with nothing done, where the system refuses such a thread."""
    outcome = []

    def run():
        try:
            own = ctypes.CDLL(None, use_errno=True).unshare(_CLONE_FS) == 0
        except (OSError, AttributeError):  # no C library to ask, or one without unshare
            own = False
        if not own:
            outcome.append(False)
            return
        try:
            os.chdir(folder)
            init()
            outcome.append(True)
        except BaseException as exc:  # raised again in the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=run, name="vizdoom-start")
    thread.start()
    thread.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


# The watcher of the engine started in folder $1: reads the engine's pid (a line; empty where it is not known), then
# a second line. "closed": the player closed the game, nothing to do. Anything else (the pipe closed without a word:
# the player died): kill the engine (the pid read, if it is still that engine; where the player died before it could
# say, the process whose command line names the folder's settings file) and remove the folder.
_WATCH = """read -r pid; read -r word; [ "$word" = closed ] && exit 0
if [ -z "$pid" ]; then
  for f in /proc/[0-9]*/cmdline; do
    case "$(tr '\\0' ' ' < "$f" 2>/dev/null)" in *" $1/_vizdoom.ini "*) pid=${f#/proc/}; pid=${pid%/cmdline};; esac
  done
fi
[ -n "$pid" ] && grep -qsF -- "$1/" "/proc/$pid/cmdline" && kill -9 "$pid"
sleep 0.2; rm -rf -- "$1"
"""


def engine_pid(folder: str) -> int | None:
    """The pid of this process's ViZDoom engine started in ``folder`` (its command line names the settings file
    there), or None where there is none or no /proc to ask."""
    me, needle = str(os.getpid()), os.path.join(folder, "").encode()
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = f.read().rsplit(b")", 1)[1].split()[1]  # after the command name, which may hold spaces
            if ppid.decode() != me:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle in f.read():
                    return int(entry)
        except (OSError, IndexError):
            continue
    return None


class EngineWatch:
    """Kills the engine started in ``folder`` (and removes the folder) if this process dies before :meth:`closed`
    is called. Started before the engine, so that no moment of the engine's life goes unwatched; :meth:`engine`
    then names it."""

    def __init__(self, folder: str):
        read_end, self._write_end = os.pipe()  # both not inherited by the programs this process starts
        try:
            self._proc = subprocess.Popen(
                ["sh", "-c", _WATCH, ENGINE_WATCHER, folder],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C meant for the player does not reach the watcher
            )
        except BaseException:
            os.close(self._write_end)
            raise
        finally:
            os.close(read_end)

    def _say(self, line: str) -> None:
        try:
            os.write(self._write_end, line.encode() + b"\n")
        except OSError:  # the watcher is gone already
            pass

    def engine(self, pid: int | None) -> None:
        """The engine's pid (None: not found; the watcher then looks for it by its folder)."""
        self._say("" if pid is None else str(pid))

    def closed(self) -> None:
        """The game was closed (or never started): the watcher ends without touching anything."""
        self._say("closed")
        os.close(self._write_end)
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a shell that cannot read two lines
            self._proc.kill()


def _shut_down(game, watch: EngineWatch | None, folder: str) -> None:
    """Closes a game: the engine first (it saves its settings in its folder as it quits), then the watcher (told
    that the game was closed), then the folder."""
    try:
        if game is not None:
            game.close()
    finally:
        if watch is not None:
            watch.closed()
        shutil.rmtree(folder, ignore_errors=True)


class DoomTakeCoverWM(gym.Env):
    """Take Cover with 64x64 observations and the paper's one-number action.

    Action: Box(1) in {-1, 0, 1} (left, stay, right); any value < -1/3 strafes left, > 1/3 right.
    The ViZDoom process starts on the first ``reset`` and ``reset(seed=s)`` replays the same episode for the same
    seed and actions.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 35}

    def __init__(self, max_steps: int = MAX_STEPS, render_mode: str | None = None):
        self.max_steps = int(max_steps)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0, 255, (FRAME_SIZE, FRAME_SIZE, 3), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._game = None
        self._files = None  # the engine's own files: a temporary folder while the game runs
        self._shutdown = None  # closes the game, its watcher and its folder, in that order (weakref.finalize)
        self._watch = None  # the engine's watcher (EngineWatch) while the game runs, on Linux
        self._screen = np.zeros((120, 160, 3), np.uint8)
        self._t = 0

    def _start(self):
        folder = tempfile.mkdtemp(prefix="wm-vizdoom-")
        watch = None
        try:
            game = vzd.DoomGame()
            game.load_config(os.path.join(vzd.scenarios_path, "take_cover.cfg"))
            game.set_doom_config_path(os.path.join(folder, "_vizdoom.ini"))
            game.set_window_visible(False)
            game.set_sound_enabled(False)
            game.set_screen_format(vzd.ScreenFormat.RGB24)
            game.set_screen_resolution(vzd.ScreenResolution.RES_160X120)
            game.set_mode(vzd.Mode.PLAYER)
            game.set_episode_timeout(0)  # we truncate at max_steps ourselves
            watch = EngineWatch(folder) if sys.platform.startswith("linux") else None
            start_in(folder, game.init)
        except BaseException:
            if watch is not None:
                watch.engine(None)
            _shut_down(None, watch, folder)
            raise
        self._game, self._watch, self._files = game, watch, folder
        # close(), the garbage collector or the interpreter's exit (a Dask worker's, say) shuts the game down, once
        # and in order: one finalizer, so that the folder never goes before the engine has saved its settings there
        self._shutdown = weakref.finalize(self, _shut_down, game, watch, folder)
        if watch is not None:
            watch.engine(engine_pid(folder))

    @property
    def engine_folder(self) -> str | None:
        """The temporary folder where the running engine keeps its own files (None while it is not running)."""
        return self._files

    def _observe(self) -> np.ndarray:
        state = self._game.get_state()
        if state is not None:  # None once the episode is over: keep the last screen
            self._screen = state.screen_buffer
        return preprocess_screen(self._screen)

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        if self._game is None:
            self._start()
        if seed is None:
            seed = int(self.np_random.integers(2**31 - 1))
        self._game.set_seed(int(seed) % (2**31 - 1))
        self._game.new_episode()
        self._t = 0
        return self._observe(), {}

    def step(self, action):
        a = float(np.asarray(action, dtype=np.float32).reshape(-1)[0])
        buttons = [int(a < -1.0 / 3.0), int(a > 1.0 / 3.0)]  # MOVE_LEFT, MOVE_RIGHT
        reward = float(self._game.make_action(buttons))
        self._t += 1
        terminated = bool(self._game.is_episode_finished())
        truncated = (not terminated) and self._t >= self.max_steps
        return self._observe(), reward, terminated, truncated, {}

    def render(self):
        return self._screen.copy()

    def screen(self) -> np.ndarray:
        """The game's own 160x120 screen behind the current 64x64 frame."""
        return self._screen.copy()

    def close(self):
        if self._shutdown is not None:
            self._shutdown()
        self._game = self._watch = self._files = self._shutdown = None
