"""Feature splits in memory or on a store: train / validation / test features and labels
(:class:`FeatureSplit`), the seeded speaker-stratified validation carve (:func:`carve_validation`), the
per-channel-and-coefficient standardisation that travels in every artefact (:class:`FeatureNorm`), and the
data fingerprint that ties a checkpoint to its data (:func:`data_fingerprint`)."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..config import FeatureConfig
from ..errors import FileFormatError, ParameterError
from .store import StoredFeatures, in_memory

log = logging.getLogger(__name__)


@dataclass
class FeatureSplit:
    """Train/test (and, after :func:`carve_validation`, validation) FD-MFCC features: ``x_*`` (N, 3, n_mfcc, T)
    float32, ``y_*`` (N,) int64 class indices."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    class_names: List[str]
    feature_config: FeatureConfig
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    speakers_train: Optional[List[Optional[str]]] = None     # per training clip, where the source names speakers
    paths_train: Optional[List[str]] = None                  # the audio file of each training clip
    x_val: Optional[Tensor] = None                           # validation clips carved from the training data
    y_val: Optional[Tensor] = None
    norm: Optional["FeatureNorm"] = None                     # set when the x_* are standardised with it

    def standardized(self, norm: Optional["FeatureNorm"] = None, in_place: bool = False) -> "FeatureSplit":
        """A copy whose features are standardised with ``norm`` (default: fitted on ``x_train``).
        ``in_place``: overwrite this split's feature tensors instead of allocating new ones (the same values;
        for features this split alone holds, as :func:`load_feature_split` makes them)."""
        if self.norm is not None:
            raise ParameterError("this split is already standardised")
        norm = norm or FeatureNorm.fit(self.x_train)
        apply = norm.apply_ if in_place else norm.apply
        return dataclasses.replace(self, x_train=apply(self.x_train), x_test=apply(self.x_test),
                                   x_val=None if self.x_val is None else apply(self.x_val), norm=norm)

    def materialized(self) -> "FeatureSplit":
        """A copy whose features are tensors in memory (stored features are read whole; tensors stay)."""
        return dataclasses.replace(self, x_train=in_memory(self.x_train), x_test=in_memory(self.x_test),
                                   x_val=None if self.x_val is None else in_memory(self.x_val))

    def to(self, device: Union[str, torch.device]) -> "FeatureSplit":
        """A copy whose features and labels are on ``device`` (the standardisation stays on the CPU)."""
        move = (lambda t: None if t is None else t.to_device(device) if isinstance(t, StoredFeatures) else t.to(device))
        return dataclasses.replace(self, x_train=move(self.x_train), y_train=move(self.y_train),
                                   x_test=move(self.x_test), y_test=move(self.y_test), x_val=move(self.x_val),
                                   y_val=move(self.y_val))

    def monitor_set(self) -> Tuple[str, Tensor, Tensor]:
        """("val", x_val, y_val) when there is a validation split, else ("test", x_test, y_test): what
        progress bars and other choices during a run may look at."""
        if self.x_val is not None and len(self.y_val):
            return "val", self.x_val, self.y_val
        return "test", self.x_test, self.y_test

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_shape(self) -> Tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


def class_names(labels: Sequence[str]) -> List[str]:
    unique = set(labels)
    if all(l.lstrip("-").isdigit() for l in unique):
        return sorted(unique, key=int)
    return sorted(unique)


FIT_IN_ONE_PASS_BYTES = 2 ** 29   # FeatureNorm.fit of larger features goes over chunks (no float64 copy)


def take_rows(x, index) -> Any:
    """Rows of features, without reading stored features.

    Parameters
    ----------
    x : Tensor or StoredFeatures
        (N, ...) features.
    index : Tensor
        Index tensor or (N,) boolean mask.

    Returns
    -------
    Tensor or StoredFeatures
        A contiguous tensor of the rows, or for stored features another view of the store (nothing is read).
    """
    return x.subset(index) if isinstance(x, StoredFeatures) else x[index].contiguous()


