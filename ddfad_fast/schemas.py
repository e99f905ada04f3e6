"""What every saved artefact must hold, checked when it is loaded: keys, types, dtypes, shapes, finite values,
label ranges and counts that agree with each other. A file that fails is refused with one line naming the
file and the field (:class:`FileFormatError`), before any of it is used.

Kinds (written by :func:`ddfad_fast.io.save_artifact`; checked by :func:`check_artifact`, which
``load_artifact`` calls): ``features``, ``distilled``, ``trajectory``, ``expert_progress``,
``distill_checkpoint``, ``eval_progress``. The feature store's ``index.json`` is checked by
:func:`check_store_index`.
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import torch

from .errors import FileFormatError

SHARD_FILE = re.compile(r"^shard_\d{5}\.npy$")


class _Checker:
    """Field checks of one loaded object; every failure names ``where`` and the field."""

    def __init__(self, where: Any, obj: Mapping[str, Any]) -> None:
        self.where, self.obj = where, obj

    def fail(self, field: str, problem: str):
        raise FileFormatError(f"{self.where}: field {field!r} {problem}; the file is damaged or was not written by "
                              "this ddfad_fast (make it again)")

    def get(self, field: str, optional: bool = False, source: Optional[Mapping] = None):
        source = self.obj if source is None else source
        if field not in source:
            if optional:
                return None
            self.fail(field, "is missing")
        return source[field]

    def tensor(self, field: str, dims: Sequence[int], floating: Optional[bool] = None, finite: bool = True,
               optional: bool = False, source: Optional[Mapping] = None,
               name: Optional[str] = None) -> Optional[torch.Tensor]:
        name = name or field
        value = self.get(field, optional, source)
        if value is None and optional:
            return None
        if not isinstance(value, torch.Tensor):
            self.fail(name, f"is a {type(value).__name__}, not a tensor")
        if value.dim() not in dims:
            self.fail(name, f"has {value.dim()} dimension(s) (shape {tuple(value.shape)}), expected "
                            f"{' or '.join(map(str, dims))}")
        if floating is True and not value.is_floating_point():
            self.fail(name, f"has dtype {value.dtype}, expected floating point")
        if floating is False and (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
            self.fail(name, f"has dtype {value.dtype}, expected integers")
        if finite and value.is_floating_point() and value.numel() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            self.fail(name, f"holds {bad} NaN or infinite value(s)")
        return value

    def number(self, field: str, low: float = -math.inf, integer: bool = False, optional: bool = False,
               source: Optional[Mapping] = None, name: Optional[str] = None):
        name = name or field
        value = self.get(field, optional, source)
        if value is None and optional:
            return None
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                self.fail(name, f"is a tensor of shape {tuple(value.shape)}, expected one number")
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(name, f"is a {type(value).__name__}, expected a number")
        if integer and (not float(value).is_integer()):
            self.fail(name, f"is {value!r}, expected an integer")
        if not math.isfinite(value) or value < low:
            self.fail(name, f"is {value!r}, expected a finite number >= {low:g}")
        return int(value) if integer else value

    def kind_of(self, field: str, types, optional: bool = False, source: Optional[Mapping] = None,
                name: Optional[str] = None):
        value = self.get(field, optional, source)
        if value is None and optional:
            return None
        if not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
            self.fail(name or field, f"is a {type(value).__name__}, expected a {expected}")
        return value

    def generator_state(self, value: Any, name: str) -> None:
        if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8:
            self.fail(name, "is not a random generator state (a uint8 tensor)")
        try:
            torch.Generator().set_state(value)
        except (RuntimeError, TypeError, ValueError):
            self.fail(name, "is not a valid random generator state")

    def same(self, field: str, actual: int, expected: int, what: str) -> None:
        if actual != expected:
            self.fail(field, f"has {actual} {what}, expected {expected}")


def _features_config(c: _Checker, config: Mapping) -> Dict[str, Any]:
    from .config import FeatureConfig
    from .errors import ParameterError
    features = c.kind_of("features", dict, source=config, name="config.features")
    try:
        return FeatureConfig.from_dict(features).validate().to_dict()
    except (ParameterError, TypeError, ValueError) as exc:
        c.fail("config.features", f"is not a valid FeatureConfig ({' '.join(str(exc).split())})")


def _clips(c: _Checker, field: str, config: Mapping, channels: Sequence[int] = (3,)) -> torch.Tensor:
    """A (N, C, n_mfcc, T) feature tensor matching the file's FeatureConfig."""
    x = c.tensor(field, (4,), floating=True)
    feats = _features_config(c, config)
    frames = None
    if feats["fixed_length"] is not None:
        from .config import n_frames
        frames = n_frames(feats["fixed_length"], feats["n_fft"], feats["hop_length"])
    if x.shape[1] not in channels or x.shape[2] != feats["n_mfcc"] or frames not in (None, x.shape[3]):
        c.fail(field, f"has shape {tuple(x.shape)}, expected (N, {'/'.join(map(str, channels))}, "
                      f"{feats['n_mfcc']}, {frames or 'T'}) for its FeatureConfig")
    return x


