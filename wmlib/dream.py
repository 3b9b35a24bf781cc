"""The dream: a batched environment made of the Memory model alone (World Models Sec. 4.4).

Many dream episodes advance together as one tensor batch; each episode belongs to a candidate controller and has
its own seed, so its random draws do not depend on which other episodes share the batch. Finished episodes are
dropped from the batch at once, so they stop costing compute.

Batch tensors (B episodes still running):

| name     | shape        | description                                                            |
|----------|--------------|------------------------------------------------------------------------|
| z        | (B, N_z)     | current latent, drawn from M's mixture with temperature tau             |
| h, c     | (B, H)       | LSTM state                                                             |
| w, b     | (B, out, in), (B, out) | each episode's controller weights (or given actions (B, T, A)) |
| keys     | (B,)         | per-episode random keys (wmlib.seeding), on the CPU whatever the device |
| index    | (B,) numpy   | which of the original episodes each row is                             |

The batch is a :class:`DreamState`, and one step, :func:`dream_step`, advances every dream: one loop,
:func:`dream`, runs the batched dreams of training (:func:`dream_rollouts`) and the single traced dream a notebook
plays (:func:`dream_episode`), and the notebook's "you are the controller" game (wmlib.widgets.DreamGame) takes the
same step, one button press at a time. Each step is, for every running episode:

    a_t = C(z_t, h_t)                 C: a = tanh(W [z h] + b) (Doom: [z c h], no bias), mapped to the game's action
    h_{t+1}, mixture = M(z_t, a_t, h_t)   one LSTM step and the mixture head (wmlib.memory: lstm_step)
    z_{t+1} ~ mixture at tau          wmlib.mixtures: sample_mixture

Reward: +1 per step survived (Doom Take Cover). An episode
ends when M's done probability exceeds done_threshold or after max_len steps. In training, the first z is drawn
from the stored mu/logvar of a real first frame (chosen per episode by its seed), plus optional extra noise
(initial_z_noise).

Cost: two matrix products make up most of a step, M's four LSTM gates ((B, N_z + 2 + H) x (N_z + 2 + H, 4H)) and
its mixture head ((B, H) x (H, 3 N_z K + 1)): 3.4 GFLOP per step for the paper's Doom sizes with the 1024 episodes
of a generation in flight. Everything else (C, drawing z, the per-episode random numbers) works elementwise on
(B, N_z)-sized tensors. ``benchmarks/dream.py`` measures it (``--device cuda``: on a GPU; ``--paper-size``: a
whole generation of 1024 episodes x 2100 steps).

How faithful a dream is: :func:`fidelity_summary` turns the scores of the same controllers in the dream and in the
real game into a few numbers (rank correlation, overestimate); ``wm iterate`` and ``wm study
--fidelity`` report them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from . import devices
from .config import Config
from .controller import ControllerSpec
from .games import controller_to_action
from .memory import MDNOutput, Memory
from .mixtures import sample_mixture
from .seeding import FIRST_FRAME, FIRST_Z, FIRST_Z_NOISE, INIT_STEP, episode_keys, normal, uniform


def initial_latents(keys, pool_mu, pool_logvar, noise: float = 0.0) -> torch.Tensor:
    """First z of each episode: a real first frame's mu + sigma * eps (+ noise * eps'), chosen by the key."""
    pool_mu, pool_logvar = torch.as_tensor(pool_mu), torch.as_tensor(pool_logvar)
    pick = (uniform(keys, INIT_STEP, FIRST_FRAME, 1)[:, 0] * len(pool_mu)).long().clamp(max=len(pool_mu) - 1)
    n = pool_mu.shape[1]
    z = pool_mu[pick] + torch.exp(0.5 * pool_logvar[pick]) * normal(keys, INIT_STEP, FIRST_Z, n)
    if noise > 0:
        z = z + noise * normal(keys, INIT_STEP, FIRST_Z_NOISE, n)
    return z


@dataclass
class DreamState:
    """The dream episodes still running, one row each (the batch tensors of the table above), and the step ``t``."""

    z: torch.Tensor
    h: torch.Tensor
    c: torch.Tensor
    restart: torch.Tensor  # (B,): 1 at an episode's first step (M zeroes its state), 0 after
    keys: torch.Tensor  # (B,) on the CPU: the episodes' random numbers are drawn there (wmlib.seeding)
    index: np.ndarray
    rows: dict = field(default_factory=dict)  # the controller's w, b, or the given actions: per-episode tensors
    t: int = 0

    @classmethod
    def start(cls, memory: Memory, z: torch.Tensor, keys: torch.Tensor, **rows) -> DreamState:
        """Episodes at their first step: first latents ``z`` (E, N_z), M's zero state, restart = 1."""
        h, c = memory.initial_state(len(z), z.device)
        return cls(z, h, c, torch.ones(len(z), device=z.device), keys, np.arange(len(z)), dict(rows))

    def keep(self, rows: torch.Tensor) -> None:
        """Drop every episode but those at ``rows`` (their batch positions), which move up in the batch."""
        for name in ("z", "h", "c", "restart", "keys"):
            value = getattr(self, name)
            setattr(self, name, value.index_select(0, rows.to(value.device)))
        self.rows = {k: v.index_select(0, rows.to(v.device)) for k, v in self.rows.items()}
        self.index = self.index[rows.cpu().numpy()]


