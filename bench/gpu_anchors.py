"""torchaudio anchors of bench/gpu_bench.py, each labelled with the work it does.

* ``torchaudio_same_work``: what fd_mfcc computes, with torchaudio's pieces: librosa's pre-emphasis (our
  reference's, so the first sample matches), MelSpectrogram (Slaney mels and norm, constant padding, power 2),
  dB with a per-clip top_db floor, the ortho DCT (torchaudio.functional.create_dct), and
  torchaudio.functional.compute_deltas for both delta channels (its second delta is the delta of the delta,
  not the Savitzky-Golay second derivative: same cost, other numbers, so its output is not compared).
* ``torchaudio_mfcc``: torchaudio.transforms.MFCC + compute_deltas twice, as bench/_common.py has it: no
  pre-emphasis and one top_db floor for the whole batch (less work than ours).
Both return None where torchaudio does not import.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ddfad_fast.config import FeatureConfig
from ddfad_fast.ops import reference as ref


def torchaudio_same_work(cfg: FeatureConfig, device: str) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    try:
        import torchaudio
    except Exception:
        return None
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length,
                                               hop_length=cfg.hop_length, n_mels=cfg.n_mels, center=True,
                                               pad_mode="constant", norm="slaney", mel_scale="slaney",
                                               power=2.0).to(device)
    dct = torchaudio.functional.create_dct(cfg.n_mfcc, cfg.n_mels, "ortho").to(device)     # (n_mels, n_mfcc)
    delta = torchaudio.functional.compute_deltas
    ref_db = 10.0 * torch.log10(torch.tensor(max(cfg.amin, cfg.ref))).item()

    def run(waves: torch.Tensor) -> torch.Tensor:
        spec = mel(ref.preemphasis(waves, cfg.preemphasis))                          # (B, n_mels, T)
        db = 10.0 * torch.log10(spec.clamp_min(cfg.amin)) - ref_db
        if cfg.top_db is not None:
            db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - cfg.top_db)
        m = torch.matmul(db.transpose(1, 2), dct).transpose(1, 2)                  # (B, n_mfcc, T)
        d1 = delta(m, win_length=cfg.delta_width)
        return torch.stack([m, d1, delta(d1, win_length=cfg.delta_width)], dim=1)
    return run


def torchaudio_mfcc(cfg: FeatureConfig, device: str) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import torchaudio_fd_mfcc
    return torchaudio_fd_mfcc(cfg, device)


def torchaudio_griffin_lim(cfg: FeatureConfig, n_iter: int, device: str):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import torchaudio_griffin_lim as make
    return make(cfg, n_iter, 0.99, device)