def _labels(c: _Checker, field: str, n: int, num_classes: int) -> torch.Tensor:
    y = c.tensor(field, (1,), floating=False)
    c.same(field, len(y), n, "labels for the clips")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        c.fail(field, f"holds classes from {int(y.min())} to {int(y.max())}, outside [0, {num_classes})")
    return y


def _norm(c: _Checker, config: Mapping, channels: int, n_mfcc: int) -> None:
    if not config.get("standardized"):
        return
    for field in ("norm_mean", "norm_std"):
        t = c.tensor(field, (3,), floating=True)
        if tuple(t.shape[:2]) != (channels, n_mfcc) and tuple(t.shape[:2]) != (3, n_mfcc):
            c.fail(field, f"has shape {tuple(t.shape)}, expected ({channels}, {n_mfcc}, 1)")
    if bool((c.obj["norm_std"] <= 0).any()):
        c.fail("norm_std", "holds values <= 0")


def _history(c: _Checker, field: str = "history", required: bool = False) -> dict:
    history = c.kind_of(field, dict)
    loss = c.kind_of("loss", list, source=history, name=f"{field}.loss", optional=not required)
    if loss is not None and not all(isinstance(v, (int, float)) for v in loss):
        c.fail(f"{field}.loss", "holds values that are not numbers")
    return history


def _features(c: _Checker, obj: Mapping, config: Mapping) -> None:
    x = _clips(c, "features", config)
    paths = c.kind_of("paths", list)
    c.same("paths", len(paths), len(x), "paths for the clips")
    if not all(isinstance(p, str) for p in paths):
        c.fail("paths", "holds entries that are not text")
    c.kind_of("skipped", list, optional=True)


