"""librosa's calls on ddfad_fast's kernels: ``import ddfad_fast.compat.librosa as librosa``.

Same names, keyword arguments, defaults, numpy in / numpy out and shapes as librosa 0.11:
``feature.mfcc``, ``feature.melspectrogram``, ``feature.delta``, ``power_to_db``, ``db_to_power``,
``griffinlim``, ``feature.inverse.mfcc_to_mel``, ``feature.inverse.mel_to_stft``,
``feature.inverse.mel_to_audio``, ``feature.inverse.mfcc_to_audio``. librosa's semantics are kept where
they are easy to miss: ``power_to_db`` (and ``mfcc`` from audio) floor at ``top_db`` below the maximum of
the *whole* array, not per clip; ``griffinlim`` draws its initial phases from ``random_state`` exactly as
librosa does, so a seeded call gives librosa's result (within float rounding).

Refused with a ParameterError naming the setting (never computed differently): ``htk=True`` mels, a mel
``norm`` other than "slaney", ``center=False``, a ``pad_mode`` other than "constant", windows other than
"hann"/"hamming", ``dct_type`` other than 2, a DCT ``norm`` other than "ortho", ``delta`` modes other
than "interp" (and its savgol keyword arguments), ``delta`` orders above 2. Every other attribute is
librosa's own when librosa is installed (``librosa.load``, ``librosa.resample``, ... keep working).

``mfcc`` from audio runs the fused MFCC kernel (:func:`ddfad_fast.mfcc`); for a batch it returns the
full-size orthonormal DCT of each clip's unfloored log-mel spectrogram, which is inverted (the DCT is
orthogonal), floored once over the whole batch and truncated.
"""
from __future__ import annotations

import importlib
import inspect
import warnings
from typing import Any, Callable, Optional, Union

import numpy as np
import torch

from ..ops import tables
from ..config import FeatureConfig
from ..errors import ParameterError

__all__ = ["mfcc", "melspectrogram", "delta", "power_to_db", "db_to_power", "griffinlim", "mfcc_to_mel",
           "mel_to_stft", "mel_to_audio", "mfcc_to_audio", "feature"]

_MEL_KEYS = ("n_mels", "fmin", "fmax", "htk", "norm", "dtype")


def _refuse(name: str, value: Any, supported: Any) -> None:
    if value != supported:
        raise ParameterError(f"{name}={value!r} is not supported by ddfad_fast.compat.librosa (only {name}="
                             f"{supported!r}); call librosa itself for it")


def _floats(x: Any, name: str) -> np.ndarray:
    array = np.asarray(x)
    if not np.issubdtype(array.dtype, np.floating):
        if np.issubdtype(array.dtype, np.complexfloating):
            raise ParameterError(f"{name} must be real, got {array.dtype}")
        array = array.astype(np.float32)
    return array


def _config(sr: float, n_fft: int, hop_length: Optional[int] = None, win_length: Optional[int] = None,
            window: Any = "hann", center: bool = True, pad_mode: str = "constant", n_mels: int = 128,
            fmin: float = 0.0, fmax: Optional[float] = None, htk: bool = False, norm: Any = "slaney",
            n_mfcc: Optional[int] = None, top_db: Optional[float] = None, dtype: Any = None) -> FeatureConfig:
    """The FeatureConfig of librosa's STFT and mel arguments (no pre-emphasis, no fixed length)."""
    _refuse("center", center, True)
    _refuse("pad_mode", pad_mode, "constant")
    _refuse("htk", htk, False)
    _refuse("norm", norm, "slaney")
    if window not in ("hann", "hamming"):
        raise ParameterError(f"window={window!r} is not supported by ddfad_fast.compat.librosa (hann, hamming)")
    if float(sr) != int(sr):
        raise ParameterError(f"sr must be a whole number of Hz, got {sr!r}")
    win_length = n_fft if win_length is None else int(win_length)
    hop_length = win_length // 4 if hop_length is None else int(hop_length)
    return FeatureConfig(sample_rate=int(sr), fixed_length=None, preemphasis=0.0, n_fft=int(n_fft),
                         win_length=win_length, hop_length=hop_length, window=window, n_mels=int(n_mels),
                         fmin=float(fmin), fmax=None if fmax is None else float(fmax), top_db=top_db,
                         n_mfcc=int(n_mfcc if n_mfcc is not None else min(20, n_mels))).validate()


