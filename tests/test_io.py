"""wmlib.io: atomic writes, checkpoints that load weights only, and the CSV logs."""

import io
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from wmlib import rundir
from wmlib.controller import load_controller
from wmlib.io import (
    append_csv,
    atomic_save,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_text,
    load_checkpoint,
    load_model,
    read_csv,
    verify_checksum,
)
from wmlib.memory import load_memory
from wmlib.vision import load_vision

SHIPPED = Path(__file__).resolve().parents[1] / "pretrained"


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


def same(a, b) -> bool:
    """Equal through and through: the same keys in the same order, tensors of the same dtype, shape and bits."""
    if isinstance(b, dict):
        return isinstance(a, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in b)
    if isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return type(a) is type(b) and a == b


def small_checkpoint() -> dict:
    torch.manual_seed(0)
    net = torch.nn.Linear(6, 4)
    return dict(
        model=net.state_dict(),
        arch=dict(n_in=6, n_out=4),
        step=7,
        config=dict(game="DoomTakeCover"),
        log=[dict(step=1, loss=0.5)],
        mean=torch.arange(5, dtype=torch.float64),
    )


def test_a_checkpoint_records_its_checksum_and_the_same_content_gives_the_same_bytes(tmp_path):
    ckpt = small_checkpoint()
    atomic_torch_save(tmp_path / "a.pt", ckpt)
    atomic_torch_save(tmp_path / "b.pt", small_checkpoint())
    data = (tmp_path / "a.pt").read_bytes()
    assert data == (tmp_path / "b.pt").read_bytes()  # a re-save of the same content is byte for byte the same
    stored = verify_checksum(tmp_path / "a.pt", data)
    assert stored.startswith("sha256:") and len(stored) == 7 + 64 and data.endswith(stored.encode())
    assert same(load_checkpoint(tmp_path / "a.pt"), ckpt)
    assert same(torch.load(tmp_path / "a.pt", weights_only=True), ckpt)  # still a plain torch checkpoint
    assert zipfile.ZipFile(tmp_path / "a.pt").testzip() is None


def set_byte(path, pos: int, value: int) -> None:
    """Change one byte of a file in place."""
    with open(path, "r+b") as f:
        f.seek(pos)
        f.write(bytes([value]))


