"""The command line against a hostile or careless user, part 1: labels that become paths, --overwrite on
folders the command did not make (the input folder above all), discovery and manifests (sub-folders,
non-UTF-8 names, symbolic link loops, FIFOs, duplicate and conflicting rows, a byte-order mark, Latin-1, a
0-byte manifest, rows naming folders). Every case gives a one-line error with its documented exit code (or
is handled correctly), and nothing outside the command's output folder is created, changed or deleted.

Every case runs against the ``world`` fixture (tests/conftest.py): a sentinel tree of inputs and a finished
tiny run, whose whole tree is hashed before and after each case (tests/helpers.py: ``cli``, ``driver``).
"""
from __future__ import annotations

import faulthandler
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from ddfad_fast.data import discover
from ddfad_fast.io import load_artifact, save_artifact
from ddfad_fast.names import MAX_STEM, file_stem, numbered_names, unique_stems
from helpers import SHORT_RUN, assert_unchanged, cli, tree_state

pytestmark = pytest.mark.usefixtures("single_thread")


# ----------------------------------------------------------------------------- labels that become paths

def test_names_from_labels_are_safe_bounded_unique_and_never_paths():
    labels = ["..", "../../etc/passwd", "/abs/path", "a\0b", "x" * 300, "Cat", "cat", "a/b", "a_b", "", ".hidden",
              "-rf", "caf\udce9", "ok"]
    stems = unique_stems(labels)
    assert len({s.casefold() for s in stems.values()}) == len(labels)             # unique, ignoring case
    for label, stem in stems.items():
        assert stem and "/" not in stem and "\\" not in stem and "\0" not in stem and not stem.startswith((".", "-"))
        assert len(stem) <= MAX_STEM + 9 and stem.isascii(), (label, stem)
    assert stems["ok"] == "ok" and stems["../../etc/passwd"] == "etc_passwd"
    assert stems == unique_stems(list(reversed(labels)))                            # independent of the order
    assert file_stem("..") == "item" and file_stem("x" * 300) == "x" * MAX_STEM
    names = numbered_names(["a/b", "a_b", "a/b", "A_B"])
    assert len(set(n.casefold() for n in names)) == 4 and all(n.endswith(".wav") for n in names)


def test_a_run_on_hostile_labels_writes_only_inside_its_folder(world):
    assert_unchanged(world.escaped_before, world.escaped_after)          # the fixture's run changed nothing else
    audio = world.run / "cpc1" / "audio"
    wavs = sorted(audio.glob("*.wav"))
    assert len(wavs) == 3 and all(p.parent == audio for p in wavs)
    assert all(len(p.name.encode()) < 100 for p in wavs)
    assert not (world.sentinel / "abs_escape_000.wav").exists()


def test_reconstruct_keeps_hostile_and_colliding_labels_inside_out(world, capsys):
    case = world.case("reconstruct_labels")
    obj = load_artifact(world.distilled, kind="distilled")
    features = obj["features"][:1].repeat(8, 1, 1, 1)
    names = ["../../../escaped", str(world.sentinel / "abs"), "L" * 300, "a\0b", "A_B", "a/b", "a_b", "..."]
    config = dict(obj["config"], num_classes=8, class_names=names)
    payload = {k: v for k, v in obj.items() if k not in ("format", "kind", "version", "config")}
    save_artifact(case / "labels.pt", "distilled", dict(payload, features=features, labels=torch.arange(8)),
                  config=config)
    out = case / "out"
    cli(world, capsys, ["reconstruct", case / "labels.pt", "--out", out, "--n-iter", "1", "--nnls-iter", "2"], 0,
        out=out)
    wavs = [p for p in out.iterdir() if p.suffix == ".wav"]
    assert len(wavs) == 8 and len({p.name.casefold() for p in wavs}) == 8
    assert all(p.is_file() and not p.is_symlink() for p in wavs)