def _mel_kwargs(kwargs: dict, where: str) -> dict:
    unknown = set(kwargs) - set(_MEL_KEYS)
    if unknown:
        raise ParameterError(f"{where}: unsupported keyword argument(s) {sorted(unknown)}")
    return dict(kwargs)


def _mel_bank(config: FeatureConfig, dtype: torch.dtype) -> torch.Tensor:
    return tables.as_tensor(tables.mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, config.fmin,
                                            config.f_max), dtype, "cpu")


def _power_spectrogram(y: np.ndarray, config: FeatureConfig, power: float) -> torch.Tensor:
    """``|STFT|^power`` of (..., n) audio: (..., 1 + n_fft // 2, frames), centred frames, zero padding."""
    from ..ops.reference import stft
    wave = torch.from_numpy(np.ascontiguousarray(y))
    spec = stft(wave.reshape(-1, wave.shape[-1]), config.n_fft, config.hop_length, config.win_length,
                config.window).abs()
    spec = spec.square() if power == 2.0 else spec if power == 1.0 else spec ** power
    return spec.reshape(*wave.shape[:-1], *spec.shape[-2:])


def melspectrogram(*, y: Optional[np.ndarray] = None, sr: float = 22050, S: Optional[np.ndarray] = None,
                   n_fft: int = 2048, hop_length: int = 512, win_length: Optional[int] = None,
                   window: Any = "hann", center: bool = True, pad_mode: str = "constant", power: float = 2.0,
                   **kwargs: Any) -> np.ndarray:
    """librosa.feature.melspectrogram: (..., n) audio, or a spectrogram ``S`` (..., 1 + n_fft // 2, t),
    -> mel spectrogram (..., n_mels, t)."""
    mel = _mel_kwargs(kwargs, "melspectrogram")
    dtype = mel.pop("dtype", None)
    config = _config(sr, n_fft, hop_length, win_length, window, center, pad_mode, **mel)
    if S is not None:
        spec = torch.from_numpy(np.ascontiguousarray(_floats(S, "S")))
        if spec.shape[-2] != config.n_freqs:
            raise ParameterError(f"S has {spec.shape[-2]} frequency bins, n_fft={n_fft} gives {config.n_freqs}")
    elif y is not None:
        spec = _power_spectrogram(_floats(y, "y"), config, float(power))
    else:
        raise ParameterError("melspectrogram needs y (audio) or S (a spectrogram)")
    out = (_mel_bank(config, spec.dtype) @ spec).numpy()
    return out.astype(dtype, copy=False) if dtype is not None else out


_STFT_DEFAULTS = {name: p.default for name, p in inspect.signature(melspectrogram).parameters.items()
                  if name in ("n_fft", "hop_length", "win_length", "window", "center", "pad_mode", "power")}


def power_to_db(S: np.ndarray, *, ref: Union[float, Callable] = 1.0, amin: float = 1e-10,
                top_db: Optional[float] = 80.0) -> np.ndarray:
    """librosa.power_to_db: 10 log10(max(amin, S) / max(amin, ref)), floored at ``top_db`` below the maximum
    of the whole array."""
    S = np.asarray(S)
    if amin <= 0:
        raise ParameterError(f"amin must be strictly positive, got {amin!r}")
    if np.issubdtype(S.dtype, np.complexfloating):
        warnings.warn("power_to_db was called on complex input so phase information will be discarded. To "
                      "suppress this warning, call power_to_db(np.abs(D)**2) instead.", stacklevel=2)
        S = np.abs(S)
    ref_value = ref(S) if callable(ref) else np.abs(ref)
    log_spec = 10.0 * np.log10(np.maximum(amin, S))
    log_spec -= 10.0 * np.log10(np.maximum(amin, ref_value))
    if top_db is not None:
        if top_db < 0:
            raise ParameterError(f"top_db must be non-negative, got {top_db!r}")
        log_spec = np.maximum(log_spec, log_spec.max() - top_db)
    return log_spec


def db_to_power(S_db: np.ndarray, *, ref: float = 1.0) -> np.ndarray:
    """librosa.db_to_power: ref * 10 ** (S_db / 10)."""
    return ref * np.power(10.0, 0.1 * np.asarray(S_db))


