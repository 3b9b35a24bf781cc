"""Which torch device computes (``--device``), and the moves every stage makes between it and the CPU.

| name     | device                                                                                 |
|----------|----------------------------------------------------------------------------------------|
| cpu      | the default: every number this project has published was computed here                 |
| cuda     | the first CUDA GPU (``cuda:N``: the N-th)                                              |
| mps      | Apple's Metal GPU                                                                      |
| auto     | cuda if there is one, else mps if there is one, else cpu                               |

What stays the same on every device: models are made (and randomly initialised) on the CPU, then moved; checkpoints
hold CPU tensors (:func:`to_cpu`) and are loaded onto the CPU first, so a checkpoint written on a GPU loads on any
machine; the random numbers come from the CPU (torch's CPU generator for V's noise, the counter-based numbers of
:mod:`wmlib.seeding` for the dream), so every device draws the same ones.

What may differ off the CPU: float arithmetic runs in another order (cuBLAS, cuDNN; M's step runs the plain
equations, :func:`wmlib.memory.lstm_step`), so losses differ in their last bits and training drifts from the CPU's
numbers; in a dream, a rounding difference at a mixture component's boundary can send an episode elsewhere. Some GPU
kernels are not deterministic either, so a GPU run need not repeat itself bit for bit. No mixed precision: it has not
been measured to help these small models.
"""

from __future__ import annotations

import copy
import platform
from pathlib import Path

import torch

CHOICES = "auto, cpu, cuda, cuda:N or mps"


def resolve(name: str | torch.device | None) -> torch.device:
    """The torch device a ``--device`` value names (None: the CPU). An unknown name, or a device this machine does
    not have, is a ValueError naming the flag and what to use instead."""
    if isinstance(name, torch.device):
        name = str(name)
    text = "cpu" if name is None else str(name).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "mps" if _has_mps() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if text in ("mps", "mps:0"):
        if not _has_mps():
            raise ValueError(
                "--device mps: this machine has no MPS device (torch.backends.mps.is_available() is "
                "False); use --device cpu or auto"
            )
        return torch.device("mps", 0)  # with its index, as a tensor's .device: comparable with it
    kind, _, index = text.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ValueError(f"--device {name}: expected {CHOICES}")
    if not torch.cuda.is_available():
        raise ValueError(
            f"--device {text}: this machine has no CUDA device (torch.cuda.is_available() is False); "
            "use --device cpu or auto"
        )
    if index and int(index) >= torch.cuda.device_count():
        raise ValueError(
            f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s), "
            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        )
    return torch.device("cuda", int(index) if index else torch.cuda.current_device())


def _has_mps() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def of(module: torch.nn.Module) -> torch.device:
    """The device a model's weights are on."""
    return next(module.parameters()).device


def on(module: torch.nn.Module, device: torch.device):
    """``module`` when its weights are on ``device`` already, else a copy moved there: the caller's model stays
    where it was (``nn.Module.to`` would move it in place)."""
    if of(module) == device:
        return module
    return copy.deepcopy(module).to(device)


def to_cpu(obj):
    """``obj`` (a tensor, or dicts, lists and tuples of them: a state dict) with every tensor on the CPU: what a
    checkpoint holds. What is on the CPU already comes back as it is, the very object, so a CPU run saves exactly
    what it saved before; a dict that changes keeps its type and attributes (a state dict's ``_metadata``)."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        moved = {k: to_cpu(v) for k, v in obj.items()}
        if all(moved[k] is v for k, v in obj.items()):
            return obj
        out = copy.copy(obj)
        out.update(moved)
        return out
    if isinstance(obj, (list, tuple)):
        moved = [to_cpu(v) for v in obj]
        return obj if all(a is b for a, b in zip(moved, obj)) else type(obj)(moved)
    return obj


def to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch moved to ``device`` (asynchronously where the device allows; on the CPU, ``x`` itself)."""
    return x.to(device, non_blocking=device.type != "cpu")


def name(device: torch.device | str | None = None) -> str:
    """What a results file records: the GPU's name (``cuda:0 NVIDIA H100 80GB HBM3``), or ``cpu: <processor>``."""
    device = resolve(device)
    if device.type == "cuda":
        return f"{device}: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return f"mps: {platform.processor() or platform.machine()}"
    return f"cpu: {_processor()}"


def _processor() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what platform knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"
