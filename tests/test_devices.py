"""wmlib.devices: what ``--device`` names, and that V, the encoding and M train on the CPU exactly as before when it
names the CPU. (On a machine with a CUDA GPU, the last tests train and dream there too.)"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import wm

from wmlib import devices, episodes
from wmlib.config import make_config
from wmlib.io import load_checkpoint
from wmlib.memory import Memory, encode_episodes, train_memory
from wmlib.vision import train_vision

SHIPPED_EPISODES = Path(__file__).resolve().parents[1] / "pretrained" / "doom" / "episodes"
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_cpu_and_auto():
    cpu = torch.device("cpu")
    assert devices.resolve("cpu") == devices.resolve(None) == devices.resolve(cpu) == cpu
    auto = devices.resolve("auto")
    if torch.cuda.is_available():
        assert auto.type == "cuda"
    elif torch.backends.mps.is_available():
        assert auto.type == "mps"
    else:
        assert auto == torch.device("cpu")
    assert devices.name("cpu").startswith("cpu: ") and len(devices.name("cpu")) > len("cpu: ")


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:0", " CUDA "])
def test_cuda_without_cuda_names_the_flag(name):
    with pytest.raises(ValueError) as err:
        devices.resolve(name)
    want = (
        f"--device {name.strip().lower()}: this machine has no CUDA device (torch.cuda.is_available() is "
        "False); use --device cpu or auto"
    )
    assert str(err.value) == want


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an MPS device")
def test_mps_without_mps_names_the_flag():
    with pytest.raises(ValueError, match=r"^--device mps: this machine has no MPS device .* use --device cpu or auto"):
        devices.resolve("mps")


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "gpu", "cuda:-1", ""])
def test_an_unknown_device_lists_the_choices(name):
    with pytest.raises(ValueError, match=r"expected auto, cpu, cuda, cuda:N or mps"):
        devices.resolve(name)


def test_checkpoint_state_stays_the_same_object_on_the_cpu_and_a_copy_moves():
    m = Memory(4, 1, 8, 2)
    state = m.state_dict()
    assert devices.to_cpu(state) is state  # what a CPU run saves is exactly what it saved before
    opt = torch.optim.Adam(m.parameters())
    m(torch.randn(1, 3, 4), torch.randn(1, 3, 1))[0].mu.sum().backward()
    opt.step()
    assert devices.to_cpu(opt.state_dict())["state"][0]["exp_avg"] is opt.state_dict()["state"][0]["exp_avg"]
    # a model elsewhere is copied there, the caller's stays put ('meta': a device every torch has)
    assert devices.on(m, torch.device("cpu")) is m
    moved = devices.on(m, torch.device("meta"))
    assert devices.of(moved).type == "meta" and devices.of(m).type == "cpu"
    assert all(t.device.type == "meta" for t in moved.state_dict().values())


def _short_episodes(d: Path, frames: int = 32) -> None:
    """The first ``frames`` frames of two shipped Doom episodes (real frames), as the run's episodes."""
    for i in range(2):
        ep = episodes.load_episode(SHIPPED_EPISODES / f"ep_{i:06d}.npz")
        episodes.save_episode(
            episodes.episode_path(d, i),
            ep["frames"][:frames],
            ep["actions"][:frames],
            ep["rewards"][:frames],
            ep["dones"][:frames],
            meta=dict(ep["meta"]),
        )


def _train_world_model(d: Path, **device) -> dict:
    """V, the encoding and M at the smoke scale (small sizes) on short real Doom episodes."""
    _short_episodes(d)
    cfg = make_config("DoomTakeCover", "smoke", z_dim=16, hidden_dim=32)
    train_vision(cfg, d, progress=False, save_every=1000, **device)  # one checkpoint: V's are 53 MB
    encode_episodes(d, progress=False, **device)
    train_memory(cfg, d, progress=False, **device)
    out = {name: load_checkpoint(d / name) for name in ("vision/vision.pt", "memory/memory.pt")}
    out["series"] = [episodes.load_series(f)["mu"] for f in episodes.list_series(d)]
    return out