def make_split(x, labels: List[str], splits: List[str], config: FeatureConfig,
                skipped: List[Tuple[str, str]], speakers: Optional[List[Optional[str]]] = None,
                paths: Optional[List[str]] = None) -> FeatureSplit:
    names = class_names(labels)
    index = {n: i for i, n in enumerate(names)}
    y = torch.tensor([index[l] for l in labels], dtype=torch.int64)
    is_test = torch.tensor([s == "test" for s in splits], dtype=torch.bool)
    if (~is_test).sum() == 0:
        raise ParameterError("the data source has no training clips")
    train_speakers = None
    if speakers and len(speakers) == len(labels):
        train_speakers = [sp for sp, test in zip(speakers, is_test.tolist()) if not test]
    train_paths = None
    if paths and len(paths) == len(labels):
        train_paths = [p for p, test in zip(paths, is_test.tolist()) if not test]
    return FeatureSplit(take_rows(x, ~is_test), y[~is_test], take_rows(x, is_test), y[is_test],
                        names, config, list(skipped), train_speakers, train_paths)


def carve_validation(split: FeatureSplit, fraction: float = 0.1, seed: int = 0) -> FeatureSplit:
    """Move a seeded, stratified share of the training clips into a validation split.

    Strata are (class, speaker) where the source names speakers (FSDD names, a manifest's 4th column),
    else classes; each stratum gives round(fraction x size) clips (at least 1 from a stratum of >= 2 when
    that rounds to 0, at most size - 1), drawn by a permutation seeded with ``seed`` and the stratum's
    name, so the split does not depend on file order or on other classes. Every choice of a preset,
    early stopping or sweep is made on this split; the test split is kept for the reported numbers.

    Parameters
    ----------
    split : FeatureSplit
        Train and test features.
    fraction : float
        Share of each stratum to move, in (0, 1).
    seed : int
        Seed of the draws.

    Returns
    -------
    FeatureSplit
        A new split with ``x_val`` / ``y_val`` set and ``x_train`` / ``y_train`` reduced.
    """
    if not 0.0 < fraction < 1.0:
        raise ParameterError(f"validation fraction must be in (0, 1), got {fraction}")
    if split.x_val is not None:
        raise ParameterError("this split already has a validation split")
    speakers = split.speakers_train or [None] * len(split.y_train)
    strata: Dict[Tuple[int, str], List[int]] = {}
    for i, (label, speaker) in enumerate(zip(split.y_train.tolist(), speakers)):
        strata.setdefault((label, speaker or ""), []).append(i)
    val: List[int] = []
    for (label, speaker), members in sorted(strata.items()):
        n = len(members)
        take = int(math.floor(fraction * n + 0.5))
        take = min(max(take, 1 if n >= 2 else 0), n - 1)
        if take > 0:
            gen = torch.Generator().manual_seed(int(hashlib.sha256(f"{seed}:{split.class_names[label]}:{speaker}"
                                                                   .encode()).hexdigest()[:15], 16))
            order = torch.randperm(n, generator=gen)[:take]
            val.extend(members[j] for j in order.tolist())
    is_val = torch.zeros(len(split.y_train), dtype=torch.bool)
    is_val[torch.tensor(sorted(val), dtype=torch.int64)] = True
    if bool(is_val.all()):
        raise ParameterError(f"cannot carve a validation split of {fraction:g} from {len(split.y_train)} training clips")
    if not bool(is_val.any()):          # every stratum has a single clip: no validation split (monitor_set says so)
        log.warning("no validation split: every (class, speaker) group of the training clips has a single clip")
    keep = (~is_val).tolist()
    return dataclasses.replace(
        split, x_train=take_rows(split.x_train, ~is_val), y_train=split.y_train[~is_val],
        speakers_train=[sp for sp, k in zip(speakers, keep) if k] if split.speakers_train else None,
        paths_train=[p for p, k in zip(split.paths_train, keep) if k] if split.paths_train else None,
        x_val=take_rows(split.x_train, is_val), y_val=split.y_train[is_val])


