"""``torch.nn`` modules in torchaudio's style over ddfad_fast's operations (and their fast backends).

    from ddfad_fast.audio.transforms import MFCC          # instead of: from torchaudio.transforms import MFCC
    mfcc = MFCC(sample_rate=16000, n_mfcc=20, melkwargs={"n_fft": 512, "hop_length": 128, "n_mels": 40})
    coeffs = mfcc(waveform)                          # (..., time) -> (..., n_mfcc, frames)

Parameter names are torchaudio's where they exist (``sample_rate``, ``n_mfcc``, ``melkwargs`` with
``n_fft``, ``win_length``, ``hop_length``, ``n_mels``, ``f_min``, ``f_max``; ``n_iter``, ``momentum``,
``length``, ``rand_init``). The semantics are librosa's, as everywhere in the package: Slaney mel scale
and filter norm, centred frames with zero padding, power spectrogram in dB (10 log10, ``top_db`` floor per
clip), orthonormal DCT-II, Savitzky-Golay deltas with librosa's ``interp`` edges. Settings with another
meaning in torchaudio (its HTK mel scale, unnormalised filters, reflect padding, magnitude spectrograms,
``log_mels``) are refused with a ParameterError rather than computed differently. Defaults not given in
``melkwargs`` are the FSDD preset's (:meth:`FeatureConfig.fsdd`), or the 16 kHz preset's at 16 kHz.

The modules hold no tensors: outputs take the input's device and dtype (float32 or float64), any leading
batch shape is kept, and each call dispatches like the functions (:mod:`ddfad_fast.ops.dispatch`).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from ..config import FeatureConfig, ReconstructConfig
from ..errors import ParameterError
from ..ops.features import deltas, fd_mfcc
from ..ops.reconstruct import fd_mfcc_to_audio, griffin_lim

__all__ = ["FDMFCC", "MFCC", "Deltas", "GriffinLim", "InverseFDMFCC", "feature_config"]

_WINDOWS = {torch.hann_window: "hann", torch.hamming_window: "hamming", "hann": "hann", "hamming": "hamming"}


def feature_config(sample_rate: int, n_mfcc: int, melkwargs: Optional[dict] = None, **changes) -> FeatureConfig:
    """The FeatureConfig of torchaudio-style arguments (``changes``: other FeatureConfig fields), or a
    ParameterError naming a setting whose torchaudio meaning differs from the package's."""
    mel = dict(melkwargs or {})
    refused = {"power": 2.0, "center": True, "pad_mode": "constant", "norm": "slaney", "mel_scale": "slaney",
               "normalized": False, "onesided": True, "pad": 0, "wkwargs": None}
    for key, supported in refused.items():
        if key in mel and mel.pop(key) != supported:
            raise ParameterError(f"melkwargs {key}={melkwargs[key]!r} is not supported: the features use {key}="
                                 f"{supported!r} (librosa's semantics; see ddfad_fast.audio.transforms)")
    names = {"n_fft": "n_fft", "win_length": "win_length", "hop_length": "hop_length", "n_mels": "n_mels",
             "f_min": "fmin", "f_max": "fmax"}
    unknown = set(mel) - set(names) - {"window_fn", "sample_rate"}
    if unknown:
        raise ParameterError(f"unknown melkwargs {sorted(unknown)}; accepted: {sorted(set(names) | set(refused))}")
    base = FeatureConfig.speech16k() if sample_rate == 16000 else FeatureConfig()
    fields = {"sample_rate": int(sample_rate), "n_mfcc": int(n_mfcc), "fixed_length": None}
    if "window_fn" in mel:
        if mel["window_fn"] not in _WINDOWS:
            raise ParameterError(f"window_fn {mel['window_fn']!r} is not supported: torch.hann_window or "
                                 "torch.hamming_window")
        fields["window"] = _WINDOWS[mel["window_fn"]]
    fields.update({ours: mel[theirs] for theirs, ours in names.items() if theirs in mel})
    if "n_fft" in mel and "win_length" not in mel:
        fields["win_length"] = mel["n_fft"]                         # torchaudio's default: the whole frame
    if "hop_length" not in mel and ("win_length" in fields or "n_fft" in mel):
        fields["hop_length"] = fields.get("win_length", base.win_length) // 2   # torchaudio's default
    return base.replace(**fields, **changes).validate()


