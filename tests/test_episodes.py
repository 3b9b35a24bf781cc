"""wmlib.episodes: episode files (atomic, named in every error) and the stream of frames V trains on."""

import numpy as np
import pytest

from wmlib import episodes


def _episode(n=12, a=3):
    rng = np.random.default_rng(0)
    return dict(
        frames=rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
        actions=rng.random((n, a)),
        rewards=rng.random(n),
        dones=np.arange(n) == n - 1,
    )


def test_roundtrip(tmp_path):
    ep = _episode()
    p = episodes.episode_path(tmp_path, 7)
    episodes.save_episode(p, meta={"game": "CarRacing-v3", "seed": 3}, **ep)
    assert p.name == "ep_000007.npz" and episodes.list_episodes(tmp_path) == [p]
    back = episodes.load_episode(p)
    assert np.array_equal(back["frames"], ep["frames"])
    assert back["actions"].dtype == np.float32 and back["actions"].shape == (12, 3)
    assert back["dones"].tolist() == ep["dones"].tolist()
    assert back["meta"] == {"game": "CarRacing-v3", "seed": 3}
    assert not list(tmp_path.rglob("*.tmp"))  # the temporary file was renamed away


def test_truncated_file_names_the_file(tmp_path):
    p = episodes.episode_path(tmp_path, 0)
    episodes.save_episode(p, meta={}, **_episode())
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(episodes.EpisodeError, match="ep_000000.npz.*corrupt or truncated"):
        episodes.load_episode(p)


def test_garbage_and_foreign_files(tmp_path):
    junk = tmp_path / "ep_000001.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(episodes.EpisodeError, match="ep_000001.npz"):
        episodes.load_episode(junk)
    foreign = tmp_path / "ep_000002.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(episodes.EpisodeError, match="ep_000002.npz.*missing frames"):
        episodes.load_episode(foreign)
    bad = tmp_path / "ep_000003.npz"
    ep = _episode()
    ep["rewards"] = ep["rewards"][:5]
    episodes.save_arrays(bad, {}, **ep)
    with pytest.raises(episodes.EpisodeError, match="ep_000003.npz.*inconsistent"):
        episodes.load_episode(bad)


def _write_fake_episodes(d, n, length=30):
    rng = np.random.default_rng(0)
    for i in range(n):
        frames = np.full((length, 64, 64, 3), i, np.uint8)
        frames[:, 0, 0, 0] = np.arange(length)
        episodes.save_episode(
            episodes.episode_path(d, i),
            frames,
            rng.random((length, 3)),
            np.zeros(length),
            np.zeros(length, bool),
            meta={"game": "CarRacing-v3"},
        )


def test_the_frame_store_visits_every_frame_once_shuffled_across_all_episodes(tmp_path):
    _write_fake_episodes(tmp_path, 5, length=30)
    files = episodes.list_episodes(tmp_path)
    store = episodes.FrameStore.build(files, tmp_path / "frames.u8")
    assert len(store) == 150 and (tmp_path / "frames.u8").stat().st_size == 150 * 64 * 64 * 3
    batches = list(store.batches(16, np.random.default_rng(1)))
    allf = np.concatenate(batches)
    assert len(allf) == 150 and all(len(b) == 16 for b in batches[:-1])
    ids = sorted((int(f[1, 1, 0]), int(f[0, 0, 0])) for f in allf)
    assert ids == sorted((e, t) for e in range(5) for t in range(30))
    # shuffled across the whole data set: the first batch alone holds frames of every episode (p ~ 0.99 by chance)
    assert {int(f[1, 1, 0]) for f in batches[0]} == set(range(5))
    assert np.array_equal(
        store.read([31, 0, 149]),
        np.stack(
            [
                episodes.load_episode(files[1])["frames"][1],
                episodes.load_episode(files[0])["frames"][0],
                episodes.load_episode(files[4])["frames"][29],
            ]
        ),
    )
    again = list(store.batch_indices(16, np.random.default_rng(1)))  # the same seed, the same order
    assert all(np.array_equal(store.read(i), b) for i, b in zip(again, batches))


