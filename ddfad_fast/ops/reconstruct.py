"""From FD-MFCC back to audio: inverse DCT, dB to power, mel to linear magnitude, Griffin-Lim.

:func:`fd_mfcc_to_audio` chains :func:`mfcc_to_mel` -> :func:`mel_to_magnitude` -> :func:`griffin_lim`
-> de-emphasis (docs/architecture.md section 5); :mod:`ddfad_fast.audio.metrics` measures how well a
waveform matches a target magnitude. Everything runs batched on the input's
device; :func:`griffin_lim` dispatches to the fastest backend (see :mod:`ddfad_fast.ops.dispatch`).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from . import dispatch, tables
from ..config import FeatureConfig, ReconstructConfig
from ..errors import ParameterError
from .reference import deemphasis

ArrayLike = Union[Tensor, np.ndarray]


def as_float_tensor(x: ArrayLike, name: str, min_dim: int, max_dim: int) -> Tensor:
    tensor = torch.as_tensor(x) if isinstance(x, np.ndarray) else x
    if not isinstance(tensor, Tensor):
        raise ParameterError(f"{name} must be a tensor or numpy array, got {type(x).__name__}")
    if not tensor.is_floating_point():
        raise ParameterError(f"{name} must be float32 or float64, got {tensor.dtype}")
    if tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.float()
    if not min_dim <= tensor.dim() <= max_dim:
        raise ParameterError(f"{name} must have {min_dim} to {max_dim} dimensions, got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise ParameterError(f"{name} is empty (shape {tuple(tensor.shape)})")
    if not bool(torch.isfinite(tensor).all()):
        raise ParameterError(f"{name} has non-finite values (NaN or Inf)")
    return tensor


def max_mel_db(config: FeatureConfig) -> float:
    """The largest mel dB value any clip with samples in [-1, 1] can give under ``config``.

    A frame of the pre-emphasised signal has ``|y[n]| <= 1 + preemphasis``, so every DFT bin has
    ``|X(k)| <= (1 + preemphasis) * sum |w[n]|`` and mel band m has power ``<= sum_k M[m, k] |X(k)|^2``; the
    bound is the largest band's, in dB relative to ``ref`` like the features.
    """
    bank = tables.mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, float(config.fmin), config.f_max)
    peak_bin = ((1.0 + config.preemphasis) * np.abs(tables.window(config.window, config.win_length, config.n_fft)).sum()) ** 2
    bound = float(bank.sum(axis=1).max()) * peak_bin
    return 10.0 * math.log10(max(bound, config.amin)) - tables.db_reference(config.amin, config.ref)


def mfcc_to_mel(mfcc: ArrayLike, config: Optional[FeatureConfig] = None) -> Tensor:
    """Mel power spectrogram from MFCCs: inverse DCT (missing coefficients taken as 0), then dB to power.

    The log-mel values are first mapped into the range features of ``config`` can have: each clip's
    peak is at most :func:`max_mel_db` (a full-scale signal's), and nothing lies more than ``top_db``
    below the clip's peak (the per-clip floor of the features). Real features are unchanged by this
    (but for the ripple of a truncated cepstrum below the floor); synthetic ones from distillation,
    which can leave the range of real clips by hundreds of dB, map to finite, bounded power.

    Parameters
    ----------
    mfcc : Tensor or ndarray
        (B, n_mfcc, T) or (n_mfcc, T) MFCCs (orthonormal DCT-II of dB mel power), n_mfcc <= n_mels.
    config : FeatureConfig, optional
        The features' parameters (n_mels, top_db, ref, amin); default the FSDD preset.

    Returns
    -------
    Tensor
        (B, n_mels, T) mel power, ``ref * 10 ** (dB / 10)``, mfcc's float dtype and device.

    Raises
    ------
    ParameterError
        More coefficients than mel bands, a wrong number of dimensions.

    See Also
    --------
    mel_to_magnitude, fd_mfcc_to_audio
    """
    config = (config or FeatureConfig()).validate()
    coeffs = as_float_tensor(mfcc, "mfcc", 2, 3)
    if coeffs.dim() == 2:
        coeffs = coeffs[None]
    if coeffs.shape[1] > config.n_mels:
        raise ParameterError(f"mfcc has {coeffs.shape[1]} coefficients, more than n_mels={config.n_mels}")
    dct = tables.as_tensor(tables.dct_matrix(config.n_mels, coeffs.shape[1]), coeffs.dtype, coeffs.device)
    log_mel = dct.T @ coeffs
    peak = log_mel.amax(dim=(1, 2), keepdim=True).clamp(max=max_mel_db(config))
    floor = peak - config.top_db if config.top_db is not None else torch.full_like(peak, -math.inf)
    log_mel = torch.maximum(torch.minimum(log_mel, peak), floor)
    return config.ref * torch.pow(10.0, log_mel / 10.0)


def mel_to_magnitude(mel_power: ArrayLike, config: Optional[FeatureConfig] = None, n_iter: int = 200) -> Tensor:
    """Linear magnitude spectrogram from a mel power spectrogram by non-negative least squares.

    Solves min_{S >= 0} ||M S - mel||^2 per frame (M the mel filterbank) with accelerated projected
    gradient (FISTA) from the clipped pseudo-inverse solution, batched on the input's device, and
    returns sqrt(S).

    Parameters
    ----------
    mel_power : Tensor or ndarray
        (B, n_mels, T) or (n_mels, T) non-negative mel power.
    config : FeatureConfig, optional
        Gives the filterbank (sample_rate, n_fft, n_mels, fmin, fmax); default the FSDD preset.
    n_iter : int
        FISTA iterations (0: the clipped pseudo-inverse solution).

    Returns
    -------
    Tensor
        (B, n_fft // 2 + 1, T) linear magnitude, mel_power's float dtype and device.

    Raises
    ------
    ParameterError
        A band count other than ``config.n_mels``, negative power, negative ``n_iter``.
    """
    config = (config or FeatureConfig()).validate()
    mel = as_float_tensor(mel_power, "mel_power", 2, 3)
    if mel.dim() == 2:
        mel = mel[None]
    if mel.shape[1] != config.n_mels:
        raise ParameterError(f"mel_power has {mel.shape[1]} mel bands, config.n_mels is {config.n_mels}")
    if bool((mel < 0).any()):
        raise ParameterError("mel_power must be non-negative")
    if n_iter < 0:
        raise ParameterError(f"n_iter must be >= 0, got {n_iter}")
    bank_np = tables.mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, float(config.fmin), config.f_max)
    bank = tables.as_tensor(bank_np, mel.dtype, mel.device)                         # (n_mels, F)
    pinv = tables.as_tensor(tables.pseudo_inverse(bank_np), mel.dtype, mel.device)     # (F, n_mels)
    step = 1.0 / tables.spectral_norm(bank_np) ** 2          # 1 / Lipschitz constant of the gradient
    x = (pinv @ mel).clamp_min(0)
    y, t = x, 1.0
    for _ in range(n_iter):
        x_next = (y - step * (bank.T @ (bank @ y - mel))).clamp_min(0)
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        y = x_next + ((t - 1.0) / t_next) * (x_next - x)
        x, t = x_next, t_next
    return x.sqrt()


def griffin_lim(magnitude: ArrayLike, n_fft: int, hop_length: int, win_length: Optional[int] = None, n_iter: int = 32,
                momentum: float = 0.99, init_phase: Optional[ArrayLike] = None, length: Optional[int] = None,
                window: str = "hann", generator: Optional[torch.Generator] = None,
                backend: Optional[str] = None) -> Tensor:
    """Fast Griffin-Lim phase retrieval (librosa.griffinlim semantics, centred frames).

    magnitude: (B, n_fft // 2 + 1, T) or (F, T) non-negative. ``init_phase``: complex unit phasors of
    the same shape, or None for uniform random phases drawn from ``generator``. ``length``: output
    samples (default hop_length * (T - 1) + n_fft % 2, librosa's); it must give T frames.

    Parameters
    ----------
    magnitude : Tensor or ndarray
        (B, n_fft // 2 + 1, T) or (F, T) non-negative linear magnitude.
    n_fft, hop_length : int
        FFT size and hop, in samples.
    win_length : int, optional
        Window length <= n_fft (zero-padded to n_fft, centred); default n_fft.
    n_iter : int
        Iterations (0 returns the inverse STFT of the initial phases).
    momentum : float
        Fast Griffin-Lim momentum, >= 0; 0 is the classic algorithm.
    init_phase : Tensor or ndarray, optional
        Complex unit phasors of magnitude's shape; default uniform random phases from ``generator``.
    length : int, optional
        Output length in samples; it must give T centred frames.
    window : str
        Window name (``hann`` and the windows of :func:`ddfad_fast.ops.tables.window`).
    generator : torch.Generator, optional
        Source of the random initial phases.
    backend : str, optional
        Force one backend; default automatic: the C++ extension (then numba) on CPU, the CUDA kernel
        (then Triton) on CUDA, the plain-torch reference otherwise.

    Returns
    -------
    Tensor
        (B, length) waveform, the magnitude's dtype and device.

    Raises
    ------
    ParameterError
        Sizes that do not agree, negative magnitude, n_iter or momentum, a length giving another
        number of frames.

    See Also
    --------
    fd_mfcc_to_audio
    """
    mag = as_float_tensor(magnitude, "magnitude", 2, 3)
    if mag.dim() == 2:
        mag = mag[None]
    win_length = n_fft if win_length is None else int(win_length)
    if n_fft < 2 or not 0 < win_length <= n_fft:
        raise ParameterError(f"need n_fft >= 2 and 0 < win_length <= n_fft, got n_fft={n_fft}, win_length={win_length}")
    if hop_length < 1:
        raise ParameterError(f"hop_length must be >= 1, got {hop_length}")
    if mag.shape[1] != n_fft // 2 + 1:
        raise ParameterError(f"magnitude has {mag.shape[1]} frequency bins, expected n_fft // 2 + 1 = {n_fft // 2 + 1}")
    if bool((mag < 0).any()):
        raise ParameterError("magnitude must be non-negative")
    if n_iter < 0 or momentum < 0:
        raise ParameterError(f"need n_iter >= 0 and momentum >= 0, got n_iter={n_iter}, momentum={momentum}")
    n_frames = mag.shape[2]
    length = tables.istft_length(n_frames, n_fft, hop_length) if length is None else int(length)
    if length < 1 or tables.n_frames(length, n_fft, hop_length) != n_frames:
        raise ParameterError(f"length={length} gives {tables.n_frames(max(length, 0), n_fft, hop_length)} frames, "
                             f"magnitude has {n_frames}")
    complex_dtype = mag.dtype.to_complex()
    if init_phase is None:
        device = generator.device if generator is not None else mag.device
        turns = torch.rand(mag.shape, generator=generator, dtype=mag.dtype, device=device)
        phase = torch.polar(torch.ones_like(turns), 2 * math.pi * turns).to(mag.device)
    else:
        phase = torch.as_tensor(init_phase)
        if phase.dim() == 2:
            phase = phase[None]
        if phase.shape != mag.shape:
            raise ParameterError(f"init_phase has shape {tuple(phase.shape)}, magnitude {tuple(mag.shape)}")
        phase = phase.to(device=mag.device, dtype=complex_dtype)
    _, fn = dispatch.get("griffin_lim", mag, backend=backend)
    # Griffin-Lim is scale-equivariant: every backend iterates on magnitudes of peak 1 and the result is
    # scaled back, so extreme magnitudes cannot overflow float32 inside a kernel
    scale = mag.amax(dim=(1, 2), keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    wave = fn((mag / scale).contiguous(), n_fft, hop_length, win_length, window, n_iter, float(momentum),
              phase.contiguous(), length)
    return wave * scale[:, :, 0]


def fd_mfcc_to_audio(features: ArrayLike, sample_rate: int, config: Optional[FeatureConfig] = None,
                     n_iter: Optional[int] = None, reconstruct: Optional[ReconstructConfig] = None,
                     generator: Optional[torch.Generator] = None,
                     return_magnitude: bool = False) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Audio from FD-MFCC: (B, 3, n_mfcc, T) or (3, n_mfcc, T) -> (B, L) at ``sample_rate`` Hz.

    Uses the MFCC channel (the deltas carry no extra information about the signal): inverse DCT ->
    dB to power -> NNLS mel inversion -> Griffin-Lim (``n_iter`` iterations when given, else
    ``reconstruct.n_iter``, 32 by default; momentum, NNLS iterations and de-emphasis from ``reconstruct``; random
    phases seeded by ``reconstruct.seed`` unless ``generator`` is given) ->
    de-emphasis. L = ``config.fixed_length`` when it gives T frames, else hop_length * (T - 1) + n_fft % 2.
    ``return_magnitude``: also return the magnitude (B, n_fft // 2 + 1, T) that Griffin-Lim matched; it
    is the spectrum of the pre-emphasised signal (compare it with ``preemphasis(wave)``).

    Parameters
    ----------
    features : Tensor or ndarray
        (B, 3, n_mfcc, T) or (3, n_mfcc, T) FD-MFCC (standardisation undone).
    sample_rate : int
        Output rate in Hz; must equal ``config.sample_rate``.
    config : FeatureConfig, optional
        The features' parameters; default the FSDD preset.
    n_iter : int, optional
        Griffin-Lim iterations; default ``reconstruct.n_iter``.
    reconstruct : ReconstructConfig, optional
        Momentum, NNLS iterations, de-emphasis and seed.
    generator : torch.Generator, optional
        Source of the initial phases (default seeded by ``reconstruct.seed``).
    return_magnitude : bool
        Also return the matched magnitude.

    Returns
    -------
    Tensor or (Tensor, Tensor)
        (B, L) waveform in the features' float dtype and device, and with ``return_magnitude`` the
        (B, n_fft // 2 + 1, T) magnitude.

    Raises
    ------
    ParameterError
        Another rate than the config's, features that are not 3-channel.

    See Also
    --------
    fd_mfcc : the forward transform.
    """
    config = (config or FeatureConfig()).validate()
    reconstruct = reconstruct or ReconstructConfig()
    if n_iter is not None:
        reconstruct = reconstruct.replace(n_iter=n_iter)
    if sample_rate != config.sample_rate:
        raise ParameterError(f"sample_rate {sample_rate} Hz differs from the config's {config.sample_rate} Hz")
    feats = as_float_tensor(features, "features", 3, 4)
    if feats.dim() == 3:
        feats = feats[None]
    if feats.shape[1] != 3:
        raise ParameterError(f"features must be (B, 3, n_mfcc, T), got shape {tuple(feats.shape)}")
    n_frames = feats.shape[-1]
    length = config.fixed_length
    if length is None or config.n_frames(length) != n_frames:
        length = tables.istft_length(n_frames, config.n_fft, config.hop_length)
    magnitude = mel_to_magnitude(mfcc_to_mel(feats[:, 0], config), config, n_iter=reconstruct.nnls_iter)
    if generator is None:
        generator = torch.Generator(device=magnitude.device).manual_seed(reconstruct.seed)
    wave = griffin_lim(magnitude, config.n_fft, config.hop_length, config.win_length, reconstruct.n_iter,
                       reconstruct.momentum, length=length, window=config.window, generator=generator)
    if reconstruct.deemphasis and config.preemphasis:
        wave = deemphasis(wave, config.preemphasis)
    return (wave, magnitude) if return_magnitude else wave