def _flat(x: Tensor, what: str, min_dim: int) -> Tensor:
    if not isinstance(x, Tensor):
        raise ParameterError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < min_dim:
        raise ParameterError(f"{what} must have at least {min_dim} dimension(s), got shape {tuple(x.shape)}")
    return x


class FDMFCC(nn.Module):
    """FD-MFCC (MFCC, delta, delta-delta): waveform (..., time) -> (..., 3, n_mfcc, frames).

    Pre-emphasis ``preemphasis`` (0.97, the paper's) first; ``top_db`` per clip (None: no floor);
    ``delta_width`` frames. ``config`` (a FeatureConfig) replaces every other setting.
    """

    def __init__(self, sample_rate: int = 8000, n_mfcc: int = 20, melkwargs: Optional[dict] = None,
                 preemphasis: float = 0.97, top_db: Optional[float] = 80.0, delta_width: int = 9,
                 config: Optional[FeatureConfig] = None, backend: Optional[str] = None) -> None:
        super().__init__()
        self.config = (config.replace(fixed_length=None).validate() if config is not None else
                       feature_config(sample_rate, n_mfcc, melkwargs, preemphasis=preemphasis, top_db=top_db,
                                      delta_width=delta_width))
        self.backend = backend

    def _features(self, waveform: Tensor) -> Tensor:
        waveform = _flat(waveform, "waveform", 1)
        batch = waveform.reshape(-1, waveform.shape[-1])
        out = fd_mfcc(batch, self.config.sample_rate, self.config, backend=self.backend)
        return out.reshape(*waveform.shape[:-1], *out.shape[1:])

    def forward(self, waveform: Tensor) -> Tensor:
        return self._features(waveform)

    def extra_repr(self) -> str:
        c = self.config
        return (f"sample_rate={c.sample_rate}, n_mfcc={c.n_mfcc}, n_fft={c.n_fft}, win_length={c.win_length}, "
                f"hop_length={c.hop_length}, n_mels={c.n_mels}, preemphasis={c.preemphasis}, top_db={c.top_db}")


class MFCC(FDMFCC):
    """MFCCs: waveform (..., time) -> (..., n_mfcc, frames), as torchaudio.transforms.MFCC's call.

    ``dct_type`` 2 with ``norm`` "ortho" and ``log_mels=False`` are the supported settings (torchaudio's
    defaults); ``preemphasis`` defaults to 0 (none), as there.
    """

    def __init__(self, sample_rate: int = 16000, n_mfcc: int = 40, dct_type: int = 2, norm: str = "ortho",
                 log_mels: bool = False, melkwargs: Optional[dict] = None, preemphasis: float = 0.0,
                 top_db: Optional[float] = 80.0, config: Optional[FeatureConfig] = None,
                 backend: Optional[str] = None) -> None:
        if dct_type != 2 or norm != "ortho" or log_mels:
            raise ParameterError(f"only dct_type=2, norm='ortho', log_mels=False are supported, got dct_type="
                                 f"{dct_type!r}, norm={norm!r}, log_mels={log_mels!r}")
        super().__init__(sample_rate, n_mfcc, melkwargs, preemphasis, top_db, config=config, backend=backend)

    def forward(self, waveform: Tensor) -> Tensor:
        return self._features(waveform)[..., 0, :, :]


class Deltas(nn.Module):
    """Delta features along the last axis: (..., freq, time) -> same shape (librosa.feature.delta,
    mode "interp"). ``win_length``: odd, >= 3 (torchaudio's ComputeDeltas name; its default is 5, with
    replicate padding at the edges instead of librosa's interpolation: here 9, librosa's)."""

    def __init__(self, win_length: int = 9, order: int = 1) -> None:
        super().__init__()
        if order not in (1, 2):
            raise ParameterError(f"order must be 1 or 2, got {order!r}")
        if not isinstance(win_length, int) or win_length < 3 or win_length % 2 == 0:
            raise ParameterError(f"win_length must be an odd integer >= 3, got {win_length!r}")
        self.win_length, self.order = win_length, order

    def forward(self, specgram: Tensor) -> Tensor:
        return deltas(_flat(specgram, "specgram", 1), self.order, self.win_length)

    def extra_repr(self) -> str:
        return f"win_length={self.win_length}, order={self.order}"