def _lifter(n_mfcc: int, lifter: float, dtype: Any) -> np.ndarray:
    return 1 + (lifter / 2) * np.sin(np.pi * np.arange(1, 1 + n_mfcc, dtype=dtype) / lifter)


def mfcc(*, y: Optional[np.ndarray] = None, sr: float = 22050, S: Optional[np.ndarray] = None, n_mfcc: int = 20,
         dct_type: int = 2, norm: Optional[str] = "ortho", lifter: float = 0, **kwargs: Any) -> np.ndarray:
    """librosa.feature.mfcc: (..., n) audio, or a log-power mel spectrogram ``S`` (..., n_mels, t), ->
    (..., n_mfcc, t). From audio: ``power_to_db(melspectrogram(y=y, sr=sr, **kwargs))`` (top_db 80 over the
    whole array), then the orthonormal DCT-II and the optional sine ``lifter``."""
    _refuse("dct_type", dct_type, 2)
    _refuse("norm", norm, "ortho")
    if lifter < 0:
        raise ParameterError(f"MFCC lifter={lifter!r} must be a non-negative number")
    if S is None:
        if y is None:
            raise ParameterError("mfcc needs y (audio) or S (a log-power mel spectrogram)")
        y = _floats(y, "y")
        stft_args = {k: kwargs.pop(k, default) for k, default in _STFT_DEFAULTS.items()}   # melspectrogram's
        mel = _mel_kwargs(kwargs, "mfcc")
        if stft_args["power"] == 2.0 and mel.get("dtype") is None:
            out = _fused_mfcc(y, sr, n_mfcc, stft_args, mel)
            return out * _lifter(n_mfcc, lifter, out.dtype)[:, None] if lifter > 0 else out
        S = power_to_db(melspectrogram(y=y, sr=sr, **stft_args, **mel))
    S = _floats(S, "S")
    if n_mfcc > S.shape[-2]:
        raise ParameterError(f"n_mfcc={n_mfcc} exceeds the {S.shape[-2]} mel bands of S")
    dct = tables.dct_matrix(S.shape[-2], n_mfcc).astype(S.dtype)
    out = np.matmul(dct, S)
    return out * _lifter(n_mfcc, lifter, out.dtype)[:, None] if lifter > 0 else out


def _fused_mfcc(y: np.ndarray, sr: float, n_mfcc: int, stft_args: dict, mel: dict) -> np.ndarray:
    """MFCCs of (..., n) audio through the fused kernel, with librosa's top_db 80 below the maximum of the
    whole array: one clip directly; a batch as the kernel's full-size orthonormal DCT of the unfloored
    log-mel spectrogram, turned back into it (the DCT is orthogonal), floored once, then truncated."""
    from ..ops.features import mfcc as fused_mfcc
    config = _config(sr, stft_args["n_fft"], stft_args["hop_length"], stft_args["win_length"], stft_args["window"],
                     stft_args["center"], stft_args["pad_mode"], n_mfcc=n_mfcc, top_db=80.0, **mel)
    if n_mfcc > config.n_mels:
        raise ParameterError(f"n_mfcc={n_mfcc} exceeds n_mels={config.n_mels}")
    if y.ndim == 1:
        return fused_mfcc(torch.from_numpy(y), int(sr), config)[0].numpy()
    flat = torch.from_numpy(np.ascontiguousarray(y.reshape(-1, y.shape[-1])))
    full = fused_mfcc(flat, int(sr), config.replace(n_mfcc=config.n_mels, top_db=None))
    dct = tables.as_tensor(tables.dct_matrix(config.n_mels, config.n_mels), full.dtype, "cpu")
    log_mel = dct.T @ full
    log_mel = torch.maximum(log_mel, log_mel.max() - 80.0)
    out = (dct[:n_mfcc] @ log_mel).numpy()
    return out.reshape(*y.shape[:-1], *out.shape[-2:])


