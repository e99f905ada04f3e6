"""What :func:`ddfad_fast.distill_dataset` returns: :class:`DistillRun` (the run's distilled sets, its report,
audio, evaluation, Hugging Face export, save / load) and :class:`DistilledSet` (one CPC)."""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..config import FeatureConfig, ReconstructConfig
from ..errors import ParameterError
from ..io import load_artifact, save_artifact
from .run import RUN_FILE

RESULT_KIND = "distillation"


@dataclass
class DistilledSet:
    """One distilled set: ``features`` (N, 3, n_mfcc, T) float32 as distilled (standardised with ``norm`` when
    set: what training on it uses), ``labels`` (N,) int64 class indices into ``class_names``, ``soft_labels``
    (N, C) learned logits or None, the learned step size ``alpha``, the distillation ``iterations``."""

    cpc: int
    features: Tensor
    labels: Tensor
    class_names: List[str]
    feature_config: FeatureConfig
    alpha: float
    iterations: int
    soft_labels: Optional[Tensor] = None
    norm: Any = None                      # ddfad_fast.data.FeatureNorm or None

    @classmethod
    def from_file(cls, path: Union[str, Path], cpc: int) -> "DistilledSet":
        """A run's ``cpcN/distilled.pt``."""
        from ..data import FeatureNorm
        obj = load_artifact(path, kind="distilled")
        config = obj["config"]
        labels = obj["labels"].long()
        names = config.get("class_names") or [str(c) for c in range(int(labels.max()) + 1)]
        return cls(cpc, obj["features"].float(), labels, list(names), FeatureConfig.from_dict(config["features"]),
                   float(torch.as_tensor(obj["alpha"])), len(obj["history"]["loss"]),
                   obj["soft_labels"].float() if "soft_labels" in obj else None,
                   FeatureNorm.from_payload(obj, str(path)) if config.get("standardized") else None)

    def raw_features(self) -> Tensor:
        """The features in FD-MFCC units (dB-scaled cepstra and their deltas), the standardisation undone."""
        return self.norm.invert(self.features) if self.norm is not None else self.features

    def targets(self) -> Tensor:
        """What nets train on: the soft-label logits when learned, else the labels."""
        return self.soft_labels if self.soft_labels is not None else self.labels

    def to_audio(self, reconstruct: Optional[ReconstructConfig] = None) -> Tuple[Tensor, int]:
        """Reconstructed clips ``(waves (N, fixed_length) float32 in [-1, 1], sample_rate)``: the clips ``ddfad
        run`` writes to ``cpcN/audio`` (same seed and batches; there quantised to 16-bit PCM)."""
        from ..ops.reconstruct import fd_mfcc_to_audio
        from .export import BATCH, PEAK
        reconstruct = reconstruct or ReconstructConfig()
        config = self.feature_config
        raw = self.raw_features()
        generator = torch.Generator().manual_seed(reconstruct.seed)
        out = []
        for start in range(0, len(raw), BATCH):
            wave = fd_mfcc_to_audio(raw[start:start + BATCH].float(), config.sample_rate, config,
                                    n_iter=reconstruct.n_iter, reconstruct=reconstruct, generator=generator)
            peak = wave.abs().amax(dim=-1, keepdim=True)
            out.append(torch.where(peak > PEAK, wave * (PEAK / peak), wave).float())
        return torch.cat(out), config.sample_rate

    def clip_names(self) -> List[str]:
        from .export import class_clip_names
        return class_clip_names(self.labels.tolist(), self.class_names)

    def payload(self) -> Dict[str, Any]:
        out = {"cpc": self.cpc, "features": self.features, "labels": self.labels, "alpha": self.alpha,
               "iterations": self.iterations}
        if self.soft_labels is not None:
            out["soft_labels"] = self.soft_labels
        if self.norm is not None:
            out.update(self.norm.to_payload())
        return out

    @classmethod
    def from_payload(cls, obj: Dict[str, Any], class_names: List[str], config: FeatureConfig,
                     where: str) -> "DistilledSet":
        from ..data import FeatureNorm
        norm = FeatureNorm.from_payload(obj, where) if "norm_mean" in obj else None
        return cls(int(obj["cpc"]), obj["features"].float(), obj["labels"].long(), class_names, config,
                   float(obj["alpha"]), int(obj["iterations"]), obj.get("soft_labels"), norm)


