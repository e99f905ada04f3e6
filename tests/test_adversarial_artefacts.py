"""The command line against a hostile or careless user, part 2: tampered or foreign artefacts (experts,
distilled sets, checkpoints, feature-store shards and index, pickled code) are refused with one line naming
the file and the field, and nothing outside the command's output folder changes.

Every case runs against the ``world`` fixture (tests/conftest.py): a sentinel tree of inputs and a finished
tiny run, whose whole tree is hashed before and after each case (tests/helpers.py: ``cli``, ``driver``).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import World, cli

pytestmark = pytest.mark.usefixtures("single_thread")


# ----------------------------------------------------------------------------- tampered and foreign artefacts

def _tampered(source: Path, target: Path, change) -> Path:
    obj = torch.load(source, weights_only=True)
    change(obj)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, target)
    return target


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_tampered_expert_files_are_refused_naming_the_field(world, capsys):
    case = world.case("experts")
    expert = world.experts / "expert_000.pt"
    for name, change, needle in (
            ("no_params", lambda o: o.pop("params"), "'params' is missing"),
            ("list_params", lambda o: o.update(params=o["params"].tolist()), "'params' is a list"),
            ("nan_params", lambda o: o["params"].__setitem__((1, 3), float("nan")), "'params' holds 1 NaN"),
            ("short_params", lambda o: o.update(params=o["params"][:, :5]), "'params' holds 5 parameters")):
        folder = case / name
        _tampered(expert, folder / "expert_000.pt", change)
        out = case / f"out_{name}"
        cli(world, capsys, ["distill", "--data", world.hostile, "--experts", folder, "--cpc", "1", "--out", out,
                            "--cache", world.cache, "--quiet", "--no-compile"], 2, needle, out=out)


def test_tampered_distilled_sets_are_refused_naming_the_field(world, capsys):
    case = world.case("distilled")
    for name, change, needle in (
            ("no_features", lambda o: o.pop("features"), "'features' is missing"),
            ("nan_features", lambda o: o["features"].fill_(float("nan")), "'features' holds"),
            ("labels_range", lambda o: o["labels"].__setitem__(0, 7), "outside [0, 3)"),
            ("labels_count", lambda o: o.update(labels=o["labels"][:2]), "'labels' has 2 labels"),
            ("alpha_inf", lambda o: o.update(alpha=torch.tensor(float("inf"))), "'alpha' is inf"),
            ("no_config", lambda o: o.pop("config"), "'config' is missing")):
        path = _tampered(world.distilled, case / f"{name}.pt", change)
        cli(world, capsys, ["evaluate", path, "--data", world.hostile, "--cache", world.cache, "--num-nets", "1",
                            "--epochs", "1", "--no-compile"], 2, needle)
        out = case / f"wav_{name}"
        cli(world, capsys, ["reconstruct", path, "--out", out, "--n-iter", "1"], 2, needle, out=out)
    torch.save({"format": "ddfad_fast", "kind": "distilled", "payload": _Payload()}, case / "code.pt")
    cli(world, capsys, ["evaluate", case / "code.pt", "--data", world.hostile, "--cache", world.cache], 2,
        "refused: it holds Python objects")
    assert not Path("PWNED").exists()
    (case / "garbage.pt").write_bytes(os.urandom(4096))
    cli(world, capsys, ["reconstruct", case / "garbage.pt", "--out", case / "g"], 2, "not a loadable ddfad_fast file",
        out=case / "g")
    (case / "folder.pt").mkdir()
    cli(world, capsys, ["reconstruct", case / "folder.pt", "--out", case / "h"], 2, "a folder, not a ddfad_fast file",
        out=case / "h")


def test_tampered_distill_checkpoints_are_refused_naming_the_field(world, capsys):
    case = world.case("checkpoints")
    checkpoint = world.run / "cpc1" / "checkpoint.pt"
    for name, change, needle in (
            ("no_mom_x", lambda o: o.pop("mom_x"), "'mom_x' is missing"),
            ("bad_rng", lambda o: o.update(generator=torch.zeros(7, dtype=torch.uint8)), "'generator' is not a valid"),
            ("negative", lambda o: o.update(iteration=-5), "'iteration' is -5"),
            ("nan_x", lambda o: o["x"].view(-1).__setitem__(0, float("inf")), "'x' holds 1 NaN or infinite")):
        out = case / name
        _tampered(checkpoint, out / "checkpoint.pt", change)
        cli(world, capsys, ["distill", "--data", world.hostile, "--experts", world.experts, "--cpc", "1", "--out", out,
                            "--cache", world.cache, "--resume", "--quiet", "--iterations", "3", "--syn-steps", "2"],
            2, needle, out=out)


def _store_copy(world: World, case: Path) -> Path:
    source = next(world.cache.glob("store_*"))
    shutil.copytree(source, case / "cache" / source.name)
    return case / "cache" / source.name


def test_tampered_feature_stores_are_refused_naming_the_file(world, capsys):
    case = world.case("store")
    argv = ["experts", "--data", world.hostile, "--out", case / "out", "--num-experts", "1", "--epochs", "1",
            "--cache", case / "cache", "--no-compile", "--width", "4"]
    store = _store_copy(world, case)
    shard = store / "shard_00000.npy"
    array = np.load(shard)
    array[0, 0, 0, :4] = np.nan                                      # NaN bytes written into the shard
    np.save(shard, array)
    cli(world, capsys, argv, 2, "shard_00000.npy: the shard holds NaN", out=case / "out")
    assert not (case / "out" / "expert_000.pt").exists()
    array[0, 0, 0, :4] = 1.0                                         # finite, but not what was written
    np.save(shard, array)
    cli(world, capsys, argv, 2, "checksum does not match", out=case / "out")
    index = store / "index.json"
    good = json.loads(index.read_text())
    for change, needle in ((lambda o: o["rows"].pop(), "field 'rows' has"),
                           (lambda o: o.pop("shards"), "field 'shards' is missing"),
                           (lambda o: o["shards"][0].update(file="../../../etc/passwd"), "expected a shard file name")):
        bad = json.loads(json.dumps(good))
        change(bad)
        index.write_text(json.dumps(bad))
        cli(world, capsys, argv, 2, needle, out=case / "out")