def test_links_planted_in_the_output_folder_are_replaced_never_followed(world, capsys):
    case = world.case("planted_links")
    target = world.sentinel / "notes.txt"
    out = case / "out"
    out.mkdir()
    for name in (".ddfad-output.json", ".manifest.csv.tmp", ".reconstruction.json.tmp", "take.wav"):
        os.symlink(target, out / name)             # where the command writes its marker and temporaries
    cli(world, capsys, ["reconstruct", world.distilled, "--out", out, "--n-iter", "1", "--nnls-iter", "2",
                        "--overwrite"], 2, "not a ddfad reconstruct folder", out=out)   # a linked marker: none
    (out / "take.wav").unlink()
    cli(world, capsys, ["reconstruct", world.distilled, "--out", out, "--n-iter", "1", "--nnls-iter", "2"], 0, out=out)
    assert target.read_text() == "not to be touched\n"
    assert [p.name for p in out.iterdir() if p.is_symlink()] == [".ddfad-output.json"]    # never written through
    assert (out / "manifest.csv").is_file() and not (out / "manifest.csv").is_symlink()


# ----------------------------------------------------------------------------- --overwrite

def test_overwrite_never_deletes_the_input_folder(world, capsys):
    case = world.case("overwrite_input")
    data = case / "in"
    shutil.copytree(world.fsdd, data)
    before = tree_state(data)
    cli(world, capsys, ["features", data, "--store", data, "--overwrite", "--quiet"], 2, "holds the input",
        out=data)
    assert_unchanged(before, tree_state(data))
    cli(world, capsys, ["features", "--data", data, "--store", data, "--overwrite", "--quiet"], 2, "holds the input",
        out=data)
    assert_unchanged(before, tree_state(data))
    wav = next(data.glob("*.wav"))
    cli(world, capsys, ["features", data, "--out", wav, "--overwrite", "--quiet"], 2, "an input", out=case / "none")
    cli(world, capsys, ["run", "--data", data, "--out", data, "--overwrite", *SHORT_RUN], 2, "holds the input",
        out=data)
    assert_unchanged(before, tree_state(data))


def test_overwrite_refuses_folders_ddfad_did_not_make(world, capsys):
    case = world.case("overwrite_foreign")
    foreign = case / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    (foreign / "take1.wav").write_bytes((world.fsdd / "0_spk_5.wav").read_bytes())
    for argv, needle in (
            (["features", "--data", world.fsdd, "--store", foreign, "--overwrite", "--quiet"],
             "not a ddfad store folder"),
            (["distill", "--data", world.hostile, "--experts", world.experts, "--cpc", "1", "--out", foreign,
              "--overwrite", "--cache", world.cache, "--no-compile"], "not a ddfad distill folder"),
            (["run", "--data", world.hostile, "--out", foreign, "--overwrite", *SHORT_RUN], "not a ddfad run folder"),
            (["reconstruct", world.distilled, "--out", foreign, "--overwrite"], "not a ddfad reconstruct folder"),
            (["features", world.fsdd, "--out", foreign / "thesis.tex", "--overwrite", "--quiet"], "not a file ddfad")):
        cli(world, capsys, argv, 2, needle, skip=[case / "thesis.tex.parts"])
    assert (foreign / "thesis.tex").read_text() == "years of work"
    # a folder holding the data it was made from is refused even with ddfad's marker
    marked = case / "run_with_data"
    shutil.copytree(world.data, marked / "data")
    (marked / ".ddfad-output.json").write_text(json.dumps({"format": "ddfad_fast.output", "kind": "run"}))
    cli(world, capsys, ["run", "--data", marked / "data", "--out", marked, "--overwrite", *SHORT_RUN], 2,
        "holds the input", out=marked)
    assert len(list((marked / "data").rglob("*.wav"))) == 24


def test_overwrite_replaces_what_ddfad_made(world, capsys):
    case = world.case("overwrite_own")
    store = case / "store"
    cli(world, capsys, ["features", world.fsdd, "--store", store, "--quiet"], 0, out=store)
    (store / "stale.txt").write_text("left by an earlier run")
    cli(world, capsys, ["features", world.fsdd, "--store", store, "--overwrite", "--quiet"], 0, out=store)
    assert (store / "index.json").is_file() and not (store / "stale.txt").exists()


# ----------------------------------------------------------------------------- discovery and manifests

