"""FD-MFCC features: :func:`fd_mfcc`, :func:`mfcc`, :func:`deltas`, :func:`mel_filterbank`.

Semantics are librosa's (docs/architecture.md section 3), with two deliberate differences: the top_db floor
is taken per clip (librosa shares one floor across a batch), and clips shorter than the delta width
get deltas by the edge rule of :func:`ddfad_fast.ops.tables.delta_matrix` (librosa raises there).

Each op validates its input once and runs the fastest backend available for the tensor's device
and dtype (see :mod:`ddfad_fast.ops.dispatch`); ``backend=`` or ``DDFAD_BACKEND`` forces one.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from . import dispatch, tables
from ..config import FeatureConfig
from ..errors import ParameterError

WaveInput = Union[Tensor, np.ndarray, Sequence[Union[Tensor, np.ndarray]]]


def _as_float_tensor(wave: Union[Tensor, np.ndarray], what: str) -> Tensor:
    tensor = torch.as_tensor(wave) if isinstance(wave, np.ndarray) else wave
    if not isinstance(tensor, Tensor):
        raise ParameterError(f"{what} must be a tensor or numpy array, got {type(wave).__name__}")
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    if tensor.dtype not in (torch.float32, torch.float64):
        raise ParameterError(f"{what} must hold float samples in [-1, 1], got dtype {tensor.dtype} "
                             "(convert integer PCM first, e.g. x / 32768 for 16-bit)")
    return tensor


def fit_length(waves: Tensor, length: int) -> Tensor:
    """Right zero-pad or crop the last axis to ``length`` samples."""
    if waves.shape[-1] >= length:
        return waves[..., :length]
    return torch.nn.functional.pad(waves, (0, length - waves.shape[-1]))


def prepare_waves(waves: WaveInput, sample_rate: int, config: FeatureConfig) -> Tensor:
    """Validate clips and batch them as one contiguous (B, L) float32/float64 tensor.

    ``waves``: (B, L) or (L,) tensor / array, or a list of 1-D clips (lengths may differ). Every clip is
    padded / cropped to ``config.fixed_length``; with ``fixed_length=None`` a list is right-padded with
    zeros to its longest clip. Raises :class:`ParameterError` naming the problem (sample-rate mismatch,
    rank, dtype, empty clip, non-finite samples and the first clip that has them).
    """
    if sample_rate != config.sample_rate:
        raise ParameterError(f"sample_rate {sample_rate} Hz differs from the config's {config.sample_rate} Hz; "
                             "resample first (load_audio(path, sample_rate=...)) or pass a matching FeatureConfig")
    if isinstance(waves, (list, tuple)):
        if not waves:
            raise ParameterError("waves is an empty list")
        clips = [_as_float_tensor(w, f"waves[{i}]") for i, w in enumerate(waves)]
        for i, clip in enumerate(clips):
            if clip.dim() != 1:
                raise ParameterError(f"waves[{i}] must be 1-D (samples), got shape {tuple(clip.shape)}")
        dtype = torch.float64 if any(c.dtype == torch.float64 for c in clips) else torch.float32
        length = config.fixed_length or max(c.shape[0] for c in clips)
        batch = torch.stack([fit_length(c.to(dtype), length) for c in clips])
        lengths = [c.shape[0] for c in clips]
    else:
        batch = _as_float_tensor(waves, "waves")
        if batch.dim() == 1:
            batch = batch[None]
        if batch.dim() != 2:
            raise ParameterError(f"waves must be (B, L) or (L,), got shape {tuple(batch.shape)}")
        lengths = [batch.shape[1]] * batch.shape[0]
        if config.fixed_length is not None:
            batch = fit_length(batch, config.fixed_length)
    if batch.shape[0] == 0:
        raise ParameterError("waves holds no clips (batch size 0)")
    empty = [i for i, n in enumerate(lengths) if n == 0]
    if empty:
        raise ParameterError(f"clip {empty[0]} is empty (0 samples)" + (f"; {len(empty)} empty clips" if len(empty) > 1 else ""))
    # NaN and Inf propagate into a clip's sum, so a finite sum per clip proves the clip finite at a tenth of
    # the cost of an elementwise isfinite (3 ms of a 12 ms call at B=256); the elementwise test only runs
    # when some sum is not finite (a bad clip, or finite samples whose sum overflows)
    if not bool(torch.isfinite(batch.sum(dim=1)).all()):
        finite = torch.isfinite(batch).all(dim=1)
        bad = torch.nonzero(~finite).flatten().tolist() if not bool(finite.all()) else []
    else:
        bad = []
    if bad:
        raise ParameterError(f"clip {bad[0]} has non-finite samples (NaN or Inf)"
                             + (f"; {len(bad)} such clips" if len(bad) > 1 else ""))
    return batch.contiguous()


def _config(config: Optional[FeatureConfig]) -> FeatureConfig:
    return (config or FeatureConfig()).validate()


def fd_mfcc(waves: WaveInput, sample_rate: int, config: Optional[FeatureConfig] = None,
            backend: Optional[str] = None) -> Tensor:
    """FD-MFCC: MFCC, its delta and its delta-delta as a 3-channel tensor.

    waves: (B, L) or (L,) tensor / numpy array, or a list of 1-D clips, float samples at
    ``sample_rate`` Hz (must equal ``config.sample_rate``). Returns (B, 3, n_mfcc, T) with
    T = ``config.n_frames(L)`` centred frames (L = ``config.fixed_length`` when set; 1 + L // hop_length
    for even n_fft), float64 for float64 input, else
    float32, on the input's device. Default config: the FSDD preset, (B, 3, 20, 101).
    """
    config = _config(config)
    batch = prepare_waves(waves, sample_rate, config)
    _, fn = dispatch.get("fd_mfcc", batch, backend=backend)
    return fn(batch, config)


def mfcc(waves: WaveInput, sample_rate: int, config: Optional[FeatureConfig] = None,
         backend: Optional[str] = None) -> Tensor:
    """MFCCs (B, n_mfcc, T): the first channel of :func:`fd_mfcc`; same inputs and conventions."""
    config = _config(config)
    batch = prepare_waves(waves, sample_rate, config)
    _, fn = dispatch.get("mfcc", batch, backend=backend)
    return fn(batch, config)


def deltas(x: Union[Tensor, np.ndarray], order: int = 1, width: int = 9) -> Tensor:
    """Delta features along the last axis (frames), as librosa.feature.delta(x, width, order, mode="interp").

    x: (..., T) float. ``order`` 1 or 2 (order 2 is the second-derivative Savitzky-Golay filter, not
    delta applied twice). Clips of fewer than ``width`` frames use the edge rule (see
    :func:`ddfad_fast.ops.tables.delta_matrix`). Returns a tensor of x's shape and float dtype.
    """
    from .reference import deltas as _deltas
    tensor = _as_float_tensor(x, "x")
    if tensor.dim() == 0 or tensor.shape[-1] == 0:
        raise ParameterError(f"x must have at least one frame on its last axis, got shape {tuple(tensor.shape)}")
    if order not in (1, 2):
        raise ParameterError(f"order must be 1 or 2, got {order!r}")
    if not isinstance(width, int) or width < 3 or width % 2 == 0:
        raise ParameterError(f"width must be an odd integer >= 3, got {width!r}")
    return _deltas(tensor, order, width)


def mel_filterbank(config: Optional[FeatureConfig] = None, dtype: torch.dtype = torch.float32,
                   device: Union[str, torch.device] = "cpu") -> Tensor:
    """Slaney mel filterbank of ``config`` (n_mels, n_fft // 2 + 1), as librosa.filters.mel(htk=False, norm="slaney")."""
    config = _config(config)
    bank = tables.mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, float(config.fmin), config.f_max)
    return torch.tensor(bank, dtype=dtype, device=device)
