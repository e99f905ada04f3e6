"""Every default of the package, in one place, as typed dataclasses.

Each dataclass converts to and from a plain dict (``to_dict`` / ``from_dict``) so that saved files
carry their config and can be checked against the config of the run that loads them.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple, Type, TypeVar

from .errors import ParameterError

T = TypeVar("T", bound="_Config")


class _Config:
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: Type[T], data: dict) -> T:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ParameterError(f"{cls.__name__}: unknown field(s) {unknown}")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in data.items():
            kind = hints.get(key)
            if typing.get_origin(kind) is typing.Union:            # Optional[SomeConfig]
                kind = next((k for k in typing.get_args(kind) if k is not type(None)), kind)
            if isinstance(kind, type) and issubclass(kind, _Config) and isinstance(value, dict):
                value = kind.from_dict(value)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)


def n_frames(length: int, n_fft: int, hop_length: int) -> int:
    """Frames of a centred STFT (n_fft // 2 zeros on each side) of ``length`` samples.

    1 + length // hop_length for even n_fft, one fewer for odd n_fft when hop_length divides length.
    """
    return 1 + (length + 2 * (n_fft // 2) - n_fft) // hop_length


@dataclass(frozen=True)
class FeatureConfig(_Config):
    """FD-MFCC settings. The defaults are the FSDD preset (docs/architecture.md section 3).

    Times are in samples unless the name says otherwise; ``sample_rate`` in Hz.
    Output of ``fd_mfcc``: (B, 3, n_mfcc, n_frames(fixed_length)).
    """

    sample_rate: int = 8000
    fixed_length: Optional[int] = 8000      # pad (right, zeros) / crop every clip to this many samples; None keeps lengths
    preemphasis: float = 0.97               # 0 disables; librosa.effects.preemphasis semantics
    n_fft: int = 256
    win_length: int = 160                   # 20 ms at 8 kHz
    hop_length: int = 80                    # 10 ms at 8 kHz
    window: str = "hann"                    # "hann" | "hamming" (periodic)
    center: bool = True
    pad_mode: str = "constant"
    n_mels: int = 40
    fmin: float = 0.0
    fmax: Optional[float] = None            # None = sample_rate / 2
    top_db: Optional[float] = 80.0          # per clip; None disables the floor
    amin: float = 1e-10
    ref: float = 1.0
    n_mfcc: int = 20
    delta_width: int = 9
    short_clip_mode: str = "edge"           # deltas of clips shorter than delta_width frames: see features.deltas

    @classmethod
    def fsdd(cls) -> "FeatureConfig":
        """8 kHz, 1 s, 20 ms Hann window, n_fft 256, hop 10 ms, 40 mels, 20 MFCCs: (3, 20, 101)."""
        return cls()

    @classmethod
    def speech16k(cls) -> "FeatureConfig":
        """16 kHz, 1 s, 20 ms window, n_fft 512, hop 128 (8 ms), 40 mels, 20 MFCCs: (3, 20, 126)."""
        return cls(sample_rate=16000, fixed_length=16000, n_fft=512, win_length=320, hop_length=128)

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def f_max(self) -> float:
        return float(self.fmax) if self.fmax is not None else self.sample_rate / 2.0

    def n_frames(self, length: int) -> int:
        """Frames for a clip of ``length`` samples (after pad/crop): centred frames, :func:`n_frames`."""
        return n_frames(length, self.n_fft, self.hop_length)

    def validate(self) -> "FeatureConfig":
        if self.sample_rate <= 0:
            raise ParameterError(f"sample_rate must be > 0, got {self.sample_rate}")
        if self.fixed_length is not None and self.fixed_length <= 0:
            raise ParameterError(f"fixed_length must be > 0 or None, got {self.fixed_length}")
        if not 0 < self.win_length <= self.n_fft:
            raise ParameterError(f"win_length must be in (0, n_fft={self.n_fft}], got {self.win_length}")
        if self.hop_length <= 0:
            raise ParameterError(f"hop_length must be > 0, got {self.hop_length}")
        if not self.center or self.pad_mode != "constant":
            raise ParameterError(f"only centred frames with zero padding are supported (center=True, pad_mode='constant'), "
                                 f"got center={self.center}, pad_mode={self.pad_mode!r}")
        if self.short_clip_mode != "edge":
            raise ParameterError(f"short_clip_mode must be 'edge', got {self.short_clip_mode!r}")
        if self.window not in ("hann", "hamming"):
            raise ParameterError(f"window must be 'hann' or 'hamming', got {self.window!r}")
        if not 0 < self.n_mfcc <= self.n_mels:
            raise ParameterError(f"n_mfcc must be in (0, n_mels={self.n_mels}], got {self.n_mfcc}")
        if not 0.0 <= self.fmin < self.f_max <= self.sample_rate / 2.0:
            raise ParameterError(f"need 0 <= fmin < fmax <= sr/2, got fmin={self.fmin}, fmax={self.fmax}")
        if self.delta_width < 3 or self.delta_width % 2 == 0:
            raise ParameterError(f"delta_width must be odd and >= 3, got {self.delta_width}")
        if self.top_db is not None and self.top_db < 0:
            raise ParameterError(f"top_db must be >= 0 or None, got {self.top_db}")
        if not 0.0 <= self.preemphasis < 1.0:
            raise ParameterError(f"preemphasis must be in [0, 1), got {self.preemphasis}")
        return self


@dataclass(frozen=True)
class ReconstructConfig(_Config):
    """Reconstruction (FD-MFCC -> WAV) settings."""

    n_iter: int = 32                # Griffin-Lim iterations
    momentum: float = 0.99          # fast Griffin-Lim momentum (0 = classic GLA)
    nnls_iter: int = 200            # projected-gradient iterations of the mel -> linear NNLS
    seed: int = 0                   # random initial phases
    deemphasis: bool = True         # undo the pre-emphasis of the FeatureConfig


@dataclass(frozen=True)
class Augment(_Config):
    """Differentiable FD-MFCC augmentation, drawn per clip and shared by the three channels.

    Every size is a maximum, drawn uniformly per clip: ``max_shift`` circular time shift in frames (+-),
    ``time_mask`` width in frames of a zeroed time band, ``freq_mask`` width in coefficients of a zeroed
    coefficient band (each band at most half of its axis). One instance is used alike by expert training, the distillation unroll and
    evaluation training (the same protocol for every row of a report).
    """

    max_shift: int = 8
    time_mask: int = 10
    freq_mask: int = 3

    def __post_init__(self) -> None:
        for name in ("max_shift", "time_mask", "freq_mask"):
            if getattr(self, name) < 0:
                raise ParameterError(f"augmentation {name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class ModelConfig(_Config):
    """Classifier architecture. ``name``: "convnet" (MTT ConvNet), "vgg", "resnet"."""

    name: str = "convnet"
    width: int = 128
    depth: int = 3
    norm: str = "instancenorm"      # "instancenorm" | "none"
    activation: str = "relu"
    pooling: str = "avgpool"


@dataclass(frozen=True)
class ExpertConfig(_Config):
    """Teacher (expert) training: plain SGD, a flat parameter snapshot per epoch."""

    num_experts: int = 100
    epochs: int = 50
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 256
    # an epoch (one saved snapshot) is at least this many SGD steps: as many passes over a small training set
    # as that takes (None: one pass, MTT's rule); see :meth:`passes_per_epoch`
    min_epoch_steps: Optional[int] = None
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: Optional[Augment] = None   # applied to every training batch (None: no augmentation)
    compile: bool = False               # torch.compile each training step (eager fallback, said once)
    ensemble: bool = False              # train the unfinished experts together (torch.func.vmap)

    def passes_per_epoch(self, n_train: int) -> int:
        """Passes over ``n_train`` training clips that make one expert epoch: 1, or enough batches of
        ``batch_size`` to reach ``min_epoch_steps`` SGD steps (e.g. 387 clips, batches of 64, 32 steps: 5)."""
        return 1 if self.min_epoch_steps is None else passes_for_steps(self.min_epoch_steps, n_train, self.batch_size)


def passes_for_steps(steps: int, n_train: int, batch_size: int) -> int:
    """Passes over ``n_train`` clips in batches of ``batch_size`` (the last one partial) that make at least
    ``steps`` SGD steps, and at least one."""
    batches_per_pass = -(-n_train // batch_size)
    return max(1, -(-steps // batches_per_pass))


# settings that change speed and float32 rounding only: never part of what a file must match to be resumed
ROUNDING_ONLY_FIELDS = ("compile", "ensemble")


def rounding_free(config: dict, *also: str) -> dict:
    """A config dict with its ROUNDING_ONLY_FIELDS (and the fields ``also``) set to None: what a saved state
    and the current settings must agree on for one to resume the other."""
    return dict(config, **dict.fromkeys(ROUNDING_ONLY_FIELDS + also))


INITS = ("random", "correct", "herding")     # DistillConfig.init: where the synthetic clips start


@dataclass(frozen=True)
class DistillConfig(_Config):
    """MTT distillation (docs/architecture.md section 6). Step sizes are per unit of the features the nets see."""

    cpc: int = 10                       # synthetic clips per class
    syn_steps: int = 40                 # N: student steps per iteration
    expert_epochs: int = 2              # M: target is theta*_{t+M}
    max_start_epoch: int = 20           # t is drawn from [0, max_start_epoch] (start_window="fixed")
    start_window: str = "fixed"         # "fixed" | "ratio": the window set by the data ratio (train/window.py)
    iterations: int = 5000
    lr_data: float = 100.0              # SGD step on the synthetic features
    lr_alpha: float = 1e-5              # SGD step on the learnable student step size
    alpha_init: float = 0.01
    momentum: float = 0.5
    batch_syn: Optional[int] = None     # None = the whole synthetic set each step
    unroll: str = "reverse"             # "reverse" (exact, memory constant in N) | "naive" (full graph)
    checkpoint_every: int = 200         # iterations between checkpoints (0: only at the end / on Ctrl-C)
    eval_every: int = 500               # iterations between evaluate_fn calls (0 disables)
    max_memory_gb: Optional[float] = None   # choose unroll / batch_syn to fit, or refuse before starting
    seed: int = 0
    compile: bool = True                # torch.compile the reverse mode's per-step functions (eager fallback)
    augment: Optional[Augment] = None   # applied to every student step (None: no augmentation)
    labels: str = "hard"                # "hard" (class indices) | "soft" (learned logits, initialised from the experts)
    lr_labels: float = 10.0             # SGD step on the soft-label logits (labels="soft")
    label_expert_epoch: int = -1        # the experts' snapshot whose logits initialise soft labels (-1: the last)
    trajectories_per_iteration: int = 1  # K: expert trajectories unrolled and averaged per update (split over ranks)
    init: str = "random"                # initial clips: "random" real ones | "correct" (ones the experts get right)
    #                                     | "herding" (the coreset baseline's clips)
    distill_fraction: float = 1.0       # share of each class's clips that are updated; the rest stay real (SelMatch)
    ema_decay: float = 0.0              # > 0: the result is an exponential moving average of the synthetic set (FTD)


@dataclass(frozen=True)
class EvalConfig(_Config):
    """Train-from-scratch evaluation of a (distilled or real) training set."""

    def epochs_for(self, n_train: int) -> int:
        """Epochs for a training set of ``n_train`` clips: ``epochs``, or ``steps`` SGD steps rounded up to epochs."""
        if self.steps is None:
            return self.epochs
        return passes_for_steps(self.steps, n_train, self.batch_size)

    num_nets: int = 5
    epochs: int = 300                   # passes over the training set (see ``steps``)
    steps: Optional[int] = None         # if set: train for this many SGD steps instead (epochs = steps / batches per epoch)
    lr: Optional[float] = None          # None = the distilled set's learned alpha (or 0.01 for real data)
    batch_size: int = 256
    models: Tuple[str, ...] = ("convnet",)
    seed: int = 0
    momentum: float = 0.9
    weight_decay: float = 0.0005
    lr_decay_at_half: bool = True       # lr x 0.1 after half of the epochs
    augment: Optional[Augment] = None   # applied to every training batch (None: no augmentation)
    compile: bool = False               # torch.compile each training step (eager fallback, said once)
    ensemble: bool = False              # train the nets together (torch.func.vmap); else one after another
