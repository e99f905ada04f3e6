"""Named run presets: the FeatureConfig, ExpertConfig, DistillConfig and EvalConfigs of one `ddfad run`.

* ``cpu-small``: a 2-core CPU in about 10-15 minutes (ConvNet width 32, 4 experts x 10 epochs, short distillation).
* ``cpu-large``: the largest run reasonable on a CPU in about 1-2 hours.
* ``paper``: the GPU setting (ConvNet width 128, 100 experts x 50 epochs, 5000 iterations).

Features are standardised per channel (mean/std of the training split) before experts and
distillation when ``standardize`` is set; the statistics are saved with the run and undone before
reconstruction to audio. On standardised FSDD features, lr_data 1000 (with the normalised
trajectory-matching loss) moved a 1-clip-per-class set from 11.5% to 26.5% test accuracy in 60
iterations where lr_data 100 reached 18.5% (ConvNet width 16, 3 experts x 8 epochs, 50 clips/class).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

from .config import DistillConfig, EvalConfig, ExpertConfig, FeatureConfig, ModelConfig
from .errors import ParameterError


@dataclass(frozen=True)
class Preset:
    """Everything a `ddfad run` needs besides the data and the CPC list."""

    name: str
    description: str
    features: FeatureConfig
    expert: ExpertConfig
    distill: DistillConfig              # ``cpc`` is replaced per run
    eval: EvalConfig                    # distilled sets and random real subsets
    eval_full: EvalConfig               # the full training set (more data: fewer epochs)
    standardize: bool = True

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "features": self.features.to_dict(),
                "expert": self.expert.to_dict(), "distill": self.distill.to_dict(), "eval": self.eval.to_dict(),
                "eval_full": self.eval_full.to_dict(), "standardize": self.standardize}


def _cpu_small() -> Preset:
    # measured on 2 cores: one expert epoch over FSDD's 2,700 training clips ~4 s at width 32; one
    # student step with its Hessian-vector product ~0.1 s on a batch of 20
    model = ModelConfig(width=32, depth=3)
    return Preset(
        name="cpu-small", description="2-core CPU, about 10-15 minutes on FSDD",
        features=FeatureConfig.fsdd(),
        expert=ExpertConfig(num_experts=4, epochs=10, model=model),
        distill=DistillConfig(syn_steps=12, expert_epochs=2, max_start_epoch=6, iterations=150,
                              lr_data=1000.0, lr_alpha=1e-5, alpha_init=0.01, batch_syn=20,
                              checkpoint_every=50, eval_every=0, unroll="reverse"),
        eval=EvalConfig(num_nets=3, epochs=200, models=("convnet",)),
        eval_full=EvalConfig(num_nets=2, epochs=10, models=("convnet",)),
    )


def _cpu_large() -> Preset:
    model = ModelConfig(width=64, depth=3)
    return Preset(
        name="cpu-large", description="CPU, about 1-2 hours",
        features=FeatureConfig.fsdd(),
        expert=ExpertConfig(num_experts=20, epochs=30, model=model),
        distill=DistillConfig(syn_steps=30, expert_epochs=2, max_start_epoch=20, iterations=1000,
                              lr_data=1000.0, lr_alpha=1e-5, alpha_init=0.01, checkpoint_every=100,
                              eval_every=0, unroll="reverse"),
        eval=EvalConfig(num_nets=5, epochs=300, models=("convnet", "vgg", "resnet")),
        eval_full=EvalConfig(num_nets=3, epochs=50, models=("convnet",)),
    )


def _paper() -> Preset:
    model = ModelConfig(width=128, depth=3)
    return Preset(
        name="paper", description="GPU: the MTT setting",
        features=FeatureConfig.fsdd(),
        expert=ExpertConfig(num_experts=100, epochs=50, model=model),
        distill=DistillConfig(syn_steps=50, expert_epochs=2, max_start_epoch=20, iterations=5000,
                              lr_data=1000.0, lr_alpha=1e-5, alpha_init=0.01, checkpoint_every=200,
                              eval_every=500, unroll="reverse"),
        eval=EvalConfig(num_nets=5, epochs=1000, models=("convnet", "vgg", "resnet")),
        eval_full=EvalConfig(num_nets=5, epochs=100, models=("convnet", "vgg", "resnet")),
    )


_PRESETS = {"cpu-small": _cpu_small, "cpu-large": _cpu_large, "paper": _paper}
PRESET_NAMES = tuple(_PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (one of :data:`PRESET_NAMES`)."""
    if name not in _PRESETS:
        raise ParameterError(f"unknown preset {name!r}; expected one of {', '.join(PRESET_NAMES)}")
    return _PRESETS[name]()


def all_presets() -> Dict[str, Preset]:
    return {name: make() for name, make in _PRESETS.items()}
