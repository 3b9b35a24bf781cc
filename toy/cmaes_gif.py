"""Write an animated GIF of CMA-ES searching the shifted Schaffer function.

    python -m toy.cmaes_gif --out cmaes.gif
    python -m toy.cmaes_gif --out small.gif --popsize 6 --seed 3 --generations 80

Each frame is one generation: the landscape, the population, the mean with its path so far, and the 2-sigma
ellipse of the search distribution N(mean, sigma^2 C).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v3 as iio

from .cmaes import run, schaffer
from .plots import CMAESPlayer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m toy.cmaes_gif", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("cmaes.gif"), help="GIF file to write (default: cmaes.gif)")
    p.add_argument("--x0", type=float, nargs=2, default=(-20.0, 30.0), metavar=("X1", "X2"), help="start point")
    p.add_argument("--sigma0", type=float, default=10.0, help="initial step size (default: 10)")
    p.add_argument("--popsize", type=int, default=64, help="population size (default: 64, as in the paper)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    p.add_argument("--generations", type=int, default=50, help="number of generations / frames (default: 50)")
    p.add_argument("--fps", type=float, default=5.0, help="frames per second (default: 5)")
    p.add_argument("--dpi", type=int, default=80, help="resolution of each frame (default: 80)")
    return p


def main(argv=None) -> Path:
    args = build_parser().parse_args(argv)
    snapshots = run(schaffer, args.x0, args.sigma0, popsize=args.popsize, seed=args.seed, generations=args.generations)
    player = CMAESPlayer(snapshots, schaffer)
    frames = [player.frame(g, dpi=args.dpi) for g in range(len(snapshots))]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # GIF frame durations are in milliseconds; loop=0 repeats forever.
    iio.imwrite(args.out, frames, duration=round(1000.0 / args.fps), loop=0)
    final = snapshots[-1]
    print(
        f"wrote {args.out}: {len(frames)} frames of {frames[0].shape[1]}x{frames[0].shape[0]} px; "
        f"final mean ({final.mean[0]:.3f}, {final.mean[1]:.3f}), best f {final.best_f:.2g}"
    )
    return args.out


if __name__ == "__main__":
    main()