def delta(data: np.ndarray, *, width: int = 9, order: int = 1, axis: int = -1, mode: str = "interp",
          **kwargs: Any) -> np.ndarray:
    """librosa.feature.delta (mode "interp"): Savitzky-Golay derivative of order 1 or 2 along ``axis``."""
    from ..ops.features import deltas
    _refuse("mode", mode, "interp")
    if kwargs:
        raise ParameterError(f"delta: unsupported keyword argument(s) {sorted(kwargs)}")
    data = np.atleast_1d(_floats(data, "data"))
    if not isinstance(width, (int, np.integer)) or width < 3 or width % 2 != 1:
        raise ParameterError("width must be an odd integer >= 3")
    if order not in (1, 2):
        raise ParameterError(f"order={order!r}: ddfad_fast.compat.librosa supports delta orders 1 and 2")
    if data.shape[axis] < width:
        raise ParameterError(f"when mode='interp', width={width} cannot exceed data.shape[axis]={data.shape[axis]}")
    moved = np.ascontiguousarray(np.moveaxis(data, axis, -1))
    out = deltas(torch.from_numpy(moved), order=int(order), width=int(width)).numpy()
    return np.moveaxis(out, -1, axis)


def griffinlim(S: np.ndarray, *, n_iter: int = 32, hop_length: Optional[int] = None,
               win_length: Optional[int] = None, n_fft: Optional[int] = None, window: Any = "hann",
               center: bool = True, dtype: Any = None, length: Optional[int] = None, pad_mode: str = "constant",
               momentum: float = 0.99, init: Optional[str] = "random",
               random_state: Union[None, int, np.random.RandomState, np.random.Generator] = None) -> np.ndarray:
    """librosa.griffinlim: magnitude (..., 1 + n_fft // 2, t) -> audio (..., n), fast Griffin-Lim. The initial
    phases are drawn from ``random_state`` as librosa draws them (``init=None``: zero phase)."""
    from ..ops.reconstruct import griffin_lim
    _refuse("center", center, True)
    _refuse("pad_mode", pad_mode, "constant")
    if window not in ("hann", "hamming"):
        raise ParameterError(f"window={window!r} is not supported by ddfad_fast.compat.librosa (hann, hamming)")
    S = _floats(S, "S")
    if S.ndim < 2:
        raise ParameterError(f"S must be (..., 1 + n_fft // 2, t), got shape {S.shape}")
    if random_state is None:
        rng = np.random.default_rng()
    elif isinstance(random_state, (int, np.integer)):
        rng = np.random.RandomState(seed=int(random_state))
    elif isinstance(random_state, (np.random.RandomState, np.random.Generator)):
        rng = random_state
    else:
        raise ParameterError(f"Unsupported random_state={random_state!r}")
    if momentum > 1:
        warnings.warn(f"Griffin-Lim with momentum={momentum} > 1 can be unstable. Proceed with caution!",
                      stacklevel=2)
    elif momentum < 0:
        raise ParameterError(f"griffinlim() called with momentum={momentum} < 0")
    n_fft = 2 * (S.shape[-2] - 1) if n_fft is None else int(n_fft)
    win_length = n_fft if win_length is None else int(win_length)
    hop_length = win_length // 4 if hop_length is None else int(hop_length)
    complex_dtype = np.result_type(S.dtype, np.complex64)
    if init == "random":
        phase = np.exp(1j * (2 * np.pi * rng.random(size=S.shape))).astype(complex_dtype)
    elif init is None:
        phase = np.ones(S.shape, dtype=complex_dtype)
    else:
        raise ParameterError(f"init={init} must either None or 'random'")
    flat = torch.from_numpy(np.ascontiguousarray(S.reshape(-1, *S.shape[-2:])))
    wave = griffin_lim(flat, n_fft, hop_length, win_length, n_iter, momentum,
                       init_phase=torch.from_numpy(phase.reshape(flat.shape)), length=length, window=window)
    out = wave.numpy().reshape(*S.shape[:-2], wave.shape[-1])
    return out.astype(dtype, copy=False) if dtype is not None else out


def mfcc_to_mel(mfcc: np.ndarray, *, n_mels: int = 128, dct_type: int = 2, norm: Optional[str] = "ortho",
                ref: float = 1.0, lifter: float = 0) -> np.ndarray:
    """librosa.feature.inverse.mfcc_to_mel: undo the lifter, inverse DCT (zero-filled to ``n_mels``), dB to
    power: (..., n_mfcc, t) -> (..., n_mels, t)."""
    _refuse("dct_type", dct_type, 2)
    _refuse("norm", norm, "ortho")
    mfcc = _floats(mfcc, "mfcc")
    n_mfcc = mfcc.shape[-2]
    if n_mfcc > n_mels:
        raise ParameterError(f"mfcc has {n_mfcc} coefficients, more than n_mels={n_mels}")
    if lifter > 0:
        sine = _lifter(n_mfcc, lifter, mfcc.dtype)
        if np.any(np.abs(sine) < np.finfo(sine.dtype).eps):
            warnings.warn(f"lifter={lifter} will result in invalid values due to zeros", stacklevel=2)
        mfcc = mfcc / sine[:, None]
    elif lifter != 0:
        raise ParameterError("MFCC to mel lifter must be a non-negative number.")
    log_mel = np.matmul(tables.dct_matrix(n_mels, n_mfcc).T.astype(mfcc.dtype), mfcc)
    return db_to_power(log_mel, ref=ref)


