"""The command line against a hostile or careless user: every case gives a one-line error with its documented
exit code (or is handled correctly), and nothing outside the command's output folder is created, changed or
deleted: every case hashes the whole test tree (a sentinel tree of inputs, a finished run, the other cases)
before and after, leaving out only its own output folder.

Classes: labels that become paths; --overwrite on folders the command did not make (the input folder above
all); discovery and manifests (sub-folders, non-UTF-8 names, symbolic link loops, FIFOs, duplicate and
conflicting rows, a byte-order mark, Latin-1, a 0-byte manifest, rows naming folders); tampered or foreign
artefacts (experts, distilled sets, checkpoints, feature-store shards and index, pickled code); resource
faults (ulimit -f, a full and a read-only file system, a folder without write permission, in every
command); two processes writing one folder; numbers that pass validation but break a run.

The full, read-only and unwritable file systems use Linux user and mount namespaces (``unshare``); those
cases skip where the namespaces are not available.
"""
from __future__ import annotations

import faulthandler
import hashlib
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ddfad_fast.cli import main
from ddfad_fast.data import discover
from ddfad_fast.errors import FileFormatError, NonFiniteError
from ddfad_fast.io import load_artifact, save_artifact
from ddfad_fast.names import MAX_STEM, file_stem, numbered_names, unique_stems

ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).with_name("adversarial_driver.py")
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
           PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
SR = 8000


def tiny_run(iterations: int = 2) -> list:
    """Flags of a `ddfad run` of a few seconds."""
    return ["--cpc", "1", "--width", "4", "--num-experts", "1", "--expert-epochs", "3", "--iterations", str(iterations),
            "--syn-steps", "2", "--checkpoint-every", "1", "--no-compile", "--num-nets", "1", "--eval-epochs", "2",
            "--full-epochs", "1"]


TINY_RUN = tiny_run()
HOSTILE = ("../../../escaped", None, "L" * 300)        # None: an absolute path into the sentinel tree

pytestmark = pytest.mark.usefixtures("single_thread")


# ----------------------------------------------------------------------------- the test tree

def tree_state(root: Path, skip=()) -> dict:
    """Every entry under ``root`` (links not followed) but the ``skip`` folders: its type, mode, and for files
    the modification time and a hash of the content, for links the target."""
    state, skip = {}, [os.fspath(s) for s in skip]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if path in skip:
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                entry = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as handle:
                    entry = ("file", st.st_mode, st.st_mtime_ns, hashlib.sha256(handle.read()).hexdigest())
            else:
                entry = ("other", st.st_mode)
            state[os.path.relpath(path, root)] = entry
    return state


def assert_unchanged(before: dict, after: dict) -> None:
    created = sorted(set(after) - set(before))
    deleted = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (created or deleted or changed), f"created {created[:5]}, deleted {deleted[:5]}, changed {changed[:5]}"