def dream_step(memory: Memory, weights, state: DreamState, action: torch.Tensor, temperature: float) -> MDNOutput:
    """One step of every running dream episode (World Models Sec. 4): M reads (z_t, a_t) with its state, and the
    next z is drawn from its mixture at ``temperature`` with each episode's own random numbers. Advances ``state``
    (z, h, c, t); returns M's output (its done head ends episodes). ``weights``: :meth:`Memory.step_weights`."""
    mdn, state.h, state.c = memory.step(state.z, action, state.restart, state.h, state.c, weights)
    if state.t == 0:
        state.restart = torch.zeros_like(state.restart)
    state.z = sample_mixture(mdn, temperature, state.keys, state.t)
    state.t += 1
    return mdn


def controller_action(spec: ControllerSpec, state: DreamState) -> torch.Tensor:
    """C's action for every running episode: a = tanh(W [z h] + b) (Doom: [z c h]), mapped to the game's action."""
    return controller_to_action(
        spec.game, spec.act(state.rows["w"], state.rows["b"], spec.features(state.z, state.h, state.c))
    )


@torch.inference_mode()
def dream(
    memory: Memory,
    z: torch.Tensor,
    keys: torch.Tensor,
    max_len: int,
    temperature: float = Config.temperature,
    *,
    spec: ControllerSpec | None = None,
    params=None,
    actions=None,
    done_threshold: float = Config.done_threshold,
    detect_done: bool = True,
    trace: bool = False,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, list[dict] | None]:
    """THE dream loop: E episodes inside M, from first latents ``z`` (E, N_z), advanced together as one batch.

    Actions come from a controller (``spec`` and ``params`` (E, n_params): C acts on [z h] or [z c h]) or are
    given (``actions`` (E, T, A), e.g. a real episode's, to put a dream beside it). Per step, for the B episodes
    still running: C acts (one batched matrix product), M takes one step (:func:`dream_step`: its weights arranged
    once, :meth:`Memory.step_weights`), z is drawn from the mixture at ``temperature`` with the episodes' own random
    numbers (``keys``, :mod:`wmlib.seeding`), and, with ``detect_done`` and a done head, the episodes whose done
    probability passed ``done_threshold`` are dropped from the batch.

    ``device`` (``--device``: :func:`wmlib.devices.resolve`): where M runs (a copy of it, when it is elsewhere). The
    random numbers are the same on every device; off the CPU, M computes the plain equations
    (:func:`wmlib.memory.lstm_step`), whose rounding differs, so an episode may end at another step.

    Returns (lengths (E,), traces): ``traces`` (with ``trace``) holds per episode its z (T+1, N_z) with z[0] the
    first, actions (T, A), done_prob (T,) (None without a done head: M's probability that the game ends after
    action t) and length T; None otherwise.
    """
    device = devices.resolve(device)
    memory = devices.on(memory, device)
    rows, max_len = _per_episode(len(z), max_len, spec, params, actions, device)
    state = DreamState.start(memory, z.to(device), keys, **rows)
    weights = memory.step_weights()
    lengths = np.full(len(z), max_len, np.int64)  # episodes still running at the end lasted every step
    traces = [dict(z=[first.clone()], actions=[], done_prob=[]) for first in z.cpu()] if trace else None
    detect_done = detect_done and memory.predict_done
    for t in range(max_len):
        action = state.rows["actions"][:, t] if actions is not None else controller_action(spec, state)
        mdn = dream_step(memory, weights, state, action, temperature)
        if trace:
            _record(traces, state, action, mdn)
        if detect_done and not _drop_finished(state, mdn, float(done_threshold), lengths):
            break
    return lengths, (_finish_traces(traces, memory.predict_done) if trace else None)


