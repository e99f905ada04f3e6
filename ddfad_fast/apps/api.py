"""The whole job from Python: :func:`distill_dataset` (what ``ddfad run`` calls).

::

    import ddfad_fast as dd
    run = dd.distill_dataset("data/fsdd", cpc=10, preset="cpu-small", out="runs/fsdd", seed=0)
    run.features, run.labels          # the distilled set (N, 3, n_mfcc, T), (N,)
    waves, sr = run.to_audio()        # reconstructed clips
    run.report["accuracy"]            # what report.json holds
    run.evaluate(models=("convnet", "resnet"))

``data`` is a folder (FSDD names or class sub-folders), a CSV manifest, a Hugging Face ``Dataset`` /
``DatasetDict`` / ``IterableDataset`` with an Audio column (or a ``save_to_disk`` folder, or ``"hf:NAME"`` from
the local cache), or any iterable of ``(waveform, sample_rate, label)``. Sources that are not files on disk are
written once, as they stream, into the run's ``cache/source_<hash>/`` (:mod:`ddfad_fast.data.spool`), the
source the pipeline then reads like a CSV manifest. The feature settings are chosen from a header scan of the
clips unless given (:mod:`ddfad_fast.data.scan`); the choice is printed and stored in run.json and the report.
No global state: the seeds, the device and the output folder are arguments; progress bars are tqdm.auto.
For the CPU training speed of the ``ddfad`` commands, call :func:`ddfad_fast.resources.keep_freed_memory`
once before (a process-wide allocator setting, so it is left to the caller).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch

from ..config import FeatureConfig
from ..data.resolve import is_file_source, resolve_source  # noqa: F401  (part of this API)
from ..data.sources import input_paths
from ..errors import ParameterError
from ..outputs import MARKER, check_deletable, clear
from ..presets import Preset, get_preset
from ..train.callbacks import CallbackList, TensorBoardCallback, as_callbacks
from .run import RUN_FILE, run_pipeline

DataLike = Any      # folder, CSV, datasets object, "hf:NAME", or an iterable of (waveform, sample_rate, label)


def choose_features_for(source: str, features: Union[None, str, FeatureConfig] = None,
                        duration: Optional[float] = None):
    """The :class:`~ddfad_fast.data.scan.FeatureChoice` for a folder / CSV source: ``features`` (a feature
    preset name or a whole FeatureConfig) and ``duration`` (seconds) as given, the rest from a header scan."""
    from ..data.scan import choose_features, scan_source
    whole = features if isinstance(features, FeatureConfig) else None
    name = features if isinstance(features, str) else None
    if features is not None and whole is None and name is None:
        raise ParameterError(f"features must be None, a feature preset name or a FeatureConfig, got {features!r}")
    scan = scan_source(source)          # headers only: what is not given is chosen from it, what is given checked
    return choose_features(scan, preset=name, duration=duration, config=whole)


def print_choice(choice, stream=None) -> None:
    """The choice's line, and one ``warning:`` line per warning (on stderr)."""
    print(choice.line(), file=stream or sys.stdout, flush=True)
    for warning in choice.warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)


def seeded(preset: Preset, seed: Optional[int]) -> Preset:
    """``preset`` with every seed (experts, distillation, evaluation) set to ``seed`` (None: unchanged)."""
    if seed is None:
        return preset
    seed = int(seed)
    return preset.replace(expert=preset.expert.replace(seed=seed), distill=preset.distill.replace(seed=seed),
                          eval=preset.eval.replace(seed=seed), eval_full=preset.eval_full.replace(seed=seed))


