"""wmlib.vision: the ConvVAE, its loss, its training, and the analyses the notebooks show (decode, latent KL, ...)."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import wm

from wmlib import episodes
from wmlib.vision import (
    Vision,
    decode,
    encode,
    interpolate,
    latent_kl,
    latent_sensitivity,
    reconstruct,
    to_images,
    to_tensor,
    vae_loss,
)


@pytest.fixture(scope="module")
def vision():
    torch.manual_seed(0)
    return Vision(32).eval()


@pytest.mark.parametrize("z_dim, expected", [(32, 4_348_547), (64, 4_446_915)])
def test_parameter_count_matches_paper(z_dim, expected):
    assert sum(p.numel() for p in Vision(z_dim).parameters()) == expected


def test_shapes():
    v = Vision(32)
    x = torch.rand(5, 3, 64, 64)
    mu, logvar = v.encode(x)
    assert mu.shape == logvar.shape == (5, 32)
    recon, mu2, _ = v(x)
    assert recon.shape == x.shape
    assert recon.min() >= 0 and recon.max() <= 1


def test_to_tensor_layout():
    frames = np.zeros((2, 64, 64, 3), np.uint8)
    frames[1, 3, 4] = [255, 0, 51]
    t = to_tensor(frames)
    assert t.shape == (2, 3, 64, 64) and t.dtype == torch.float32
    assert t[1, :, 3, 4].tolist() == pytest.approx([1.0, 0.0, 0.2])


def test_forward_decodes_the_reparameterised_z():
    """z = mu + exp(logvar / 2) * eps with eps from torch's CPU generator (on any device: the same noise
    everywhere, and a resumed run restores it from the checkpoint's CPU generator state)."""
    v = Vision(8)
    x = torch.rand(3, 3, 64, 64)
    torch.manual_seed(7)
    with torch.no_grad():
        recon, mu, logvar = v(x)
    torch.manual_seed(7)
    eps = torch.randn(3, 8)
    with torch.no_grad():
        assert torch.equal(recon, v.decode(mu + torch.exp(0.5 * logvar) * eps))


def test_vae_loss_by_hand():
    # One 1-pixel-sized example is enough to check the formula; frame size does not matter to the loss.
    x = torch.tensor([[0.0, 1.0, 0.5]])
    recon = torch.tensor([[0.5, 0.5, 0.5]])
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, float(np.log(2.0))]])
    loss, r, kl = vae_loss(recon, x, mu, logvar, kl_tolerance=0.0)
    r_hand = 0.25 + 0.25 + 0.0
    kl_hand = -0.5 * ((1 + 0 - 1 - 1) + (1 + np.log(2.0) - 0 - 2))
    assert r.item() == pytest.approx(r_hand)
    assert kl.item() == pytest.approx(kl_hand, rel=1e-6)
    assert loss.item() == pytest.approx(r_hand + kl_hand, rel=1e-6)
    # the KL floor: max(kl, kl_tolerance * N_z) = max(0.8466, 0.5 * 2) = 1.0
    loss_floored, _, _ = vae_loss(recon, x, mu, logvar, kl_tolerance=0.5)
    assert loss_floored.item() == pytest.approx(r_hand + 1.0, rel=1e-6)


def test_vae_episodes_trains_on_the_first_episodes_only(run_copy):
    from wmlib.config import make_config
    from wmlib.io import read_csv
    from wmlib.vision import train_vision

    d = run_copy("DoomTakeCover")
    shutil.rmtree(d / "vision")
    files = episodes.list_episodes(d)
    assert len(files) > 1
    train_vision(make_config("DoomTakeCover", "smoke", vae_episodes=1), d, progress=False)
    log = read_csv(d / "vision" / "log.csv")
    assert int(log["frames"][-1]) == len(episodes.load_episode(files[0])["frames"])


def test_vision_resumes_and_reencodes(run_copy):
    d = run_copy("DoomTakeCover")
    wm("vision", "--data_dir", d, "--epochs", 2, "--quiet")
    ckpt = torch.load(d / "vision/vision.pt", weights_only=True)
    assert ckpt["epoch"] == 2
    assert [r.split(",")[0] for r in (d / "vision/log.csv").read_text().splitlines()] == ["epoch", "1", "2"]
    wm("memory", "--data_dir", d, "--quiet")
    tag = json.loads(str(np.load(episodes.list_series(d)[0])["meta"]))["vision"]
    assert tag.endswith(":2")  # series re-encoded with the newer V


def _mangle(log):
    """What appending to a log could leave after a kill: a row twice, or no header."""
    lines = log.read_bytes().split(b"\r\n")
    log.write_bytes(b"\r\n".join(lines[1:] + lines[1:]))


