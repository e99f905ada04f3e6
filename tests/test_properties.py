"""Property tests: fd_mfcc and griffin_lim on random lengths, amplitudes and dtypes.

Each call either returns a finite result of the documented shape or raises a ParameterError.
"""
import math

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

from ddfad_fast import FeatureConfig, ParameterError, fd_mfcc, griffin_lim  # noqa: E402

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)
DTYPES = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64}


@SETTINGS
@given(batch=st.integers(1, 3), length=st.integers(1, 2500), log_amplitude=st.floats(-12, 4),
       dtype=st.sampled_from(sorted(DTYPES)), fixed=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_fd_mfcc_is_finite_with_the_documented_shape(batch, length, log_amplitude, dtype, fixed, seed):
    config = FeatureConfig(fixed_length=1000 if fixed else None)
    gen = torch.Generator().manual_seed(seed)
    waves = (torch.randn(batch, length, generator=gen, dtype=torch.float64) * 10.0 ** log_amplitude).to(DTYPES[dtype])
    if not bool(torch.isfinite(waves).all()):       # float16 overflows above 65504
        with pytest.raises(ParameterError, match="non-finite"):
            fd_mfcc(waves, 8000, config)
        return
    out = fd_mfcc(waves, 8000, config)
    n_frames = 1 + (1000 if fixed else length) // 80
    assert out.shape == (batch, 3, 20, n_frames)
    assert out.dtype == (torch.float64 if dtype == "float64" else torch.float32)
    assert bool(torch.isfinite(out).all())


@SETTINGS
@given(length=st.integers(1, 400), position=st.integers(0, 399), value=st.sampled_from([math.nan, math.inf, -math.inf]))
def test_fd_mfcc_rejects_non_finite_samples(length, position, value):
    waves = torch.zeros(2, length)
    waves[1, position % length] = value
    with pytest.raises(ParameterError, match="clip 1 has non-finite"):
        fd_mfcc(waves, 8000, FeatureConfig(fixed_length=None))


@SETTINGS
@given(batch=st.integers(1, 2), log2_n_fft=st.integers(4, 8), hop_divisor=st.sampled_from([2, 4]),
       n_frames=st.integers(1, 40), n_iter=st.integers(0, 4), log_amplitude=st.floats(-8, 3),
       momentum=st.sampled_from([0.0, 0.5, 0.99]), float64=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_griffin_lim_is_finite_with_the_documented_length(batch, log2_n_fft, hop_divisor, n_frames, n_iter,
                                                          log_amplitude, momentum, float64, seed):
    n_fft = 2 ** log2_n_fft
    hop = n_fft // hop_divisor
    dtype = torch.float64 if float64 else torch.float32
    gen = torch.Generator().manual_seed(seed)
    magnitude = (torch.rand(batch, n_fft // 2 + 1, n_frames, generator=gen, dtype=torch.float64)
                 * 10.0 ** log_amplitude).to(dtype)
    length = hop * (n_frames - 1) if n_frames > 1 else hop // 2       # one frame: give a length explicitly
    wave = griffin_lim(magnitude, n_fft, hop, n_iter=n_iter, momentum=momentum, generator=gen,
                       length=None if n_frames > 1 else length)
    assert wave.shape == (batch, length)
    assert wave.dtype == dtype and bool(torch.isfinite(wave).all())


@SETTINGS
@given(bad=st.sampled_from(["negative", "nan", "bins", "length"]))
def test_griffin_lim_bad_input_is_a_parameter_error(bad):
    magnitude = torch.rand(1, 33, 10)
    kwargs = dict(n_fft=64, hop_length=16)
    if bad == "negative":
        magnitude[0, 3, 3] = -1.0
    elif bad == "nan":
        magnitude[0, 3, 3] = math.nan
    elif bad == "bins":
        kwargs["n_fft"] = 32
    else:
        kwargs["length"] = 3
    with pytest.raises(ParameterError):
        griffin_lim(magnitude, **kwargs)


def test_float16_and_float32_inputs_agree():
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal(1000).astype(np.float32)) * 0.1
    half = fd_mfcc(wave.half(), 8000)
    full = fd_mfcc(wave.half().float(), 8000)
    torch.testing.assert_close(half, full, rtol=0, atol=0)
