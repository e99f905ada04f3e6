"""report.html of a `ddfad run`: the accuracy tables and plots, and every distilled clip to listen to.

For every CPC and class: each distilled clip (an ``<audio>`` player on its reconstructed WAV, its MFCC
channel as an image, the reconstruction's spectral convergence) beside one real training clip of the
same class (copied, at the run's sample rate and length, into ``report_files/``). The page is
self-contained: images are embedded, audio files are linked relatively inside the run folder, so the
folder can be moved or opened from disk without a server.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import random
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from ..io import atomic_write_text
from .report import SETS, YARDSTICK_HEAD, pct, yardstick_rows

FILES_DIR = "report_files"


def _png_data_uri(draw) -> str:
    """A data: URI of the PNG that ``draw(ax)`` makes on a small figure (matplotlib Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(1.9, 0.75), dpi=80)
    draw(ax)
    ax.set_axis_off()
    fig.subplots_adjust(0, 0, 1, 1)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def mfcc_image(features: Tensor) -> str:
    """The MFCC channel of one clip (3, n_mfcc, T), each coefficient standardised over time, as a data URI."""
    mfcc = features[0].detach().float().cpu()
    mfcc = (mfcc - mfcc.mean(dim=1, keepdim=True)) / mfcc.std(dim=1, keepdim=True).clamp_min(1e-6)
    return _png_data_uri(lambda ax: ax.imshow(mfcc.numpy(), origin="lower", aspect="auto", cmap="magma",
                                              vmin=-3, vmax=3))


def _embed_file(path: Path) -> Optional[str]:
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _table(results: dict, split: str) -> str:
    present = [(k, t) for k, t in SETS if any(k in results["accuracy"].get(f"cpc{c}", {}) for c in results["cpcs"])]
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t in present)
    rows = [f"<tr><th>CPC</th><th>model</th>{head}<th>full data</th></tr>"]
    full = results["accuracy"].get("full", {})
    for cpc in results["cpcs"]:
        acc = results["accuracy"].get(f"cpc{cpc}", {})
        models = sorted(set().union(*(acc.get(k, {}).keys() for k, _ in present)) if present else set(),
                        key=lambda m: (m != "convnet", m))
        for model in models:
            cells = "".join(f"<td>{pct(acc.get(k, {}).get(model), split)}</td>" for k, _ in present)
            rows.append(f"<tr><td>{cpc}</td><td>{html.escape(model)}</td>{cells}"
                        f"<td>{pct(full.get(model), split)}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _real_clips(paths: Sequence[str], labels: Sequence[int], n_classes: int, config, out_dir: Path,
                seed: int = 0) -> Dict[int, tuple]:
    """One seeded random training clip per class, written as a WAV under ``out_dir/report_files``;
    {class index: (path relative to out_dir, index of the clip in ``paths``)}."""
    from ..audio.files import load_audio, save_audio
    from ..names import file_stem
    from ..ops.features import fit_length

    rng = random.Random(seed)
    chosen: Dict[int, tuple] = {}
    for c in range(n_classes):
        members = sorted((p, i) for i, (p, y) in enumerate(zip(paths, labels)) if y == c)
        if not members:
            continue
        source, index = rng.choice(members)
        wave, _ = load_audio(source, sample_rate=config.sample_rate)
        if config.fixed_length:
            wave = fit_length(wave, config.fixed_length)
        target = Path(FILES_DIR) / f"real_{c:03d}_{file_stem(Path(source).stem, 'clip')}.wav"
        save_audio(out_dir / target, wave, config.sample_rate)
        chosen[c] = (target.as_posix(), index)
    return chosen


def _clip_cell(audio: Optional[str], image: str, caption: str) -> str:
    player = (f'<audio controls preload="none" src="{html.escape(audio)}"></audio>' if audio
              else '<span class="missing">no audio</span>')
    return (f'<div class="clip"><img alt="MFCC" src="{image}">{player}'
            f'<div class="cap">{html.escape(caption)}</div></div>')