def mel_to_stft(M: np.ndarray, *, sr: float = 22050, n_fft: int = 2048, power: float = 2.0,
                **kwargs: Any) -> np.ndarray:
    """librosa.feature.inverse.mel_to_stft: non-negative least squares (batched, :func:`ddfad_fast.mel_to_magnitude`)
    -> ``|STFT|`` estimate (..., 1 + n_fft // 2, t) raised to 1 / ``power``."""
    from ..ops.reconstruct import mel_to_magnitude
    mel = _mel_kwargs(kwargs, "mel_to_stft")
    dtype = mel.pop("dtype", None)
    M = _floats(M, "M")
    config = _config(sr, n_fft, n_mels=M.shape[-2], **{k: v for k, v in mel.items() if k != "n_mels"})
    flat = torch.from_numpy(np.ascontiguousarray(M.reshape(-1, *M.shape[-2:])))
    magnitude = mel_to_magnitude(flat, config).numpy()           # sqrt of the NNLS power
    out = magnitude if power == 2.0 else np.power(np.square(magnitude), 1.0 / power)
    out = out.reshape(*M.shape[:-2], *out.shape[-2:])
    return out.astype(dtype, copy=False) if dtype is not None else out


def mel_to_audio(M: np.ndarray, *, sr: float = 22050, n_fft: int = 2048, hop_length: Optional[int] = None,
                 win_length: Optional[int] = None, window: Any = "hann", center: bool = True,
                 pad_mode: str = "constant", power: float = 2.0, n_iter: int = 32, length: Optional[int] = None,
                 dtype: Any = np.float32, **kwargs: Any) -> np.ndarray:
    """librosa.feature.inverse.mel_to_audio: :func:`mel_to_stft` then :func:`griffinlim` (random phases)."""
    stft = mel_to_stft(M, sr=sr, n_fft=n_fft, power=power, **kwargs)
    return griffinlim(stft, n_iter=n_iter, hop_length=hop_length, win_length=win_length, n_fft=n_fft,
                      window=window, center=center, dtype=dtype, length=length, pad_mode=pad_mode)


def mfcc_to_audio(mfcc: np.ndarray, *, n_mels: int = 128, dct_type: int = 2, norm: Optional[str] = "ortho",
                  ref: float = 1.0, lifter: float = 0, **kwargs: Any) -> np.ndarray:
    """librosa.feature.inverse.mfcc_to_audio: :func:`mfcc_to_mel` then :func:`mel_to_audio`."""
    mel = mfcc_to_mel(mfcc, n_mels=n_mels, dct_type=dct_type, norm=norm, ref=ref, lifter=lifter)
    return mel_to_audio(mel, **kwargs)


def _librosa_attribute(path: str, name: str) -> Any:
    """librosa's own ``path.name``, for everything this module does not provide."""
    try:
        module = importlib.import_module(path)
    except ImportError:
        raise AttributeError(f"ddfad_fast.compat.librosa provides no {name!r}, and librosa (which would) is not "
                             "installed") from None
    return getattr(module, name)


class _Namespace:
    """``feature`` / ``feature.inverse``: our functions first, then librosa's own."""

    def __init__(self, path: str, **functions: Any) -> None:
        self._path = path
        self.__dict__.update(functions)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _librosa_attribute(self._path, name)


feature = _Namespace("librosa.feature", mfcc=mfcc, melspectrogram=melspectrogram, delta=delta,
                     inverse=_Namespace("librosa.feature.inverse", mfcc_to_mel=mfcc_to_mel, mel_to_stft=mel_to_stft,
                                        mel_to_audio=mel_to_audio, mfcc_to_audio=mfcc_to_audio))


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return _librosa_attribute("librosa", name)