def _distilled(c: _Checker, obj: Mapping, config: Mapping) -> None:
    names = config.get("class_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        c.fail("config.class_names", "is not a list of names")
    num_classes = c.number("num_classes", low=1, integer=True, source=config, name="config.num_classes",
                           optional=names is not None)
    num_classes = len(names) if num_classes is None else num_classes
    x = _clips(c, "features", config, channels=(1, 2, 3))
    _labels(c, "labels", len(x), num_classes)
    soft = c.tensor("soft_labels", (2,), floating=True, optional=True)
    if soft is not None and tuple(soft.shape) != (len(x), num_classes):
        c.fail("soft_labels", f"has shape {tuple(soft.shape)}, expected ({len(x)}, {num_classes})")
    alpha = c.number("alpha")
    if not alpha > 0:
        c.fail("alpha", f"is {alpha!r}, expected a step size > 0")
    if "history" in obj:
        _history(c)
    if names is not None:
        c.same("config.class_names", len(names), num_classes, "names for the classes")
    _norm(c, config, x.shape[1], x.shape[2])


def _trajectory(c: _Checker, obj: Mapping, config: Mapping) -> None:
    params = c.tensor("params", (2,), floating=True)
    if params.shape[0] < 2 or params.shape[1] < 1:
        c.fail("params", f"has shape {tuple(params.shape)}, expected (epochs + 1 >= 2, parameters >= 1)")
    _features_config(c, config)
    in_shape = c.kind_of("in_shape", list, source=config, name="config.in_shape")
    if len(in_shape) != 3 or not all(isinstance(v, int) and v > 0 for v in in_shape):
        c.fail("config.in_shape", f"is {in_shape!r}, expected three positive sizes")
    c.number("num_classes", low=1, integer=True, source=config, name="config.num_classes")
    c.kind_of("expert", dict, source=config, name="config.expert")
    _norm(c, config, in_shape[0], in_shape[1])


def _expert_progress(c: _Checker, obj: Mapping, config: Mapping) -> None:
    c.number("num_threads", low=1, integer=True, optional=True)
    snapshots = c.tensor("snapshots", (2,), floating=True)
    for field in ("params", "velocity"):
        t = c.tensor(field, (1,), floating=True)
        c.same(field, t.numel(), snapshots.shape[1], "parameters")
    c.generator_state(c.get("generator"), "generator")
    c.kind_of("train_loss", list)
    c.same("train_loss", len(obj["train_loss"]), len(snapshots) - 1, "losses for the epochs")
    c.kind_of("monitor_acc", list)


def _distill_checkpoint(c: _Checker, obj: Mapping, config: Mapping) -> None:
    c.number("num_threads", low=1, integer=True, optional=True)
    x = c.tensor("x", (4,), floating=True)
    labels = c.tensor("labels", (1,), floating=False)
    c.same("labels", len(labels), len(x), "labels for the clips")
    num_classes = config.get("num_classes")
    if isinstance(num_classes, int) and len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        c.fail("labels", f"holds classes from {int(labels.min())} to {int(labels.max())}, outside [0, {num_classes})")
    for field in ("mom_x", "x_ema"):
        t = c.tensor(field, (4,), floating=True, optional=field == "x_ema")
        if t is not None and t.shape != x.shape:
            c.fail(field, f"has shape {tuple(t.shape)}, expected {tuple(x.shape)} like x")
    for field in ("alpha", "mom_alpha"):
        t = c.tensor(field, (0, 1), floating=True)
        if t.numel() != 1:
            c.fail(field, f"has shape {tuple(t.shape)}, expected one number")
    if not float(obj["alpha"]) > 0:
        c.fail("alpha", f"is {float(obj['alpha'])!r}, expected a step size > 0")
    iteration = c.number("iteration", low=0, integer=True)
    c.generator_state(c.get("generator"), "generator")
    history = _history(c, required=True)
    if len(history["loss"]) < iteration:
        c.fail("history.loss", f"has {len(history['loss'])} entries for {iteration} iterations")
    c.kind_of("plan", dict, optional=True)
    if "soft_labels" in obj or "mom_y" in obj:
        for field in ("soft_labels", "mom_y"):
            t = c.tensor(field, (2,), floating=True)
            if t.shape[0] != len(x):
                c.fail(field, f"has shape {tuple(t.shape)}, expected ({len(x)}, classes)")


def _eval_progress(c: _Checker, obj: Mapping, config: Mapping) -> None:
    c.number("num_threads", low=1, integer=True, optional=True)
    for field in ("accs", "val_accs"):
        values = c.kind_of(field, list, optional=field == "val_accs")
        if values is not None and not all(isinstance(v, (int, float)) for v in values):
            c.fail(field, "holds values that are not numbers")
    correct = c.kind_of("test_correct", list, optional=True)
    if correct is not None and not all(isinstance(v, str) and set(v) <= {"0", "1"} for v in correct):
        c.fail("test_correct", "holds values that are not strings of '0'/'1'")
    if "params" not in obj:
        return
    if "generators" in obj:                      # a group of nets: (R, P)
        params = c.tensor("params", (2,), floating=True)
        velocity = c.tensor("velocity", (2,), floating=True)
        if velocity.shape != params.shape:
            c.fail("velocity", f"has shape {tuple(velocity.shape)}, expected {tuple(params.shape)} like params")
        generators = c.kind_of("generators", list)
        c.same("generators", len(generators), len(params), "generators for the nets")
        for k, state in enumerate(generators):
            c.generator_state(state, f"generators[{k}]")
        epochs = c.get("epochs", optional=True)
        if epochs is not None and (not isinstance(epochs, list) or len(epochs) != len(params)
                                   or not all(isinstance(e, int) and e >= 0 for e in epochs)):
            c.fail("epochs", f"is {epochs!r}, expected one epoch count >= 0 per net")
    else:                                        # an earlier release's state of one net
        params = c.tensor("params", (1,), floating=True)
        c.tensor("velocity", (1,), floating=True)
        c.generator_state(c.get("generator"), "generator")
        c.number("epoch", low=0, integer=True)


CHECKS: Dict[str, Callable[[_Checker, Mapping, Mapping], None]] = {
    "features": _features, "distilled": _distilled, "trajectory": _trajectory, "expert_progress": _expert_progress,
    "distill_checkpoint": _distill_checkpoint, "eval_progress": _eval_progress}


def check_artifact(where: Any, obj: Mapping[str, Any]) -> None:
    """Refuse (FileFormatError naming ``where`` and the field) a loaded artefact of a known kind whose
    contents do not fit it; other kinds pass."""
    check = CHECKS.get(obj.get("kind"))
    if check is None:
        return
    c = _Checker(where, obj)
    config = c.kind_of("config", dict)
    check(c, obj, config)


def check_store_index(where: Any, obj: Any) -> None:
    """Refuse an inconsistent feature-store ``index.json``: the fields, a plain shard file name per shard,
    row counts that add up to the rows listed, and four columns per row."""
    if not isinstance(obj, dict):
        raise FileFormatError(f"{where}: not a feature store index (a JSON object)")
    c = _Checker(where, obj)
    c.kind_of("key", str)
    _features_config(c, obj)
    num_files = c.number("num_files", low=0, integer=True)
    shards = c.kind_of("shards", list)
    rows = c.kind_of("rows", list)
    c.kind_of("skipped", list)
    total = 0
    for k, shard in enumerate(shards):
        name = f"shards[{k}]"
        if not isinstance(shard, dict):
            c.fail(name, f"is {shard!r}, expected {{file, rows}}")
        file = c.kind_of("file", str, source=shard, name=f"{name}.file")
        if not SHARD_FILE.match(file):
            c.fail(f"{name}.file", f"is {file!r}, expected a shard file name shard_NNNNN.npy in the store folder")
        total += c.number("rows", low=0, integer=True, source=shard, name=f"{name}.rows")
        digest = shard.get("sha256")
        if digest is not None and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
            c.fail(f"{name}.sha256", "is not a SHA-256 digest")
    c.same("rows", len(rows), total, "rows for the shards' clips")
    if total > num_files:
        c.fail("num_files", f"is {num_files}, fewer than the {total} clips stored")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != 4 or not all(isinstance(v, (str, type(None))) for v in row) \
                or not isinstance(row[0], str):
            c.fail(f"rows[{i}]", f"is {row!r}, expected [path, label, split, speaker]")