def tones(folder: Path, classes: int = 3, per_class: int = 8, fsdd: bool = False) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(SR // 4) / SR
    folder.mkdir(parents=True, exist_ok=True)
    for c in range(classes):
        for k in range(per_class):
            phase = rng.uniform(0, 6.3)
            wave = 0.3 * np.sin(2 * np.pi * (300 + 400 * c) * t + phase) + 0.01 * rng.standard_normal(t.size)
            if fsdd:
                path = folder / f"{c}_spk_{k}.wav"
            else:
                (folder / f"c{c}").mkdir(exist_ok=True)
                path = folder / f"c{c}" / f"{k}.wav"
            sf.write(path, wave.astype(np.float32), SR)


@dataclass
class World:
    root: Path
    sentinel: Path
    data: Path
    fsdd: Path
    hostile: Path
    run: Path
    features: Path
    escaped_before: dict
    escaped_after: dict

    @property
    def experts(self) -> Path:
        return self.run / "experts"

    @property
    def cache(self) -> Path:
        return self.run / "cache"

    @property
    def distilled(self) -> Path:
        return self.run / "cpc1" / "distilled.pt"

    def case(self, name: str) -> Path:
        folder = self.root / "cases" / name
        folder.mkdir(parents=True)
        return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    """A sentinel tree of inputs (a class-folder data set, an FSDD-named one, a manifest whose labels are
    ``../../../escaped``, an absolute path into the sentinel tree and 300 characters), and a finished tiny run
    on that manifest (with its audio) and a features file, made once."""
    root = tmp_path_factory.mktemp("adversarial")
    sentinel = root / "sentinel"
    tones(sentinel / "data")
    tones(sentinel / "fsdd", per_class=6, fsdd=True)
    (sentinel / "notes.txt").write_text("not to be touched\n")
    os.symlink("data", sentinel / "link_to_data")
    labels = [label if label is not None else str(sentinel / "abs_escape") for label in HOSTILE]
    rows = ["path,label"] + [f"data/c{c}/{k}.wav,{labels[c]}" for c in range(3) for k in range(8)]
    hostile = sentinel / "hostile.csv"
    hostile.write_text("\n".join(rows) + "\n")
    art = root / "art"
    art.mkdir()
    before = tree_state(root)
    assert main(["run", "--data", str(hostile), "--out", str(art / "run"), *TINY_RUN]) == 0
    after = tree_state(root, skip=[art / "run"])
    assert main(["features", "--data", str(hostile), "--out", str(art / "features.pt"), "--quiet"]) == 0
    return World(root, sentinel, sentinel / "data", sentinel / "fsdd", hostile, art / "run", art / "features.pt",
                 before, after)


def cli(world: World, capsys, argv, rc: int, needle: str = "", out=None, skip=()) -> str:
    """Run ``ddfad argv`` in this process: exit code ``rc``, no traceback, one error line holding ``needle``
    (none when rc is 0), and nothing changed in the test tree outside ``out`` (and ``skip``)."""
    capsys.readouterr()
    leave = [p for p in [out, *skip] if p is not None]
    before = tree_state(world.root, leave)
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    after = tree_state(world.root, leave)
    assert code == rc, (code, captured.err[-3000:])
    assert "Traceback" not in captured.err, captured.err
    errors = [line for line in captured.err.splitlines() if ": error: " in line]
    if rc == 0:
        assert not errors, errors
    else:
        assert len(errors) == 1 and needle in errors[0], errors
        assert "weights_only" not in errors[0]
    assert_unchanged(before, after)
    return captured.out + captured.err


def driver(world: World, case: Path, commands, prefix=(), limit_fsize=None, timeout=600) -> list:
    """Run ``commands`` (argv lists) through tests/adversarial_driver.py in one subprocess (after ``prefix``,
    e.g. unshare), each with its exit code and output; the test tree outside ``case`` must not change."""
    cases, results = case / "cases.json", case / "results.json"
    cases.write_text(json.dumps([[str(a) for a in argv] for argv in commands]))
    before = tree_state(world.root, [case])
    preexec = None
    if limit_fsize is not None:
        def preexec():
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_fsize, limit_fsize))
    proc = subprocess.run([*prefix, sys.executable, str(DRIVER), str(cases), str(results)], env=ENV,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_unchanged(before, tree_state(world.root, [case]))
    return json.loads(results.read_text())


def assert_one_line(result: dict, rc: int, *needles: str) -> None:
    assert result["rc"] == rc, result
    assert "Traceback" not in result["err"], result["err"]
    errors = [line for line in result["err"].splitlines() if ": error: " in line]
    assert len(errors) == 1, result
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


def no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".tmp" in p.name]


_NAMESPACES: dict = {}


