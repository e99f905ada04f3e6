"""Reconstruction of distilled-like features far outside the range of real ones, on every CPU backend:
never NaN, never above full scale, the same answer from every backend; Griffin-Lim scale invariance;
a run that goes on when one stage fails."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from ddfad_fast import FeatureConfig, fd_mfcc, fd_mfcc_to_audio, griffin_lim, mfcc_to_mel
from ddfad_fast.ops import dispatch
from ddfad_fast.cli import main
from ddfad_fast.apps.export import write_audio_set
from helpers import tone_dataset
from tolerances import tol
from ddfad_fast.ops.features import fit_length
from ddfad_fast.ops.reconstruct import max_mel_db

CPU_GLA = dispatch.candidates("griffin_lim", "cpu", torch.float32)


@pytest.fixture(scope="module")
def real_features(fsdd_files):
    waves = torch.stack([fit_length(torch.from_numpy(sf.read(str(p), dtype="float32")[0]), 8000)
                         for p in fsdd_files[:4]])
    return fd_mfcc(waves, 8000)


def _far_out(features: torch.Tensor) -> torch.Tensor:
    """c0 raised by 600 (as an un-standardised distilled set can have it) and c1 by 300."""
    out = features.clone()
    out[:, 0, 0] += 600.0
    out[:, 0, 1] -= 300.0
    return out


def test_mel_values_stay_in_the_range_of_the_config(real_features):
    config = FeatureConfig()
    mel_db = 10 * torch.log10(mfcc_to_mel(_far_out(real_features)[:, 0], config))
    peak = mel_db.amax(dim=(1, 2))
    assert bool((peak <= max_mel_db(config) + 1e-3).all())
    assert bool((mel_db >= peak[:, None, None] - config.top_db - 1e-3).all())
    # real features: the peak is untouched (the bound is a full-scale signal's)
    real_db = 10 * torch.log10(mfcc_to_mel(real_features[:, 0].double(), config))
    raw_db = (torch.from_numpy(__import__("ddfad_fast.ops.tables").ops.tables.dct_matrix(40, 20)).T @ real_features[:, 0].double())
    torch.testing.assert_close(real_db.amax(dim=(1, 2)), raw_db.amax(dim=(1, 2)))
    assert max_mel_db(config) > float(raw_db.max())


def test_max_mel_db_bounds_a_full_scale_signal():
    config = FeatureConfig()
    t = torch.arange(8000) / 8000
    loud = torch.stack([torch.sign(torch.sin(2 * np.pi * 1000 * t)), torch.sin(2 * np.pi * 440 * t)]).float()
    mel_db = 10 * torch.log10(mfcc_to_mel(fd_mfcc(loud, 8000)[:, 0].double(), config.replace(n_mfcc=20)))
    assert float(mel_db.max()) < max_mel_db(config)


@pytest.mark.parametrize("backend", CPU_GLA)
def test_out_of_range_features_give_finite_bounded_audio_on_every_backend(real_features, backend, monkeypatch):
    """float32: finite and non-silent; float64: the backend equals the reference (fast Griffin-Lim amplifies
    float32 rounding over iterations, so agreement is checked where the arithmetic is exact enough)."""
    far = _far_out(real_features)
    monkeypatch.setenv("DDFAD_BACKEND", backend)
    wave = fd_mfcc_to_audio(far, 8000, n_iter=16, generator=torch.Generator().manual_seed(0))
    assert wave.dtype == torch.float32 and bool(torch.isfinite(wave).all()) and float(wave.abs().max()) > 0
    got = fd_mfcc_to_audio(far.double(), 8000, n_iter=16, generator=torch.Generator().manual_seed(0))
    monkeypatch.setenv("DDFAD_BACKEND", "reference")
    want = fd_mfcc_to_audio(far.double(), 8000, n_iter=16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(got, want, **tol("fd_mfcc_to_audio", "float64", "any", float(want.abs().max())))


@pytest.mark.parametrize("backend", CPU_GLA)
@pytest.mark.parametrize("scale", [1e-30, 1e20])
def test_griffin_lim_is_scale_invariant(backend, scale):
    """Magnitudes 1e20 times larger (float32 overflows at 3e38 once squared) give 1e20 times the signal."""
    gen = torch.Generator().manual_seed(1)
    mag = torch.rand(2, 129, 51, generator=gen) + 0.01
    phase = torch.polar(torch.ones_like(mag), 6.283 * torch.rand(mag.shape, generator=gen))
    base = griffin_lim(mag, 256, 80, 160, n_iter=8, init_phase=phase, length=4000, backend=backend)
    big = griffin_lim(mag * scale, 256, 80, 160, n_iter=8, init_phase=phase, length=4000, backend=backend)
    assert bool(torch.isfinite(big).all())
    torch.testing.assert_close(big / scale, base,
                               **tol("griffin_lim_rescaled", "float32", "any", float(base.abs().max())))


def test_written_audio_is_within_full_scale(real_features, tmp_path):
    far = _far_out(real_features)
    summary = write_audio_set(far, [f"c{i}.wav" for i in range(len(far))], ["x"] * len(far), FeatureConfig(),
                              tmp_path, progress=False)
    for clip in summary["clips"]:
        audio, sr = sf.read(tmp_path / clip["path"])
        assert sr == 8000 and np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
        assert np.isfinite(clip["spectral_convergence_db"])


@pytest.mark.usefixtures("single_thread")
def test_run_goes_on_when_a_stage_fails(tmp_path, monkeypatch, capsys):
    """Reconstruction of CPC 1 fails: recorded in the report, CPC 2 and the full data still run, exit 1."""
    import ddfad_fast.apps.export as rec

    real = rec.write_distilled_audio

    def flaky(path, out_dir, *args, **kwargs):
        if "cpc1" in str(path):
            raise ValueError("wave has non-finite values (NaN or Inf)")
        return real(path, out_dir, *args, **kwargs)

    monkeypatch.setattr(rec, "write_distilled_audio", flaky)
    tone_dataset(tmp_path / "data")
    out = tmp_path / "run"
    args = ["run", "--data", str(tmp_path / "data"), "--cpc", "1", "--cpc", "2", "--out", str(out), "--width", "4",
            "--num-experts", "1", "--expert-epochs", "3", "--iterations", "2", "--syn-steps", "2",
            "--no-compile", "--num-nets", "1", "--eval-epochs", "2", "--full-epochs", "1"]
    assert main(args) == 1
    printed = capsys.readouterr().out
    assert "FAILED stage audio cpc1" in printed and "CPC   2" in printed
    report = json.loads((out / "report.json").read_text())
    assert [f["stage"] for f in report["failures"]] == ["audio cpc1"]
    assert "non-finite" in report["failures"][0]["error"]
    assert report["accuracy"]["cpc2"]["distilled"] and report["accuracy"]["full"]
    assert (out / "cpc2" / "audio" / "manifest.csv").is_file() and not (out / "cpc1" / "audio" / "manifest.csv").exists()
    assert "Failed stages" in (out / "report.md").read_text()
    monkeypatch.setattr(rec, "write_distilled_audio", real)
    assert main(args + ["--resume"]) == 0              # the failed stage is redone on resume
    assert (out / "cpc1" / "audio" / "manifest.csv").is_file()
