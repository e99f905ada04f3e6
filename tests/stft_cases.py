"""The STFT geometries every backend test runs over (a plain module, imported by the test files).

Odd and even n_fft, hop_length and win_length, at 8, 16, 22.05 and 44.1 kHz. Each clip length is a
multiple of the hop where n_fft is odd, so the centred frame count (tables.n_frames) differs from
1 + length // hop_length there: a backend that derives its own frame count fails these cases.
Lengths stay small enough for the Triton interpreter and the CPU harness of the CUDA kernels.
"""
from dataclasses import dataclass

import pytest

from ddfad_fast.ops import tables
from ddfad_fast.config import FeatureConfig


@dataclass(frozen=True)
class StftCase:
    name: str
    sample_rate: int
    n_fft: int
    win_length: int
    hop_length: int
    window: str
    length: int         # samples per clip

    @property
    def n_frames(self) -> int:
        return tables.n_frames(self.length, self.n_fft, self.hop_length)

    @property
    def power_of_two(self) -> bool:
        return self.n_fft & (self.n_fft - 1) == 0

    def short_length(self, most: int = 2500) -> int:
        """A length of at most ``most`` samples (unless ``length`` is shorter) with the same remainder modulo
        the hop, so the odd-n_fft frame count keeps differing from 1 + length // hop_length."""
        if self.length <= most:
            return self.length
        return self.length - (self.length - most + self.hop_length - 1) // self.hop_length * self.hop_length

    def config(self, **changes) -> FeatureConfig:
        """The FeatureConfig of this geometry (fixed length = ``length``), with ``changes``."""
        return FeatureConfig(sample_rate=self.sample_rate, fixed_length=self.length, n_fft=self.n_fft,
                             win_length=self.win_length, hop_length=self.hop_length, window=self.window,
                             **changes).validate()


CASES = [
    StftCase("8k-n256", 8000, 256, 160, 80, "hann", 8000),              # the FSDD preset: 101 frames
    StftCase("8k-n255", 8000, 255, 160, 80, "hann", 8000),              # odd n_fft: 100 frames, not 101
    StftCase("16k-hop127", 16000, 512, 320, 127, "hann", 2541),         # odd hop and length
    StftCase("16k-n401-w321", 16000, 401, 321, 160, "hamming", 3200),   # odd n_fft and win_length, Hamming
    StftCase("22k-n511", 22050, 511, 441, 221, "hann", 2652),           # 22.05 kHz, odd n_fft / win / hop
    StftCase("44k-n1024", 44100, 1024, 882, 441, "hann", 4410),         # 44.1 kHz, even
    StftCase("44k-n1023", 44100, 1023, 1023, 441, "hann", 4410),        # 44.1 kHz, odd n_fft = win_length
]


def well_conditioned(n_fft: int, hop_length: int, win_length: int, window: str, length: int,
                     limit: float = 1e3):
    """(length,) bool: the samples whose squared-window envelope is at least 1 / ``limit``.

    Where n_fft is odd and the hop divides the length, the last samples lie under the last taps of the
    last frame only: the inverse STFT divides by an envelope down to ~1e-9 there and amplifies float32
    rounding as much. Float32 Griffin-Lim is compared on the other samples (float64 on all of them).
    """
    frames = tables.n_frames(length, n_fft, hop_length)
    inverse = tables.inverse_envelope(window, win_length, n_fft, hop_length, frames)
    return inverse[n_fft // 2:n_fft // 2 + length] <= limit


def params(cases=None):
    """The cases as pytest parameters with readable ids."""
    return [pytest.param(case, id=case.name) for case in (CASES if cases is None else cases)]


def power_of_two_params():
    return params([case for case in CASES if case.power_of_two])
