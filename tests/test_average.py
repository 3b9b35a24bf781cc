"""A search keeps the mean of every evaluated generation, and wm average makes one controller of several:
on a real smoke run (Doom, in the dream), with real CMA-ES generations."""

import shutil

import numpy as np
import torch
from conftest import wm

from wmlib import compare, pretrained, rundir
from wmlib.average import average
from wmlib.config import make_config
from wmlib.evolution import mean_path, train_controller
from wmlib.io import read_csv


def run_average(*args):
    return wm("average", *args, check=False, timeout=300)


def test_the_search_keeps_every_evaluated_mean_and_their_average_plays(run_copy, smoke_runs, tmp_path):
    d = run_copy("DoomTakeCover")
    shutil.rmtree(d / "controller")
    train_controller(make_config("DoomTakeCover", "smoke", generations=4, eval_every=2), d, progress=False)
    log = read_csv(rundir.log_path(d, "controller"))
    chosen = torch.load(d / rundir.CONTROLLER, weights_only=True)
    means = sorted((d / rundir.MEANS).iterdir())
    assert [p.name for p in means] == ["gen_0002.pt", "gen_0004.pt"] == [mean_path(d, g).name for g in (2, 4)]
    two, four = (torch.load(p, weights_only=True) for p in means)
    assert (two["generation"], four["generation"]) == (2, 4)
    assert [two["best_eval"], four["best_eval"]] == [log["eval_mean"][1], log["eval_mean"][3]]
    assert torch.equal(four["params"], chosen["mean"])  # the last generation's mean is the search's mean now
    best = two if two["best_eval"] > four["best_eval"] else four
    assert torch.equal(best["params"], chosen["params"])  # the chosen controller is the best evaluated mean
    assert not torch.equal(two["params"], four["params"])

    out = tmp_path / "average.pt"
    ok = run_average("--out", out, *means)
    assert ok.returncode == 0, ok.stderr
    assert "the mean of 2 controllers" in ok.stdout and "generation 4" in ok.stdout
    avg = torch.load(out, weights_only=True)
    assert torch.equal(avg["params"], (two["params"] + four["params"]) / 2)
    assert avg["generation"] == 4 and avg["spec"] == chosen["spec"]
    assert [a["generation"] for a in avg["averaged"]] == [2, 4]
    # it plays like any controller: the same seeded episodes give it its own scores
    played = compare.compare(d, [out, means[1]], episodes=2, max_steps=20, workers=1, progress=False)
    assert played["rows"][0]["generation"] == 4 and len(played["rows"][0]["scores"]) == 2

    # made the run's controller, it is exported with a card that says what it averages, named and not located
    shutil.copy(out, d / rundir.CONTROLLER)
    agent = pretrained.export(d, tmp_path / "agent", sample_episodes=1)
    assert "ships the average of the means of generations 2 and 4 (`wm average`)" in (agent / "CARD.md").read_text()
    shipped = torch.load(agent / rundir.CONTROLLER, weights_only=True)
    assert [a["path"] for a in shipped["averaged"]] == ["means/gen_0002.pt", "means/gen_0004.pt"]
    assert torch.equal(shipped["params"], avg["params"])

    # refusals name the flag or the file, and leave what is on disk alone
    before = out.read_bytes()
    again = run_average("--out", out, *means)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert again.stderr.startswith(f"wm average: error: --out {out}: ")
    assert out.read_bytes() == before
    alone = run_average("--out", tmp_path / "one.pt", means[0])
    assert alone.returncode == 2 and "at least two" in alone.stderr
    car = smoke_runs("CarRacing-v3") / rundir.CONTROLLER
    mixed = run_average("--out", tmp_path / "mixed.pt", means[0], car)
    assert mixed.returncode == 2 and str(car) in mixed.stderr and "CarRacing-v3" in mixed.stderr
    missing = run_average("--out", tmp_path / "missing.pt", means[0], tmp_path / "nowhere.pt")
    assert missing.returncode == 2 and "nowhere.pt" in missing.stderr and "not found" in missing.stderr
    assert not any((tmp_path / f).exists() for f in ("one.pt", "mixed.pt", "missing.pt"))


def test_averaging_is_elementwise_in_float32(run_copy, tmp_path):
    d = run_copy("DoomTakeCover")
    ckpt = torch.load(d / rundir.CONTROLLER, weights_only=True)
    files = []
    for k, scale in enumerate((1.0, -0.5, 0.25)):
        c = dict(ckpt, params=ckpt["params"] * scale, generation=10 + k)
        files.append(tmp_path / f"c{k}.pt")
        torch.save(c, files[-1])
    result = average(files + [d], tmp_path / "avg.pt")
    want = np.mean(np.stack([ckpt["params"].numpy() * s for s in (1.0, -0.5, 0.25, 1.0)]), axis=0)
    assert result["params"].dtype == torch.float32 and np.array_equal(result["params"].numpy(), want)
    assert result["generation"] == 12 and result["averaged"][-1]["path"] == str(d / rundir.CONTROLLER)


def test_a_corrupt_or_foreign_controller_is_named_and_nothing_is_written(run_copy, tmp_path):
    d = run_copy("DoomTakeCover")
    corrupt = tmp_path / "corrupt.pt"
    data = bytearray((d / rundir.CONTROLLER).read_bytes())
    data[len(data) // 3] ^= 0xFF  # one byte changed inside the file
    corrupt.write_bytes(bytes(data))
    out = run_average("--out", tmp_path / "avg.pt", d, corrupt)
    assert out.returncode == 2 and f"{corrupt}: checksum mismatch (the file is corrupt" in out.stderr
    vision = d / rundir.VISION
    out = run_average("--out", tmp_path / "avg.pt", d, vision)
    assert out.returncode == 2 and f"{vision}: not a controller checkpoint of this version" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "avg.pt").exists()
