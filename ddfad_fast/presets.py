"""Named run presets: the FeatureConfig, ExpertConfig, DistillConfig and EvalConfigs of one `ddfad run`.

* ``cpu-small`` (default): a 2-core CPU, 13-19 minutes for FSDD at 10 clips per class (ConvNet
  width 32, 5 experts x 15 epochs, 100 distillation iterations of 20 student steps).
* ``cpu-large``: a longer CPU run (10 experts x 30 epochs, 500 iterations, three architectures).
* ``paper``: the GPU sizes of MTT (ConvNet width 128, 100 experts x 50 epochs, 5,000 iterations).

Every choice below was made on the validation split carved from FSDD's training clips (never on the
test split), with ``bench/recipes.py``; the runs are in ``bench/results/recipes_*.jsonl``
(``_gpu_h100``: the same recipes run faster on an H100, same numbers within noise of the CPU ones).

* Standardisation per channel x coefficient and the augmentation ``AUGMENT`` in experts, unroll and
  evaluation: at 10 clips per class the distilled set went from 82.1 % (per-channel standardisation, no
  augmentation) to 95.2 %, random real clips from 62.8 % to 83.4 %, full data from 97.2 % to 98.3 %.
* Labels: learned soft labels did not win at this budget (1 clip per class: 77.2 % soft vs 78.0 % hard
  after 100 iterations, 80.1 vs 80.0 % after 300; 10 clips per class: 95.4 vs 95.2 %): hard labels.
* Initial clips: random real ones; starting from the herding coreset (``init="herding"``) gave 74.8 / 95.9 /
  97.4 % at 1 / 10 / 50 clips per class against 78.2 / 95.2 / 97.2 % (within one standard deviation).
  On the 100k-clip, 35-class corpus of ``bench/corpus_synth.py`` at 10 clips per class (2 experts x 3
  epochs, ``bench/results/corpus_run_100k_recipe/``, validation split) the herding start wins clearly:
  100 iterations from it gave 30.7 % against 26.1 % from random real clips (herding coreset 26.0 %, random
  real 22.4 %); 30 iterations 27.2 against 23.6 %. Learned soft labels there raise the distilled set to
  32.7 % and the coreset with the experts' soft labels to 27.9 %. So the recipe for large corpora is
  ``--init herding`` (with ``--labels soft`` for the best accuracy). On EmoDB's validation split (cpu-small
  experts, 100 iterations, the presets' window; tag ``herd-init-emodb`` in ``bench/results/recipes_cpu.jsonl``)
  the herding start gave 39.8 +- 4.7 % at 1 clip per class (10 nets) against random real clips' 35.2 +- 3.7 %,
  44.1 +- 4.7 % at 5 (5 nets) against 42.7 +- 3.0 % and 47.7 +- 4.3 % at 10 (5 nets) against 49.5 +- 3.6 %:
  a win at 1 clip per class, ties at 5 and 10. Over the two small corpora it wins once and loses once (FSDD,
  1 clip per class), so the presets keep random real clips; on the large one it is what beats the coreset.
* DATM's initialisation and labels, and FTD's moving average, on both corpora's validation splits (1 clip per
  class, cpu-small experts, 100 iterations, seed 0, 10 evaluation nets; tags ``datm-*`` and ``ema-*`` in
  ``bench/results/recipes_cpu.jsonl``), FSDD / EmoDB: random real clips (the default) 75.0 ± 4.4 / 35.2 ± 3.7 %;
  clips the experts classify correctly (``init="correct"``) 75.8 ± 4.4 / 35.9 ± 3.6 %; those with soft labels
  from the experts that are right 73.0 ± 4.6 / 34.1 ± 3.8 % (EmoDB, random clips with those labels:
  37.0 ± 3.7 %); the moving average (``ema_decay``) 0.9: 75.3 ± 4.5 / 34.5 ± 5.4 %, 0.97: 74.1 ± 4.7 /
  34.5 ± 4.5 %. Every difference is inside the nets' spread, so all three stay off.
* Partial update (``distill_fraction``, after SelMatch) at 50 clips per class, from the herding coreset, with
  the experts of the committed FSDD report (validation split, 5 nets; tags ``sel50-*`` in
  ``bench/results/recipes_cpu.jsonl``): distilling 20 % of each class's clips gave 98.3 ± 0.3 % against
  the herding coreset's 98.2 ± 0.3 % and full distillation's 97.3 % (the report's validation row); 50 %
  gave 97.7 ± 0.8 %. It is better than full distillation there but level with the coreset, and it was
  measured at one size of one corpus only, so it stays off (``--init herding --distill-fraction 0.2``).
* Evaluation step size: the distilled set's learned alpha (MTT's rule). On FSDD's validation split
  (``bench/eval_lr.py``, ``bench/results/eval_lr.jsonl``) 0.01 instead gave 78.8 vs 78.5 % at 1 clip per
  class and 95.1 vs 95.3 % at 10: no difference; on EmoDB's (1 clip per class, learned alpha 0.0019) 0.01
  gave 30.0 ± 3.0 % against alpha's 36.8 ± 4.6 %: alpha stays.
* 50 clips per class, 100 iterations on batches of 100: distilled 97.2 %, random real 96.4 %, herding
  coreset 97.9 %: at this budget distillation does not beat a good coreset there (see the report).
* Evaluation: 300 SGD steps on batches of at most 128 (the whole set below that), as one budget for every
  size. Doubling it gave +0.5 points at 10 clips per class (95.7 %) and +0.9 at 50 (random real 97.3 vs
  96.4 %) for twice the time; smaller batches were worse (batches of 32: 92.2 %).
* Full data: 760 SGD steps on batches of 64 (20 epochs of FSDD's 2,400 training clips: 98.4 % validation
  accuracy), counted in steps so that a small corpus is not under-trained. On EmoDB (387 training clips,
  speech16k, 2 s; its 44-clip validation split, 3 nets) 20 epochs (140 steps) gave 50.0 ± 4.9 %, 760 steps
  67.4 ± 1.1 % and 1,520 steps 68.2 ± 0.0 % (one validation clip is 2.3 points): 760 steps.
* Evaluation nets per set: 10 on the GPU (``paper``), where a net trains in seconds, so that the paired
  interval of a report (``comparisons`` in report.json) reflects the test clips rather than a few nets. The CPU
  presets keep 5: one cpu-small net took about 5 s at 1 clip per class but 40 s at 10 and 56 s at 50
  (``bench/results/recipes_cpu.jsonl``), so 10 nets would add about 25 minutes to the 1 / 10 / 50 report;
  pass ``--num-nets 10`` for a narrower interval.
* Start-epoch window: ``start_window="auto"`` (:mod:`ddfad_fast.train.window`): the window set by the fraction
  of the training set each CPC keeps (after DATM) from 5 % of it, the fixed window [0, ``max_start_epoch``]
  below. Validation splits, cpu-small experts, 100 iterations, seed 0 (tags ``window-*`` and ``datm-*`` in
  ``bench/results/recipes_cpu.jsonl``), ratio window against the fixed one with the same experts: FSDD CPC 1
  (0.4 % of the clips) 66.8 vs 75.3 %, EmoDB CPC 1 (1.8 %) 31.1 vs 35.2 %, FSDD CPC 10 (4.1 %) 93.3 vs
  95.5 % - it lost; EmoDB CPC 5 (9 %) 42.7 vs 37.3 %, EmoDB CPC 10 (18 %) 49.5 vs 43.4 % (herding coreset
  42.5 %), FSDD CPC 50 (20.6 %) 98.0 vs 97.9 % (herding 97.8 %) - it won or tied. The switch is between 4.1
  and 9 %; the table is in the window module's docstring.
* Expert epochs of at least 32 SGD steps (``ExpertConfig.min_epoch_steps``): an epoch of a small training set
  is several passes over it, so that 15 epochs train an expert as far on EmoDB (387 clips, 7 batches a pass:
  5 passes, 525 steps) as on FSDD (2,400 training clips besides the validation split, 38 batches a pass: one
  pass, unchanged; so are larger corpora). One pass an epoch, EmoDB's experts ended at 27-41 % on its
  validation split (full data 65 %) and the distilled sets learned to take smaller steps than the experts
  (alpha 0.002-0.004); with the passes they end at 52-61 % and alpha at 0.009-0.017.
  EmoDB report's validation rows, the same command at both settings (``bench/results/emodb_report/``):
  distilled 39.1 / 58.2 / 56.8 % at 1 / 5 / 10 clips per class against 36.8 / 42.3 / 49.5 % with one pass
  (test split: 43.7 / 56.7 / 61.7 against 45.8 / 51.7 / 60.6 %). The other EmoDB figures here and in the
  window module's table were measured with one-pass experts. With the passes (``bench/recipes.py``, EmoDB's
  validation split, tags ``passes-emodb-*`` in ``bench/results/recipes_cpu.jsonl``): at 1 clip per class (10
  nets) the fixed window 38.6 +- 3.5 %, the ratio window 35.5 +- 3.1 % (so ``auto`` keeps the fixed one there),
  the herding start 40.9 +- 3.7 %; at 5 (5 nets) 100 iterations 56.4 +- 3.9 %, 300 iterations 56.4 +- 6.6 %.
* Expert batch 64 instead of MTT's 256 (FSDD has 2,400 training clips: 38 steps an epoch instead of 10).
* Expert and evaluation training steps compiled (``compile=True``): 1.2-1.5x the eager steps' speed on
  2 cores for width 32 and 128 (``bench/results/train_throughput.json``) for 13-30 s of compilation per
  batch shape; training the evaluation nets together (``EvalConfig.ensemble``) was 1.2-6x slower on the
  CPU, so it stays off.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, Tuple

from .config import Augment, DistillConfig, EvalConfig, ExpertConfig, FeatureConfig, ModelConfig
from .errors import ParameterError


@dataclass(frozen=True)
class Preset:
    """Everything a `ddfad run` needs besides the data and the CPC list."""

    name: str
    description: str
    features: FeatureConfig
    expert: ExpertConfig
    distill: DistillConfig              # ``cpc`` is replaced per run
    eval: EvalConfig                    # distilled sets and the baselines of the same size
    eval_full: EvalConfig               # the full training set (more data: fewer epochs)
    standardize: bool = True            # per channel x coefficient, fitted on the training clips
    val_fraction: float = 0.1           # validation split carved from the training clips (stratified)
    baselines: Tuple[str, ...] = ("random", "herding")
    cross_models: Tuple[str, ...] = ()  # other architectures the distilled set is evaluated on, at cross_cpc
    cross_cpc: int = 10
    ablation_channels: Tuple[int, ...] = ()   # channel ablation at cross_cpc: 1 = MFCC only, 2 = MFCC + delta

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in ("features", "expert", "distill", "eval", "eval_full"):
            out[name] = out[name].to_dict()
        for name in ("baselines", "cross_models", "ablation_channels"):
            out[name] = list(out[name])
        return out

    def replace(self, **changes) -> "Preset":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict) -> "Preset":
        """The inverse of :meth:`to_dict` (e.g. the preset stored in a run's run.json)."""
        kinds = {"features": FeatureConfig, "expert": ExpertConfig, "distill": DistillConfig, "eval": EvalConfig,
                 "eval_full": EvalConfig}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ParameterError(f"Preset: unknown field(s) {unknown}")
        values = {k: (kinds[k].from_dict(v) if k in kinds else tuple(v) if isinstance(v, list) else v)
                  for k, v in data.items()}
        return cls(**values)


AUGMENT = Augment(max_shift=8, time_mask=10, freq_mask=3)


def _preset(name: str, description: str, width: int, num_experts: int, expert_epochs: int, syn_steps: int,
            max_start_epoch: int, iterations: int, checkpoint_every: int, eval_every: int, eval_nets: int,
            full_nets: int, full_steps: int, full_models: Tuple[str, ...], batch_syn=None, eval_steps=None,
            eval_epochs: int = 300, eval_batch: int = 256, multi_arch: bool = False) -> Preset:
    """A preset of the one recipe every size shares (features, augmentation, compiled steps, learning rates),
    from the settings that make its size."""
    model = ModelConfig(width=width, depth=3)
    return Preset(
        name=name, description=description, features=FeatureConfig.fsdd(),
        expert=ExpertConfig(num_experts=num_experts, epochs=expert_epochs, batch_size=64, min_epoch_steps=32,
                            model=model, augment=AUGMENT, compile=True),
        distill=DistillConfig(syn_steps=syn_steps, expert_epochs=2, max_start_epoch=max_start_epoch,
                              iterations=iterations, lr_data=1000.0, lr_alpha=1e-5, alpha_init=0.01,
                              batch_syn=batch_syn, checkpoint_every=checkpoint_every, eval_every=eval_every,
                              unroll="reverse", augment=AUGMENT, start_window="auto"),
        eval=EvalConfig(num_nets=eval_nets, epochs=eval_epochs, steps=eval_steps, batch_size=eval_batch,
                        models=("convnet",), augment=AUGMENT, compile=True),
        eval_full=EvalConfig(num_nets=full_nets, steps=full_steps, batch_size=64, models=full_models,
                             augment=AUGMENT, compile=True),
        cross_models=("vgg", "resnet") if multi_arch else (), ablation_channels=(1, 2) if multi_arch else (),
    )


def _cpu_small() -> Preset:
    return _preset("cpu-small", "2-core CPU: 13-19 minutes for FSDD at 10 clips per class", width=32,
                   num_experts=5, expert_epochs=15, syn_steps=20, max_start_epoch=10, iterations=100,
                   checkpoint_every=10, eval_every=0, batch_syn=100, eval_nets=5, eval_steps=300, eval_batch=128,
                   full_nets=3, full_steps=760, full_models=("convnet",))


def _cpu_large() -> Preset:
    return _preset("cpu-large", "CPU, a few hours: more experts and iterations, three architectures", width=32,
                   num_experts=10, expert_epochs=30, syn_steps=20, max_start_epoch=20, iterations=500,
                   checkpoint_every=20, eval_every=0, batch_syn=100, eval_nets=5, eval_steps=600, eval_batch=128,
                   full_nets=3, full_steps=1520, full_models=("convnet", "vgg", "resnet"), multi_arch=True)


def _paper() -> Preset:
    return _preset("paper", "GPU: the MTT sizes (width 128, 100 experts x 50 epochs, 5,000 iterations)", width=128,
                   num_experts=100, expert_epochs=50, syn_steps=50, max_start_epoch=20, iterations=5000,
                   checkpoint_every=200, eval_every=500, eval_nets=10, eval_epochs=1000,
                   full_nets=5, full_steps=3800, full_models=("convnet", "vgg", "resnet"), multi_arch=True)


_PRESETS = {"cpu-small": _cpu_small, "cpu-large": _cpu_large, "paper": _paper}
PRESET_NAMES = tuple(_PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (one of :data:`PRESET_NAMES`)."""
    if name not in _PRESETS:
        raise ParameterError(f"unknown preset {name!r}; expected one of {', '.join(PRESET_NAMES)}")
    return _PRESETS[name]()


def all_presets() -> Dict[str, Preset]:
    return {name: make() for name, make in _PRESETS.items()}
