"""Average controllers: one controller whose parameters are the mean of several others'.

    wm average --out FILE CONTROLLER CONTROLLER [CONTROLLER ...]

The use it is made for: a CMA-ES search on a plateau. There the search's mean no longer climbs; each generation the
noisy fitness pushes it a little one way or another, so the mean of any one generation sits at a random point of a
wander around the best parameters. Averaging the means of several generations (Polyak-Ruppert averaging of the
search's iterates) cancels part of that wander. The means to average are those the search evaluated, kept in
``controller/means/gen_NNNN.pt`` (a CONTROLLER may also be any controller checkpoint or run directory). Whether the
average plays better is for ``wm compare`` to say, on fresh episodes; averaging guarantees nothing
(two controllers from different searches need not lie in one basin, and their average can drive badly).

The result is a controller checkpoint like the search's own: ``wm test``, ``compare`` and ``--start_from`` read it.
It records what it averages (``averaged``: each one's file and generation); its generation is the latest of theirs.
An existing FILE is never overwritten.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import numpy as np
import torch

from .controller import load_controller
from .io import atomic_torch_save


def average(controllers, out) -> dict:
    """Write to ``out`` the controller whose parameters are the mean of ``controllers``' (see the module docstring);
    returns the checkpoint written."""
    out = Path(out)
    if len(controllers) < 2:
        raise ValueError(f"name at least two controllers to average (got {len(controllers)})")
    if out.exists():
        raise ValueError(f"--out {out}: already exists; name a new file (nothing is overwritten)")
    loaded = [load_controller(c) for c in controllers]
    spec = loaded[0][1].get("spec")
    for _, ckpt in loaded[1:]:
        if ckpt.get("spec") != spec:
            raise ValueError(
                f"{ckpt['path']}: a controller for {ckpt.get('spec')}, but {loaded[0][1]['path']} is "
                f"one for {spec}; only controllers of one shape average"
            )
    # the mean in float32, element by element: the parameters the agents play with are float32
    params = torch.from_numpy(np.stack([p for p, _ in loaded]).mean(axis=0))
    latest = max(loaded, key=lambda pc: int(pc[1].get("generation", -1)))[1]
    result = dict(
        params=params,
        best=params,
        mean=params,
        spec=spec,
        generation=int(latest.get("generation", -1)),
        config=latest.get("config"),
        start_from=latest.get("start_from"),
        start_generation=latest.get("start_generation"),
        averaged=[dict(path=ckpt["path"], generation=int(ckpt.get("generation", -1))) for _, ckpt in loaded],
    )
    atomic_torch_save(out, result)
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``wm average``."""
    p.add_argument(
        "controllers",
        nargs="+",
        help="controller checkpoints (e.g. a run's controller/means/gen_NNNN.pt) "
        "or run directories (their chosen controller)",
    )
    p.add_argument("--out", required=True, help="the controller checkpoint to write (a new file)")


def run(args) -> int:
    """``wm average``: write the average and say what it averages. Errors propagate to the command line, which names
    them."""
    result = average(args.controllers, args.out)
    names = ", ".join(f"{a['path']} (generation {a['generation']})" for a in result["averaged"])
    print(f"{args.out}: the mean of {len(result['averaged'])} controllers: {names}")
    return 0


if __name__ == "__main__":  # `python -m wmlib.average ...` is `wm average ...`: the command line sits on top of the
    # library's layers, so it is looked up by name when this module runs as a script, never imported by it
    sys.exit(importlib.import_module("wmlib.cli").main(["average", *sys.argv[1:]]))