def _check_out(out: Path, data: Any, resume: bool, overwrite: bool) -> None:
    """The checks of the output folder that :func:`run_pipeline` makes, made before the data is read (so a
    wrong ``out`` is reported first). A run folder to be overwritten is emptied now, before a source is
    written into its cache; one holding the data, or one ddfad did not make, is refused."""
    if resume and overwrite:
        raise ParameterError("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise ParameterError(f"--out {out} is a file, not a folder")
    if not (out.exists() and any(p.name not in ("cache", MARKER) for p in out.iterdir())):  # cache: ddfad features'
        return
    if overwrite:
        inputs = input_paths(data) if is_file_source(data) else []
        check_deletable(out, "run", inputs, legacy=(RUN_FILE,))
        if not is_file_source(data):
            clear(out)
    elif not resume:
        raise ParameterError(f"{out} exists; pass --resume to continue it or --overwrite to start again")


def distill_dataset(data: DataLike, cpc: Union[int, Sequence[int]] = 10, preset: Union[str, Preset] = "cpu-small",
                    out: Optional[Union[str, Path]] = None, *, features: Union[None, str, FeatureConfig] = None,
                    duration: Optional[float] = None, seed: Optional[int] = None,
                    device: Optional[Union[str, torch.device]] = None, max_per_class: Optional[int] = None,
                    audio: bool = True, resume: bool = False, overwrite: bool = False, strict: bool = False,
                    progress: bool = True, in_memory: Optional[bool] = None, workers: Optional[int] = None,
                    label_column: Optional[str] = None, audio_column: Optional[str] = None,
                    speaker_column: Optional[str] = None, log_dir: Optional[Union[str, Path]] = None,
                    log_every: int = 10, callbacks=None):
    """Distil ``data`` to ``cpc`` clips per class: features, experts, MTT distillation, evaluation, audio, report.

    Parameters
    ----------
    data : folder, CSV manifest, Hugging Face dataset (or its ``save_to_disk`` folder, or ``"hf:NAME"``), or an
        iterable of ``(waveform, sample_rate, label)`` (waveform (L,) or (C, L) float; a 4th item "train" /
        "test" gives the split, else a seeded 10 % per class is the test split).
    cpc : int or list of ints, clips per class (one distilled set each).
    preset : a run preset name (``cpu-small``, ``cpu-large``, ``paper``) or a :class:`~ddfad_fast.presets.Preset`.
    out : the run folder (default: a new temporary folder, kept); ``resume`` continues it, ``overwrite``
        starts it again.
    features, duration : a feature preset name (``fsdd``, ``speech16k``) or a whole FeatureConfig, and the clip
        length in seconds; what is not given is chosen from a header scan of the clips
        (:func:`ddfad_fast.data.scan.choose_features`). The choice is printed with ``progress``.
    seed : every seed of the run (experts, distillation, evaluation); None keeps the preset's (0).
    device : where nets train (default: the CPU). ``max_per_class``, ``strict``, ``in_memory``, ``workers``,
        ``audio``: as ``ddfad run``'s flags.
    label_column, audio_column, speaker_column : the columns of a Hugging Face dataset.
    log_dir : a TensorBoard folder (``tensorboard --logdir LOG_DIR``): losses, the learned step size, timings,
        expert and evaluation curves, and every ``log_every`` distillation iterations the feature grid and a few
        reconstructed clips (:class:`ddfad_fast.train.callbacks.TensorBoardCallback`; ``pip install
        "ddfad_fast[tb]"``).
    callbacks : a :class:`ddfad_fast.train.callbacks.Callback` or a list of them (e.g. a W&B or MLflow logger),
        called by every stage beside the TensorBoard one; closed when the run ends.

    Returns
    -------
    :class:`ddfad_fast.apps.result.DistillRun`: ``.features``, ``.labels``, ``.to_audio()``, ``.evaluate()``,
    ``.report``, ``.save()`` / ``DistillRun.load()``.

    Raises
    ------
    ParameterError for unusable arguments or data (exit code 2 in the CLI), and for a ``log_dir`` without
    tensorboard installed; the errors of the stages otherwise. A failure of one stage of one CPC is recorded in ``.report["failures"]`` instead.
    """
    cpcs = [int(cpc)] if isinstance(cpc, int) else [int(c) for c in cpc]
    preset = get_preset(preset) if isinstance(preset, str) else preset
    if not isinstance(preset, Preset):
        raise ParameterError(f"preset must be a preset name or a Preset, got {type(preset).__name__}")
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="ddfad_run_"))
    _check_out(out, data, resume, overwrite)
    hooks = as_callbacks(callbacks)
    if log_dir is not None:           # before the data is read: a missing tensorboard is reported first
        hooks = CallbackList([*hooks.callbacks, TensorBoardCallback(log_dir, every=log_every)])
    try:
        return _distill(data, cpcs, preset, out, hooks, features=features, duration=duration, seed=seed,
                        device=device, max_per_class=max_per_class, audio=audio, resume=resume, overwrite=overwrite,
                        strict=strict, progress=progress, in_memory=in_memory, workers=workers,
                        label_column=label_column, audio_column=audio_column, speaker_column=speaker_column)
    finally:
        hooks.close()


def _distill(data, cpcs, preset, out, callbacks, *, features, duration, seed, device, max_per_class, audio, resume,
             overwrite, strict, progress, in_memory, workers, label_column, audio_column, speaker_column):
    """:func:`distill_dataset` once its arguments and output folder are checked."""
    from .result import DistillRun
    source = resolve_source(data, out / "cache", progress=progress, label_column=label_column,
                            audio_column=audio_column, speaker_column=speaker_column)
    choice = choose_features_for(source, features, duration)
    if progress:
        print_choice(choice)
    preset = seeded(preset, seed).replace(features=choice.config)
    results = run_pipeline(source, cpcs, out, preset, resume=resume, overwrite=overwrite,
                           max_per_class=max_per_class, audio=audio, progress=progress, strict=strict,
                           device=device, in_memory=in_memory, workers=workers, feature_choice=choice.to_dict(),
                           callbacks=callbacks)
    return DistillRun.from_folder(out, results)