@dataclass(frozen=True)
class FeatureNorm:
    """Standardisation of FD-MFCC features: ``(x - mean) / std`` with ``mean``/``std`` (3, n_mfcc, 1), one
    pair per channel and coefficient (a per-channel scalar would leave c0, tens of dB wider than the other
    coefficients, dominating). Travels inside every artefact that needs it (experts, distilled sets)."""

    mean: Tensor
    std: Tensor

    @classmethod
    def fit(cls, x: Tensor) -> "FeatureNorm":
        """Mean and std over clips and frames of training features ``x`` (N, 3, n_mfcc, T): in float64 at once,
        or for stored features and tensors whose float64 copy would exceed FIT_IN_ONE_PASS_BYTES in two
        passes over chunks (the same statistics up to the order of the float64 sums)."""
        if len(x.shape) != 4 or x.shape[0] < 2:
            raise ParameterError(f"need (N >= 2, 3, n_mfcc, T) features to fit a standardisation, got {tuple(x.shape)}")
        if isinstance(x, StoredFeatures) or x.numel() * 8 > FIT_IN_ONE_PASS_BYTES:
            chunks = x.chunks if isinstance(x, StoredFeatures) else (lambda: x.split(1024))
            count = x.shape[0] * x.shape[3]
            mean = sum(c.double().sum(dim=(0, 3)) for c in chunks()) / count
            var = sum(((c.double() - mean[None, :, :, None]) ** 2).sum(dim=(0, 3)) for c in chunks()) / (count - 1)
            return cls(mean[..., None].float(), var.sqrt()[..., None].clamp_min(1e-6).float())
        x64 = x.detach().double()
        mean = x64.mean(dim=(0, 3), keepdim=True)[0]
        std = x64.std(dim=(0, 3), keepdim=True)[0].clamp_min(1e-6)
        return cls(mean.float(), std.float())

    def apply(self, x: Tensor) -> Tensor:
        """Standardised features, (N, 3, n_mfcc, T) -> same shape (stored features: a view that
        standardises what it reads)."""
        self._check(x)
        if isinstance(x, StoredFeatures):
            return x.standardized_by(self)
        return (x - self.mean.to(x)) / self.std.to(x)

    def apply_(self, x: Tensor) -> Tensor:
        """:meth:`apply` overwriting ``x`` (the same values, no second copy of the features); stored features
        get a standardising view as with :meth:`apply`."""
        self._check(x)
        if isinstance(x, StoredFeatures):
            return x.standardized_by(self)
        return x.sub_(self.mean.to(x)).div_(self.std.to(x))

    def invert(self, x: Tensor) -> Tensor:
        """Features in raw FD-MFCC units (dB-scaled cepstra) from standardised ones."""
        self._check(x)
        return x * self.std.to(x) + self.mean.to(x)

    def _check(self, x: Tensor) -> None:
        if len(x.shape) != 4 or tuple(x.shape[1:3]) != tuple(self.mean.shape[:2]):
            raise ParameterError(f"features of shape {tuple(x.shape)} do not match a standardisation of "
                                 f"(3, {self.mean.shape[1]}) channels x coefficients")

    def to_payload(self) -> Dict[str, Tensor]:
        return {"norm_mean": self.mean.float().cpu(), "norm_std": self.std.float().cpu()}

    @classmethod
    def from_payload(cls, obj: Dict[str, Any], where: str = "") -> "FeatureNorm":
        if "norm_mean" not in obj or "norm_std" not in obj:
            raise FileFormatError(f"{where}: holds no feature standardisation (norm_mean / norm_std)")
        return cls(obj["norm_mean"].float(), obj["norm_std"].float())


def data_fingerprint(*tensors: Tensor) -> str:
    """A short hash of tensors' shapes, dtypes and bytes (to refuse a checkpoint made on other data).

    Parameters
    ----------
    *tensors : Tensor or StoredFeatures
        Hashed in order; stored features are read chunk by chunk.

    Returns
    -------
    str
        32 hexadecimal digits.
    """
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
        for chunk in (t.chunks() if isinstance(t, StoredFeatures) else [t]):    # stored features: read in chunks
            chunk = chunk.detach().cpu().contiguous()
            if chunk.numel():
                digest.update(chunk.view(torch.uint8).numpy())     # the buffer itself: no copy of the bytes
    return digest.hexdigest()[:32]