def _same_tensors(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return a.device.type == "cpu" and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_tensors(x, y) for x, y in zip(a, b))
    return True


def _without_seconds(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_device_cpu_trains_exactly_as_no_device(tmp_path):
    runs = []
    for name, device in (("default", {}), ("cpu", dict(device="cpu"))):
        runs.append(_train_world_model(tmp_path / name, **device))
    default, cpu = runs
    for name in ("vision/vision.pt", "memory/memory.pt"):
        assert _same_tensors(default[name]["model"], cpu[name]["model"]), name
        assert _same_tensors(default[name]["optimizer"], cpu[name]["optimizer"]), name
        assert _without_seconds(default[name]["log"]) == _without_seconds(cpu[name]["log"]), name
    assert len(default["series"]) == 2
    assert all(np.array_equal(a, b) for a, b in zip(default["series"], cpu["series"]))


@no_cuda
def test_training_on_cuda_without_cuda_is_refused_before_anything_is_written(tmp_path):
    _short_episodes(tmp_path)
    cfg = make_config("DoomTakeCover", "smoke")
    with pytest.raises(ValueError, match="--device cuda: this machine has no CUDA device"):
        train_vision(cfg, tmp_path, progress=False, device="cuda")
    with pytest.raises(ValueError, match="--device cuda: this machine has no CUDA device"):
        train_memory(cfg, tmp_path, progress=False, device="cuda")
    assert not (tmp_path / "vision" / "vision.pt").exists() and not (tmp_path / "memory" / "memory.pt").exists()


@needs_cuda
def test_training_on_cuda_writes_cpu_checkpoints_close_to_the_cpu_run(tmp_path):
    runs = {}
    for device in ("cpu", "cuda"):
        runs[device] = _train_world_model(tmp_path / device, device=device)
    for name in ("vision/vision.pt", "memory/memory.pt"):
        cuda, cpu = runs["cuda"][name], runs["cpu"][name]
        assert all(t.device.type == "cpu" for t in cuda["model"].values())  # loads on any machine
        first_cuda, first_cpu = cuda["log"][0], cpu["log"][0]
        assert first_cuda["loss"] == pytest.approx(first_cpu["loss"], rel=1e-3), name


@no_cuda
def test_wm_device_cuda_without_cuda_names_the_flag_and_changes_nothing(run_copy):
    d = run_copy("DoomTakeCover")
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    for command in ("vision", "memory", "controller", "run"):
        proc = wm(command, "--data_dir", d, "--device", "cuda", "--quiet", check=False)
        assert proc.returncode == 2, command
        assert "--device cuda: this machine has no CUDA device" in proc.stderr, command
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before


def test_wm_controller_device_cpu_is_the_default(run_copy, tmp_path):
    d = run_copy("DoomTakeCover")
    shutil.rmtree(d / "controller")
    other = tmp_path / "other"
    shutil.copytree(d, other)
    wm("controller", "--data_dir", d, "--generations", 1, "--quiet")  # in the dream
    wm("controller", "--data_dir", other, "--generations", 1, "--device", "cpu", "--quiet")
    rows = [(p / "controller/log.csv").read_text().splitlines() for p in (d, other)]
    assert [r.rsplit(",", 1)[0] for r in rows[0]] == [r.rsplit(",", 1)[0] for r in rows[1]]


def test_wm_test_device_cpu_plays_the_shipped_agent_as_without_the_flag(tmp_path):
    scores = []
    for name, flags in (("plain", []), ("cpu", ["--device", "cpu"])):
        d = tmp_path / name
        wm("test", "--pretrained", "doom", "--data_dir", d, "--rollouts", 4, "--max_steps", 200, "--quiet", *flags)
        scores.append(json.loads((d / "test" / "scores.json").read_text())["scores"])
    assert scores[0] == scores[1] and len(scores[0]) == 4
