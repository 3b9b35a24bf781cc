"""Memory (M): the MDN-RNN (Graves 2013; Ha & Eck 2017; World Models Sec. 2.2 and Appendix A.2).

An LSTM reads [z_t, a_t] (+ a restart flag for Doom) and a mixture density network head gives, for EVERY latent
dimension separately, a mixture of K Gaussians over the next latent z_{t+1} (and, for Doom, the logit of 'done').

Output shapes (B batch, T time, N = N_z, K mixtures):

| symbol      | shape        | description                                                        |
|-------------|--------------|--------------------------------------------------------------------|
| logpi       | (B, T, N, K) | log mixture weights; log-softmax over K, own weights per dimension |
| mu          | (B, T, N, K) | component means                                                    |
| logsigma    | (B, T, N, K) | log component standard deviations                                  |
| done_logit  | (B, T)       | logit of 'the episode ends after this step' (Doom only)             |

Loss: the mixture's negative log-likelihood of z_{t+1} (Bishop 1994, Eq. 29), averaged over dimensions and steps,
plus for Doom a sigmoid cross-entropy on done with positive examples weighted x10.
Sampling with temperature tau: mixture logits / tau and sigma * sqrt(tau) (Sec. 2.2; :mod:`wmlib.mixtures`).

One step of M (dreams, the real game) is written twice, the same numbers: :func:`lstm_step` is the LSTM's equations
as written, :func:`lstm_step_fast` and :func:`mdn_head_fast` what the CPU runs (:meth:`Memory.step` chooses).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import devices, episodes, rundir
from .config import Config
from .episodes import SeriesStream  # (M's training windows; read there)
from .games import action_dim
from .io import atomic_torch_save, checkpoint_structure, load_checkpoint, load_model, write_csv
from .mixtures import sample_mixture, sample_mixture_plain  # noqa: F401 (M's temperature sampling, drawn there)
from .plots import plot_log
from .runlock import holds_run_lock
from .seeding import seed_everything
from .vision import checkpoint_log, load_vision, to_tensor, weights_digest

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class MDNOutput:
    logpi: torch.Tensor
    mu: torch.Tensor
    logsigma: torch.Tensor
    done_logit: torch.Tensor | None


class Memory(nn.Module):
    """MDN-RNN. ``forward`` runs whole sequences (training); ``step`` advances a batch by one step (dreams)."""

    def __init__(
        self,
        z_dim: int,
        action_dim: int,
        hidden_dim: int = 256,
        mixtures: int = 5,
        predict_done: bool = False,
        restart_flag: bool = False,
    ):
        super().__init__()
        self.z_dim, self.action_dim, self.hidden_dim, self.mixtures = z_dim, action_dim, hidden_dim, mixtures
        self.predict_done, self.restart_flag = predict_done, restart_flag
        self.input_dim = z_dim + action_dim + int(restart_flag)
        self.lstm = nn.LSTM(self.input_dim, hidden_dim, batch_first=True)
        self.head = nn.Linear(hidden_dim, 3 * z_dim * mixtures + int(predict_done))

    @classmethod
    def from_config(cls, cfg: Config) -> Memory:
        return cls(cfg.z_dim, action_dim(cfg.game), cfg.hidden_dim, cfg.mixtures, cfg.predict_done, cfg.restart_flag)

    def arch(self) -> dict:
        return dict(
            z_dim=self.z_dim,
            action_dim=self.action_dim,
            hidden_dim=self.hidden_dim,
            mixtures=self.mixtures,
            predict_done=self.predict_done,
            restart_flag=self.restart_flag,
        )

    def _inputs(self, z, a, restart):
        parts = [z, a]
        if self.restart_flag:
            parts.append(restart.unsqueeze(-1).to(z.dtype))
        return torch.cat(parts, -1)

    def split(self, out: torch.Tensor) -> MDNOutput:
        """Head output (..., 3*N*K [+1]) -> MDNOutput with (..., N, K) tensors."""
        n, k = self.z_dim, self.mixtures
        params = out[..., : 3 * n * k].unflatten(-1, (3, n, k))
        logpi = F.log_softmax(params[..., 0, :, :], dim=-1)  # over the K mixtures of each dimension
        done = out[..., -1] if self.predict_done else None
        return MDNOutput(logpi, params[..., 1, :, :], params[..., 2, :, :], done)

    def forward(self, z, a, restart=None, state=None):
        """z (B, T, N), a (B, T, A), restart (B, T) -> (MDNOutput, (h, c)); h and c are (1, B, H).

        Where ``restart`` is 1 a new episode begins, and the LSTM state is zeroed before that step, as every dream
        and real episode begins from a zero state: a training window that crosses an episode boundary gives, from
        the boundary on, exactly what a window starting there would. (The LSTM runs once per stretch between the
        batch's restart positions, so a window without a restart inside costs one call, as before.)
        """
        x = self._inputs(z, a, restart)
        if restart is None:
            hs, state = self.lstm(x, state)
            return self.split(self.head(hs)), state
        restart = restart.to(x.dtype)
        cuts = torch.nonzero(restart[:, 1:].any(0)).flatten().add(1).tolist()  # steps after 0 where any row restarts
        edges = [0, *cuts, x.shape[1]]
        pieces = []
        for begin, end in zip(edges[:-1], edges[1:]):
            if state is not None:
                keep = (1.0 - restart[:, begin]).view(1, -1, 1)
                state = (state[0] * keep, state[1] * keep)
            hs, state = self.lstm(x[:, begin:end], state)
            pieces.append(hs)
        hs = pieces[0] if len(pieces) == 1 else torch.cat(pieces, 1)
        return self.split(self.head(hs)), state

    def initial_state(self, batch: int, device: torch.device | None = None):
        """Zero h and c (batch, H), on ``device`` (default: where M's weights are)."""
        zeros = torch.zeros(batch, self.hidden_dim, device=self.head.weight.device if device is None else device)
        return zeros, zeros.clone()

    def step_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """M's weights arranged for :func:`lstm_step_fast` and :func:`mdn_head_fast` (the CPU's :meth:`step`). Make
        them once per rollout and pass them to every step.

        | tensor | shape            | what                                                                    |
        |--------|------------------|-------------------------------------------------------------------------|
        | w      | (4H, in + H)     | [W_ih W_hh], cell-candidate rows doubled: all 4 gates in one product   |
        | b      | (4H,)            | b_ih + b_hh, cell-candidate entries doubled                             |
        | w_head | (3NK [+1] + p, H)| the head's rows reordered from (3, N, K) to (3, K, N), then done (Doom) |
        | b_head | (3NK [+1] + p,)  | the head's bias, reordered the same way                                 |

        The doubling (exact in floating point) lets one sigmoid cover all four gates, with tanh(x) = 2 sigmoid(2x) - 1;
        torch's sigmoid is several times faster than its tanh on CPU. The reordering puts the N numbers of each
        mixture component side by side, so the per-component work runs on contiguous (B, N) slices; p zero rows pad
        the head to a multiple of 16 outputs (64-byte rows, a faster matrix product).
        """
        lstm, hd, n, k = self.lstm, self.hidden_dim, self.z_dim, self.mixtures
        double = torch.ones(4 * hd, device=lstm.weight_ih_l0.device)
        double[2 * hd : 3 * hd] = 2.0  # PyTorch's gate order: input, forget, cell candidate, output
        w = torch.cat([lstm.weight_ih_l0, lstm.weight_hh_l0], 1) * double[:, None]
        b = (lstm.bias_ih_l0 + lstm.bias_hh_l0) * double
        rows = torch.arange(3 * n * k).view(3, n, k).transpose(1, 2).reshape(-1)
        if self.predict_done:
            rows = torch.cat([rows, torch.tensor([3 * n * k])])
        pad = -len(rows) % 16
        w_head = torch.cat([self.head.weight[rows], self.head.weight.new_zeros(pad, hd)])
        b_head = torch.cat([self.head.bias[rows], self.head.bias.new_zeros(pad)])
        return w, b, w_head, b_head

    def step(self, z, a, restart, h, c, weights=None, head: bool = True, fast: bool | None = None):
        """One LSTM step for a batch: z (B, N), a (B, A), restart (B,), h, c (B, H) -> (MDNOutput, h, c).

        Rows whose ``restart`` is 1 start a new episode: their h and c are zeroed first (as in :meth:`forward`).

        ``head=False`` skips the mixture head and returns (None, h, c): in the real game only the LSTM state is
        needed (the controller reads h and c), and the head is a fifth of the step's work.

        Two implementations of the same equations: :func:`lstm_step` and ``split(head(h))`` (the equations as
        written), and :func:`lstm_step_fast` with :func:`mdn_head_fast` (the same numbers up to float rounding,
        faster on CPU). ``fast`` (default: on the CPU) picks the second: every dream and real-game score so far was
        computed with it. ``weights``: :meth:`step_weights` for it, made once by a caller that steps many times
        (made here if None; the plain equations read M's own weights). The fast head's (B, N, K) tensors are views
        of (B, K, N) blocks, and it updates intermediate tensors in place: meant for rollouts, train with forward().
        """
        # a new episode starts from a zero state (as in forward); off the CPU, always multiplied (by 1 for the other
        # rows: exact), since asking whether any row restarts would wait for the device every step
        if restart is not None and (h.device.type != "cpu" or bool(restart.any())):
            keep = (1.0 - restart.to(h.dtype)).unsqueeze(1)
            h, c = h * keep, c * keep
        x = self._inputs(z, a, restart)
        if not (x.device.type == "cpu" if fast is None else fast):
            lstm = self.lstm
            h, c = lstm_step(x, h, c, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
            return (self.split(self.head(h)) if head else None), h, c
        w, b, w_head, b_head = self.step_weights() if weights is None else weights
        h, c = lstm_step_fast(x, h, c, w, b)
        if not head:
            return None, h, c
        return mdn_head_fast(h, w_head, b_head, self.z_dim, self.mixtures, self.predict_done), h, c


def lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of M's LSTM (Hochreiter & Schmidhuber 1997; World Models Sec. 2.2, Appendix A.2), as written:

        i, f, g, o = W_ih x + b_ih + W_hh h + b_hh      (split in four: input, forget, cell candidate, output)
        c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
        h' = sigmoid(o) * tanh(c')

    x (B, in), h and c (B, H) -> (h', c'). The weights are nn.LSTM's own (``weight_ih_l0`` ...), in its gate order:
    this is what ``nn.LSTM`` computes for one step (up to float rounding).
    """
    i, f, g, o = (F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)).chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


def _linear_fast(x, w, b, sigmoid: bool) -> torch.Tensor:
    """x w^T + b (then sigmoid): oneDNN's matrix product with the sigmoid fused in, when available (the one
    torch.compile uses on CPU; about 15% faster than addmm + sigmoid on CPUs where MKL does not use AVX-512)."""
    if (
        not torch.is_grad_enabled()
        and x.dtype == torch.float32
        and x.device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    ):
        return torch.ops.mkldnn._linear_pointwise(x, w, b, "sigmoid" if sigmoid else "none", [], "")
    out = torch.addmm(b, x, w.t())
    return out.sigmoid_() if sigmoid else out


def lstm_step_fast(x, h, c, w, b) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`lstm_step`'s equations with M's weights arranged by :meth:`Memory.step_weights` (w, b): all four
    gates from one matrix product and one sigmoid, the cell candidate's rows doubled, as tanh(y) = 2 sigmoid(2y) - 1.
    """
    hd = h.shape[1]
    gates = _linear_fast(torch.cat([x, h], 1), w, b, sigmoid=True)
    i, f, g, o = (gates[:, j * hd : (j + 1) * hd] for j in range(4))  # g holds sigmoid(2 y_g)
    c = (f * c).addcmul_(i, g.mul_(2.0).sub_(1.0))  # c' = f c + i tanh(y_g)
    h = torch.mul(c, 2.0).sigmoid_().mul_(2.0).sub_(1.0).mul_(o)  # h' = o tanh(c')
    return h, c


def mdn_head_fast(h, w_head, b_head, n: int, k: int, predict_done: bool) -> MDNOutput:
    """``Memory.split(Memory.head(h))`` with the head's weights arranged by :meth:`Memory.step_weights`: the
    log-softmax over the K components of each dimension runs one contiguous (B, N) slice at a time."""
    out = _linear_fast(h, w_head, b_head, sigmoid=False)
    params = out[:, : 3 * n * k].unflatten(1, (3, k, n))  # (B, 3, K, N)
    logits = params[:, 0]
    top = logits[:, 0]
    for j in range(1, k):
        top = torch.maximum(top, logits[:, j])
    lse = (logits - top.unsqueeze(1)).exp_().sum(1).log_().add_(top)
    logpi = logits - lse.unsqueeze(1)
    done = out[:, 3 * n * k] if predict_done else None
    return MDNOutput(logpi.transpose(1, 2), params[:, 1].transpose(1, 2), params[:, 2].transpose(1, 2), done)


def mdn_nll(out: MDNOutput, z_next: torch.Tensor) -> torch.Tensor:
    """Per-dimension negative log-likelihood (..., N) of z_next under the mixture (Bishop 1994, Eq. 29).

    -log sum_k pi_k N(z | mu_k, sigma_k), with log N = -(z - mu)^2 / (2 sigma^2) - log sigma - log sqrt(2 pi).
    """
    zn = z_next.unsqueeze(-1)
    log_normal = -0.5 * ((zn - out.mu) * torch.exp(-out.logsigma)).pow(2) - out.logsigma - LOG_SQRT_2PI
    return -torch.logsumexp(out.logpi + log_normal, dim=-1)


def memory_loss(out: MDNOutput, z_next, done=None, mask=None, done_weight: float = 10.0):
    """(total, z_loss, done_loss): mean NLL over valid steps and dimensions, + weighted done cross-entropy.

    ``mask`` (B, T) marks steps whose z_next belongs to the same episode (the NLL is not asked across a reset).
    """
    nll = mdn_nll(out, z_next).mean(-1)
    if mask is None:
        mask = torch.ones_like(nll)
    mask = mask.to(nll.dtype)
    z_loss = (nll * mask).sum() / mask.sum().clamp(min=1)
    done_loss = torch.zeros((), device=nll.device)
    if out.done_logit is not None and done is not None:
        done_loss = F.binary_cross_entropy_with_logits(
            out.done_logit, done.to(out.done_logit.dtype), pos_weight=torch.tensor(done_weight, device=nll.device)
        )
    return z_loss + done_loss, z_loss, done_loss


# --------------------------------------------------------------------------------------------------------------
# Encoding: episodes/ -> series/
# --------------------------------------------------------------------------------------------------------------


@holds_run_lock("wm memory (wmlib.memory.encode_episodes)")
@torch.inference_mode()
def encode_episodes(
    data_dir, progress: bool = True, batch: int = 256, device: str | torch.device = "cpu"
) -> list[Path]:
    """Encode every episode with the trained V into ``series/`` (mu, logvar, actions, rewards, dones).

    Each series file names the V that encoded it (a digest of V's weights, and V's epoch): series already encoded
    by the same V are kept, and a re-run after V changed re-encodes. Every file is written atomically, so a run
    stopped at any moment and run again leaves the same files as one that was not.

    ``device`` (``--device``: :func:`wmlib.devices.resolve`) runs V there; off the CPU, mu and logvar may differ
    from the CPU's in their last bits (the files do not say where they were encoded).
    """
    device = devices.resolve(device)
    vision, vckpt = load_vision(data_dir)
    tag = f"{weights_digest(vision)[:16]}:{vckpt['epoch']}"
    vision = vision.to(device)
    files = episodes.list_episodes(data_dir)
    if not files:
        raise FileNotFoundError(f"{episodes.episodes_dir(data_dir)}: no episode files; run `wm rollouts` first")
    out_files = []
    for f in tqdm(files, desc="encode", unit="ep", disable=not progress):
        out = episodes.series_dir(data_dir) / f.name
        out_files.append(out)
        if out.exists():
            try:
                if episodes.load_series(out)["meta"].get("vision") == tag:
                    continue
            except episodes.EpisodeError:
                pass  # a broken series file is simply written again
        ep = episodes.load_episode(f)
        mus, logvars = [], []
        for i in range(0, len(ep["frames"]), batch):
            mu, logvar = vision.encode(to_tensor(ep["frames"][i : i + batch], device))
            mus.append(mu.cpu())
            logvars.append(logvar.cpu())
        meta = dict(ep["meta"], vision=tag, z_dim=vision.z_dim, vision_path=vckpt["path"])
        episodes.save_arrays(
            out,
            meta,
            mu=torch.cat(mus).numpy(),
            logvar=torch.cat(logvars).numpy(),
            actions=ep["actions"],
            rewards=ep["rewards"],
            dones=ep["dones"],
        )
    return out_files


# --------------------------------------------------------------------------------------------------------------
# Training M
# --------------------------------------------------------------------------------------------------------------


def load_memory(data_dir_or_file) -> tuple[Memory, dict]:
    """The trained M and its checkpoint record (arch, step, config, path) from a run directory or a memory.pt file."""
    path = Path(data_dir_or_file)
    if path.is_dir():
        path = rundir.path(path, rundir.MEMORY)
    return load_model(path, "memory checkpoint", lambda ckpt: Memory(**ckpt["arch"]))


def check_compatible(vision_ckpt: dict, memory_ckpt: dict) -> None:
    """Stop with a message naming both files when V and M disagree on N_z."""
    vz, mz = int(vision_ckpt["config"]["z_dim"]), int(memory_ckpt["arch"]["z_dim"])
    if vz != mz:
        raise ValueError(
            f"z_dim mismatch: {memory_ckpt.get('path', 'memory checkpoint')} has z_dim={mz} but "
            f"{vision_ckpt.get('path', 'vision checkpoint')} has z_dim={vz}; retrain M on this V's series"
        )


def _resume(out: Path, model: Memory, opt, log_path: Path) -> tuple[int, list[dict]]:
    """(optimiser steps already taken, the log rows so far) from M's checkpoint ``out``, loading M and its
    optimiser; (0, []) when there is none. The rows are those the checkpoint carries (for a checkpoint of an older
    version, those of the log.csv beside it)."""
    if not out.exists():
        return 0, []
    ckpt = load_checkpoint(out, "memory checkpoint")
    with checkpoint_structure(out, "memory checkpoint"):
        arch = ckpt["arch"]
    if arch != model.arch():
        raise ValueError(
            f"{out}: was made with {arch}, but this run asks for {model.arch()}; "
            "use another --data_dir or the same settings"
        )
    with checkpoint_structure(out, "memory checkpoint"):  # a wrong structure is named, not a KeyError
        model.load_state_dict(ckpt["model"])
        if "optimizer" in ckpt:  # a pretrained checkpoint keeps weights only
            opt.load_state_dict(ckpt["optimizer"])
        return int(ckpt["step"]), checkpoint_log(ckpt, log_path)


@holds_run_lock("wm memory (wmlib.memory.train_memory)")
def train_memory(
    cfg: Config, data_dir, progress: bool = True, save_every: int | None = None, device: str | torch.device = "cpu"
) -> Path:
    """Train M on ``series/`` for cfg.rnn_steps optimiser steps; resumes from ``memory/memory.pt``.

    Every ``save_every`` steps (default: 100, or a quarter of the run when that is shorter) and at the last one,
    a log row is added and the checkpoint written with all the rows so far; then ``log.csv`` is rewritten whole
    from them, and at the end ``loss.png`` is drawn. Every start rewrites ``log.csv`` from the checkpoint and a
    finished run draws ``loss.png`` again, so a run stopped at any moment and run again leaves the same files.

    ``device`` (``--device``: :func:`wmlib.devices.resolve`) is where M trains. M is made on the CPU (the same first
    weights everywhere) and moved there, the batches are drawn on the CPU as before, and the checkpoint holds CPU
    tensors. Off the CPU, the losses may differ from the CPU's in their last bits, and training drifts from there.
    """
    device = devices.resolve(device)
    data_dir = Path(data_dir)
    out = rundir.path(data_dir, rundir.MEMORY)
    log_path = rundir.log_path(data_dir, "memory")
    seed_everything(cfg.seed)
    model = Memory.from_config(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.rnn_lr)
    step, rows = _resume(out, model, opt, log_path)  # optimiser steps already taken, the log so far
    if out.exists():
        write_csv(log_path, rows)  # the log the checkpoint holds, whatever a stopped run left
    if step < cfg.rnn_steps:
        _, vckpt = load_vision(data_dir)
        check_compatible(vckpt, dict(arch=model.arch(), path=str(out)))
        stream = SeriesStream(episodes.list_series(data_dir), cfg.z_dim)

        def save(steps: int) -> None:
            atomic_torch_save(
                out,
                dict(
                    model=devices.to_cpu(model.state_dict()),
                    optimizer=devices.to_cpu(opt.state_dict()),
                    step=steps,
                    arch=model.arch(),
                    config=cfg.to_dict(),
                    vision=vckpt["path"],
                    log=list(rows),
                ),
            )
            write_csv(log_path, rows)  # after the checkpoint: the checkpoint is what a re-run trusts

        _train_steps(cfg, model, opt, stream, step, rows, save, save_every, progress)
    # (for a finished run, again: it may have stopped right after its last save)
    _plot_loss(log_path, rundir.path(data_dir, rundir.MEMORY_LOSS))
    return out


def _train_steps(
    cfg: Config,
    model: Memory,
    opt,
    stream: SeriesStream,
    start: int,
    rows: list[dict],
    save,
    save_every: int | None,
    progress: bool,
) -> None:
    """M's optimiser steps ``start`` to cfg.rnn_steps; every ``save_every`` steps and at the last one, a log row
    is added to ``rows`` and ``save(steps done)`` called."""
    weights = stream.episode_weights(cfg.recent_share)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cfg.rnn_lr_decay ** (s + start))
    save_every = save_every or max(1, min(100, cfg.rnn_steps // 4))
    device = devices.of(model)
    model.train()
    bar = tqdm(range(start, cfg.rnn_steps), desc="M", unit="step", disable=not progress)
    sums, n, t0 = np.zeros(3), 0, time.time()
    for step in bar:
        rng = np.random.default_rng([cfg.seed, step])  # a resumed run draws the same batches
        b = stream.batch(rng, cfg.rnn_batch, cfg.seq_len, anywhere=cfg.restart_flag, weights=weights)
        losses = _train_step(cfg, model, opt, {k: devices.to(v, device) for k, v in b.items()})
        sched.step()
        sums += [x.item() for x in losses]
        n += 1
        bar.set_postfix(loss=f"{losses[0].item():.3f}")
        if (step + 1) % save_every == 0 or step + 1 == cfg.rnn_steps:
            mean = [float(x) for x in sums / n]
            rows.append(
                dict(
                    step=step + 1,
                    loss=mean[0],
                    z_loss=mean[1],
                    done_loss=mean[2],
                    lr=float(opt.param_groups[0]["lr"]),
                    seconds=round(time.time() - t0, 2),
                )
            )
            save(step + 1)
            sums, n, t0 = np.zeros(3), 0, time.time()


def _train_step(cfg: Config, model: Memory, opt, b: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimiser step on the windows ``b``: M reads z_t, a_t (and the restart flags) and is scored on z_{t+1}
    (and done); gradients clipped to cfg.grad_clip. Returns (loss, z_loss, done_loss)."""
    out_mdn, _ = model(b["z"][:, :-1], b["actions"][:, :-1], b["restart"][:, :-1])
    mask = 1.0 - b["restart"][:, 1:]
    losses = memory_loss(out_mdn, b["z"][:, 1:], b["dones"][:, :-1], mask, cfg.done_weight)
    opt.zero_grad(set_to_none=True)
    losses[0].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return losses


def _plot_loss(log_path: Path, png: Path) -> None:
    if log_path.exists():  # (no log: M has taken no step)
        plot_log(log_path, ["loss", "z_loss", "done_loss"], png, x="step", title="Memory loss")
