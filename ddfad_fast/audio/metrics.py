"""How well a waveform matches a target magnitude spectrogram: spectral convergence and log-spectral distance
(dB per clip, lower is better), batched on the input's device."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..errors import ParameterError
from ..ops.reconstruct import ArrayLike, as_float_tensor
from ..ops.reference import stft


def _magnitude_of(wave: ArrayLike, n_fft: int, hop_length: int, win_length: Optional[int], window: str) -> Tensor:
    x = as_float_tensor(wave, "wave", 1, 2)
    if x.dim() == 1:
        x = x[None]
    return stft(x, n_fft, hop_length, n_fft if win_length is None else win_length, window).abs()


def _pair(magnitude: ArrayLike, wave: ArrayLike, n_fft: int, hop_length: int, win_length: Optional[int],
          window: str):
    target = as_float_tensor(magnitude, "magnitude", 2, 3)
    if target.dim() == 2:
        target = target[None]
    rebuilt = _magnitude_of(wave, n_fft, hop_length, win_length, window).to(target.dtype)
    if rebuilt.shape != target.shape:
        raise ParameterError(f"STFT of wave has shape {tuple(rebuilt.shape)}, magnitude {tuple(target.shape)}")
    return target, rebuilt


def spectral_convergence(magnitude: ArrayLike, wave: ArrayLike, n_fft: int, hop_length: int,
                         win_length: Optional[int] = None, window: str = "hann") -> Tensor:
    """Spectral convergence in dB per clip: ``20 log10(||S - |STFT(x)| ||_F / ||S||_F)``.

    Parameters
    ----------
    magnitude : Tensor or ndarray
        (B, F, T) or (F, T) target magnitude S, F = n_fft // 2 + 1.
    wave : Tensor or ndarray
        (B, L) or (L,) waveform whose centred STFT has T frames.
    n_fft, hop_length : int
        STFT size and hop, in samples.
    win_length : int, optional
        Window length (default n_fft).
    window : str
        Window name.

    Returns
    -------
    Tensor
        (B,) dB; lower is better.

    Raises
    ------
    ParameterError
        Shapes that do not agree.
    """
    target, rebuilt = _pair(magnitude, wave, n_fft, hop_length, win_length, window)
    error = (target - rebuilt).flatten(1).norm(dim=1)
    return 20.0 * torch.log10(error / target.flatten(1).norm(dim=1).clamp_min(torch.finfo(target.dtype).tiny))


def log_spectral_distance(magnitude: ArrayLike, wave: ArrayLike, n_fft: int, hop_length: int,
                          win_length: Optional[int] = None, window: str = "hann", amin: float = 1e-5) -> Tensor:
    """Log-spectral distance in dB per clip: mean over frames of the RMS over bins of the dB difference.

    Parameters
    ----------
    magnitude : Tensor or ndarray
        (B, F, T) or (F, T) target magnitude, F = n_fft // 2 + 1.
    wave : Tensor or ndarray
        (B, L) or (L,) waveform whose centred STFT has T frames.
    n_fft, hop_length : int
        STFT size and hop, in samples.
    win_length : int, optional
        Window length (default n_fft).
    window : str
        Window name.
    amin : float
        Both spectra are floored at ``amin`` before the log.

    Returns
    -------
    Tensor
        (B,) dB; lower is better.

    Raises
    ------
    ParameterError
        Shapes that do not agree.
    """
    target, rebuilt = _pair(magnitude, wave, n_fft, hop_length, win_length, window)
    diff = 20.0 * (torch.log10(target.clamp_min(amin)) - torch.log10(rebuilt.clamp_min(amin)))
    return diff.square().mean(dim=1).sqrt().mean(dim=1)
