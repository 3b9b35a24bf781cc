"""What the benchmark scripts share: making ``wmlib`` importable from a checkout, the results folder, the machine
facts every results file records (and the device's name), medians, timing (and waiting for a GPU's work), writing a
results file, and a smoke-scale run to measure.

Each script imports it before anything from ``wmlib``. Run as ``python benchmarks/<name>.py`` (from any directory),
Python puts this folder first on ``sys.path``, so ``from common import ...`` finds this module; importing it puts
the checkout's root on ``sys.path`` when ``wmlib`` is not installed. Nothing from ``wmlib`` is imported here, except
``wmlib.devices`` inside :func:`device_name` and ``wmlib.cli`` inside :func:`smoke_run`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"

if importlib.util.find_spec("wmlib") is None:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))


def arg_parser(doc: str) -> argparse.ArgumentParser:
    """A script's argument parser, described by the first paragraph of its docstring."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0])


def median(xs, digits: int | None = None) -> float:
    """The median of ``xs`` (any iterable of numbers), rounded to ``digits`` if given."""
    m = statistics.median(xs)
    return m if digits is None else round(m, digits)


class Timer:
    """Wall-clock and CPU seconds spent in ``with`` blocks: ``with Timer() as t: ...``, then ``t.wall``, ``t.cpu``.

    The same timer used for several blocks adds them up. ``cpu_clock`` is ``time.process_time`` (this process, all
    its threads) or ``time.thread_time`` (the calling thread only)."""

    def __init__(self, cpu_clock=time.process_time):
        self.cpu_clock = cpu_clock
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Timer:
        self._w0, self._c0 = time.perf_counter(), self.cpu_clock()
        return self

    def __exit__(self, *exc) -> bool:
        self.wall += time.perf_counter() - self._w0
        self.cpu += self.cpu_clock() - self._c0
        return False


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages, rounded to 2 decimals."""
    return [round(x, 2) for x in os.getloadavg()]


def print_load_average() -> list[float]:
    """Print the load average with the CPU count (at the end of a run); returns the load average."""
    load = load_average()
    print(f"load average at the end {load} on {os.cpu_count()} CPUs")
    return load


def torch_version() -> str:
    """torch's version, without importing torch if this process has not."""
    torch = sys.modules.get("torch")
    return torch.__version__ if torch is not None else importlib.metadata.version("torch")


def machine(
    torch_threads=None,
    *,
    with_torch: bool | None = None,
    omp_wait_policy: bool = False,
    load: list[float] | None = None,
    **extra,
) -> dict:
    """The machine facts a results file records: CPU count, torch threads (``torch_threads``, when given: a number,
    a list or a note) and torch's version (when ``with_torch``, by default when ``torch_threads`` is given), the
    Python version, ``OMP_WAIT_POLICY`` (when ``omp_wait_policy``), the load average at the end (``load``, or taken
    now), then ``extra`` (other libraries' versions, ...)."""
    facts: dict = dict(cpu_count=os.cpu_count())
    if torch_threads is not None:
        facts["torch_threads"] = torch_threads
    if with_torch if with_torch is not None else torch_threads is not None:
        facts["torch"] = torch_version()
    facts["python"] = platform.python_version()
    if omp_wait_policy:
        facts["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    facts["load_average_at_end"] = load if load is not None else load_average()
    facts.update(extra)
    return facts


def device_name(device: str = "cpu") -> str:
    """The device a results file records, from a ``--device`` value: the GPU's name (``cuda:0: NVIDIA H100 ...``), or
    ``cpu: <processor>`` (:func:`wmlib.devices.name`)."""
    from wmlib import devices  # (wmlib only once this module has made it importable)

    return devices.name(device)


def synchronize(device) -> None:
    """Wait until ``device`` has done the work queued on it: a GPU's timing must end when its work does, not when
    the work was queued (nothing to wait for on the CPU)."""
    import torch  # (only the scripts that time torch work call this)

    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def write_results(path, result: dict) -> Path:
    """Write ``result`` as indented JSON to ``path`` (creating its folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def smoke_run(parent: Path, game: str = "DoomTakeCover") -> Path:
    """A complete run of ``game`` at the smoke preset (``wm run --preset smoke``) in ``parent/run``."""
    from wmlib.cli import main as wm

    d = Path(parent) / "run"
    if wm(["run", "--game", game, "--preset", "smoke", "--data_dir", str(d), "--quiet"]) != 0:
        raise SystemExit("wm run --preset smoke failed")
    return d