class DistillRun:
    """The result of :func:`ddfad_fast.distill_dataset`: the distilled sets by CPC (``sets``), the run's
    ``report`` (report.json's dict: accuracies, timings, the feature choice) and its ``folder`` (None for a
    result loaded from a file). ``features``, ``labels``, ``soft_labels``, ``alpha`` are those of the only
    (or largest) CPC; the methods take ``cpc=`` for another."""

    def __init__(self, sets: Dict[int, DistilledSet], report: dict, folder: Optional[Path] = None) -> None:
        self.sets, self.report, self.folder = dict(sorted(sets.items())), report, folder

    @classmethod
    def from_folder(cls, folder: Union[str, Path], report: Optional[dict] = None) -> "DistillRun":
        """The result of a finished ``ddfad run`` folder (its report.json unless ``report`` is given)."""
        folder = Path(folder)
        if report is None:
            path = folder / "report.json"
            if not path.is_file():
                raise ParameterError(f"{folder} holds no report.json (not a finished ddfad run)")
            report = json.loads(path.read_text())
        sets = {}
        for cpc in report.get("cpcs", []):
            path = folder / f"cpc{cpc}" / "distilled.pt"
            if path.is_file():
                sets[int(cpc)] = DistilledSet.from_file(path, int(cpc))
        return cls(sets, report, folder)

    # -- the set of one CPC
    @property
    def cpcs(self) -> List[int]:
        return list(self.sets)

    def set(self, cpc: Optional[int] = None) -> DistilledSet:
        """The set of ``cpc`` (default: the largest)."""
        if not self.sets:
            raise ParameterError("no distilled set was made (see .report['failures'])")
        if cpc is None:
            return self.sets[self.cpcs[-1]]
        if cpc not in self.sets:
            raise ParameterError(f"no distilled set for CPC {cpc}; this run has {self.cpcs}")
        return self.sets[cpc]

    @property
    def features(self) -> Tensor:
        return self.set().features

    @property
    def labels(self) -> Tensor:
        return self.set().labels

    @property
    def soft_labels(self) -> Optional[Tensor]:
        return self.set().soft_labels

    @property
    def alpha(self) -> float:
        return self.set().alpha

    @property
    def class_names(self) -> List[str]:
        return self.set().class_names

    @property
    def feature_config(self) -> FeatureConfig:
        return self.set().feature_config

    @property
    def accuracy(self) -> dict:
        return self.report.get("accuracy", {})

    def __repr__(self) -> str:
        sets = ", ".join(f"CPC {c}: {tuple(s.features.shape)}" for c, s in self.sets.items())
        return f"DistillRun({sets}; classes {self.class_names}; folder {self.folder})"

    # -- outputs
    def to_audio(self, cpc: Optional[int] = None, reconstruct: Optional[ReconstructConfig] = None) -> Tuple[Tensor, int]:
        """Reconstructed clips of a set: ``(waves (N, L) float32, sample_rate)`` (:meth:`DistilledSet.to_audio`)."""
        return self.set(cpc).to_audio(reconstruct)

    def to_hf(self, cpc: Optional[int] = None, reconstruct: Optional[ReconstructConfig] = None):
        """The set as a ``datasets.Dataset`` (``pip install "ddfad_fast[hf]"``): reconstructed clips in an
        ``audio`` column, ``label`` (ClassLabel), ``soft_label_logits`` when learned; ``.save_to_disk(path)``
        writes it."""
        from ..data.hf import to_hf_dataset
        chosen = self.set(cpc)
        waves, sr = chosen.to_audio(reconstruct)
        logits = None if chosen.soft_labels is None else chosen.soft_labels.numpy()
        return to_hf_dataset(list(waves.numpy()), sr, chosen.labels.tolist(), chosen.class_names, logits,
                             names=chosen.clip_names())

    def evaluate(self, data: Any = None, cpc: Optional[int] = None, models: Optional[Sequence[str]] = None,
                 num_nets: Optional[int] = None, steps: Optional[int] = None, seed: Optional[int] = None,
                 device: Optional[Union[str, torch.device]] = None, progress: bool = False) -> Dict[str, dict]:
        """Train fresh nets on a distilled set (with its learned step size) and test them on the test split of
        the run's data (``data``: another source, or the data of a result loaded from a file): per model
        ``{"accs", "mean", "std", ...}``. ``models``, ``num_nets``, ``steps``, ``seed``: the run preset's
        evaluation settings unless given."""
        from ..presets import Preset
        from ..train.evaluate import evaluate_training_set
        chosen = self.set(cpc)
        preset = Preset.from_dict(self.report["preset"])
        config = preset.eval
        changes = {k: v for k, v in (("num_nets", num_nets), ("steps", steps), ("seed", seed)) if v is not None}
        config = config.replace(models=tuple(models), **changes) if models else config.replace(**changes)
        device = torch.device(device) if device is not None else torch.device("cpu")
        split = self._test_split(data, preset, chosen, device)
        if split.class_names != chosen.class_names:
            raise ParameterError(f"the data's classes {split.class_names} are not the distilled set's "
                                 f"{chosen.class_names}")
        out = {}
        for name in config.models:
            out[name] = evaluate_training_set(chosen.features.to(device), chosen.targets().to(device),
                                              split.x_test, split.y_test, preset.expert.model.replace(name=name),
                                              config, lr=chosen.alpha, progress=progress)
        return out

    def _test_split(self, data: Any, preset, chosen: DistilledSet, device: torch.device):
        from ..data import load_feature_split
        from ..data.resolve import resolve_source
        from .run import run_split
        if data is None:
            if self.folder is None or not (self.folder / RUN_FILE).is_file():
                raise ParameterError("this result has no run folder: pass data= to evaluate on")
            run = json.loads((self.folder / RUN_FILE).read_text())
            return run_split(self.folder, run, preset, device)
        with tempfile.TemporaryDirectory() as tmp:
            source = resolve_source(data, tmp, progress=False)
            split = load_feature_split(source, chosen.feature_config, progress=False,
                                       standardize=chosen.norm if chosen.norm is not None else False)
        return split.to(device)

    # -- files
    def save(self, path: Union[str, Path]) -> Path:
        """Write the distilled sets and the report to one file (read back with :meth:`load`, which uses
        ``torch.load(weights_only=True)``)."""
        first = self.set(self.cpcs[0] if self.sets else None)
        save_artifact(path, RESULT_KIND, {"sets": {str(c): s.payload() for c, s in self.sets.items()},
                                          "report_json": json.dumps(self.report, default=str)},
                      config={"features": first.feature_config.to_dict(), "class_names": first.class_names})
        return Path(path)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "DistillRun":
        """A result written by :meth:`save` (weights only: tensors, numbers, strings; no pickled code)."""
        obj = load_artifact(path, kind=RESULT_KIND)
        config = FeatureConfig.from_dict(obj["config"]["features"])
        names = list(obj["config"]["class_names"])
        sets = {int(c): DistilledSet.from_payload(s, names, config, str(path)) for c, s in obj["sets"].items()}
        return cls(sets, json.loads(obj["report_json"]), None)