def namespaces(kind: str) -> list:
    """The command prefix that runs a process in a user namespace (``user``: as an unprivileged user whose
    permissions are the file owner's; ``mount``: as root with its own mounts), or skip."""
    if kind not in _NAMESPACES:
        prefix = (["unshare", "--user"] if kind == "user" else ["unshare", "--user", "--map-root-user", "--mount"])
        ok = shutil.which("unshare") is not None and subprocess.run(
            [*prefix, "true"], capture_output=True).returncode == 0
        _NAMESPACES[kind] = prefix if ok else None
    if _NAMESPACES[kind] is None:
        pytest.skip(f"no {kind} namespaces here (unshare)")
    return _NAMESPACES[kind]


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
    cli(world, capsys, ["run", "--data", data, "--out", data, "--overwrite", *TINY_RUN], 2, "holds the input",
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
            (["run", "--data", world.hostile, "--out", foreign, "--overwrite", *TINY_RUN], "not a ddfad run folder"),
            (["reconstruct", world.distilled, "--out", foreign, "--overwrite"], "not a ddfad reconstruct folder"),
            (["features", world.fsdd, "--out", foreign / "thesis.tex", "--overwrite", "--quiet"], "not a file ddfad")):
        cli(world, capsys, argv, 2, needle, skip=[case / "thesis.tex.parts"])
    assert (foreign / "thesis.tex").read_text() == "years of work"
    # a folder holding the data it was made from is refused even with ddfad's marker
    marked = case / "run_with_data"
    shutil.copytree(world.data, marked / "data")
    (marked / ".ddfad-output.json").write_text(json.dumps({"format": "ddfad_fast.output", "kind": "run"}))
    cli(world, capsys, ["run", "--data", marked / "data", "--out", marked, "--overwrite", *TINY_RUN], 2,
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


# ----------------------------------------------------------------------------- resource faults

def test_file_size_limit_gives_one_line_and_keeps_the_last_checkpoint(world):
    case = world.case("ulimit")
    out = case / "distill"
    base = ["distill", "--data", world.hostile, "--experts", world.experts, "--cpc", "1", "--out", out,
            "--cache", world.cache, "--quiet", "--no-compile", "--syn-steps", "2", "--checkpoint-every", "2"]
    first, = driver(world, case, [base + ["--iterations", "2"]])
    assert first["rc"] == 0, first
    saved = (out / "checkpoint.pt").read_bytes()
    features, resumed = driver(world, case, [["features", world.data, "--out", case / "f.pt", "--quiet"],
                                             base + ["--iterations", "4", "--resume"]], limit_fsize=16 * 1024)
    assert_one_line(features, 1, "f.pt", "file size limit (ulimit -f)")
    assert not (case / "f.pt").exists() and no_temporary_files(case)
    assert_one_line(resumed, 1, "file size limit (ulimit -f)", "--resume")
    assert (out / "checkpoint.pt").read_bytes() == saved and no_temporary_files(out)    # the last checkpoint kept
    done, = driver(world, case, [base + ["--iterations", "4", "--resume"]])
    assert done["rc"] == 0 and len(load_artifact(out / "distilled.pt")["history"]["loss"]) == 4


def _all_commands(world: World, base: Path) -> list:
    """One command line per command, each writing into its own (existing, empty) folder under ``base``."""
    def own(name):
        (base / name).mkdir(parents=True, exist_ok=True)
        return base / name
    return [
        ["features", world.data, "--out", own("features_file") / "f.pt", "--quiet"],
        ["features", "--data", world.hostile, "--store", own("features_store"), "--quiet"],
        ["reconstruct", world.distilled, "--out", own("reconstruct"), "--n-iter", "1"],
        ["data", "fetch", "fsdd", "--to", own("fetch")],
        ["data", "info", world.hostile, "--cache", own("info")],
        ["experts", "--data", world.hostile, "--out", own("experts"), "--num-experts", "1", "--epochs", "1",
         "--cache", world.cache, "--no-compile", "--width", "4"],
        ["distill", "--data", world.hostile, "--experts", world.experts, "--cpc", "1", "--out", own("distill"),
         "--cache", world.cache, "--quiet", "--no-compile", "--iterations", "1"],
        ["evaluate", world.distilled, "--data", world.hostile, "--cache", world.cache, "--out", own("evaluate"),
         "--num-nets", "1", "--epochs", "1", "--no-compile"],
        ["run", "--data", world.hostile, "--out", own("run"), *TINY_RUN],
        ["continual", "--run", world.run, "--out", own("continual"), "--tasks", "2", "--seeds", "1",
         "--protocols", "gdumb"],
        ["nas", "--run", world.run, "--out", own("nas"), "--limit", "2", "--proxy-steps", "1", "--full-epochs", "1",
         "--quiet"],
    ]


def _chmod_tree(folder: Path, mode: int) -> None:
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(mode)


def test_unwritable_output_folders_in_every_command(world):
    prefix = namespaces("user") if os.geteuid() == 0 else []
    case = world.case("unwritable")
    commands = _all_commands(world, case / "ro")
    _chmod_tree(case / "ro", 0o555)
    try:
        results = driver(world, case, commands, prefix=prefix)
    finally:
        _chmod_tree(case / "ro", 0o755)
    for result in results:
        assert_one_line(result, 1, "permission denied")
        assert str(case / "ro") in result["err"]
    assert not [p for p in (case / "ro").rglob("*") if p.is_file()]


def test_read_only_and_full_file_systems(world):
    prefix = namespaces("mount")
    case = world.case("filesystems")
    ro, full = case / "ro", case / "full"
    commands = _all_commands(world, ro)
    full.mkdir()
    script = (f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} && "
              f"mount -t tmpfs -o size=96k tmpfs {full} && "
              f"exec {sys.executable} {DRIVER} {case / 'cases.json'} {case / 'results.json'}")
    commands += [["features", world.data, "--out", full / "f.pt", "--quiet"],
                 ["run", "--data", world.hostile, "--out", full / "run", *TINY_RUN]]
    cases = case / "cases.json"
    cases.write_text(json.dumps([[str(a) for a in argv] for argv in commands]))
    before = tree_state(world.root, [case])
    proc = subprocess.run([*prefix, "sh", "-c", script], env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_unchanged(before, tree_state(world.root, [case]))
    results = json.loads((case / "results.json").read_text())
    for result in results[:-2]:
        assert_one_line(result, 1, "read-only file system")
    for result in results[-2:]:
        assert_one_line(result, 1, "no space left on the device", "--resume")


# ----------------------------------------------------------------------------- one writer per folder

def test_a_second_process_writing_the_same_folder_is_refused(world, capsys):
    case = world.case("lock")
    out = case / "out"
    argv = ["distill", "--data", world.hostile, "--experts", world.experts, "--cpc", "1", "--out", out,
            "--cache", world.cache, "--quiet", "--no-compile", "--syn-steps", "2", "--iterations", "100000",
            "--checkpoint-every", "0"]
    first = subprocess.Popen([sys.executable, "-m", "ddfad_fast.cli", *map(str, argv)], env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "distill.json").exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first distillation did not start"
            time.sleep(0.05)
        cli(world, capsys, argv, 1, f"in use by process {first.pid}", out=out)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    from ddfad_fast.outputs import hold
    with hold(out):                      # the kernel released the lock of the killed process
        pass


# ----------------------------------------------------------------------------- numbers that break a run

def test_numbers_that_pass_parsing_but_would_break_the_run(world, capsys):
    case = world.case("numbers")
    distill = ["distill", "--data", world.hostile, "--experts", world.experts, "--cpc", "1", "--cache", world.cache,
               "--quiet", "--syn-steps", "2", "--no-compile"]
    for value in ("inf", "nan"):
        out = case / f"lr_{value}"
        cli(world, capsys, distill + ["--out", out, "--lr-data", value], 2, "lr_data must be a finite number", out=out)
    out = case / "diverges"
    cli(world, capsys, distill + ["--out", out, "--lr-data", "1e30", "--iterations", "4", "--checkpoint-every", "1"],
        1, "became NaN or infinite", out=out)
    assert not (out / "distilled.pt").exists()
    kept = load_artifact(out / "checkpoint.pt", kind="distill_checkpoint")          # finite (schema-checked)
    assert kept["iteration"] >= 1
    cli(world, capsys, distill + ["--out", case / "seed", "--seed", str(10 ** 23)], 2, "seed must be in",
        out=case / "seed")
    cli(world, capsys, distill + ["--out", case / "steps", "--syn-steps", str(10 ** 12)], 2, "lower --syn-steps",
        out=case / "steps")
    from ddfad_fast.cli.guard import out_of_memory
    assert "670.6 GiB failed" in out_of_memory(RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to allocate "
        "720000000000 bytes. Error code 12 (Cannot allocate memory)"))
    assert out_of_memory(RuntimeError("a bug")) is None
    for duration, needle in (("1e9", "more than this machine's"), ("inf", "finite number of seconds"),
                             ("nan", "finite number of seconds"), ("1e-9", "shorter than one sample")):
        cli(world, capsys, ["features", world.data, "--out", case / "d.pt", "--duration", duration, "--quiet"], 2,
            needle, out=case / "d.pt.parts")
    cli(world, capsys, ["features", world.data, "--out", case / "w.pt", "--workers", "-1", "--quiet"], 2,
        "--workers must be >= 0", out=case / "w.pt.parts")
    cli(world, capsys, ["experts", "--data", world.hostile, "--out", case / "e", "--workers", "-1"], 2,
        "--workers must be >= 0", out=case / "e")
    cli(world, capsys, ["nas", "--run", world.run, "--out", case / "nas", "--limit", "0"], 2, "--limit must be >= 2",
        out=case / "nas")
    cli(world, capsys, ["evaluate", "--data", world.hostile, "--full", "--max-memory", "0.01"], 2, "--max-memory")


