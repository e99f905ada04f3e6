"""Distil a labelled audio dataset from Python, look at the result, and hand it on as a Hugging Face dataset.

    python examples/distill_dataset.py --data ../shared/data/fsdd/recordings --cpc 10 --out runs/example
    python examples/distill_dataset.py --data DIR --hf --export runs/example/hf    # needs ddfad_fast[hf]

``--data`` is a folder (FSDD names or class sub-folders) or a CSV manifest; with ``--hf`` its clips are first put
into a ``datasets.DatasetDict`` (what a corpus from the Hugging Face hub looks like: an Audio column, a
ClassLabel column, train / test splits) and that is distilled instead. ``--tiny`` shrinks every stage to a few
seconds (the tests run it so). The feature settings are chosen from the data (printed); the run folder holds the
report, the distilled set and its WAVs, as ``ddfad run`` writes them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import ddfad_fast as dd
from ddfad_fast.presets import get_preset


def as_hf_dataset(folder: str):
    """A folder of labelled clips as a DatasetDict with ``audio`` (Audio), ``label`` (ClassLabel) and ``speaker``."""
    import datasets
    from ddfad_fast.data import discover
    from ddfad_fast.data.split import class_names
    items, _ = discover(folder)
    names = class_names([it.label for it in items])

    def part(split: str):
        rows = [it for it in items if it.split == split]
        table = {"audio": [str(it.path) for it in rows], "label": [names.index(it.label) for it in rows],
                 "speaker": [it.speaker or "" for it in rows]}
        return (datasets.Dataset.from_dict(table).cast_column("audio", datasets.Audio())
                .cast_column("label", datasets.ClassLabel(names=names)))
    return datasets.DatasetDict({"train": part("train"), "test": part("test")})


def tiny(preset):
    """Every stage at a few seconds' size (a smoke run, not a result)."""
    return preset.replace(expert=preset.expert.replace(num_experts=1, epochs=3, compile=False,
                                                       model=preset.expert.model.replace(width=4)),
                          distill=preset.distill.replace(iterations=2, syn_steps=2, max_start_epoch=1, compile=False),
                          eval=preset.eval.replace(num_nets=1, steps=3, compile=False),
                          eval_full=preset.eval_full.replace(num_nets=1, epochs=1, compile=False), baselines=("random",))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--cpc", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/example"))
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-per-class", type=int, default=None)
    parser.add_argument("--hf", action="store_true", help="distil the clips as a Hugging Face DatasetDict")
    parser.add_argument("--export", type=Path, default=None, help="save the distilled set here with save_to_disk")
    parser.add_argument("--tiny", action="store_true", help="a few seconds per stage")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    preset = get_preset(args.preset)
    if args.tiny:
        preset = tiny(preset)
    data = as_hf_dataset(args.data) if args.hf else args.data
    run = dd.distill_dataset(data, cpc=args.cpc, preset=preset, out=args.out, seed=args.seed,
                             max_per_class=args.max_per_class, overwrite=args.overwrite, audio=not args.tiny)
    print(run)
    acc = run.accuracy[f"cpc{args.cpc}"]["distilled"]["convnet"]
    print(f"distilled set {tuple(run.features.shape)}, labels {run.labels.tolist()[:12]}..., "
          f"test accuracy {100 * acc['mean']:.1f} +- {100 * acc['std']:.1f} %")
    waves, sample_rate = run.to_audio()
    print(f"reconstructed clips {tuple(waves.shape)} at {sample_rate} Hz")
    run.save(args.out / "result.pt")
    again = dd.DistillRun.load(args.out / "result.pt")
    assert (again.features == run.features).all()
    exported = None
    if args.export is not None:
        exported = run.to_hf()
        exported.save_to_disk(str(args.export))
        print(f"saved {exported.num_rows} clips as a Hugging Face dataset in {args.export}")
    return {"run": run, "waves": waves, "exported": exported}


if __name__ == "__main__":
    main()
