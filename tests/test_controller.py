"""wmlib.controller: the paper's linear controller as a flat parameter vector, and the run's trained one."""

import numpy as np
import pytest
import torch

from wmlib import rundir
from wmlib.controller import ControllerSpec, load_controller, played_generation
from wmlib.io import atomic_torch_save


def test_parameter_counts_match_paper():
    assert ControllerSpec("CarRacing-v3", 32, 256).n_params == 867
    assert ControllerSpec("DoomTakeCover", 64, 512).n_params == 1088


def test_unflatten_and_act():
    spec = ControllerSpec("CarRacing-v3", 2, 3)  # 5 inputs, 3 outputs, bias
    p = np.arange(spec.n_params, dtype=np.float32) / 100
    w, b = spec.unflatten(p)
    assert w.shape == (1, 3, 5) and b.shape == (1, 3)
    x = torch.ones(1, 5)
    expected = np.tanh(p[:15].reshape(3, 5) @ np.ones(5) + p[15:])
    assert np.allclose(spec.act(w, b, x).numpy()[0], expected, atol=1e-6)
    with pytest.raises(ValueError, match="18 parameters"):
        spec.unflatten(np.zeros(10))


def test_doom_features_include_cell_state():
    spec = ControllerSpec("DoomTakeCover", 2, 3)
    z, h, c = torch.zeros(1, 2), torch.ones(1, 3), 2 * torch.ones(1, 3)
    assert spec.features(z, h, c).tolist() == [[0, 0, 2, 2, 2, 1, 1, 1]]
    w, b = spec.unflatten(np.ones(spec.n_params))
    assert torch.equal(b, torch.zeros(1, 1))  # no bias for Doom


def test_a_z_only_controller_reads_z_alone():
    """The paper's "V model only" ablation: 32 * 3 + 3 parameters, and M's state cannot move the action."""
    assert ControllerSpec("CarRacing-v3", 32, 256, z_only=True).n_params == 99
    assert ControllerSpec("DoomTakeCover", 64, 512, z_only=True).n_params == 64
    spec = ControllerSpec("CarRacing-v3", 2, 3, z_only=True)
    z = torch.tensor([[0.5, -1.0]])
    one = spec.features(z, torch.zeros(1, 3), torch.zeros(1, 3))
    other = spec.features(z, torch.randn(1, 3), torch.randn(1, 3))
    assert one.tolist() == other.tolist() == z.tolist()
    assert spec.to_dict() == dict(game="CarRacing-v3", z_dim=2, hidden_dim=3, z_only=True)
    # the paper's controllers keep the record they were saved with
    assert ControllerSpec("CarRacing-v3", 2, 3).to_dict() == dict(game="CarRacing-v3", z_dim=2, hidden_dim=3)


def test_load_controller_gives_the_runs_chosen_parameters(smoke_runs):
    d = smoke_runs("DoomTakeCover")
    params, ckpt = load_controller(d)
    spec = ControllerSpec(**ckpt["spec"])
    assert spec == ControllerSpec("DoomTakeCover", 64, ckpt["config"]["hidden_dim"])
    assert params.dtype == np.float32 and params.shape == (spec.n_params,)
    assert ckpt["generation"] == ckpt["config"]["generations"] and ckpt["path"] == str(d / rundir.CONTROLLER)
    assert 1 <= played_generation(ckpt) == ckpt["chosen_generation"] <= ckpt["generation"]  # the mean it keeps
    older = {k: v for k, v in ckpt.items() if k != "chosen_generation"}  # saved by an older version
    assert played_generation(older) == ckpt["generation"]
    assert np.array_equal(params, ckpt["params"].numpy()) and not np.array_equal(params, np.zeros_like(params))
    same, _ = load_controller(d / rundir.CONTROLLER)  # the run directory or the file itself
    assert np.array_equal(same, params)
    spec.unflatten(params)  # fits the spec it was saved with


def test_a_missing_controller_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"controller\.pt: controller checkpoint not found"):
        load_controller(tmp_path)


def test_a_checkpoint_that_is_no_controller_names_the_file(smoke_runs, tmp_path):
    d = smoke_runs("DoomTakeCover")
    vision = d / rundir.VISION
    with pytest.raises(ValueError, match=rf"^{vision}: not a controller checkpoint of this version \(KeyError: 'spec'"):
        load_controller(vision)
    ckpt = torch.load(d / rundir.CONTROLLER, weights_only=True)
    short = tmp_path / "short.pt"
    atomic_torch_save(short, dict(ckpt, params=ckpt["params"][:-1]))
    n = ControllerSpec(**ckpt["spec"]).n_params
    with pytest.raises(
        ValueError,
        match=r"short\.pt: not a controller checkpoint of this version \(ValueError: "
        rf"params is \({n - 1},\), not the {n} numbers of a DoomTakeCover controller",
    ):
        load_controller(short)
    odd = tmp_path / "odd.pt"
    atomic_torch_save(odd, dict(ckpt, spec=dict(ckpt["spec"], layers=2)))
    with pytest.raises(ValueError, match=r"odd\.pt: not a controller checkpoint of this version \(TypeError: .*layers"):
        load_controller(odd)
    undated = tmp_path / "undated.pt"
    atomic_torch_save(undated, {k: v for k, v in ckpt.items() if k != "generation"})
    with pytest.raises(ValueError, match=r"undated\.pt: not a controller checkpoint of this version \(KeyError: "):
        load_controller(undated)
    for path in (vision, short, odd, undated):  # each in one line
        with pytest.raises(ValueError) as err:
            load_controller(path)
        assert "\n" not in str(err.value)
