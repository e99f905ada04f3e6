"""Command-line flags: one meaning per flag, renamed flags keep their old spelling for one release
(a FutureWarning, once), and `ddfad data info --strict`."""
import os
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

import ddfad_fast.cli.options as commands
from ddfad_fast.cli.entry import build_parser, main
from ddfad_fast.io import load_artifact

SR = 8000


def tone(seconds: float = 0.3, sr: int = SR) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each test sees the once-per-process deprecation warnings afresh."""
    monkeypatch.setattr(commands, "_WARNED", set(), raising=False)


DISTILL = ["distill", "--data", "d", "--experts", "e", "--cpc", "1", "--out", "o"]


def test_distill_match_epochs_and_its_deprecated_spelling():
    parser = build_parser()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # the new spelling does not warn
        assert parser.parse_args(DISTILL + ["--match-epochs", "3"]).expert_epochs == 3
        assert parser.parse_args(DISTILL).expert_epochs is None
    with pytest.warns(FutureWarning, match="--expert-epochs is deprecated.*use --match-epochs"):
        assert parser.parse_args(DISTILL + ["--expert-epochs", "4"]).expert_epochs == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # once per process
        assert parser.parse_args(DISTILL + ["--expert-epochs", "5"]).expert_epochs == 5
    # in `ddfad run`, --expert-epochs keeps its one meaning: epochs per expert
    run = parser.parse_args(["run", "--data", "d", "--cpc", "1", "--out", "o", "--expert-epochs", "6"])
    assert run.expert_epochs == 6
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--data", "d", "--cpc", "1", "--out", "o", "--match-epochs", "6"])


def test_distill_config_reads_match_epochs():
    from ddfad_fast.cli.distill import distill_config
    from ddfad_fast.presets import get_preset
    args = build_parser().parse_args(DISTILL + ["--match-epochs", "3"])
    assert distill_config(get_preset("cpu-small"), args, expert_epochs=20).expert_epochs == 3


def test_features_preset_flag_and_its_deprecated_spelling(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "a.wav", tone(sr=16000), 16000)
    assert main(["features", str(folder), "--out", str(tmp_path / "new.pt"), "--quiet",
                 "--feature-preset", "speech16k"]) == 0
    new = load_artifact(tmp_path / "new.pt", kind="features")
    assert new["config"]["features"]["sample_rate"] == 16000
    with pytest.warns(FutureWarning, match="--preset is deprecated.*use --feature-preset"):
        assert main(["features", str(folder), "--out", str(tmp_path / "old.pt"), "--quiet", "--preset", "speech16k"]) == 0
    assert load_artifact(tmp_path / "old.pt", kind="features")["config"] == new["config"]
    default = build_parser().parse_args(["features", str(folder), "--out", "x.pt"])
    assert default.feature_preset is None            # chosen from the data's headers (ddfad_fast.data.scan)
    assert main(["features", str(folder), "--out", str(tmp_path / "inferred.pt"), "--quiet"]) == 0
    assert load_artifact(tmp_path / "inferred.pt", kind="features")["config"] == new["config"]     # 16 kHz data
    with pytest.raises(SystemExit):
        build_parser().parse_args(["features", str(folder), "--out", "x.pt", "--feature-preset", "cpu-small"])


def test_data_info_strict(tmp_path, capsys):
    folder = tmp_path / "d"
    folder.mkdir()
    for name in ("0_a_5.wav", "1_a_5.wav", "0_a_0.wav", "1_a_0.wav"):
        sf.write(folder / name, tone(), SR)
    sf.write(folder / "1_a_6.wav", tone(sr=16000), 16000)          # read resampled, refused with --strict
    (folder / "0_a_6.wav").write_bytes(b"not a wav file")         # skipped, an error with --strict
    assert main(["data", "info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "6 labelled files" in out and "0_a_6.wav: not a readable audio file" in out
    assert main(["data", "info", str(folder), "--strict"]) == 1
    err = capsys.readouterr().err
    assert "0_a_6.wav: not a readable audio file" in err
    (folder / "0_a_6.wav").unlink()
    assert main(["data", "info", str(folder), "--strict"]) == 1
    assert "1_a_6.wav: sample rate 16000 Hz, expected 8000 Hz" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["experts", "distill", "evaluate", "run"])
def test_training_commands_take_a_device(command):
    import torch
    from ddfad_fast.cli.entry import resolve_device
    parser = build_parser()
    required = {"experts": ["--data", "d", "--out", "o"], "distill": DISTILL[1:], "evaluate": ["--data", "d", "--full"],
                "run": ["--data", "d", "--cpc", "1", "--out", "o"]}[command]
    assert parser.parse_args([command, *required]).device == "auto"
    assert parser.parse_args([command, *required, "--device", "cpu"]).device == "cpu"
    if command != "distill":
        assert parser.parse_args([command, *required, "--ensemble"]).ensemble
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want and resolve_device("cpu") == torch.device("cpu")


def test_a_device_torch_cannot_use_is_refused_before_any_work(tmp_path, capsys):
    import torch
    out = tmp_path / "o"
    assert main(["experts", "--data", str(tmp_path), "--out", str(out), "--device", "tpu"]) == 2
    assert "--device 'tpu'" in capsys.readouterr().err and not out.exists()
    assert main(["experts", "--data", str(tmp_path), "--out", str(out), "--device", "cuda:99"]) == 2
    err = capsys.readouterr().err
    assert ("sees no CUDA device" in err) if not torch.cuda.is_available() else ("CUDA device(s)" in err)
    assert not out.exists()


def test_deterministic_flag_turns_on_deterministic_kernels(tmp_path):
    from ddfad_fast.cli import main
    try:
        assert main(["experts", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "e"),
                     "--deterministic", "--device", "cpu"]) == 2
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"]
    finally:
        torch.use_deterministic_algorithms(False)


def test_full_data_evaluation_is_sized_in_steps():
    """The full-data row trains for a number of SGD steps, so that a corpus of 400 clips gets as much training
    as one of 2,400; --full-steps sets it, --full-epochs replaces it by whole passes."""
    from ddfad_fast.cli.run import apply_overrides
    from ddfad_fast.presets import get_preset
    preset = get_preset("cpu-small")
    assert preset.eval_full.steps == 760 and preset.eval_full.batch_size == 64
    assert preset.eval_full.epochs_for(2400) == 20           # FSDD: 38 batches an epoch
    assert preset.eval_full.epochs_for(387) == 109           # 7 batches an epoch: 763 steps
    run = ["run", "--data", "d", "--cpc", "1", "--out", "o"]
    parser = build_parser()
    full = apply_overrides(preset, parser.parse_args(run + ["--full-steps", "100"])).eval_full
    assert (full.steps, full.epochs_for(2400)) == (100, 3)
    full = apply_overrides(preset, parser.parse_args(run + ["--full-epochs", "4"])).eval_full
    assert (full.steps, full.epochs_for(2400)) == (None, 4)
    assert apply_overrides(preset, parser.parse_args(run)).eval_full == preset.eval_full


def test_expert_epoch_steps_flags():
    """--expert-epoch-steps (run) and --min-epoch-steps (experts) set ExpertConfig.min_epoch_steps; 0 is one pass."""
    from ddfad_fast.cli.run import apply_overrides
    from ddfad_fast.presets import get_preset
    preset = get_preset("cpu-small")
    parser = build_parser()
    run = ["run", "--data", "d", "--cpc", "1", "--out", "o"]
    assert apply_overrides(preset, parser.parse_args(run)).expert.min_epoch_steps == 32
    expert = apply_overrides(preset, parser.parse_args(run + ["--expert-epoch-steps", "70"])).expert
    assert expert.min_epoch_steps == 70 and expert.passes_per_epoch(387) == 10
    expert = apply_overrides(preset, parser.parse_args(run + ["--expert-epoch-steps", "0"])).expert
    assert expert.min_epoch_steps is None and expert.passes_per_epoch(387) == 1
    args = parser.parse_args(["experts", "--data", "d", "--out", "o", "--min-epoch-steps", "64"])
    assert args.min_epoch_steps == 64