def _per_episode(e: int, max_len: int, spec, params, actions, device) -> tuple[dict, int]:
    """The per-episode tensors that choose the actions (C's w and b, or the given actions) on ``device``, and the
    dream's length (no longer than the given actions)."""
    if actions is not None:
        actions = torch.as_tensor(np.asarray(actions, np.float32)).to(device)
        return dict(actions=actions), min(int(max_len), actions.shape[1])
    if spec is None or params is None:
        raise ValueError("a dream needs actions: pass a controller (spec and params) or the actions to take")
    w, b = spec.unflatten(params)
    if len(w) != e:
        raise ValueError(f"{len(w)} parameter vectors for {e} episodes")
    return dict(w=w.to(device), b=b.to(device)), int(max_len)


def _drop_finished(state: DreamState, mdn: MDNOutput, threshold: float, lengths: np.ndarray) -> bool:
    """Drop the episodes whose done probability passed ``threshold`` at the step just taken (their length: the
    steps taken, this one included). False when none is left."""
    done = torch.sigmoid(mdn.done_logit) > threshold
    if not bool(done.any()):
        return True
    lengths[state.index[done.cpu().numpy()]] = state.t  # this step counts: the episode ended after it
    keep = (~done).nonzero().squeeze(1)
    if len(keep) == 0:
        return False
    state.keep(keep)
    return True


def _record(traces: list[dict], state: DreamState, action: torch.Tensor, mdn: MDNOutput) -> None:
    """Keep the step just taken in each running episode's trace: its new z, its action, M's P(done)."""
    p = torch.sigmoid(mdn.done_logit).cpu() if mdn.done_logit is not None else None
    z, action = state.z.cpu(), action.cpu()
    for j, i in enumerate(state.index):
        traces[i]["z"].append(z[j].clone())
        traces[i]["actions"].append(action[j].clone())
        if p is not None:
            traces[i]["done_prob"].append(float(p[j]))


def _finish_traces(traces: list[dict], predict_done: bool) -> list[dict]:
    return [
        dict(
            z=torch.stack(tr["z"]).numpy(),
            actions=torch.stack(tr["actions"]).numpy(),
            done_prob=np.array(tr["done_prob"]) if predict_done else None,
            length=len(tr["actions"]),
        )
        for tr in traces
    ]


