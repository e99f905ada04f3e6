"""librosa's ``feature.melspectrogram``, ``feature.mfcc`` and ``feature.delta`` on ddfad_fast (numpy in / out).

``mfcc`` from audio runs the fused MFCC kernel (:func:`ddfad_fast.mfcc`) for its defaults (DCT-II ortho,
Slaney mels with Slaney norm, power 2, centred zero-padded frames, a "hann" / "hamming" window, n_mfcc <= n_mels);
for a batch it returns the full-size orthonormal DCT of each clip's unfloored log-mel spectrogram, which is
inverted (the DCT is orthogonal), floored once over the whole batch and truncated. ``delta`` multiplies by
the delta kernels' banded table (:func:`ddfad_fast.ops.tables.delta_matrix`) for mode "interp" and orders 1 and 2. Every other setting librosa allows is computed in plain torch /
numpy as librosa computes it, announced once with a BackendFallbackWarning.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from ...ops import tables
from ._errors import ParameterError, librosa_errors, torch_variant
from ._filters import mel as mel_filter
from ._spectrum import power_to_db, stft

_SAVGOL_PADS = {"mirror": "reflect", "nearest": "edge", "wrap": "wrap", "constant": "constant",
                "interp": "constant"}


def _floats(x: Any, name: str) -> np.ndarray:
    array = np.asarray(x)
    if np.issubdtype(array.dtype, np.complexfloating):
        raise ParameterError(f"{name} must be real, got {array.dtype}")
    return array if np.issubdtype(array.dtype, np.floating) else array.astype(np.float32)


def _spectrogram(y: Optional[np.ndarray], S: Optional[np.ndarray], n_fft: Optional[int], hop_length: Optional[int],
                 power: float, win_length: Optional[int], window: Any, center: bool, pad_mode: Any) -> tuple:
    """librosa's ``_spectrogram``: ``S`` as given (n_fft from its bins) or ``|stft(y)| ** power``."""
    if S is not None:
        if n_fft is None or n_fft // 2 + 1 != S.shape[-2]:
            n_fft = 2 * (S.shape[-2] - 1)
        return S, n_fft
    if n_fft is None:
        raise ParameterError(f"Unable to compute spectrogram with n_fft={n_fft}")
    spec = np.abs(stft(y, n_fft=n_fft, hop_length=hop_length, win_length=win_length, center=center, window=window,
                       pad_mode=pad_mode))
    return spec ** power, n_fft


@librosa_errors
def melspectrogram(*, y: Optional[np.ndarray] = None, sr: float = 22050, S: Optional[np.ndarray] = None,
                   n_fft: int = 2048, hop_length: int = 512, win_length: Optional[int] = None,
                   window: Any = "hann", center: bool = True, pad_mode: Any = "constant", power: float = 2.0,
                   **kwargs: Any) -> np.ndarray:
    """librosa.feature.melspectrogram: (..., n) audio, or a spectrogram ``S`` (..., 1 + n_fft // 2, t),
    -> mel spectrogram (..., n_mels, t); ``kwargs`` go to :func:`filters.mel <ddfad_fast.compat.librosa.filters>`."""
    S, n_fft = _spectrogram(y, S, n_fft, hop_length, power, win_length, window, center, pad_mode)
    bank = mel_filter(sr=sr, n_fft=n_fft, **kwargs)
    return np.einsum("...ft,mf->...mt", S, bank, optimize=True)


def dct_axis(S: np.ndarray, dct_type: int, norm: Optional[str], n: Optional[int] = None,
         inverse: bool = False) -> np.ndarray:
    """scipy.fft.dct / idct along axis -2 (librosa's), the fast tables for DCT-II ortho where scipy is missing."""
    try:
        import scipy.fft
    except ImportError:
        if dct_type != 2 or norm != "ortho":
            raise ParameterError(f"dct_type={dct_type}, norm={norm!r} need scipy") from None
        size = n if n is not None else S.shape[-2]
        if inverse:
            return np.matmul(tables.dct_matrix(size, S.shape[-2]).T.astype(S.dtype), S)
        return np.matmul(tables.dct_matrix(S.shape[-2], S.shape[-2]).astype(S.dtype), S)
    try:
        if inverse:
            return scipy.fft.idct(S, axis=-2, type=dct_type, norm=norm, n=n)
        return scipy.fft.dct(S, axis=-2, type=dct_type, norm=norm)
    except ValueError as error:
        raise ParameterError(f"dct_type={dct_type!r}, norm={norm!r}: {error}") from None