def test_nan_in_training_stops_with_the_last_finite_state(tmp_path):
    from ddfad_fast.config import ExpertConfig, ModelConfig, EvalConfig
    from ddfad_fast.data import FeatureSplit
    from ddfad_fast.config import FeatureConfig
    from ddfad_fast.train.evaluate import evaluate_training_set
    from ddfad_fast.train.experts import train_experts
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 3, 20, 101, generator=gen), torch.arange(12) % 3
    split = FeatureSplit(x, y, x[:3].clone(), y[:3].clone(), ["a", "b", "c"], FeatureConfig())
    model = ModelConfig(width=4, depth=1)
    config = ExpertConfig(num_experts=1, epochs=3, batch_size=4, lr=1e30, model=model, compile=False)
    with pytest.raises(NonFiniteError, match="expert 0's training"):
        train_experts(split, config, tmp_path / "experts", progress=False)
    assert not (tmp_path / "experts" / "expert_000.pt").exists()
    with pytest.raises(NonFiniteError, match="evaluation training"):
        evaluate_training_set(x, y, x[:3], y[:3], model, EvalConfig(num_nets=1, epochs=2, batch_size=4, compile=False),
                              lr=1e30)
    with pytest.raises(FileFormatError, match="'params' holds"):
        save_artifact(tmp_path / "t.pt", "trajectory", {"params": torch.full((2, 3), float("nan"))},
                      config={"features": FeatureConfig().to_dict(), "in_shape": [3, 20, 101], "num_classes": 3,
                              "expert": {}})
        load_artifact(tmp_path / "t.pt", kind="trajectory")


# ----------------------------------------------------------------------------- a stage that failed

def test_a_failed_stage_does_not_print_its_old_accuracies(world, capsys, monkeypatch):
    import ddfad_fast.train.distill as distill_module
    case = world.case("failed_stage")
    run = case / "run"
    shutil.copytree(world.run, run, symlinks=True)

    def broken(*args, **kwargs):
        raise RuntimeError("the distillation broke")

    monkeypatch.setattr(distill_module, "distill", broken)
    argv = ["run", "--data", world.hostile, "--out", run, "--resume", *tiny_run(iterations=3)]
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 1
    printed = capsys.readouterr().out
    assert "FAILED stage cpc1" in printed and "CPC   1" not in printed
    assert "cpc1" not in json.loads((run / "report.json").read_text())["accuracy"]
