import numpy as np
import pytest
import torch

from wmlib.controller import ControllerSpec
from wmlib.games import controller_to_action


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


def test_action_mapping():
    car = controller_to_action("CarRacing-v3", np.array([[-0.5, -1.0, -0.3], [1.0, 1.0, 0.7]], np.float32))
    assert np.allclose(car, [[-0.5, 0.0, 0.0], [1.0, 1.0, 0.7]])
    doom = controller_to_action("DoomTakeCover", np.array([[-0.9], [-0.2], [0.2], [0.5]], np.float32))
    assert doom[:, 0].tolist() == [-1.0, 0.0, 0.0, 1.0]
    t = controller_to_action("DoomTakeCover", torch.tensor([[0.34]]))
    assert isinstance(t, torch.Tensor) and t.item() == 1.0