class GriffinLim(nn.Module):
    """Waveform from a spectrogram by fast Griffin-Lim: (..., n_fft // 2 + 1, frames) -> (..., time).

    As torchaudio.transforms.GriffinLim: the input is ``|STFT| ** power`` (``power`` 2: a power
    spectrogram), ``hop_length`` defaults to ``win_length // 2``, ``rand_init`` draws the initial phases
    from torch's global generator (else zero phase), ``length`` fixes the output samples. Frames are centred
    with zero padding (librosa.griffinlim); ``momentum`` 0 is classic Griffin-Lim.
    """

    def __init__(self, n_fft: int = 400, n_iter: int = 32, win_length: Optional[int] = None,
                 hop_length: Optional[int] = None, window_fn: Callable = torch.hann_window, power: float = 2.0,
                 wkwargs: Optional[dict] = None, momentum: float = 0.99, length: Optional[int] = None,
                 rand_init: bool = True, backend: Optional[str] = None) -> None:
        super().__init__()
        if window_fn not in _WINDOWS:
            raise ParameterError(f"window_fn {window_fn!r} is not supported: torch.hann_window or torch.hamming_window")
        if wkwargs:
            raise ParameterError(f"wkwargs are not supported, got {wkwargs!r}")
        if not power > 0:
            raise ParameterError(f"power must be > 0, got {power!r}")
        self.n_fft, self.n_iter, self.momentum, self.length, self.rand_init = n_fft, n_iter, momentum, length, rand_init
        self.win_length = win_length if win_length is not None else n_fft
        self.hop_length = hop_length if hop_length is not None else self.win_length // 2
        self.window, self.power, self.backend = _WINDOWS[window_fn], float(power), backend

    def forward(self, specgram: Tensor) -> Tensor:
        specgram = _flat(specgram, "specgram", 2)
        batch = specgram.reshape(-1, *specgram.shape[-2:])
        magnitude = batch if self.power == 1.0 else batch.clamp_min(0) ** (1.0 / self.power)
        phase = None if self.rand_init else torch.ones_like(magnitude, dtype=magnitude.dtype.to_complex())
        wave = griffin_lim(magnitude, self.n_fft, self.hop_length, self.win_length, self.n_iter, self.momentum,
                           init_phase=phase, length=self.length, window=self.window, backend=self.backend)
        return wave.reshape(*specgram.shape[:-2], wave.shape[-1])

    def extra_repr(self) -> str:
        return (f"n_fft={self.n_fft}, n_iter={self.n_iter}, win_length={self.win_length}, "
                f"hop_length={self.hop_length}, power={self.power}, momentum={self.momentum}")


class InverseFDMFCC(nn.Module):
    """Audio from FD-MFCC: (..., 3, n_mfcc, frames) -> (..., time) (:func:`ddfad_fast.fd_mfcc_to_audio`:
    inverse DCT, dB to power, NNLS mel inversion, Griffin-Lim, de-emphasis). The settings are those the
    features were made with (the same arguments as :class:`FDMFCC`); ``length``: output samples."""

    def __init__(self, sample_rate: int = 8000, n_mfcc: int = 20, melkwargs: Optional[dict] = None,
                 preemphasis: float = 0.97, top_db: Optional[float] = 80.0, n_iter: int = 32, momentum: float = 0.99,
                 length: Optional[int] = None, rand_init: bool = True, config: Optional[FeatureConfig] = None,
                 seed: int = 0) -> None:
        super().__init__()
        base = (config.validate() if config is not None else
                feature_config(sample_rate, n_mfcc, melkwargs, preemphasis=preemphasis, top_db=top_db))
        self.config = base.replace(fixed_length=length).validate()
        if not rand_init:
            raise ParameterError("InverseFDMFCC starts from seeded random phases (rand_init=True); pass seed=...")
        self.reconstruct = ReconstructConfig(n_iter=n_iter, momentum=momentum, seed=seed)

    def forward(self, features: Tensor) -> Tensor:
        features = _flat(features, "features", 3)
        batch = features.reshape(-1, *features.shape[-3:])
        wave = fd_mfcc_to_audio(batch, self.config.sample_rate, self.config, reconstruct=self.reconstruct)
        return wave.reshape(*features.shape[:-3], wave.shape[-1])

    def extra_repr(self) -> str:
        return f"sample_rate={self.config.sample_rate}, n_iter={self.reconstruct.n_iter}, length={self.config.fixed_length}"
