"""Audio files in and out (soundfile), channel mixing and resampling.

Behaviour on difficult input (every error is an :class:`AudioFileError` naming the file):

* missing, unreadable, corrupt or non-audio files (also a text file named ``.wav``): error;
* truncated WAV files (the header declares more sample frames than the file holds, e.g. a copy or
  download cut short): error ("truncated: header declares N frames, data holds M"), never a short clip;
* zero-byte files: error ("empty file (0 bytes)"); a valid header with no samples: error ("empty (0 samples)");
* NaN / Inf samples (float WAV, FLAC cannot hold them): error ("non-finite samples");
* integer PCM of any width (8/16/24/32-bit) and float files: read as float in [-1, 1];
* several channels: averaged to mono (``mono=True``) or returned as (C, L);
* another sample rate than asked for: resampled with :func:`resample` (soxr in its HQ mode, the resampler
  librosa uses), or an error when ``resample_ok=False``.

Resampling: :func:`resample` runs soxr (HQ) for CPU tensors and numpy arrays, one call per clip (soxr's
multichannel mode, the other way to batch clips of one rate, was no faster on 64 one-second clips:
``bench/resample.py``). The plain-torch windowed-sinc interpolator :func:`resample_sinc` runs where soxr
cannot: tensors that require a gradient (it is differentiable) and tensors on a GPU (it stays on the
device). Both give ``round(L * target_sr / orig_sr)`` samples (halves rounded up), soxr's length.
"""
from __future__ import annotations

import math
import os
import struct
from functools import lru_cache
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..errors import AudioFileError, ParameterError
from ..io import temporary_beside

PathLike = Union[str, os.PathLike]
RESAMPLE_ZEROS = 16          # zero crossings of the sinc on each side (at the lower of the two rates)
RESAMPLE_ROLLOFF = 0.945     # cutoff as a fraction of the lower Nyquist frequency
RESAMPLE_KAISER_BETA = 8.6   # Kaiser window shape: ~ -90 dB side lobes
RESAMPLE_CHUNK = 16384       # output samples per step (bounds the memory of long files)
RESAMPLE_QUALITY = "HQ"      # soxr's quality recipe (librosa's default "soxr_hq")
RESAMPLER = f"soxr-{RESAMPLE_QUALITY}"   # what resamples files on load (recorded with the features it makes)
_WAV_FRAME_FORMATS = (1, 3, 6, 7, 0xFFFE)   # PCM, IEEE float, A-law, mu-law, extensible: one block per frame
_WAV_SIZE_UNKNOWN = 0xFFFFFFFF               # data size of a stream written without seeking back (or RF64)


