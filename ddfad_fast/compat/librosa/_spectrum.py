"""librosa's ``stft``, ``griffinlim`` and decibel conversions on ddfad_fast (numpy in, numpy out).

``griffinlim`` runs the fast Griffin-Lim kernels for centred frames, zero padding and a "hann" / "hamming"
window; every other setting librosa allows (``center=False``, any ``pad_mode`` of :func:`numpy.pad` librosa
accepts, any :func:`scipy.signal.get_window` window, a callable or an array) runs the same iteration in plain
torch, announced once with a BackendFallbackWarning. ``stft`` is plain torch in float64 (librosa multiplies its
float32 frames by a float64 window, so its result is float64 arithmetic rounded to complex64).
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Optional, Union

import numpy as np
import torch

from ...config import n_frames as frame_count
from ._errors import ParameterError, librosa_errors, torch_variant

_REFUSED_PADS = ("wrap", "maximum", "mean", "median", "minimum")
_TORCH_PADS = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}
_FAST_WINDOWS = ("hann", "hamming")


def window_taps(window: Any, win_length: int, n_fft: int) -> np.ndarray:
    """librosa's window (``filters.get_window(window, win_length, fftbins=True)``) centred in ``n_fft`` taps."""
    if callable(window):
        taps = np.asarray(window(win_length))
    elif isinstance(window, (str, tuple)) or np.isscalar(window):
        import scipy.signal
        taps = scipy.signal.get_window(window, win_length, fftbins=True)
    elif isinstance(window, (np.ndarray, list)):
        if len(window) != win_length:
            raise ParameterError(f"Window size mismatch: {len(window):d} != {win_length:d}")
        taps = np.asarray(window)
    else:
        raise ParameterError(f"Invalid window specification: {window!r}")
    left = (n_fft - taps.shape[-1]) // 2
    if left < 0:
        raise ParameterError(f"Target size ({n_fft:d}) must be at least input size ({taps.shape[-1]:d})")
    return np.pad(taps, (left, n_fft - taps.shape[-1] - left))


def _is_positive_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and x > 0


def _valid_audio(y: Any) -> np.ndarray:
    if not isinstance(y, np.ndarray):
        raise ParameterError("Audio data must be of type numpy.ndarray")
    if not np.issubdtype(y.dtype, np.floating):
        raise ParameterError("Audio data must be floating-point")
    if y.ndim == 0:
        raise ParameterError(f"Audio data must be at least one-dimensional, given y.shape={y.shape}")
    if not np.isfinite(y).all():
        raise ParameterError("Audio buffer is not finite everywhere")
    return y


def complex_dtype(real: Any) -> np.dtype:
    """librosa's ``util.dtype_r2c``: the complex dtype of a real one (complex64 unless float64)."""
    real = np.dtype(real)
    if np.issubdtype(real, np.complexfloating):
        return real
    return np.dtype(np.complex128) if real == np.float64 else np.dtype(np.complex64)


def real_dtype(cplx: Any) -> np.dtype:
    """librosa's ``util.dtype_c2r``: the real dtype of a complex one (float32 unless complex128)."""
    cplx = np.dtype(cplx)
    if not np.issubdtype(cplx, np.complexfloating):
        return cplx
    return np.dtype(np.float64) if cplx == np.complex128 else np.dtype(np.float32)


def _pad(x: torch.Tensor, pad: int, mode: str) -> torch.Tensor:
    """``np.pad(x, (pad, pad), mode)`` along the last axis (torch where it has the mode, else numpy)."""
    if pad == 0:
        return x
    torch_mode = _TORCH_PADS.get(mode)
    if torch_mode is not None and (torch_mode != "reflect" or pad < x.shape[-1]):
        flat = x.reshape(-1, 1, x.shape[-1])
        return torch.nn.functional.pad(flat, (pad, pad), mode=torch_mode).reshape(*x.shape[:-1], -1)
    try:
        padded = np.pad(x.numpy(), [(0, 0)] * (x.dim() - 1) + [(pad, pad)], mode=mode)
    except ValueError as error:
        raise ParameterError(f"pad_mode={mode!r}: {error}") from None
    return torch.from_numpy(padded)