def dream_rollouts(
    memory: Memory,
    spec: ControllerSpec,
    params,
    seeds,
    pool_mu,
    pool_logvar,
    temperature: float = Config.temperature,
    max_len: int = Config.dream_max_len,
    done_threshold: float = Config.done_threshold,
    initial_z_noise: float = Config.initial_z_noise,
    detect_done: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Score controllers in the dream: one episode per row of ``params`` (E, n_params) with ``seeds`` (E,);
    returns (scores, lengths).

    Each episode starts from a stored first frame picked by its seed (:func:`initial_latents`). Scores are the
    dream's cumulative reward: +1 per step survived. ``detect_done=False`` ignores M's done head, so every
    episode lasts ``max_len`` steps (the most a generation can cost). ``device``: where M dreams (:func:`dream`;
    the CPU by default, where every published score was computed).
    """
    if spec.game != "DoomTakeCover" or not memory.predict_done:
        raise ValueError(
            "dream training needs an M that predicts when the episode ends and a reward it implies: "
            "DoomTakeCover (+1 per step survived). For CarRacing, train the controller in the real game "
            "(drop --in_dream)"
        )
    keys = episode_keys(np.asarray(seeds, dtype=np.int64).reshape(-1))
    z = initial_latents(keys, pool_mu, pool_logvar, initial_z_noise)
    lengths, _ = dream(
        memory,
        z,
        keys,
        max_len,
        temperature,
        spec=spec,
        params=params,
        done_threshold=done_threshold,
        detect_done=detect_done,
        device=device,
    )
    return lengths.astype(np.float64), lengths


def dream_episode(
    memory: Memory,
    z0,
    actions=None,
    controller=None,
    temperature: float = Config.temperature,
    max_len: int | None = None,
    seed: int = 0,
    done_threshold: float = Config.done_threshold,
    stop_at_done: bool = False,
) -> dict:
    """One dream from the first latent ``z0``, every step kept for display (the dream player of notebook 05).

    Actions come from ``actions`` (T, A), e.g. a real episode's, or from ``controller`` = (params, ControllerSpec).
    The same loop and random numbers as a dream in training (:func:`dream`), so with the same first z,
    controller and seed, ``stop_at_done`` gives the same episode length. Returns z (T+1, N) with z[0] = z0,
    actions (T, A), done_prob (T,) (None without a done head) and length T.
    """
    if actions is None and controller is None:
        raise ValueError("a dream needs actions: pass a real episode's actions or controller=(params, spec)")
    if actions is not None:
        actions = np.asarray(actions, np.float32).reshape(1, len(actions), -1)
        max_len = actions.shape[1] if max_len is None else min(max_len, actions.shape[1])
    elif max_len is None:
        raise ValueError("a controller-driven dream needs max_len")
    spec, params = (None, None) if controller is None else (controller[1], controller[0])
    z = torch.as_tensor(np.asarray(z0, np.float32)).reshape(1, -1)
    _, traces = dream(
        memory,
        z,
        episode_keys([int(seed)]),
        int(max_len),
        temperature,
        spec=spec,
        params=params,
        actions=actions,
        done_threshold=done_threshold,
        detect_done=stop_at_done,
        trace=True,
    )
    return traces[0]


def rank_correlation(x, y) -> float:
    """Spearman's rank correlation of two equally long sequences (ties share their mean rank); nan when either is
    constant or shorter than 2."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"rank_correlation: two equally long 1-d sequences expected, got shapes {x.shape}, {y.shape}")

    def ranks(v):
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=np.float64)
        for value in np.unique(v):  # ties: the mean of their ranks
            same = v == value
            r[same] = r[same].mean()
        return r

    if len(x) < 2:
        return float("nan")
    rx, ry = ranks(x) - (len(x) - 1) / 2, ranks(y) - (len(y) - 1) / 2
    denom = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


def fidelity_summary(real, dream, trained: int | None = None) -> dict:
    """Dream fidelity as numbers, from the mean scores of the same controllers in the real game and in the dream.

    | key                  | meaning                                                                             |
    |----------------------|-------------------------------------------------------------------------------------|
    | rank_correlation     | Spearman's rho of dream against real means: does the dream rank controllers right? |
    | mean_overestimate    | mean of (dream - real) over the controllers, in score units (Doom: steps survived)  |
    | overestimate_ratio   | mean dream score / mean real score                                                  |
    | trained_overestimate | dream - real of the controller CMA-ES trained in that dream (index ``trained``)    |

    A faithful dream has a rank correlation near 1 and overestimates near 0 (ratio near 1). A number that is not
    defined (a rank correlation of controllers that all scored the same) is None.
    """
    real, dream = np.asarray(real, np.float64), np.asarray(dream, np.float64)
    rho = rank_correlation(dream, real)
    out = dict(
        controllers=int(len(real)),
        rank_correlation=None if np.isnan(rho) else rho,
        mean_overestimate=float((dream - real).mean()),
        overestimate_ratio=float(dream.mean() / real.mean()) if real.mean() else None,
    )
    if trained is not None:
        out["trained_overestimate"] = float(dream[trained] - real[trained])
    return out