def write_html_report(out_dir: Path, results: dict, distilled: Dict[int, tuple], feature_config,
                      real_paths: Optional[Sequence[str]] = None, real_labels: Optional[Sequence[int]] = None,
                      real_features: Optional[Tensor] = None) -> Path:
    """Write ``out_dir/report.html``.

    ``distilled``: {cpc: (features (N, 3, n_mfcc, T) in raw FD-MFCC units, labels (N,))}; their WAVs are
    read from ``cpcN/audio/manifest.csv`` (and spectral convergence from ``reconstruction.json``) where
    the run wrote them. ``real_paths`` / ``real_labels`` / ``real_features``: the training clips (files,
    classes, raw FD-MFCC) from which one real clip per class is shown for comparison.
    """
    out_dir = Path(out_dir)
    classes = results["classes"]
    real: Dict[int, tuple] = {}
    if real_paths and real_labels is not None:
        real = _real_clips(real_paths, list(real_labels), len(classes), feature_config, out_dir)
    parts = [f"<h1>DDFAD run report</h1><p>Data: <code>{html.escape(results['data'])}</code> — "
             f"{len(classes)} classes, {results['num_train']} train / {results.get('num_val', 0)} validation / "
             f"{results['num_test']} test clips. Preset <code>{html.escape(results['preset']['name'])}</code>.</p>",
             "<h2>Test accuracy (%)</h2>", _table(results, "test")]
    yard = yardstick_rows(results)
    if yard:
        head = "".join(f"<th>{html.escape(t)}</th>" for t in YARDSTICK_HEAD)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in yard)
        parts += ["<h2>Against the baselines (test split)</h2><p>Gap closed: (distilled − random) / (full − random). "
                  "Differences: distilled minus baseline on the same test clips, in points, with a 95 % paired "
                  "bootstrap interval over test clips and evaluation nets.</p>", f"<table><tr>{head}</tr>{body}</table>"]
    if results.get("num_val"):
        parts += ["<h2>Validation accuracy (%)</h2>", _table(results, "val")]
    for name, title in (("accuracy_vs_cpc.png", "Accuracy vs clips per class"),
                        ("distilled_grid.png", "Distilled samples (MFCC channel)")):
        uri = _embed_file(out_dir / name)
        if uri:
            parts.append(f"<h2>{title}</h2><img class=\"plot\" alt=\"{title}\" src=\"{uri}\">")
    for cpc in sorted(distilled):
        feats, labels = distilled[cpc]
        audio_dir = out_dir / f"cpc{cpc}" / "audio"
        wavs: List[Optional[str]] = [None] * len(labels)
        sc: List[Optional[float]] = [None] * len(labels)
        manifest = audio_dir / "manifest.csv"
        if manifest.is_file():
            with open(manifest, newline="") as handle:
                rows = list(csv.reader(handle))[1:]
            wavs = [f"cpc{cpc}/audio/{row[0]}" for row in rows][:len(labels)]
            summary = audio_dir / "reconstruction.json"
            if summary.is_file():
                sc = [c["spectral_convergence_db"] for c in json.loads(summary.read_text())["clips"]][:len(labels)]
        parts.append(f"<h2>{cpc} clip{'s' if cpc > 1 else ''} per class: distilled, and a real clip</h2>")
        parts.append("<table class=\"clips\">")
        for c, class_name in enumerate(classes):
            members = torch.nonzero(labels == c).flatten().tolist()
            cells = [_clip_cell(wavs[i], mfcc_image(feats[i]),
                                f"distilled {k}" + (f", SC {sc[i]:.1f} dB" if sc[i] is not None else ""))
                     for k, i in enumerate(members)]
            if c in real:
                path, index = real[c]
                image = mfcc_image(real_features[index]) if real_features is not None else ""
                cells.append(_clip_cell(path, image, "real clip"))
            parts.append(f"<tr><th>{html.escape(class_name)}</th><td>{''.join(cells)}</td></tr>")
        parts.append("</table>")
    style = ("body{font-family:sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}"
             ".clips td{text-align:left}.clip{display:inline-block;margin:3px;vertical-align:top;width:160px}"
             ".clip img{width:152px;height:60px;display:block}.clip audio{width:156px;height:28px}"
             ".cap{font-size:11px;color:#444}.plot{max-width:640px}.missing{font-size:11px;color:#a00}")
    page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>DDFAD run report</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
    atomic_write_text(out_dir / "report.html", page)
    return out_dir / "report.html"
