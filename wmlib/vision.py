"""Vision (V): the paper's convolutional VAE (Kingma & Welling 2013; World Models Appendix A.1).

Encoder: four 4x4 stride-2 convolutions (32, 64, 128, 256 filters, ReLU) -> 2x2x256 = 1024 -> mu, logvar (N_z each).
Decoder: dense N_z -> 1024 as a 1x1 image -> deconvolutions 128 (5x5), 64 (5x5), 32 (6x6), 3 (6x6, sigmoid), stride 2.
Parameters: 4,348,547 for N_z = 32 and 4,446,915 for N_z = 64, as in the paper.

Training reads batches of frames shuffled across all episodes from disk (:class:`wmlib.episodes.FrameStore`), so
memory does not grow with the number of episodes; a checkpoint is written every few hundred batches and a re-run
resumes from it. The checkpoint carries the training log, and ``log.csv`` is rewritten from it, so a run killed at any
moment and run again leaves the same files as one that was not (up to the log's wall-clock ``seconds``).
"""

from __future__ import annotations

import csv
import hashlib
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import devices, episodes, rundir
from .config import Config
from .io import atomic_torch_save, checkpoint_structure, load_checkpoint, load_model, write_csv
from .plots import plot_frames, save_figure
from .runlock import holds_run_lock
from .seeding import seed_everything


