"""wmlib.io: atomic writes, checkpoints that load weights only, and the CSV logs."""

import numpy as np
import pytest
import torch

from wmlib.io import (append_csv, atomic_save, atomic_torch_save, atomic_write_bytes, atomic_write_text,
                      load_checkpoint, load_model, read_csv)


class Crash(Exception):
    pass


def test_a_writer_that_fails_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "state.bin"
    atomic_write_text(path, "old contents")

    def write_half_then_die(f):
        f.write(b"new con")
        raise Crash

    with pytest.raises(Crash):
        atomic_save(path, write_half_then_die)
    assert path.read_text() == "old contents"
    with pytest.raises(TypeError):  # fails inside the temporary file, after it was made
        atomic_write_bytes(path, "text is not bytes")
    assert path.read_text() == "old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]  # no temporary file left behind
    atomic_write_text(path, "new contents")
    assert path.read_text() == "new contents"


def test_atomic_writes_make_the_folders_they_need(tmp_path):
    atomic_write_text(tmp_path / "a" / "b" / "c.txt", "x")
    assert (tmp_path / "a" / "b" / "c.txt").read_text() == "x"


def test_load_model_builds_the_model_the_checkpoint_describes(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    path = tmp_path / "net.pt"
    atomic_torch_save(path, dict(model=net.state_dict(), arch=dict(n_in=3, n_out=2), step=7))
    model, ckpt = load_model(path, "test net", lambda c: torch.nn.Linear(c["arch"]["n_in"], c["arch"]["n_out"]))
    assert not model.training and ckpt["step"] == 7 and ckpt["path"] == str(path)
    x = torch.randn(4, 3)
    assert torch.equal(model(x), net(x))


def test_checkpoint_errors_name_the_file_and_what_it_is(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.pt: test net not found"):
        load_checkpoint(tmp_path / "missing.pt", "test net")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"bad\.pt: not a readable test net"):
        load_checkpoint(bad, "test net")
    pickled = tmp_path / "code.pt"
    torch.save({"f": Crash}, pickled)  # a pickled class: refused by weights_only loading
    with pytest.raises(ValueError, match=r"code\.pt: not a readable"):
        load_checkpoint(pickled)


def test_csv_log_round_trip_with_empty_cells(tmp_path):
    path = tmp_path / "logs" / "log.csv"
    append_csv(path, dict(step=1, loss=0.5, eval=""))
    append_csv(path, dict(step=2, loss=0.25, eval=3.0))
    assert path.read_text().splitlines()[0] == "step,loss,eval"  # the header once
    log = read_csv(path)
    assert log["step"].tolist() == [1.0, 2.0] and log["loss"].tolist() == [0.5, 0.25]
    assert np.isnan(log["eval"][0]) and log["eval"][1] == 3.0
    empty = tmp_path / "empty.csv"
    empty.write_text("step,loss\n")
    assert read_csv(empty) == {}
