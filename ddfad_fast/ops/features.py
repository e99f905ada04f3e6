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

    Pre-emphasis, centred framing, window, FFT, power, Slaney mel filterbank, dB with a per-clip
    ``top_db`` floor, orthonormal DCT-II, then deltas of order 1 and 2 (librosa's ``interp`` mode).

    Parameters
    ----------
    waves : Tensor, ndarray or list of 1-D arrays
        (B, L) or (L,) float samples at ``sample_rate`` Hz, or a list of clips (padded or cropped to
        ``config.fixed_length`` when it is set). Every sample must be finite.
    sample_rate : int
        Rate of ``waves`` in Hz; must equal ``config.sample_rate`` (resample first otherwise).
    config : FeatureConfig, optional
        Feature parameters; default the FSDD preset (8 kHz, 1 s, n_fft 256, 20 MFCCs, 40 mels).
    backend : str, optional
        Force one backend (``reference``, ``cpu``, ``numba``, ``triton``, ``cuda``); default automatic:
        CPU tensors run the C++ extension, CUDA float32 tensors the fused CUDA kernel (then Triton),
        float64 on CUDA the plain-torch reference (with a BackendFallbackWarning).

    Returns
    -------
    Tensor
        (B, 3, n_mfcc, T), T = ``config.n_frames(L)`` centred frames (1 + L // hop_length for even
        n_fft; (B, 3, 20, 101) for the default config), float64 for float64 input else float32, on
        the input's device.

    Raises
    ------
    ParameterError
        A rate other than the config's, an empty or non-finite clip, an invalid config.
    BackendUnavailableError
        A forced backend that cannot run this input.

    See Also
    --------
    mfcc : the first channel only.
    fd_mfcc_to_audio : the inverse, back to a waveform.
    """
    config = _config(config)
    batch = prepare_waves(waves, sample_rate, config)
    _, fn = dispatch.get("fd_mfcc", batch, backend=backend)
    return fn(batch, config)


def mfcc(waves: WaveInput, sample_rate: int, config: Optional[FeatureConfig] = None,
         backend: Optional[str] = None) -> Tensor:
    """MFCCs: the first channel of :func:`fd_mfcc`, without computing the deltas.

    Parameters
    ----------
    waves : Tensor, ndarray or list of 1-D arrays
        (B, L) or (L,) float samples at ``sample_rate`` Hz, as for :func:`fd_mfcc`.
    sample_rate : int
        Rate of ``waves`` in Hz; must equal ``config.sample_rate``.
    config : FeatureConfig, optional
        Feature parameters; default the FSDD preset.
    backend : str, optional
        Force one backend; default automatic, as for :func:`fd_mfcc`.

    Returns
    -------
    Tensor
        (B, n_mfcc, T), float64 for float64 input else float32, on the input's device.

    Raises
    ------
    ParameterError
        As for :func:`fd_mfcc`.

    See Also
    --------
    fd_mfcc, mfcc_to_mel
    """
    config = _config(config)
    batch = prepare_waves(waves, sample_rate, config)
    _, fn = dispatch.get("mfcc", batch, backend=backend)
    return fn(batch, config)


def deltas(x: Union[Tensor, np.ndarray], order: int = 1, width: int = 9) -> Tensor:
    """Delta features along the last axis (frames), as ``librosa.feature.delta(x, width, order, mode="interp")``.

    Parameters
    ----------
    x : Tensor or ndarray
        (..., T) float features, T >= 1 frames.
    order : int
        1 or 2. Order 2 is the second-derivative Savitzky-Golay filter, not delta applied twice.
    width : int
        Odd window length >= 3, in frames. Inputs of fewer than ``width`` frames use the edge rule
        (see :func:`ddfad_fast.ops.tables.delta_matrix`).

    Returns
    -------
    Tensor
        x's shape and float dtype, on x's device (plain torch on every device).

    Raises
    ------
    ParameterError
        No frame, an order other than 1 or 2, an even or too small width.
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
    """Slaney mel filterbank of ``config``, as ``librosa.filters.mel(htk=False, norm="slaney")``.

    Parameters
    ----------
    config : FeatureConfig, optional
        Gives sample_rate (Hz), n_fft, n_mels, fmin and fmax (Hz); default the FSDD preset.
    dtype : torch.dtype
        Floating dtype of the result.
    device : str or torch.device
        Device of the result.

    Returns
    -------
    Tensor
        (n_mels, n_fft // 2 + 1) filter weights (area-normalised triangles).
    """
    config = _config(config)
    bank = tables.mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, float(config.fmin), config.f_max)
    return torch.tensor(bank, dtype=dtype, device=device)
