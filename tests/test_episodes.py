import numpy as np
import pytest

from wmlib import episodes


def _episode(n=12, a=3):
    rng = np.random.default_rng(0)
    return dict(frames=rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8), actions=rng.random((n, a)),
                rewards=rng.random(n), dones=np.arange(n) == n - 1)


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