def test_the_frame_store_is_reused_for_the_same_episodes_and_rebuilt_for_others(tmp_path):
    _write_fake_episodes(tmp_path, 4, length=10)
    files = episodes.list_episodes(tmp_path)
    path = tmp_path / "frames.u8"
    episodes.FrameStore.build(files[:3], path)
    stamp = path.stat().st_mtime_ns
    assert len(episodes.FrameStore.build(files[:3], path)) == 30 and path.stat().st_mtime_ns == stamp
    assert len(episodes.FrameStore.build(files, path)) == 40  # another list of episodes: written anew
    with open(path, "r+b") as f:  # a store cut short (say, the disk filled up) is written again, not trusted
        f.truncate(100)
    with pytest.raises(episodes.EpisodeError, match="frames.u8: holds 100 bytes"):
        episodes.FrameStore(path)
    assert len(episodes.FrameStore.build(files, path)) == 40
    assert not list(tmp_path.glob(".frames.u8*"))  # no temporary file left behind


PEAK_SCRIPT = """
import resource, sys, numpy as np
from wmlib import episodes
from wmlib.vision import to_tensor
files = episodes.list_episodes(sys.argv[1])
store = episodes.FrameStore.build(files, sys.argv[1] + "/frames.u8")
n = 0
for frames in store.batches(64, np.random.default_rng(0)):
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
    """V's shuffled frames are read a batch at a time: 4x the episodes (~100 MB more frames) costs no more peak
    memory, writing the store included."""
    rng = np.random.default_rng(0)
    for i in range(40):
        frames = rng.integers(0, 256, (200, 64, 64, 3), dtype=np.uint8)  # noise: incompressible, 2.4 MB each
        for target in [tmp_path / "small", tmp_path / "large"] if i < 10 else [tmp_path / "large"]:
            episodes.save_episode(
                episodes.episode_path(target, i),
                frames,
                np.zeros((200, 1)),
                np.zeros(200),
                np.zeros(200, bool),
                meta={"game": "DoomTakeCover"},
            )
    n_small, peak_small = _peak_kb(tmp_path / "small")
    n_large, peak_large = _peak_kb(tmp_path / "large")
    assert (n_small, n_large) == (2000, 8000)
    all_frames_mb = 8000 * 64 * 64 * 3 / 2**20  # ~94 MB as uint8, ~375 MB as float
    growth_mb = (peak_large - peak_small) / 1024
    assert growth_mb < 0.15 * all_frames_mb, f"peak memory grew by {growth_mb:.1f} MB"


def test_sizes_in_messages_are_never_a_rounded_zero():
    assert episodes.format_bytes(3 * 2**30 + 2**29) == "3.5 GiB"
    assert episodes.format_bytes(300 * 2**20) == "300.0 MiB"
    assert episodes.format_bytes(1536) == "1.5 KiB"
    assert episodes.format_bytes(12) == "12 bytes"


def test_frames_that_do_not_fit_name_the_store_and_both_sizes(tmp_path):
    path = tmp_path / "vision" / "frames.u8"
    with pytest.raises(
        OSError,
        match=r"vision/frames.u8: V's 300.0 MiB of uncompressed frames do not fit in the "
        r"200.0 MiB free there; train V on fewer episodes \(--vae_episodes\)",
    ):
        episodes.check_room(path, 300 * 2**20, 200 * 2**20)
    episodes.check_room(path, 2**20, 2**20)  # exactly enough: no error


REFUSED_SCRIPT = """
import resource, signal, sys
from wmlib import episodes
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails (EFBIG) instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
try:
    episodes.FrameStore.build(episodes.list_episodes(sys.argv[1]), sys.argv[1] + "/vision/frames.u8")
except OSError as exc:
    print(exc)
"""


def test_a_write_the_system_refuses_names_the_frame_store_and_leaves_no_file(tmp_path):
    """The store is written in pieces, not through one buffer: a write the system refuses (here a file-size
    limit, as a full disk would) is an error naming the store, and leaves neither it nor a temporary file."""
    import subprocess
    import sys

    _write_fake_episodes(tmp_path, 3, length=10)  # 368,640 bytes of frames: past the limit
    out = subprocess.run(
        [sys.executable, "-c", REFUSED_SCRIPT, str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    assert f"{tmp_path}/vision/frames.u8: cannot write (File too large)" in out, out
    assert sorted(p.name for p in (tmp_path / "vision").iterdir()) == []