def _lifted(M: np.ndarray, lifter: float) -> np.ndarray:
    if lifter > 0:
        sine = np.sin(np.pi * np.arange(1, 1 + M.shape[-2], dtype=M.dtype) / lifter)
        return M * (1 + (lifter / 2) * sine)[:, None]
    return M


@librosa_errors
def mfcc(*, y: Optional[np.ndarray] = None, sr: float = 22050, S: Optional[np.ndarray] = None, n_mfcc: int = 20,
         dct_type: int = 2, norm: Optional[str] = "ortho", lifter: float = 0, **kwargs: Any) -> np.ndarray:
    """librosa.feature.mfcc: (..., n) audio, or a log-power mel spectrogram ``S`` (..., n_mels, t), ->
    (..., n_mfcc, t). From audio: ``power_to_db(melspectrogram(y=y, sr=sr, **kwargs))`` (top_db 80 over the
    whole array), then the DCT (``dct_type`` 1, 2 or 3, ``norm`` None or "ortho") and the optional sine
    ``lifter`` (a non-negative number, else ParameterError)."""
    if not lifter >= 0:
        raise ParameterError(f"MFCC lifter={lifter} must be a non-negative number")
    if S is None:
        if y is None:
            raise ParameterError("mfcc needs y (audio) or S (a log-power mel spectrogram)")
        reason = _fused_reason(y, sr, n_mfcc, dct_type, norm, kwargs)
        if reason is None:
            return _lifted(_fused_mfcc(y, sr, n_mfcc, kwargs), lifter)
        torch_variant("feature.mfcc", reason)
        S = power_to_db(melspectrogram(y=y, sr=sr, **kwargs))
    S = _floats(S, "S")
    return _lifted(dct_axis(S, dct_type, norm)[..., :n_mfcc, :], lifter)


_STFT_DEFAULTS = dict(n_fft=2048, hop_length=512, win_length=None, window="hann", center=True, pad_mode="constant",
                      power=2.0, n_mels=128, fmin=0.0, fmax=None, htk=False, norm="slaney", dtype=np.float32)


def _fused_reason(y: Any, sr: float, n_mfcc: int, dct_type: int, norm: Any, kwargs: dict) -> Optional[str]:
    """Why the fused MFCC kernel cannot give librosa's answer for these arguments (None: it can)."""
    args = {**_STFT_DEFAULTS, **kwargs}
    checks = [(dct_type == 2 and norm == "ortho", f"dct_type={dct_type!r}, norm={norm!r}"),
              (set(kwargs) <= set(_STFT_DEFAULTS), f"arguments {sorted(set(kwargs) - set(_STFT_DEFAULTS))}"),
              (args["power"] == 2.0 and args["center"] is True and args["pad_mode"] == "constant",
               "power, center or pad_mode"),
              (isinstance(args["window"], str) and args["window"] in ("hann", "hamming"), "the window"),
              (args["htk"] is False and args["norm"] == "slaney" and args["dtype"] == np.float32, "the mel bank"),
              (isinstance(y, np.ndarray) and y.dtype in (np.float32, np.float64) and y.ndim >= 1, "the input"),
              (float(sr) == int(sr) and int(n_mfcc) <= int(args["n_mels"]), "sr or n_mfcc")]
    return next((why for ok, why in checks if not ok), None)


def _fused_mfcc(y: np.ndarray, sr: float, n_mfcc: int, kwargs: dict) -> np.ndarray:
    """MFCCs of (..., n) audio through the fused kernel, with librosa's top_db 80 below the maximum of the
    whole array: one clip directly; a batch as the kernel's full-size orthonormal DCT of the unfloored
    log-mel spectrogram, turned back into it (the DCT is orthogonal), floored once, then truncated."""
    from ...config import FeatureConfig
    from ...ops.features import mfcc as fused_mfcc
    args = {**_STFT_DEFAULTS, **kwargs}
    win_length = args["n_fft"] if args["win_length"] is None else int(args["win_length"])
    hop_length = win_length // 4 if args["hop_length"] is None else int(args["hop_length"])
    config = FeatureConfig(sample_rate=int(sr), fixed_length=None, preemphasis=0.0, n_fft=int(args["n_fft"]),
                           win_length=win_length, hop_length=hop_length, window=args["window"],
                           n_mels=int(args["n_mels"]), fmin=float(args["fmin"]),
                           fmax=None if args["fmax"] is None else float(args["fmax"]), top_db=80.0,
                           n_mfcc=int(n_mfcc)).validate()
    if y.ndim == 1:
        return fused_mfcc(torch.from_numpy(y), int(sr), config)[0].numpy()
    flat = torch.from_numpy(np.ascontiguousarray(y.reshape(-1, y.shape[-1])))
    full = fused_mfcc(flat, int(sr), config.replace(n_mfcc=config.n_mels, top_db=None))     # (B, n_mels, T)
    dct = tables.as_tensor(tables.dct_matrix(config.n_mels, config.n_mels), full.dtype, "cpu").numpy()
    # numpy's stacked matmul and reductions run on one thread: on a busy machine torch's multi-threaded small
    # ops wait on each other (measured 2 ms here against 95 ms for the same three steps in torch)
    log_mel = np.matmul(dct.T, full.numpy())
    np.maximum(log_mel, log_mel.max() - 80.0, out=log_mel)
    out = np.matmul(dct[:n_mfcc], log_mel)
    return out.reshape(*y.shape[:-1], *out.shape[-2:])


