"""M training speed: timesteps/s of the MDN-RNN's training step at both games' paper sizes.

    python benchmarks/memory_train.py            # ~3 minutes
    python benchmarks/memory_train.py --quick    # batch 32 x 100 only
    python benchmarks/memory_train.py --device cuda   # M trains on a GPU (windows drawn on the CPU, then moved)

Models at the paper's sizes, randomly initialised (speed does not depend on training):

| game          | N_z | LSTM | action | extras                      | paper batch x sequence |
|---------------|-----|------|--------|-----------------------------|------------------------|
| CarRacing-v3  | 32  | 256  | 3      |                             | 100 x 999              |
| DoomTakeCover | 64  | 512  | 1      | restart flag + done head    | 100 x 500 (code)       |

Data: synthetic encoded series (mu, logvar, actions, dones; 24 episodes of 1000 steps), written with
``episodes.save_arrays`` and read through ``wmlib.memory.SeriesStream`` as ``train_memory`` does. One step is what
``train_memory`` does per batch: draw the windows (z re-sampled from mu, logvar), forward, the MDN loss (+ done
loss), backward, gradient clipping, Adam. Timesteps/s = batch x sequence / step time (median over steps, after one
warm-up step), for 1 and 2 torch threads (on a machine shared with other programs, two OpenMP threads can be slower
than one: they wait for each other). ``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``;
``wmlib.devices``) trains M there, as ``train_memory(..., device=...)`` does: the windows are drawn on the CPU and
moved, and a step is timed to the end of the device's work. The results file records the device (the GPU's name, or
the CPU's). Results go to ``benchmarks/results/memory_train.json``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import (  # first: wmlib
    RESULTS,
    Timer,
    arg_parser,
    device_name,
    machine,
    median,
    print_load_average,
    synchronize,
    write_results,
)

from wmlib import devices, episodes
from wmlib.memory import Memory, SeriesStream, memory_loss

GAMES = {  # z_dim, hidden, action dim, Doom extras, paper (batch, seq_len)
    "CarRacing-v3": (32, 256, 3, False, (100, 999)),
    "DoomTakeCover": (64, 512, 1, True, (100, 500)),
}


def synthetic_series(d: Path, z_dim: int, action_dim: int, n: int = 24, length: int = 1000) -> list[Path]:
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        dones = np.zeros(length, bool)
        dones[-1] = True
        f = episodes.series_dir(d) / f"ep_{i:06d}.npz"
        episodes.save_arrays(
            f,
            dict(synthetic=True),
            mu=rng.normal(0, 1, (length, z_dim)).astype(np.float32),
            logvar=np.full((length, z_dim), -2.0, np.float32),
            actions=rng.uniform(-1, 1, (length, action_dim)).astype(np.float32),
            rewards=np.ones(length, np.float32),
            dones=dones,
        )
        files.append(f)
    return files


def bench(game: str, batch: int, seq_len: int, steps: int, threads: int, device: torch.device | str = "cpu") -> dict:
    z_dim, hidden, action_dim, doom, _ = GAMES[game]
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="wm-memory-bench-") as d:
        stream = SeriesStream(synthetic_series(Path(d), z_dim, action_dim), z_dim)
    torch.manual_seed(0)
    model = Memory(z_dim, action_dim, hidden, 5, predict_done=doom, restart_flag=doom).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    times = []
    for step in range(steps + 1):  # the first step warms up
        with Timer() as t:
            b = stream.batch(np.random.default_rng([0, step]), batch, seq_len)
            b = {k: devices.to(v, device) for k, v in b.items()}
            out, _ = model(b["z"][:, :-1], b["actions"][:, :-1], b["restart"][:, :-1])
            loss, _, _ = memory_loss(out, b["z"][:, 1:], b["dones"][:, :-1], 1.0 - b["restart"][:, 1:])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            synchronize(device)
        if step:
            times.append(t.wall)
    step_s = median(times)
    return dict(
        game=game,
        z_dim=z_dim,
        hidden_dim=hidden,
        batch=batch,
        seq_len=seq_len,
        steps=steps,
        threads=threads,
        step_seconds=step_s,
        timesteps_per_s=batch * seq_len / step_s,
        step_times=times,
    )


def main(argv=None):
    p = arg_parser(__doc__)
    p.add_argument("--quick", action="store_true", help="batch 32 x 100 only, fewer steps")
    p.add_argument("--steps", type=int, default=6, help="timed steps at batch 32 x 100")
    p.add_argument("--paper-steps", type=int, default=2, help="timed steps at the paper's batch x sequence")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to measure")
    p.add_argument("--device", default="cpu", help="where M trains: auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--out", default=str(RESULTS / "memory_train.json"))
    args = p.parse_args(argv)
    try:  # 'auto' becomes the device it picks; a device this machine lacks is named before any work
        device = devices.resolve(args.device)
    except ValueError as exc:
        p.error(str(exc))
    print(f"device: {device_name(device)}")
    t0 = time.time()
    shapes = [(32, 100, args.steps if not args.quick else 3)]
    results = []
    print(f"{'game':14s} {'batch x seq':>12s} {'threads':>7s} {'step s':>8s} {'timesteps/s':>12s}")
    for game, (*_, (pb, ps)) in GAMES.items():
        for b, s, n in shapes + ([] if args.quick else [(pb, ps, args.paper_steps)]):
            for threads in args.threads:
                r = bench(game, b, s, n, threads, device)
                results.append(r)
                print(
                    f"{game:14s} {f'{b} x {s}':>12s} {threads:7d} {r['step_seconds']:8.2f} "
                    f"{r['timesteps_per_s']:12.0f}",
                    flush=True,
                )
    load = print_load_average()
    out = dict(
        benchmark="memory_train",
        quick=args.quick,
        device=device_name(device),
        seconds=round(time.time() - t0, 1),
        data="synthetic series (24 episodes x 1000 steps) through SeriesStream",
        results=results,
        machine=machine(args.threads, omp_wait_policy=True, load=load),
    )
    write_results(args.out, out)
    print(f"wrote {args.out} ({out['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