def test_the_log_and_reconstructions_are_rewritten_from_the_checkpoint(run_copy):
    from wmlib.config import make_config
    from wmlib.vision import train_vision

    d = run_copy("DoomTakeCover")
    cfg = make_config("DoomTakeCover", "smoke")
    log, png, ckpt = d / "vision/log.csv", d / "vision/reconstructions.png", d / "vision/vision.pt"
    train_vision(cfg, d, progress=False)  # V is trained: only its closing steps run again
    want = {p: p.read_bytes() for p in (log, png, ckpt)}
    assert log.read_bytes().startswith(b"epoch,frames,loss,r_loss,kl,seconds\r\n1,180,")
    _mangle(log)
    png.unlink()
    train_vision(cfg, d, progress=False)
    assert {p: p.read_bytes() for p in want} == want


def test_a_checkpoint_without_log_rows_keeps_its_log_and_carries_it_on(run_copy):
    """A V checkpoint of an older version holds no log rows: the log.csv beside it is kept, and continues."""
    from wmlib.config import make_config
    from wmlib.io import atomic_torch_save, load_checkpoint
    from wmlib.vision import train_vision

    d = run_copy("DoomTakeCover")
    log, out = d / "vision/log.csv", d / "vision/vision.pt"
    ckpt = load_checkpoint(out)
    assert [r["epoch"] for r in ckpt.pop("log")] == [1]
    atomic_torch_save(out, ckpt)
    old = log.read_bytes()
    train_vision(make_config("DoomTakeCover", "smoke"), d, progress=False)
    assert log.read_bytes() == old
    train_vision(make_config("DoomTakeCover", "smoke", vae_epochs=2), d, progress=False)
    assert log.read_bytes().startswith(old) and log.read_bytes().count(b"\r\n") == 3
    assert [r["epoch"] for r in load_checkpoint(out)["log"]] == ["1", 2]  # the old row as it was read: text


# -- analyses (notebook 04) ----------------------------------------------------------------------------------------


def test_to_images_is_the_inverse_of_to_tensor():
    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert np.array_equal(to_images(to_tensor(frames)), frames)


def test_decode_is_vision_decoder_as_uint8_images(vision):
    z = torch.randn(3, 32)
    images = decode(vision, z.numpy())
    assert images.shape == (3, 64, 64, 3) and images.dtype == np.uint8
    with torch.no_grad():
        expected = vision.decode(z).permute(0, 2, 3, 1).numpy() * 255
    assert np.abs(images.astype(np.float64) - expected).max() <= 0.5 + 1e-3
    assert decode(vision, z[0].numpy()).shape == (64, 64, 3)


def test_interpolation_starts_and_ends_at_the_reconstructions(vision):
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    path = interpolate(vision, a, b, steps=5)
    assert path.shape == (5, 64, 64, 3)
    recon = reconstruct(vision, np.stack([a, b]))
    assert np.array_equal(path[0], recon[0]) and np.array_equal(path[-1], recon[1])


def test_latent_kl_and_sensitivity_are_per_dimension(vision):
    frames = np.random.default_rng(1).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    kl = latent_kl(vision, frames)
    assert kl.shape == (32,) and np.all(kl >= -1e-6)
    mu, logvar = encode(vision, frames)
    total = (-0.5 * (1 + logvar - mu**2 - np.exp(logvar))).sum(1).mean()
    assert kl.sum() == pytest.approx(total, rel=1e-5)
    sens = latent_sensitivity(vision, np.zeros(32))
    assert sens.shape == (32,) and np.all(sens >= 0) and sens.max() > 0


RESUME_SCRIPT = """
import sys
import torch
torch.set_num_threads(1)  # as the test process: the same arithmetic
from wmlib.config import make_config
from wmlib.vision import train_vision
train_vision(make_config("DoomTakeCover", "smoke", vae_batch=2), sys.argv[1], progress=False, save_every=1)
"""


def test_vision_killed_mid_epoch_resumes_at_the_same_batch_with_the_same_numbers(run_copy, tmp_path):
    import subprocess
    import sys
    import time

    from wmlib.config import make_config
    from wmlib.io import load_checkpoint
    from wmlib.vision import train_vision

    d = run_copy("DoomTakeCover")
    shutil.rmtree(d / "vision")
    straight = tmp_path / "straight"
    shutil.copytree(d, straight)
    cfg = make_config("DoomTakeCover", "smoke", vae_batch=2)
    proc = subprocess.Popen([sys.executable, "-c", RESUME_SCRIPT, str(d)])
    ckpt_path = d / "vision" / "vision.pt"
    t0 = time.time()
    while not ckpt_path.exists() and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    stopped = load_checkpoint(ckpt_path)
    assert (stopped["epoch"], stopped["batch"] > 0) == (0, True), "killed after the epoch, not in it"
    train_vision(cfg, d, progress=False, save_every=1000)  # (how often it saves does not change the numbers)
    train_vision(cfg, straight, progress=False, save_every=1000)
    a, b = load_checkpoint(ckpt_path), load_checkpoint(straight / "vision" / "vision.pt")
    assert a["epoch"] == b["epoch"] == 1 and a["batch"] == b["batch"] == 0
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])
    drop_seconds = lambda p: [r.rsplit(",", 1)[0] for r in p.read_text().splitlines()]  # noqa: E731
    assert drop_seconds(d / "vision/log.csv") == drop_seconds(straight / "vision/log.csv")
