"""Real-game evaluation: what the agent (V encode + M step + C) adds to the game's own step time.

    python benchmarks/real_eval.py                 # both games, 16 trials x up to 300 steps, 3 repeats (~3 min)
    python benchmarks/real_eval.py --quick         # 100 steps, 2 repeats
    python benchmarks/real_eval.py --games DoomTakeCover --max-len 1000

A candidate's trials are played in lockstep by ``Agent.play`` (16 game environments; V, M and C batched across
them), as a real-game worker process does it, with one torch thread. Models are randomly initialised at the paper's
sizes (speed does not depend on training: V with N_z 32 / 64, M with LSTM 256 / 512) and the controller's
parameters are drawn like CMA-ES's first generation, N(0, 0.1^2). CarRacing uses the default ``fast`` renderer.

Each repeat first times ``Agent.play`` with the environments wrapped so that every action is recorded, then replays
the same seeds and actions on the bare environments (the games are deterministic given both, which the script
checks by comparing the rewards), timing the game alone. The agent's overhead is

    overhead = (play time - game time) / game time

the fraction of time the agent adds on top of the game. The table gives medians over repeats; the wall clock and the
process CPU time (less disturbed by other programs on a shared machine) are both reported. Results go to
``benchmarks/results/real_eval.json``.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from common import RESULTS, Timer, arg_parser, machine, median, write_results  # first: wmlib from a checkout

from wmlib.agent import Agent, EvalSettings
from wmlib.games import make_env
from wmlib.memory import Memory
from wmlib.seeding import EVAL, episode_seed
from wmlib.vision import Vision

PAPER = {  # (N_z, LSTM units, restart flag + done head)
    "CarRacing-v3": (32, 256, False),
    "DoomTakeCover": (64, 512, True),
}


class Recorder:
    """A game environment that records the actions it is given (for the replay)."""

    def __init__(self, env):
        self.env, self.actions, self.seed = env, [], None

    def reset(self, seed=None, **kw):
        self.seed, self.actions = seed, []
        return self.env.reset(seed=seed, **kw)

    def step(self, action):
        self.actions.append(np.array(action, copy=True))
        return self.env.step(action)

    def close(self):
        self.env.close()


def replay(recorders) -> tuple[float, float, np.ndarray]:
    """Step the bare environments with the recorded seeds and actions, in lockstep as play does.

    Returns (wall seconds, CPU seconds, total reward per environment)."""
    envs = [r.env for r in recorders]
    actions = [r.actions for r in recorders]
    rewards = np.zeros(len(envs))
    with Timer() as timer:
        for env, r in zip(envs, recorders):
            env.reset(seed=r.seed)
        for t in range(max(len(a) for a in actions)):
            for i, env in enumerate(envs):
                if t < len(actions[i]):
                    rewards[i] += env.step(actions[i][t])[1]
    return timer.wall, timer.cpu, rewards


def bench_game(game: str, trials: int, max_len: int, repeats: int) -> dict:
    z_dim, hidden, doom = PAPER[game]
    torch.manual_seed(0)
    vision = Vision(z_dim).eval()
    memory = Memory(z_dim, 3 if game == "CarRacing-v3" else 1, hidden, 5, predict_done=doom, restart_flag=doom).eval()
    agent = Agent(game, vision, memory)
    params = np.random.default_rng(0).normal(0.0, 0.1, agent.spec.n_params).astype(np.float32)
    seeds = [episode_seed(0, 0, 0, t, EVAL) for t in range(trials)]
    settings = EvalSettings(mode="real", max_len=max_len, renderer="fast")
    agent._envs = [Recorder(make_env(game, max_steps=None, renderer="fast")) for _ in range(trials)]
    agent.play(params, seeds, EvalSettings(mode="real", max_len=5))  # start the games (ViZDoom processes) first
    runs = []
    for _ in range(repeats):
        with Timer() as play:
            scores, lengths, _ = agent.play(params, seeds, settings)
        play_wall, play_cpu = play.wall, play.cpu
        game_wall, game_cpu, rewards = replay(agent._envs)
        if not np.allclose(rewards, scores):
            raise RuntimeError(f"{game}: the replay did not reproduce the episodes ({rewards} vs {scores})")
        steps = int(lengths.sum())
        runs.append(
            dict(
                env_steps=steps,
                play_wall=play_wall,
                play_cpu=play_cpu,
                game_wall=game_wall,
                game_cpu=game_cpu,
                overhead_wall=(play_wall - game_wall) / game_wall,
                overhead_cpu=(play_cpu - game_cpu) / game_cpu,
            )
        )
    agent.close()
    med = {k: median(r[k] for r in runs) for k in runs[0]}
    return dict(
        game=game,
        trials=trials,
        max_len=max_len,
        z_dim=z_dim,
        hidden_dim=hidden,
        env_steps=int(med["env_steps"]),
        game_ms_per_step=1e3 * med["game_wall"] / med["env_steps"],
        agent_ms_per_step=1e3 * (med["play_wall"] - med["game_wall"]) / med["env_steps"],
        overhead_wall=med["overhead_wall"],
        overhead_cpu=med["overhead_cpu"],
        game_cpu_ms_per_step=1e3 * med["game_cpu"] / med["env_steps"],
        agent_cpu_ms_per_step=1e3 * (med["play_cpu"] - med["game_cpu"]) / med["env_steps"],
        repeats=runs,
    )


def main(argv=None):
    p = arg_parser(__doc__)
    p.add_argument("--games", nargs="+", default=list(PAPER), choices=list(PAPER))
    p.add_argument("--trials", type=int, default=16, help="environments played in lockstep (a candidate's trials)")
    p.add_argument("--max-len", type=int, default=300, help="longest episode, steps")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (real-game workers use 1)")
    p.add_argument("--quick", action="store_true", help="100 steps, 2 repeats")
    p.add_argument("--out", default=str(RESULTS / "real_eval.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.max_len, args.repeats = min(args.max_len, 100), min(args.repeats, 2)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    results = [bench_game(g, args.trials, args.max_len, args.repeats) for g in args.games]
    print(
        f"{'game':14s} {'env steps':>9s} {'game ms/step':>12s} {'agent ms/step':>13s} {'overhead':>9s} "
        f"{'overhead (CPU time)':>19s}"
    )
    for r in results:
        print(
            f"{r['game']:14s} {r['env_steps']:9d} {r['game_ms_per_step']:12.3f} {r['agent_ms_per_step']:13.3f} "
            f"{100 * r['overhead_wall']:8.0f}% {100 * r['overhead_cpu']:18.0f}%"
        )
    out = dict(
        benchmark="real_eval",
        quick=args.quick,
        seconds=round(time.time() - t0, 1),
        results=results,
        machine=machine(torch.get_num_threads()),
    )
    write_results(args.out, out)
    print(f"load average {out['machine']['load_average_at_end']}; wrote {args.out}")


if __name__ == "__main__":
    main()
