"""Features that fit the data: a header scan of a source's clips (sample rates, lengths) and the feature
settings chosen from it (:func:`choose_features`).

The rule (:func:`choose_features`), for what a flag or argument does not fix:

* sample rate: the highest feature preset rate (``FEATURE_PRESETS``: 16 kHz ``speech16k``, 8 kHz ``fsdd``)
  that does not exceed the median clip's rate. Resampling up adds no information and resampling down
  further than the presets need throws some away; 44.1 and 48 kHz corpora get 16 kHz, the rate of the
  speech presets;
* duration: the 90th percentile of the clip lengths (``DURATION_QUANTILE``), rounded up to whole seconds
  (a percentile at most 2 % above a whole second rounds down to it: a 2.01 s clip is a 2 s clip with a
  header's worth of slack), at least 1 s, at most ``MAX_DURATION`` (4 s). Whole seconds keep the number of
  feature shapes (and caches) small; one second is the presets' length. On FSDD (8 kHz, 90th percentile
  0.60 s) this gives the FSDD preset, 8 kHz and 1 s; on EmoDB (16 kHz, 2 s clips) 16 kHz and 2 s.

Whatever chose the settings, a one-line warning names the numbers when more than ``CROP_WARN_SHARE``
(10 %) of the audio is cropped away, more than ``PAD_WARN_SHARE`` (75 %) of the fixed-length input is
zero padding, or the audio is resampled to a lower rate than the rule would give (a flag chose it).

The scan reads headers only (``soundfile.info``), of at most ``SCAN_LIMIT`` files (evenly spaced through
the sorted list): about 0.2 ms a file.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..config import FeatureConfig
from ..errors import ParameterError

FEATURE_PRESETS: Dict[str, Callable[[], FeatureConfig]] = {"fsdd": FeatureConfig.fsdd,
                                                           "speech16k": FeatureConfig.speech16k}
SCAN_LIMIT = 5000
DURATION_QUANTILE = 0.9
DURATION_SLACK = 0.02          # a quantile at most 2 % above a whole second rounds down to it
MIN_DURATION = 1.0
MAX_DURATION = 4.0
CROP_WARN_SHARE = 0.10
PAD_WARN_SHARE = 0.75


@dataclass(frozen=True)
class ClipScan:
    """Headers of (a sample of) a source's clips: ``rates`` {Hz: clips}, ``seconds`` (n,) sorted clip
    lengths, ``scanned`` files read of ``total``, ``unreadable`` among them."""

    rates: Dict[int, int]
    seconds: Tuple[float, ...]
    total: int
    unreadable: int = 0

    @property
    def scanned(self) -> int:
        return len(self.seconds) + self.unreadable

    @property
    def median_rate(self) -> int:
        """The rate of the median clip (rates sorted)."""
        order = sorted(self.rates.items())
        half, seen = sum(self.rates.values()) / 2.0, 0
        for rate, count in order:
            seen += count
            if seen >= half:
                return rate
        raise ParameterError("no readable clip was scanned")

    def quantile(self, q: float) -> float:
        return float(np.quantile(np.asarray(self.seconds), q))

    def shares(self, duration: float) -> Tuple[float, float]:
        """(share of the audio cropped away, share of the fixed-length input that is padding) at ``duration`` s."""
        d = np.asarray(self.seconds)
        crop = float(np.maximum(d - duration, 0).sum() / max(d.sum(), 1e-12))
        pad = float(np.maximum(duration - d, 0).sum() / (len(d) * duration))
        return crop, pad

    def describe(self) -> str:
        rates = ", ".join(f"{r} Hz" + (f" ({100 * n / len(self.seconds):.0f} %)" if len(self.rates) > 1 else "")
                          for r, n in sorted(self.rates.items(), key=lambda kv: -kv[1]))
        sample = f"{len(self.seconds)} clips" + (f" (a sample of {self.total})" if self.scanned < self.total else "")
        return (f"{sample} at {rates}; length median {self.quantile(0.5):.2f} s, 90th percentile "
                f"{self.quantile(0.9):.2f} s, max {self.seconds[-1]:.2f} s")

    def to_dict(self) -> dict:
        return {"rates": {str(k): v for k, v in sorted(self.rates.items())}, "clips_scanned": self.scanned,
                "clips_total": self.total, "unreadable": self.unreadable,
                "seconds": {"median": self.quantile(0.5), "p90": self.quantile(0.9), "min": self.seconds[0],
                            "max": self.seconds[-1]}}


def scan_clips(paths: Sequence[Union[str, Path]], limit: Optional[int] = SCAN_LIMIT) -> Optional[ClipScan]:
    """Sample rates and lengths from the headers of audio files (nothing is decoded).

    Parameters
    ----------
    paths : sequence of str or Path
        The files.
    limit : int or None
        Scan at most this many files, evenly spaced over ``paths``; None scans all.

    Returns
    -------
    ClipScan or None
        Rates and sorted durations (s) of the readable files; unreadable files are counted, not raised
        (the feature stage reports each with its reason). None when none can be read.

    Raises
    ------
    ParameterError
        ``paths`` is empty.
    """
    import soundfile

    paths = list(paths)
    if not paths:
        raise ParameterError("no audio files to scan")
    chosen = paths if limit is None or len(paths) <= limit else \
        [paths[int(i)] for i in np.linspace(0, len(paths) - 1, limit).round()]
    rates: Dict[int, int] = {}
    seconds: List[float] = []
    bad = 0
    for path in chosen:
        if not Path(path).is_file():      # a FIFO, device or folder is never opened (a FIFO would block)
            bad += 1
            continue
        try:
            info = soundfile.info(str(path))
        except Exception:       # a file the decoder cannot open: the feature stage reports it with its reason
            bad += 1
            continue
        if info.samplerate <= 0 or info.frames <= 0:
            bad += 1
            continue
        rates[int(info.samplerate)] = rates.get(int(info.samplerate), 0) + 1
        seconds.append(info.frames / info.samplerate)
    if not seconds:
        return None
    return ClipScan(rates, tuple(sorted(seconds)), len(paths), bad)


def scan_source(source: Union[str, Path], limit: Optional[int] = SCAN_LIMIT) -> Optional[ClipScan]:
    """:func:`scan_clips` of the files of a labelled source.

    Parameters
    ----------
    source : str or Path
        A folder or CSV manifest (:func:`discover`).
    limit : int or None
        As for :func:`scan_clips`.

    Returns
    -------
    ClipScan or None
        As for :func:`scan_clips`.

    Raises
    ------
    ParameterError
        The source holds no labelled audio file.
    """
    from .sources import discover
    items, _ = discover(source)
    if not items:
        raise ParameterError(f"no labelled audio files found in {source}")
    return scan_clips(sorted(str(it.path) for it in items), limit)


def preset_for_rate(rate: int) -> str:
    """The feature preset of the highest rate that does not exceed ``rate`` (the lowest preset below all)."""
    by_rate = sorted(((FEATURE_PRESETS[name]().sample_rate, name) for name in FEATURE_PRESETS), reverse=True)
    for preset_rate, name in by_rate:
        if preset_rate <= rate:
            return name
    return by_rate[-1][1]


def duration_for(scan: ClipScan) -> float:
    """Seconds covering the ``DURATION_QUANTILE`` of clip lengths, whole seconds, in [MIN, MAX_DURATION]."""
    q = scan.quantile(DURATION_QUANTILE)
    seconds = math.ceil(q / (1.0 + DURATION_SLACK) - 1e-9)
    return float(min(max(seconds, MIN_DURATION), MAX_DURATION))


def with_duration(config: FeatureConfig, duration: float) -> FeatureConfig:
    """``config`` with clips padded / cropped to ``duration`` seconds (finite, > 0, at least one sample)."""
    if not (math.isfinite(duration) and duration > 0):
        raise ParameterError(f"--duration must be a finite number of seconds > 0, got {duration}")
    config = config.replace(fixed_length=int(round(duration * config.sample_rate)))
    if config.fixed_length < 1:
        raise ParameterError(f"--duration {duration:g} is shorter than one sample at {config.sample_rate} Hz")
    return config


@dataclass(frozen=True)
class FeatureChoice:
    """Feature settings for a source and why: ``config``, the feature ``preset`` name (None for a
    FeatureConfig given whole), which parts were ``inferred``, the ``scan``, the crop / pad shares and the
    ``warnings`` (one line each)."""

    config: FeatureConfig
    preset: Optional[str]
    inferred: Tuple[str, ...]            # of ("rate", "duration")
    scan: Optional[ClipScan]
    crop_share: float = 0.0
    pad_share: float = 0.0
    warnings: Tuple[str, ...] = field(default_factory=tuple)

    @property
    def duration(self) -> float:
        return self.config.fixed_length / self.config.sample_rate

    def line(self) -> str:
        """One line: the settings, where they come from and what they do to the clips."""
        how = " and ".join(self.inferred) + " inferred" if self.inferred else "as given"
        if len(self.inferred) == 1:
            how += f", {'duration' if self.inferred == ('rate',) else 'rate'} as given"
        text = f"features: {self.config.sample_rate} Hz, {self.duration:g} s clips ({self.preset or 'custom'}, {how}"
        if self.scan is None:
            return text + ")"
        return (text + f"; data: {self.scan.describe()}; at {self.duration:g} s {100 * self.crop_share:.1f} % of the "
                f"audio is cropped, {100 * self.pad_share:.0f} % of the input is padding)")

    def to_dict(self) -> dict:
        return {"sample_rate": self.config.sample_rate, "duration_s": self.duration, "feature_preset": self.preset,
                "inferred": list(self.inferred), "scan": None if self.scan is None else self.scan.to_dict(),
                "crop_share": self.crop_share, "pad_share": self.pad_share, "warnings": list(self.warnings),
                "line": self.line()}


def choose_features(scan: Optional[ClipScan], preset: Optional[str] = None, duration: Optional[float] = None,
                    config: Optional[FeatureConfig] = None) -> FeatureChoice:
    """The feature settings for a source, from an explicit choice or from a header scan of its clips.

    ``config`` (a whole FeatureConfig) wins; else ``preset`` and ``duration`` win each for its part and
    the scan decides the rest (see the module docstring).

    Parameters
    ----------
    scan : ClipScan or None
        The source's scan; None (no readable clip): the FSDD preset's defaults fill in, no warnings.
    preset : str, optional
        A name of ``FEATURE_PRESETS`` (``fsdd``, ``speech16k``).
    duration : float, optional
        Clip length in seconds (finite, > 0, at least one sample).
    config : FeatureConfig, optional
        The whole feature configuration.

    Returns
    -------
    FeatureChoice
        The config, what was inferred, and one-line warnings for heavy cropping, padding or downsampling.

    Raises
    ------
    ParameterError
        An unknown preset or an invalid duration.
    """
    if preset is not None and preset not in FEATURE_PRESETS:
        raise ParameterError(f"unknown feature preset {preset!r}; expected one of {', '.join(sorted(FEATURE_PRESETS))}")
    inferred: List[str] = []
    if config is not None:
        chosen, name = config, None
        if duration is not None:
            chosen = with_duration(chosen, duration)
    else:
        if preset is None and scan is not None:
            preset = preset_for_rate(scan.median_rate)
            inferred.append("rate")
        name = preset or "fsdd"
        chosen = FEATURE_PRESETS[name]()
        if duration is None and scan is not None:
            duration = duration_for(scan)
            inferred.append("duration")
        if duration is not None:
            chosen = with_duration(chosen, duration)
    chosen = chosen.validate()
    if chosen.fixed_length is None:
        return FeatureChoice(chosen, name, tuple(inferred), scan)
    if scan is None:
        return FeatureChoice(chosen, name, tuple(inferred), None)
    seconds = chosen.fixed_length / chosen.sample_rate
    crop, pad = scan.shares(seconds)
    warnings = []
    if crop > CROP_WARN_SHARE:
        warnings.append(f"{seconds:g} s clips crop {100 * crop:.0f} % of the audio away (more than "
                        f"{100 * CROP_WARN_SHARE:.0f} %; 90th percentile of the clip lengths {scan.quantile(0.9):.2f} s, "
                        f"longest {scan.seconds[-1]:.2f} s)")
    if pad > PAD_WARN_SHARE:
        warnings.append(f"{seconds:g} s clips are {100 * pad:.0f} % zero padding (more than {100 * PAD_WARN_SHARE:.0f} %; "
                        f"median clip length {scan.quantile(0.5):.2f} s)")
    rule_rate = FEATURE_PRESETS[preset_for_rate(scan.median_rate)]().sample_rate
    if chosen.sample_rate < min(scan.median_rate, rule_rate):
        warnings.append(f"resampling {scan.median_rate} Hz audio down to {chosen.sample_rate} Hz discards everything "
                        f"above {chosen.sample_rate / 2:g} Hz ({rule_rate} Hz would keep up to {rule_rate / 2:g} Hz)")
    return FeatureChoice(chosen, name, tuple(inferred), scan, crop, pad, tuple(warnings))
