"""Controller (C): the paper's single-layer linear policy, kept as a flat parameter vector for CMA-ES.

| game          | input          | output                          | parameters                      |
|---------------|----------------|---------------------------------|---------------------------------|
| CarRacing-v3  | [z, h]  (288)  | tanh(W [z h] + b), 3 numbers    | 288 * 3 + 3 = 867  (paper)      |
| DoomTakeCover | [z, c, h] (1088) | tanh(W [z c h]), 1 number, no bias | 1088 * 1 = 1088 (paper)     |

With ``z_only`` (the paper's ablation, Sec. 3.4 / Table 1 "V model only") C reads z alone: 32 * 3 + 3 = 99
parameters for CarRacing, blind to what M remembers and predicts.

The outputs become game actions in :func:`wmlib.games.controller_to_action`. :mod:`wmlib.evolution` trains the
parameters and writes ``controller/controller.pt``; :func:`load_controller` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import rundir
from .games import check_game
from .io import checkpoint_structure, load_checkpoint


@dataclass(frozen=True)
class ControllerSpec:
    game: str
    z_dim: int
    hidden_dim: int
    z_only: bool = False
    """Read z alone, not M's state (the paper's "V model only" ablation)."""

    def __post_init__(self):
        check_game(self.game)

    @property
    def parts(self) -> list[tuple[str, int]]:
        """The input's pieces in order, (name, size): z, then c (Doom) and h, or z alone."""
        if self.z_only:
            return [("z", self.z_dim)]
        return [("z", self.z_dim)] + ([("c", self.hidden_dim)] if self.uses_cell else []) + [("h", self.hidden_dim)]

    @property
    def uses_cell(self) -> bool:
        """Doom's controller also sees the LSTM cell state c (paper, Appendix A.3)."""
        return self.game == "DoomTakeCover"

    @property
    def has_bias(self) -> bool:
        return self.game == "CarRacing-v3"

    @property
    def n_in(self) -> int:
        return sum(size for _, size in self.parts)

    @property
    def n_out(self) -> int:
        return 3 if self.game == "CarRacing-v3" else 1

    @property
    def n_params(self) -> int:
        return self.n_in * self.n_out + (self.n_out if self.has_bias else 0)

    def to_dict(self) -> dict:
        extra = dict(z_only=True) if self.z_only else {}  # the paper's controllers keep their old records
        return dict(game=self.game, z_dim=self.z_dim, hidden_dim=self.hidden_dim, **extra)

    def features(self, z: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The controller's input, (B, n_in): [z h], [z c h], or z alone."""
        pieces = dict(z=z, c=c, h=h)
        return torch.cat([pieces[name] for name, _ in self.parts], dim=-1)

    def unflatten(self, params) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n_params) or (n_params,) -> W (B, n_out, n_in), b (B, n_out) (zeros when there is no bias)."""
        p = torch.as_tensor(np.asarray(params, dtype=np.float32))
        if p.dim() == 1:
            p = p.unsqueeze(0)
        if p.shape[-1] != self.n_params:
            raise ValueError(f"{self.game} controller has {self.n_params} parameters, got a vector of {p.shape[-1]}")
        n_w = self.n_in * self.n_out
        w = p[:, :n_w].reshape(-1, self.n_out, self.n_in)
        b = p[:, n_w:] if self.has_bias else torch.zeros(p.shape[0], self.n_out)
        return w, b

    @staticmethod
    def act(w: torch.Tensor, b: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """tanh(W x + b) for a batch where every row has its own W and b: (B, n_out)."""
        return torch.tanh(torch.bmm(w, feats.unsqueeze(-1)).squeeze(-1) + b)


def load_controller(data_dir_or_file) -> tuple[np.ndarray, dict]:
    """The run's chosen controller parameters (float32) and its checkpoint record (spec, generation, path, ...)."""
    path = Path(data_dir_or_file)
    if path.is_dir():
        path = rundir.path(path, rundir.CONTROLLER)
    ckpt = load_checkpoint(path, "controller checkpoint")
    with checkpoint_structure(path, "controller checkpoint"):
        params = _checked_params(ckpt)
    ckpt["path"] = str(path)
    return params, ckpt


def played_generation(ckpt: dict) -> int:
    """The generation whose parameters a controller checkpoint holds (what playing it plays): its
    ``chosen_generation`` (the search may have gone on past the mean it keeps), else its ``generation``."""
    return int(ckpt.get("chosen_generation", ckpt["generation"]))


def _checked_params(ckpt) -> np.ndarray:
    """A controller record's parameters (float32), after checking they are the vector its ``spec`` describes (and
    that it says its generation)."""
    if not isinstance(ckpt, dict):
        raise TypeError(f"holds a {type(ckpt).__name__}, not a dict")
    spec = ControllerSpec(**ckpt["spec"])
    params = ckpt["params"]
    if not isinstance(params, torch.Tensor) or params.dim() != 1 or params.numel() != spec.n_params:
        shape = tuple(params.shape) if isinstance(params, torch.Tensor) else type(params).__name__
        raise ValueError(f"params is {shape}, not the {spec.n_params} numbers of a {spec.game} controller")
    int(ckpt["generation"])  # how far its search went
    played_generation(ckpt)  # and the generation of its parameters, which its readers report
    return params.numpy().astype(np.float32)
