"""One call of each CUDA fd_mfcc kernel at B = 1024 (fsdd and speech16k presets: the per-clip kernel, then
the tiled one) for Nsight Compute:

    ncu --kernel-name regex:'fd_mfcc_clip|stft_mel|dct_delta' --section SpeedOfLight --section Occupancy \\
        --section WarpStateStats --section SchedulerStats --section InstructionStats python3 bench/gpu_ncu.py

Each kernel runs twice (the first a warm-up); profile with --launch-skip 1 --launch-count 1 per kernel name.
"""
from __future__ import annotations

import torch

from ddfad_fast.config import FeatureConfig
from ddfad_fast.ops import gpu_features


def main() -> None:
    for cfg in (FeatureConfig.fsdd(), FeatureConfig.speech16k()):
        L = cfg.fixed_length
        waves = torch.randn(1024, L, device="cuda") * 0.1
        plan = gpu_features.feature_plan(cfg, L, waves.device)
        for _ in range(2):
            plan.native(waves)
            torch.ops.ddfad.fd_mfcc_fused(waves, plan.window, plan.mel_bands, plan.mel_weights, plan.dct,
                                          plan.delta_start, plan.delta_coef, plan.n_frames, cfg.hop_length,
                                          cfg.preemphasis, cfg.amin, plan.ref_db, plan.top_db, True, 0, 0)
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