def stft_tensor(y: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor, center: bool,
                pad_mode: str) -> torch.Tensor:
    """Complex STFT of (..., n) real ``y`` with an ``n_fft``-tap ``window``: (..., 1 + n_fft // 2, frames)."""
    if center:
        y = _pad(y, n_fft // 2, pad_mode)
    if y.shape[-1] < n_fft:
        raise ParameterError(f"Input is too short (n={y.shape[-1]:d}) for frame_length={n_fft:d}")
    frames = y.unfold(-1, n_fft, hop_length) * window
    return torch.fft.rfft(frames, dim=-1).transpose(-1, -2)


def _overlap_add(frames: torch.Tensor, hop_length: int) -> torch.Tensor:
    """(..., n_fft, t) frames -> (..., n_fft + hop_length * (t - 1)) by overlap-add."""
    n_fft, n_frames = frames.shape[-2:]
    full = n_fft + hop_length * (n_frames - 1)
    flat = frames.reshape(-1, n_fft, n_frames)
    return torch.nn.functional.fold(flat, (1, full), (1, n_fft), stride=(1, hop_length)).reshape(
        *frames.shape[:-2], full)


def istft_tensor(spec: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor, center: bool,
                 length: Optional[int]) -> torch.Tensor:
    """librosa's ``istft`` of (..., 1 + n_fft // 2, t) ``spec``: windowed overlap-add divided by the squared
    window's overlap-add (where it is not tiny), trimmed / zero-padded to ``length``."""
    n_frames = spec.shape[-1]
    if length:
        padded = length + 2 * (n_fft // 2) if center else length
        n_frames = min(n_frames, int(np.ceil(padded / hop_length)))
    signal = _overlap_add(torch.fft.irfft(spec[..., :n_frames], n=n_fft, dim=-2) * window[:, None], hop_length)
    envelope = _overlap_add(window.square()[:, None].expand(n_fft, n_frames), hop_length)
    start = n_fft // 2 if center else 0
    out_length = length if length else signal.shape[-1] - 2 * start
    signal, envelope = signal[..., start:start + out_length], envelope[start:start + out_length]
    if signal.shape[-1] < out_length:
        signal = torch.nn.functional.pad(signal, (0, out_length - signal.shape[-1]))
        envelope = torch.nn.functional.pad(envelope, (0, out_length - envelope.shape[-1]))
    nonzero = envelope > torch.finfo(envelope.dtype).tiny
    return torch.where(nonzero, signal / torch.where(nonzero, envelope, torch.ones_like(envelope)), signal)


@librosa_errors
def stft(y: np.ndarray, *, n_fft: int = 2048, hop_length: Optional[int] = None, win_length: Optional[int] = None,
         window: Any = "hann", center: bool = True, dtype: Any = None, pad_mode: Any = "constant",
         out: Optional[np.ndarray] = None) -> np.ndarray:
    """librosa.stft: (..., n) audio -> complex (..., 1 + n_fft // 2, t); librosa's framing, padding and checks."""
    win_length = n_fft if win_length is None else win_length
    if hop_length is None:
        hop_length = int(win_length // 4)
    elif not _is_positive_int(hop_length):
        raise ParameterError(f"hop_length={hop_length} must be a positive integer")
    y = _valid_audio(y)
    taps = window_taps(window, win_length, n_fft)
    if center:
        if pad_mode in _REFUSED_PADS:
            raise ParameterError(f"pad_mode='{pad_mode}' is not supported by librosa.stft")
        if n_fft > y.shape[-1]:
            warnings.warn(f"n_fft={n_fft} is too large for input signal of length={y.shape[-1]}", stacklevel=3)
    elif n_fft > y.shape[-1]:
        raise ParameterError(f"n_fft={n_fft} is too large for uncentered analysis of input signal of "
                             f"length={y.shape[-1]}")
    dtype = complex_dtype(y.dtype) if dtype is None else dtype
    spec = stft_tensor(torch.from_numpy(np.ascontiguousarray(y, dtype=np.float64)), int(n_fft), int(hop_length),
                       torch.from_numpy(taps.astype(np.float64)), bool(center), pad_mode).numpy()
    if out is None:
        return spec.astype(dtype)
    if not (np.allclose(out.shape[:-1], spec.shape[:-1]) and out.shape[-1] >= spec.shape[-1]):
        raise ParameterError(f"Shape mismatch for provided output array out.shape={out.shape} and target "
                             f"shape={list(spec.shape)}")
    if not np.iscomplexobj(out):
        raise ParameterError(f"output with dtype={out.dtype} is not of complex type")
    out[..., :spec.shape[-1]] = spec
    return out if out.shape[-1] == spec.shape[-1] else out[..., :spec.shape[-1]]


def _rng(random_state: Any) -> Union[np.random.RandomState, np.random.Generator]:
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, (int, np.integer)):
        return np.random.RandomState(seed=int(random_state))
    if isinstance(random_state, (np.random.RandomState, np.random.Generator)):
        return random_state
    raise ParameterError(f"Unsupported random_state={random_state!r}")


def _fast_griffinlim(S: np.ndarray, phase: np.ndarray, n_iter: int, hop_length: int, win_length: int, n_fft: int,
                     window: str, length: Optional[int], momentum: float) -> np.ndarray:
    from ...ops.reconstruct import griffin_lim
    flat = torch.from_numpy(np.ascontiguousarray(S.reshape(-1, *S.shape[-2:])))
    wave = griffin_lim(flat, n_fft, hop_length, win_length, n_iter, momentum,
                       init_phase=torch.from_numpy(phase.reshape(flat.shape)), length=length, window=window)
    return wave.numpy().reshape(*S.shape[:-2], wave.shape[-1])


def _torch_griffinlim(S: np.ndarray, phase: np.ndarray, n_iter: int, hop_length: int, win_length: int, n_fft: int,
                      window: Any, center: bool, length: Optional[int], pad_mode: str, momentum: float) -> np.ndarray:
    """librosa's iteration, line for line, in torch (float64 where ``S`` is)."""
    taps = window_taps(window, win_length, n_fft)
    mag = torch.from_numpy(np.ascontiguousarray(S))
    win = torch.from_numpy(taps).to(mag.dtype)
    eps = torch.finfo(mag.dtype).tiny
    angles = torch.from_numpy(phase) * mag
    previous = None
    for _ in range(n_iter):
        inverse = istft_tensor(angles, n_fft, hop_length, win, center, length)
        rebuilt = stft_tensor(inverse, n_fft, hop_length, win, center, pad_mode)
        if rebuilt.shape[-1] != mag.shape[-1]:
            raise ParameterError(f"the signal of length={inverse.shape[-1]} gives {rebuilt.shape[-1]} frames, "
                                 f"S has {mag.shape[-1]}")
        update = rebuilt if previous is None else rebuilt - (momentum / (1 + momentum)) * previous
        angles = mag * (update / (update.abs() + eps))
        previous = rebuilt
    return istft_tensor(angles, n_fft, hop_length, win, center, length).numpy()


@librosa_errors
def griffinlim(S: np.ndarray, *, n_iter: int = 32, hop_length: Optional[int] = None,
               win_length: Optional[int] = None, n_fft: Optional[int] = None, window: Any = "hann",
               center: bool = True, dtype: Any = None, length: Optional[int] = None, pad_mode: Any = "constant",
               momentum: float = 0.99, init: Optional[str] = "random",
               random_state: Union[None, int, np.random.RandomState, np.random.Generator] = None) -> np.ndarray:
    """librosa.griffinlim: magnitude (..., 1 + n_fft // 2, t) -> audio (..., n), fast Griffin-Lim. The initial
    phases are drawn from ``random_state`` as librosa draws them (``init=None``: zero phase)."""
    rng = _rng(random_state)
    if momentum > 1:
        warnings.warn(f"Griffin-Lim with momentum={momentum} > 1 can be unstable. Proceed with caution!",
                      stacklevel=3)
    elif momentum < 0:
        raise ParameterError(f"griffinlim() called with momentum={momentum} < 0")
    S = np.asarray(S)
    if not np.issubdtype(S.dtype, np.floating):
        S = S.astype(np.float64 if np.issubdtype(S.dtype, np.integer) else np.float32)
    n_fft = 2 * (S.shape[-2] - 1) if n_fft is None else int(n_fft)
    win_length = n_fft if win_length is None else int(win_length)
    hop_length = win_length // 4 if hop_length is None else int(hop_length)
    cplx = complex_dtype(S.dtype)
    if init == "random":
        phase = np.exp(1j * (2 * np.pi * rng.random(size=S.shape))).astype(cplx)
    elif init is None:
        phase = np.ones(S.shape, dtype=cplx)
    else:
        raise ParameterError(f"init={init} must either None or 'random'")
    if S.ndim < 2 or S.shape[-2] != n_fft // 2 + 1:
        raise ParameterError(f"S must be (..., 1 + n_fft // 2 = {n_fft // 2 + 1}, t), got shape {S.shape}")
    out_dtype = real_dtype(cplx) if dtype is None else np.dtype(dtype)
    fast_length = length is None or (length > 0 and frame_count(length, n_fft, hop_length) == S.shape[-1])
    reason = ("center=False" if not center else f"pad_mode={pad_mode!r}" if pad_mode != "constant" else
              f"window={window!r}" if not (isinstance(window, str) and window in _FAST_WINDOWS) else
              "a length that gives another frame count" if not fast_length else None)
    if reason is None and S.shape[-1] > 0 and n_fft >= 2:
        wave = _fast_griffinlim(S, phase, int(n_iter), hop_length, win_length, n_fft, window, length or None,
                                float(momentum))
    else:
        torch_variant("griffinlim", reason or "this shape")
        wave = _torch_griffinlim(S, phase, int(n_iter), hop_length, win_length, n_fft, window, bool(center),
                                 length or None, pad_mode, float(momentum))
    return wave.astype(out_dtype, copy=False)


@librosa_errors
def power_to_db(S: Any, *, ref: Union[float, Callable] = 1.0, amin: float = 1e-10,
                top_db: Optional[float] = 80.0) -> Any:
    """librosa.power_to_db: 10 log10(max(amin, S) / max(amin, ref)), floored at ``top_db`` below the maximum
    of the whole array."""
    S = np.asarray(S)
    if amin <= 0:
        raise ParameterError("amin must be strictly positive")
    if np.issubdtype(S.dtype, np.complexfloating):
        warnings.warn("power_to_db was called on complex input so phase information will be discarded. To "
                      "suppress this warning, call power_to_db(np.abs(D)**2) instead.", stacklevel=3)
        S = np.abs(S)
    ref_value = ref(S) if callable(ref) else np.abs(ref)
    log_spec = 10.0 * np.log10(np.maximum(amin, S))
    log_spec -= 10.0 * np.log10(np.maximum(amin, ref_value))
    if top_db is not None:
        if top_db < 0:
            raise ParameterError("top_db must be non-negative")
        log_spec = np.maximum(log_spec, log_spec.max() - top_db)
    return log_spec


def db_to_power(S_db: Any, *, ref: float = 1.0) -> Any:
    """librosa.db_to_power: ref * 10 ** (S_db / 10)."""
    return ref * np.power(10.0, 0.1 * np.asarray(S_db))


@librosa_errors
def amplitude_to_db(S: Any, *, ref: Union[float, Callable] = 1.0, amin: float = 1e-5,
                    top_db: Optional[float] = 80.0) -> Any:
    """librosa.amplitude_to_db: ``power_to_db(|S| ** 2, ref=ref ** 2, amin=amin ** 2, top_db=top_db)``."""
    S = np.asarray(S)
    if np.issubdtype(S.dtype, np.complexfloating):
        warnings.warn("amplitude_to_db was called on complex input so phase information will be discarded. To "
                      "suppress this warning, call amplitude_to_db(np.abs(S)) instead.", stacklevel=3)
    magnitude = np.abs(S)
    ref_value = ref(magnitude) if callable(ref) else np.abs(ref)
    return power_to_db(np.square(magnitude), ref=ref_value ** 2, amin=amin ** 2, top_db=top_db)


def db_to_amplitude(S_db: Any, *, ref: float = 1.0) -> Any:
    """librosa.db_to_amplitude: ``db_to_power(S_db, ref=ref ** 2) ** 0.5``."""
    return db_to_power(S_db, ref=ref ** 2) ** 0.5