class Vision(nn.Module):
    """ConvVAE on (B, 3, 64, 64) float frames in [0, 1]."""

    def __init__(self, z_dim: int = 32):
        super().__init__()
        self.z_dim = z_dim
        self.enc = nn.ModuleList(
            [nn.Conv2d(3, 32, 4, 2), nn.Conv2d(32, 64, 4, 2), nn.Conv2d(64, 128, 4, 2), nn.Conv2d(128, 256, 4, 2)]
        )
        self.fc_mu = nn.Linear(1024, z_dim)
        self.fc_logvar = nn.Linear(1024, z_dim)
        self.fc_dec = nn.Linear(z_dim, 1024)
        self.dec = nn.ModuleList(
            [
                nn.ConvTranspose2d(1024, 128, 5, 2),
                nn.ConvTranspose2d(128, 64, 5, 2),
                nn.ConvTranspose2d(64, 32, 6, 2),
                nn.ConvTranspose2d(32, 3, 6, 2),
            ]
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for conv in self.enc:
            x = F.relu(conv(x))
        x = x.flatten(1)
        return self.fc_mu(x), self.fc_logvar(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc_dec(z).view(-1, 1024, 1, 1)
        for deconv in self.dec[:-1]:
            x = F.relu(deconv(x))
        return torch.sigmoid(self.dec[-1](x))

    def forward(self, x: torch.Tensor):
        """(reconstruction, mu, logvar) of frames x, decoded from z = mu + sigma * eps (the reparameterisation
        trick, Kingma & Welling 2013; World Models Sec. 2.1, Appendix A.1): z is a differentiable function of mu and
        logvar, so the loss's gradient reaches the encoder through the random draw."""
        mu, logvar = self.encode(x)
        # eps from torch's CPU generator on any device: every device draws the same noise, and a stopped run
        # resumes it from the checkpoint's CPU generator state
        eps = torch.randn(mu.shape, dtype=mu.dtype).to(mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.decode(z), mu, logvar


def to_tensor(frames: np.ndarray, device: torch.device | None = None) -> torch.Tensor:
    """(..., 64, 64, 3) uint8 frames -> (..., 3, 64, 64) float32 in [0, 1], on ``device`` (default: the CPU; the
    uint8 frames travel, a quarter of the floats' bytes)."""
    t = torch.as_tensor(np.ascontiguousarray(frames))
    if device is not None:
        t = devices.to(t, device)
    return t.movedim(-1, -3).float().div_(255.0)


def vae_loss(recon, x, mu, logvar, kl_tolerance: float = 0.5):
    """The paper's VAE loss (World Models Appendix A.1), averaged over the batch.

    r_loss = sum over pixels of (x - recon)^2                               (squared-error reconstruction)
    kl     = -1/2 * sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))           (Kingma & Welling 2013, Appendix B)
    loss   = r_loss + max(kl, kl_tolerance * N_z)                           (KL floored, as in the original code)
    Returns (loss, r_loss, kl) as scalars (r_loss and kl are batch means, kl before the floor).
    """
    r_loss = (x - recon).pow(2).flatten(1).sum(1)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    kl_floored = kl.clamp(min=kl_tolerance * mu.shape[1])
    return (r_loss + kl_floored).mean(), r_loss.mean(), kl.mean()


def load_vision(data_dir_or_file) -> tuple[Vision, dict]:
    """The trained V and its checkpoint record (config, epoch, log, path) from a run directory or a vision.pt file."""
    path = Path(data_dir_or_file)
    if path.is_dir():
        path = rundir.path(path, rundir.VISION)
    return load_model(path, "vision checkpoint", lambda ckpt: Vision(int(ckpt["config"]["z_dim"])))


def weights_digest(model: nn.Module) -> str:
    """A SHA-256 of a model's weights (names, dtypes, shapes and values): the same digest, the same model."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def checkpoint_log(ckpt: dict, log_path: Path) -> list[dict]:
    """The log rows a checkpoint carries; a checkpoint of an older version without them keeps the rows of the
    log.csv beside it (as text, written back unchanged)."""
    if "log" in ckpt:
        return [dict(r) for r in ckpt["log"]]
    if not log_path.exists():
        return []
    with open(log_path, newline="") as f:
        return list(csv.DictReader(f))


def _resume(out: Path, cfg: Config, model: Vision, opt, log_path: Path) -> dict:
    """Where the last run stopped (epochs done, batches of the next epoch done, its running sums so far, the log
    rows of the epochs done), loading V and its optimiser from ``out``; a fresh start when there is none."""
    at = dict(epoch=0, batch=0, sums=np.zeros(3), frames=0, seconds=0.0, torch_rng=None, log=[])
    if not out.exists():
        return at
    ckpt = load_checkpoint(out, "vision checkpoint")
    with checkpoint_structure(out, "vision checkpoint"):
        z_dim = int(ckpt["config"]["z_dim"])
    if z_dim != cfg.z_dim:
        raise ValueError(
            f"{out}: was trained with z_dim={z_dim}, but --z_dim is {cfg.z_dim}; "
            "use another --data_dir or the same z_dim"
        )
    with checkpoint_structure(out, "vision checkpoint"):  # a wrong structure is named, not a KeyError
        model.load_state_dict(ckpt["model"])
        if "optimizer" in ckpt:  # a pretrained checkpoint keeps weights only
            opt.load_state_dict(ckpt["optimizer"])
        at.update(
            epoch=int(ckpt["epoch"]), **{k: ckpt[k] for k in ("batch", "frames", "seconds", "torch_rng") if k in ckpt}
        )
        at["sums"] = np.asarray(ckpt.get("sums", np.zeros(3)), np.float64)
        at["log"] = checkpoint_log(ckpt, log_path)
    return at


@holds_run_lock("wm vision (wmlib.vision.train_vision)")
def train_vision(
    cfg: Config, data_dir, progress: bool = True, save_every: int | None = None, device: str | torch.device = "cpu"
) -> Path:
    """Train V on the episodes under ``data_dir/episodes`` (the first cfg.vae_episodes, if set).

    Every epoch visits all their frames in a random order (shuffled across the whole data set: they are read from
    a :class:`wmlib.episodes.FrameStore`, written once). The checkpoint ``vision/vision.pt`` is written every
    ``save_every`` batches (default: 200, or a third of an epoch when that is shorter) and at the end of each
    epoch; a run that was stopped resumes from it, at the same batch, with the same numbers as one that was not.

    The checkpoint carries the log's rows: ``log.csv`` is rewritten whole from it after each epoch's checkpoint
    (and at every start), then ``reconstructions.png``; a run stopped between those writes does them on the next
    start, so the files agree with the checkpoint whenever it was stopped.

    ``device`` (``--device``: :func:`wmlib.devices.resolve`) is where V trains. V is made on the CPU (the same first
    weights everywhere) and moved there, its noise comes from the CPU's generator (:meth:`Vision.forward`), and the
    checkpoint holds CPU tensors. Off the CPU, the losses may differ from the CPU's in their last bits (cuDNN's
    convolutions add in another order), and training drifts from there.
    """
    device = devices.resolve(device)
    data_dir = Path(data_dir)
    files = episodes.list_episodes(data_dir)
    if not files:
        raise FileNotFoundError(f"{episodes.episodes_dir(data_dir)}: no episode files; run `wm rollouts` first")
    if cfg.vae_episodes > 0:
        files = files[: cfg.vae_episodes]
    out = rundir.path(data_dir, rundir.VISION)
    log_path = rundir.log_path(data_dir, "vision")
    seed_everything(cfg.seed)
    model = Vision(cfg.z_dim).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.vae_lr)
    at = _resume(out, cfg, model, opt, log_path)
    if out.exists():
        write_csv(log_path, at["log"])  # the log the checkpoint holds, whatever a stopped run left
        if at["epoch"] > 0 and at["batch"] == 0:  # the last epoch finished: its closing step, again
            save_reconstructions(model, files[0], rundir.path(data_dir, rundir.RECONSTRUCTIONS))
    if at["epoch"] >= cfg.vae_epochs:
        return out
    store = episodes.FrameStore.build(files, rundir.path(data_dir, rundir.FRAMES), progress=progress)
    n_batches = -(-len(store) // cfg.vae_batch)
    save_every = save_every or max(1, min(200, n_batches // 3))
    for epoch in range(at["epoch"], cfg.vae_epochs):
        row = _train_epoch(
            cfg,
            model,
            opt,
            store,
            epoch,
            at,
            save_every,
            lambda **state: _save(out, model, opt, cfg, at["log"], **state),
            progress,
        )
        at["log"].append(row)
        _save(out, model, opt, cfg, at["log"], epoch=epoch + 1, batch=0, sums=np.zeros(3), frames=0, seconds=0.0)
        write_csv(log_path, at["log"])
        save_reconstructions(model, files[0], rundir.path(data_dir, rundir.RECONSTRUCTIONS))
    return out


def _save(out: Path, model: Vision, opt, cfg: Config, log: list[dict], **state) -> None:
    """V's checkpoint: weights, optimiser, where in training it stands (``state``), the log rows so far."""
    atomic_torch_save(
        out,
        dict(
            model=devices.to_cpu(model.state_dict()),
            optimizer=devices.to_cpu(opt.state_dict()),
            epoch=state["epoch"],
            batch=state["batch"],
            sums=torch.as_tensor(state["sums"]),
            frames=state["frames"],
            seconds=state["seconds"],
            torch_rng=torch.get_rng_state(),
            log=list(log),
            config=cfg.to_dict(),
        ),
    )


def _train_epoch(
    cfg: Config, model: Vision, opt, store, epoch: int, at: dict, save_every: int, save, progress: bool
) -> dict:
    """One epoch (or the rest of the one ``at`` stopped in), saving every ``save_every`` batches; its log row."""
    model.train()
    n_batches = -(-len(store) // cfg.vae_batch)
    rng = np.random.default_rng([cfg.seed, epoch])
    torch.manual_seed(cfg.seed * 1000 + epoch)
    skip, sums, n, seconds = 0, np.zeros(3), 0, 0.0
    if epoch == at["epoch"] and at["batch"] > 0:  # resume inside this epoch
        skip, sums, n, seconds = at["batch"], at["sums"], int(at["frames"]), float(at["seconds"])
        torch.set_rng_state(at["torch_rng"])
    t0 = time.time() - seconds
    bar = tqdm(
        total=n_batches, initial=skip, desc=f"V epoch {epoch + 1}/{cfg.vae_epochs}", unit="batch", disable=not progress
    )
    for b, indices in enumerate(store.batch_indices(cfg.vae_batch, rng)):
        if b < skip:
            continue
        x = to_tensor(store.read(indices), devices.of(model))
        recon, mu, logvar = model(x)
        loss, r_loss, kl = vae_loss(recon, x, mu, logvar, cfg.kl_tolerance)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sums += [loss.item() * len(x), r_loss.item() * len(x), kl.item() * len(x)]
        n += len(x)
        bar.update()
        bar.set_postfix(loss=f"{sums[0] / n:.1f}")
        if (b + 1) % save_every == 0 and b + 1 < n_batches:
            save(epoch=epoch, batch=b + 1, sums=sums, frames=n, seconds=time.time() - t0)
    bar.close()
    loss, r_loss, kl = (float(x) for x in sums / n)
    return dict(epoch=epoch + 1, frames=int(n), loss=loss, r_loss=r_loss, kl=kl, seconds=round(time.time() - t0, 2))


def save_reconstructions(model: Vision, episode_file, png_path, n: int = 8) -> None:
    """A PNG: n frames of one episode (top row) and V's reconstructions of them (bottom row)."""
    frames = episodes.load_episode(episode_file)["frames"]
    frames = frames[np.linspace(0, len(frames) - 1, min(n, len(frames))).astype(int)]
    model.eval()
    save_figure(plot_frames({"frame": frames, "V(frame)": reconstruct(model, frames)}), png_path)


# --------------------------------------------------------------------------------------------------------------
# Looking inside V (notebook 04)
# --------------------------------------------------------------------------------------------------------------


def to_images(x) -> np.ndarray:
    """(..., 3, 64, 64) float tensor in [0, 1] (on any device) -> (..., 64, 64, 3) uint8 array."""
    return (x.movedim(-3, -1).clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)


def encode(vision, frames) -> tuple[np.ndarray, np.ndarray]:
    """V's (mu, logvar) of (B, 64, 64, 3) uint8 frames, as float32 arrays (B, N_z) (V on any device)."""
    with torch.inference_mode():
        mu, logvar = vision.encode(to_tensor(np.asarray(frames, np.uint8), devices.of(vision)))
    return mu.cpu().numpy(), logvar.cpu().numpy()


def decode(vision, z) -> np.ndarray:
    """V's decoder on latents ``z`` (N_z,) or (B, N_z): (64, 64, 3) or (B, 64, 64, 3) uint8 images."""
    z = torch.as_tensor(np.asarray(z, np.float32))
    with torch.inference_mode():
        images = to_images(vision.decode(z.reshape(-1, z.shape[-1]).to(devices.of(vision))))
    return images[0] if z.dim() == 1 else images


def reconstruct(vision, frames) -> np.ndarray:
    """V's reconstructions of frames, decoded from mu (no sampling): (B, 64, 64, 3) uint8."""
    return decode(vision, encode(vision, frames)[0])


def interpolate(vision, frame_a, frame_b, steps: int = 8) -> np.ndarray:
    """Decoded points on the straight line from mu(frame_a) to mu(frame_b): (steps, 64, 64, 3) uint8."""
    mu, _ = encode(vision, np.stack([frame_a, frame_b]))
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    return decode(vision, (1 - t) * mu[0] + t * mu[1])


def latent_kl(vision, frames) -> np.ndarray:
    """Mean KL divergence from the prior N(0, 1), per latent dimension (N_z,), over ``frames``.

    KL_j = -1/2 (1 + logvar_j - mu_j^2 - exp(logvar_j)), the VAE loss's KL term split by dimension. Dimensions
    near 0 carry no information (the encoder ignores them); the large ones are worth moving in the explorer.
    """
    mu, logvar = encode(vision, frames)
    return (-0.5 * (1 + logvar - mu**2 - np.exp(logvar))).mean(0)


def latent_sensitivity(vision, z, span: float = 2.0) -> np.ndarray:
    """For each dimension j: the mean absolute pixel change (0-255) between decoding z with z_j = -span and
    with z_j = +span, the other dimensions as in ``z``. (N_z,)"""
    z = np.asarray(z, np.float32)
    n = len(z)
    lo, hi = np.repeat(z[None], n, 0), np.repeat(z[None], n, 0)
    lo[np.arange(n), np.arange(n)] = -span
    hi[np.arange(n), np.arange(n)] = span
    return np.abs(decode(vision, lo).astype(np.float32) - decode(vision, hi).astype(np.float32)).mean((1, 2, 3))