def test_fsdd_folder_with_sub_folders_fifos_loops_and_odd_names(world, capsys):
    case = world.case("discovery")
    folder = case / "fsdd"
    shutil.copytree(world.fsdd, folder)
    (folder / "x.wav").mkdir()                                   # a folder with an audio suffix
    (folder / "extra").mkdir()
    os.mkfifo(folder / "1_fifo_7.wav")
    os.symlink("0_loop_7.wav", folder / "0_loop_7.wav")          # a link to itself
    os.symlink("missing.wav", folder / "2_broken_7.wav")
    raw = os.fsdecode(b"0_caf\xe9_8.wav")                        # a name that is not UTF-8
    shutil.copyfile(folder / "0_spk_5.wav", folder / raw)
    items, skipped = discover(folder)
    reasons = {Path(p).name: r for p, r in skipped}
    assert len(items) == 19 and raw in {Path(i.path).name for i in items}
    assert "beside FSDD-named files" in reasons["x.wav"] and "extra" in reasons
    assert "not a regular file" in reasons["1_fifo_7.wav"]
    assert "symbolic link loop" in reasons["0_loop_7.wav"] and "broken symbolic link" in reasons["2_broken_7.wav"]
    # a FIFO opened for decoding would block forever: end the test process instead
    faulthandler.dump_traceback_later(120, exit=True, file=sys.__stderr__)
    try:
        printed = cli(world, capsys, ["data", "info", folder], 0)
        assert "1_fifo_7.wav: not a regular file" in printed and "19 labelled files" in printed
        out = case / "store"
        cli(world, capsys, ["features", "--data", folder, "--store", out, "--quiet"], 0, out=out)
        cli(world, capsys, ["features", folder / "1_fifo_7.wav", "--out", case / "f.pt", "--quiet"], 1,
            "none of the 1 files", out=case / "f.pt.parts")
    finally:
        faulthandler.cancel_dump_traceback_later()


def test_manifests_with_duplicates_conflicts_bom_latin1_folders_and_no_rows(world, capsys):
    case = world.case("manifests")
    data = world.data
    rows = ["path,label,split", f"{data}/c0/0.wav,a,train", f"{data}/c0/0.wav,a,train",      # listed twice
            f"{data}/c0/1.wav,a,train", f"{data}/c0/1.wav,a,test",                             # train and test
            f"{world.sentinel}/link_to_data/c0/2.wav,a,train", f"{data}/c0/2.wav,b,train",     # via a link
            f"{data}/c1,b,train", f"{data}/c1/0.wav,b,train", f"{data}/c1/1.wav,b,test"]       # a folder
    dup = case / "dup.csv"
    dup.write_bytes(("\ufeff" + "\n".join(rows) + "\n").encode("utf-8"))                      # with a BOM
    items, skipped = discover(dup)
    kept = {(Path(i.path).name, Path(i.path).parent.name, i.split) for i in items}
    assert kept == {("0.wav", "c0", "train"), ("0.wav", "c1", "train"), ("1.wav", "c1", "test")}
    reasons = " | ".join(r for _, r in skipped)
    assert "listed twice" in reasons and reasons.count("different labels or splits") == 4
    assert "a folder, not an audio file" in reasons and len(skipped) == 6          # the header is not a row
    latin = case / "latin1.csv"
    shutil.copyfile(data / "c0" / "0.wav", case / "café.wav")                 # a UTF-8 name on disk
    shutil.copyfile(data / "c0" / "1.wav", case / os.fsdecode(b"d\xe9j\xe0.wav"))   # a Latin-1 name on disk
    latin.write_bytes("path,label\ncafé.wav,été\n".encode("latin-1") + b"d\xe9j\xe0.wav,\xe9t\xe9\n"
                      + "c.wav,hiver\n".encode("latin-1"))
    items, skipped = discover(latin)
    assert [i.label for i in items] == ["été", "été", "hiver"]
    assert [Path(i.path).exists() for i in items] == [True, True, False]
    empty = case / "empty.csv"
    empty.write_bytes(b"")
    cli(world, capsys, ["data", "info", empty], 2, "no labelled audio files")
    cli(world, capsys, ["data", "info", dup], 0)
    os.mkfifo(case / "fifo.csv")
    cli(world, capsys, ["data", "info", case / "fifo.csv"], 2, "neither a folder nor a .csv manifest")