def _savgol(data: np.ndarray, width: int, order: int, mode: str, polyorder: int, delta: float,
            cval: float) -> np.ndarray:
    """scipy.signal.savgol_filter(data, width, polyorder, deriv=order, delta, axis=-1, mode, cval) in torch."""
    import scipy.signal
    if mode not in _SAVGOL_PADS:
        raise ValueError("mode must be 'mirror', 'constant', 'nearest' 'wrap' or 'interp'.")
    taps = scipy.signal.savgol_coeffs(width, polyorder, deriv=order, delta=delta, use="dot")
    x = torch.from_numpy(np.ascontiguousarray(data))
    half = width // 2
    if mode in ("constant", "interp"):
        padded = torch.nn.functional.pad(x, (half, half), value=0.0 if mode == "interp" else float(cval))
    else:
        padded = torch.from_numpy(np.pad(data, [(0, 0)] * (data.ndim - 1) + [(half, half)], mode=_SAVGOL_PADS[mode]))
    out = padded.unfold(-1, width, 1) @ torch.from_numpy(taps).to(x.dtype)
    if mode == "interp" and half > 0:
        # the edges: the order-th derivative of the least-squares polynomial through the first / last width samples
        vander = np.arange(width, dtype=np.float64)[:, None] ** np.arange(polyorder + 1)
        fit = np.linalg.pinv(vander)                                           # (polyorder + 1, width)
        powers = np.arange(polyorder + 1)
        falling = np.array([np.prod(np.arange(k - order + 1, k + 1)) if k >= order else 0.0 for k in powers])
        at = np.arange(width, dtype=np.float64)[:, None] ** np.clip(powers - order, 0, None) * falling
        edge = torch.from_numpy(at @ fit / delta ** order).to(x.dtype)        # (width, width): fit at every point
        out[..., :half] = x[..., :width] @ edge[:half].T
        out[..., -half:] = x[..., -width:] @ edge[width - half:].T
    return out.numpy()


@librosa_errors
def delta(data: np.ndarray, *, width: int = 9, order: int = 1, axis: int = -1, mode: str = "interp",
          **kwargs: Any) -> np.ndarray:
    """librosa.feature.delta: Savitzky-Golay derivative of order ``order`` along ``axis`` (scipy's
    savgol_filter with ``mode`` and its keyword arguments ``polyorder``, ``delta``, ``cval``)."""
    data = np.atleast_1d(np.asarray(data))
    if mode == "interp" and width > data.shape[axis]:
        raise ParameterError(f"when mode='interp', width={width} cannot exceed data.shape[axis]={data.shape[axis]}")
    if width < 3 or np.mod(width, 2) != 1:
        raise ParameterError("width must be an odd integer >= 3")
    if order <= 0 or not isinstance(order, (int, np.integer)):
        raise ParameterError("order must be a positive integer")
    kwargs.pop("deriv", None)
    polyorder = kwargs.pop("polyorder", order)
    step, cval = float(kwargs.pop("delta", 1.0)), float(kwargs.pop("cval", 0.0))
    if kwargs:
        raise TypeError(f"savgol_filter() got unexpected keyword argument(s) {sorted(kwargs)}")
    if data.dtype not in (np.float32, np.float64):
        data = data.astype(np.float64)
    moved = np.ascontiguousarray(np.moveaxis(data, axis, -1))
    if mode == "interp" and order in (1, 2) and polyorder == order and step == 1.0:
        # the delta kernels' table (ddfad_fast.deltas multiplies by it in torch); numpy's stacked matmul
        matrix = tables.as_tensor(tables.delta_matrix(moved.shape[-1], int(width), int(order)),
                                  torch.from_numpy(moved[..., :0]).dtype).numpy()
        out = np.matmul(moved, matrix.T)
    else:
        torch_variant("feature.delta", "mode, order or savgol arguments other than interp / 1, 2")
        out = _savgol(moved, int(width), int(order), mode, int(polyorder), step, cval)
    return np.moveaxis(out, -1, axis)