def test_every_changed_byte_of_a_checkpoint_is_an_error_naming_it(tmp_path):
    """Zeroed (or flipped) anywhere, in the tensors, the pickle, the zip's headers or the checksum itself: never a
    silent load."""
    good = tmp_path / "good.pt"
    atomic_torch_save(good, small_checkpoint())
    data = good.read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(data)
    for pos in range(len(data)):
        for value in {0, data[pos] ^ 0xFF} - {data[pos]}:  # zeroed, and every bit flipped
            set_byte(bad, pos, value)
            with pytest.raises(ValueError, match=f"^{re.escape(str(bad))}: checksum mismatch"):
                load_checkpoint(bad)
        set_byte(bad, pos, data[pos])
    assert bad.read_bytes() == data
    for size in (0, 10, len(data) // 2, len(data) - 71, len(data) - 1):  # cut off
        bad.write_bytes(data[:size])
        with pytest.raises(ValueError, match=f"^{re.escape(str(bad))}: "):
            load_checkpoint(bad)


def test_a_checkpoint_written_without_a_checksum_still_loads_and_gets_one_when_saved_again(tmp_path):
    old = tmp_path / "old.pt"
    torch.save(small_checkpoint(), old)  # as versions before checksums wrote it
    assert verify_checksum(old, old.read_bytes()) is None
    ckpt = load_checkpoint(old)
    assert same(ckpt, small_checkpoint())
    atomic_torch_save(old, ckpt)
    assert verify_checksum(old, old.read_bytes()).startswith("sha256:")


def test_every_shipped_checkpoint_records_its_checksum():
    files = sorted(SHIPPED.rglob("*.pt"))
    assert len(files) >= 6 and {f.name for f in files} == {"vision.pt", "memory.pt", "controller.pt"}
    for f in files:
        assert verify_checksum(f, f.read_bytes()) is not None, f
        assert isinstance(load_checkpoint(f), dict)


def regions(data: bytes) -> dict[str, tuple[int, int]]:
    """Where the parts of a checkpoint lie in its bytes: the pickle, the largest tensor, zip headers, the checksum."""
    members = zipfile.ZipFile(io.BytesIO(data)).infolist()
    spans = {}
    for m in members:
        name_len, extra_len = (
            int.from_bytes(data[m.header_offset + k : m.header_offset + k + 2], "little") for k in (26, 28)
        )
        start = m.header_offset + 30 + name_len + extra_len
        spans[m.filename] = (start, start + m.compress_size)
    tensors = [spans[n] for n in spans if "/data/" in n]
    return {
        "pickle": next(spans[n] for n in spans if n.endswith("/data.pkl")),
        "tensor": max(tensors, key=lambda span: span[1] - span[0]),
        "local header": (0, 30),
        "central directory": (max(m.header_offset for m in members) + 30, len(data) - 71 - 22),
        "end record": (len(data) - 71 - 22, len(data) - 71),
        "checksum": (len(data) - 71, len(data)),
    }


LOADERS = {rundir.VISION: load_vision, rundir.MEMORY: load_memory, rundir.CONTROLLER: load_controller}


@pytest.mark.parametrize("rel", list(LOADERS), ids=lambda r: r.name)
def test_a_zeroed_byte_inside_each_checkpoint_of_a_run_is_reported_naming_it(smoke_runs, tmp_path, rel):
    src = smoke_runs("DoomTakeCover") / rel
    data = src.read_bytes()
    where = regions(data)
    assert where["tensor"][1] - where["tensor"][0] >= 256 and where["pickle"][1] > where["pickle"][0]
    nonzero = np.flatnonzero(np.frombuffer(data, np.uint8))  # a zero zeroed would change nothing: skipped
    inside = {name: nonzero[(nonzero >= lo) & (nonzero < hi)] for name, (lo, hi) in where.items()}
    positions = {name: int(found[len(found) // 2]) for name, found in inside.items()}
    rng = np.random.default_rng(len(rel.name))
    positions.update((f"random {p}", int(p)) for p in rng.choice(nonzero, 20, replace=False))
    copy = tmp_path / rel
    copy.parent.mkdir(parents=True)
    shutil.copy(src, copy)
    for name, pos in positions.items():
        set_byte(copy, pos, 0)
        with pytest.raises(ValueError, match=f"^{re.escape(str(copy))}: checksum mismatch") as err:
            LOADERS[rel](copy)
        assert "\n" not in str(err.value), name
        set_byte(copy, pos, data[pos])
    assert copy.read_bytes() == data
    LOADERS[rel](copy)  # the file itself loads


def refused(load, path, what: str, reason: str) -> None:
    """``load(path)`` stops with one line: the file, what it is not, and why (``reason``, a regex)."""
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: not a {what} of this version \\({reason}") as err:
        load(path)
    assert "\n" not in str(err.value)


def test_a_checkpoint_of_another_structure_is_an_error_naming_it(smoke_runs, tmp_path):
    d = smoke_runs("DoomTakeCover")
    memory, vision = d / rundir.MEMORY, d / rundir.VISION
    refused(load_vision, memory, "vision checkpoint", "(RuntimeError|KeyError)")
    refused(load_memory, vision, "memory checkpoint", "KeyError: 'arch'")
    ckpt = load_checkpoint(memory)
    del ckpt["arch"]["action_dim"]
    atomic_torch_save(tmp_path / "memory.pt", ckpt)
    refused(load_memory, tmp_path / "memory.pt", "memory checkpoint", "TypeError: .*action_dim")
    ckpt = load_checkpoint(vision)
    del ckpt["config"]
    atomic_torch_save(tmp_path / "vision.pt", ckpt)
    refused(load_vision, tmp_path / "vision.pt", "vision checkpoint", "KeyError: 'config'")
    atomic_torch_save(tmp_path / "list.pt", [1, 2])
    refused(load_vision, tmp_path / "list.pt", "vision checkpoint", "TypeError: holds a list")


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
