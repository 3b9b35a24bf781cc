import numpy as np
import pytest
import torch

from wmlib import episodes
from wmlib.vision import Vision, to_tensor, vae_loss


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


def _write_fake_episodes(d, n, length=30):
    rng = np.random.default_rng(0)
    for i in range(n):
        frames = np.full((length, 64, 64, 3), i, np.uint8)
        frames[:, 0, 0, 0] = np.arange(length)
        episodes.save_episode(episodes.episode_path(d, i), frames, rng.random((length, 3)), np.zeros(length),
                              np.zeros(length, bool), meta={"game": "CarRacing-v3"})


def test_frame_batches_visit_every_frame_once(tmp_path):
    _write_fake_episodes(tmp_path, 5, length=30)
    files = episodes.list_episodes(tmp_path)
    batches = list(episodes.frame_batches(files, 16, np.random.default_rng(1), buffer_episodes=2))
    allf = np.concatenate(batches)
    assert len(allf) == 150 and all(len(b) == 16 for b in batches[:-1])
    ids = sorted((int(f[1, 1, 0]), int(f[0, 0, 0])) for f in allf)
    assert ids == sorted((e, t) for e in range(5) for t in range(30))
    # shuffled: the first batch mixes frames from more than one episode or out of order
    first = batches[0]
    assert len({int(f[1, 1, 0]) for f in first}) > 1 or list(first[:, 0, 0, 0]) != sorted(first[:, 0, 0, 0])


PEAK_SCRIPT = """
import resource, sys, numpy as np
from wmlib import episodes
from wmlib.vision import to_tensor
files = episodes.list_episodes(sys.argv[1])
n = 0
for frames in episodes.frame_batches(files, 64, np.random.default_rng(0), buffer_episodes=2):
    n += len(to_tensor(frames))
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_kb(d):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(d)], capture_output=True, text=True, check=True)
    frames, peak = map(int, out.stdout.split())
    return frames, peak


def test_streaming_memory_does_not_grow_with_episodes(tmp_path):
    """V's data stream holds a bounded buffer: 4x the episodes (~100 MB more frames) costs no more peak memory."""
    rng = np.random.default_rng(0)
    for i in range(40):
        frames = rng.integers(0, 256, (200, 64, 64, 3), dtype=np.uint8)  # noise: incompressible, 2.4 MB each
        for target in ([tmp_path / "small", tmp_path / "large"] if i < 10 else [tmp_path / "large"]):
            episodes.save_episode(episodes.episode_path(target, i), frames, np.zeros((200, 1)), np.zeros(200),
                                  np.zeros(200, bool), meta={"game": "DoomTakeCover"})
    n_small, peak_small = _peak_kb(tmp_path / "small")
    n_large, peak_large = _peak_kb(tmp_path / "large")
    assert (n_small, n_large) == (2000, 8000)
    all_frames_mb = 8000 * 64 * 64 * 3 / 2**20  # ~94 MB as uint8, ~375 MB as float
    growth_mb = (peak_large - peak_small) / 1024
    assert growth_mb < 0.15 * all_frames_mb, f"peak memory grew by {growth_mb:.1f} MB"


def test_vae_episodes_trains_on_the_first_episodes_only(run_copy):
    import shutil

    from wmlib.config import make_config
    from wmlib.vision import train_vision
    from wmlib.viz import read_csv

    d = run_copy("DoomTakeCover")
    shutil.rmtree(d / "vision")
    files = episodes.list_episodes(d)
    assert len(files) > 1
    train_vision(make_config("DoomTakeCover", "smoke", vae_episodes=1), d, progress=False)
    log = read_csv(d / "vision" / "log.csv")
    assert int(log["frames"][-1]) == len(episodes.load_episode(files[0])["frames"])