def wav_truncation(path: PathLike) -> Optional[Tuple[int, int]]:
    """``(declared, held)`` sample frames of a truncated RIFF/RIFX WAVE file, else None.

    Walks the chunk headers (nothing else is read) up to the ``data`` chunk: when its declared size is
    larger than the bytes that follow it in the file, the file was cut short. libsndfile reads such a
    file without an error, as a shorter clip.

    Parameters
    ----------
    path : str or Path
        Any file; only its headers are read.

    Returns
    -------
    (int, int) or None
        Frames the header declares and frames the file holds; None for a complete file, files of other
        formats, frame layouts other than one ``block_align`` per frame (ADPCM, ...), streams that leave
        the size unset and unreadable files.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            head = handle.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
                return None
            order = "<" if head[:4] == b"RIFF" else ">"
            pos, tag, block_align = 12, None, None
            while pos + 8 <= size:
                handle.seek(pos)
                chunk = handle.read(8)
                chunk_id, chunk_size = chunk[:4], struct.unpack(order + "I", chunk[4:8])[0]
                if chunk_id == b"fmt " and chunk_size >= 16:
                    fmt = handle.read(16)
                    if len(fmt) < 16:
                        return None
                    tag, block_align = struct.unpack(order + "H", fmt[:2])[0], struct.unpack(order + "H", fmt[12:14])[0]
                elif chunk_id == b"data":
                    held_bytes = size - pos - 8
                    if (chunk_size == _WAV_SIZE_UNKNOWN or chunk_size <= held_bytes or tag not in _WAV_FRAME_FORMATS
                            or not block_align):
                        return None
                    return chunk_size // block_align, held_bytes // block_align
                pos += 8 + chunk_size + (chunk_size & 1)
    except OSError:
        return None
    return None


@lru_cache(maxsize=32)
def _resample_kernel(up: int, down: int) -> Tuple[np.ndarray, int]:
    """Polyphase windowed-sinc filters for rate up/down: (up, taps) float64 and the left padding."""
    cutoff = RESAMPLE_ROLLOFF * min(1.0, up / down)          # in units of the input Nyquist frequency
    half = int(math.ceil(RESAMPLE_ZEROS / cutoff))            # input samples on each side of an output sample
    taps = np.arange(-half, half + 1, dtype=np.float64)       # input offsets relative to floor(position)
    phase = (np.arange(up, dtype=np.float64) * down % up) / up  # fractional position of each output phase
    t = taps[None, :] - phase[:, None]                        # distance (input samples) to each tap
    span = half + 1.0
    inside = np.clip(1.0 - (t / span) ** 2, 0.0, None)
    window = np.i0(RESAMPLE_KAISER_BETA * np.sqrt(inside)) / np.i0(RESAMPLE_KAISER_BETA)
    kernel = cutoff * np.sinc(cutoff * t) * window
    return kernel, half


def resampled_length(length: int, orig_sr: int, target_sr: int) -> int:
    """Length of a clip after resampling: round(length x target_sr / orig_sr), halves up (soxr's rule).

    Parameters
    ----------
    length : int
        Samples at ``orig_sr``.
    orig_sr, target_sr : int
        Rates in Hz.

    Returns
    -------
    int
        Samples at ``target_sr``.
    """
    return (2 * int(length) * int(target_sr) + int(orig_sr)) // (2 * int(orig_sr))


def _check_rates(orig_sr: int, target_sr: int) -> None:
    if orig_sr <= 0 or target_sr <= 0:
        raise ParameterError(f"sample rates must be > 0, got {orig_sr} -> {target_sr}")


def resample_array(x: np.ndarray, orig_sr: int, target_sr: int, quality: str = RESAMPLE_QUALITY) -> np.ndarray:
    """soxr resampling of a numpy array along its last axis.

    Every row is one soxr call: clips of one rate are resampled as a batch of rows (one multichannel
    soxr call was no faster, ``bench/resample.py``).

    Parameters
    ----------
    x : ndarray
        (..., L) samples. float32 and float64 keep their dtype, other float dtypes are computed in
        float32 and cast back, integer samples come back as float32 (unscaled).
    orig_sr, target_sr : int
        Rates in Hz, > 0.
    quality : str
        A soxr recipe: "HQ" (the default, librosa's), "VHQ", "MQ", "LQ" or "QQ".

    Returns
    -------
    ndarray
        (..., round(L * target_sr / orig_sr)); ``x`` itself when the rates are equal.

    Raises
    ------
    ParameterError
        A rate <= 0.
    """
    import soxr

    _check_rates(orig_sr, target_sr)
    x = np.asarray(x)
    if orig_sr == target_sr:
        return x
    n_out = resampled_length(x.shape[-1], orig_sr, target_sr)
    work = x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)
    rows = np.ascontiguousarray(work.reshape(-1, x.shape[-1]))
    out = np.zeros((rows.shape[0], n_out), dtype=work.dtype)
    if x.shape[-1] > 0:
        for k, row in enumerate(rows):
            y = soxr.resample(row, int(orig_sr), int(target_sr), quality=quality)
            out[k, :min(n_out, y.shape[0])] = y[:n_out]
    kind = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
    return out.reshape(x.shape[:-1] + (n_out,)).astype(kind, copy=False)


def resample(wave: Tensor, orig_sr: int, target_sr: int) -> Tensor:
    """Band-limited resampling along the last axis, on the backend that suits the tensor.

    CPU tensors that need no gradient: soxr in its HQ mode (:func:`resample_array`), what librosa uses.
    Tensors that require a gradient or live on a GPU: :func:`resample_sinc` (plain torch: differentiable,
    on the tensor's device).

    Parameters
    ----------
    wave : Tensor
        (..., L) samples.
    orig_sr, target_sr : int
        Rates in Hz, > 0.

    Returns
    -------
    Tensor
        (..., round(L * target_sr / orig_sr)), wave's dtype and device; ``wave`` itself when the rates
        are equal.

    Raises
    ------
    ParameterError
        A rate <= 0.

    See Also
    --------
    resample_array, resample_sinc
    """
    _check_rates(orig_sr, target_sr)
    if orig_sr == target_sr:
        return wave
    if wave.requires_grad or wave.device.type != "cpu" or wave.dtype not in (torch.float32, torch.float64):
        return resample_sinc(wave, orig_sr, target_sr)
    return torch.from_numpy(resample_array(wave.detach().numpy(), orig_sr, target_sr))


def resample_sinc(wave: Tensor, orig_sr: int, target_sr: int) -> Tensor:
    """Windowed-sinc resampling in plain torch (differentiable, on any device).

    Kaiser window, 16 zero crossings, cutoff 0.945 of the lower Nyquist frequency, evaluated exactly at
    every output instant n * orig_sr / target_sr; the signal is taken as zero outside the clip.
    40-180x slower than soxr on a CPU (``bench/resample.py``): :func:`resample` uses it only for tensors
    that require a gradient or live on a GPU.

    Parameters
    ----------
    wave : Tensor
        (..., L) samples.
    orig_sr, target_sr : int
        Rates in Hz, > 0.

    Returns
    -------
    Tensor
        (..., round(L * target_sr / orig_sr)), wave's dtype and device.

    Raises
    ------
    ParameterError
        A rate <= 0.
    """
    _check_rates(orig_sr, target_sr)
    if orig_sr == target_sr:
        return wave
    g = math.gcd(int(orig_sr), int(target_sr))
    up, down = int(target_sr) // g, int(orig_sr) // g
    kernel_np, half = _resample_kernel(up, down)
    length = wave.shape[-1]
    n_out = resampled_length(length, orig_sr, target_sr)
    lead = wave.shape[:-1]
    x = wave.reshape(-1, length)
    # output n sits at input position n*down/up = base + phase/up, base = (n*down)//up, phase = n % up
    padded = torch.nn.functional.pad(x, (half, half + 1))
    windows = padded.unfold(-1, 2 * half + 1, 1)                                   # (N, L + 1, taps), a view
    kernel = torch.tensor(kernel_np, dtype=wave.dtype, device=wave.device)        # (up, taps)
    chunks = []
    for start in range(0, n_out, RESAMPLE_CHUNK):
        n = torch.arange(start, min(start + RESAMPLE_CHUNK, n_out), device=wave.device)
        chunks.append((windows[:, (n * down) // up] * kernel[n % up]).sum(-1))
    out = torch.cat(chunks, dim=-1) if chunks else x.new_zeros(x.shape[0], 0)
    return out.reshape(*lead, n_out)


def load_audio(path: PathLike, sample_rate: Optional[int] = None, mono: bool = True, resample_ok: bool = True,
               dtype: torch.dtype = torch.float32) -> Tuple[Tensor, int]:
    """Read an audio file (any format libsndfile reads: WAV of any PCM width or float, FLAC, OGG, ...).

    Parameters
    ----------
    path : str or Path
        The file.
    sample_rate : int, optional
        Resample to this rate (Hz) when it differs from the file's (soxr HQ, :func:`resample_array`).
    mono : bool
        Average the channels.
    resample_ok : bool
        With False, a rate other than ``sample_rate`` is an error instead of a resampling.
    dtype : torch.dtype
        float32 (read and resampled in float32, which holds 24-bit PCM exactly) or float64.

    Returns
    -------
    (Tensor, int)
        The wave, (L,) if ``mono`` else (C, L), float in [-1, 1] for PCM, and its rate in Hz.

    Raises
    ------
    AudioFileError
        A missing, empty, truncated (:func:`wav_truncation`) or unreadable file, non-finite samples, or
        another rate with ``resample_ok=False``; the message names the file.
    """
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioFileError(f"{path}: empty file (0 bytes)")
    truncated = wav_truncation(path)
    if truncated is not None:
        raise AudioFileError(f"{path}: truncated: header declares {truncated[0]} frames, data holds {truncated[1]}")
    work = "float64" if dtype == torch.float64 else "float32"      # float32 holds 24-bit PCM exactly
    try:
        data, file_sr = soundfile.read(str(path), dtype=work, always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError on bad files
        reason = str(exc).strip() or type(exc).__name__
        raise AudioFileError(f"{path}: not a readable audio file ({reason})") from None
    if data.shape[0] == 0:
        raise AudioFileError(f"{path}: empty (0 samples)")
    if not np.isfinite(data.sum(dtype=np.float64)) and not np.isfinite(data).all():   # NaN / Inf reach the sum
        raise AudioFileError(f"{path}: non-finite samples (NaN or Inf)")
    if mono:
        data = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float64).astype(work)   # (L,)
    else:
        data = np.ascontiguousarray(data.T)                                                             # (C, L)
    if sample_rate is not None and sample_rate != file_sr:
        if not resample_ok:
            raise AudioFileError(f"{path}: sample rate {file_sr} Hz, expected {sample_rate} Hz (resampling disabled)")
        data = resample_array(data, int(file_sr), int(sample_rate))
        file_sr = sample_rate
    return torch.from_numpy(np.ascontiguousarray(data)).to(dtype), int(file_sr)


def save_audio(path: PathLike, wave: Union[Tensor, np.ndarray], sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write a waveform atomically (a temporary file renamed into place); the format follows the suffix.

    Parameters
    ----------
    path : str or Path
        Output file (``.wav``, ``.flac``, ``.ogg``, ...); its folder is created.
    wave : Tensor or ndarray
        (L,) or (C, L) float samples in [-1, 1]; PCM subtypes clip samples beyond.
    sample_rate : int
        Rate in Hz, > 0.
    subtype : str
        soundfile subtype, e.g. "PCM_16" (default), "PCM_24", "FLOAT".

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ParameterError
        A wave of another shape, non-finite samples, a rate <= 0.
    AudioFileError
        The file cannot be written (the message names it).
    """
    import soundfile

    path = Path(path)
    data = wave.detach().cpu().double().numpy() if isinstance(wave, Tensor) else np.asarray(wave, dtype=np.float64)
    if data.ndim not in (1, 2) or data.shape[-1] == 0:
        raise ParameterError(f"{path}: wave must be (L,) or (C, L) with L > 0, got shape {data.shape}")
    if not np.isfinite(data).all():
        raise ParameterError(f"{path}: wave has non-finite samples")
    if sample_rate <= 0:
        raise ParameterError(f"{path}: sample_rate must be > 0, got {sample_rate}")
    if subtype.startswith("PCM"):
        data = np.clip(data, -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temporary_beside(path, suffix=path.suffix)
    os.close(fd)
    try:
        soundfile.write(tmp, data.T if data.ndim == 2 else data, int(sample_rate), subtype=subtype)
        os.replace(tmp, path)
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, (ParameterError, AudioFileError)):
            raise
        raise AudioFileError(f"{path}: cannot write audio ({exc})") from None
    return path
