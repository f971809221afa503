"""Training speed of the trainer's options, measured with the trainer's own epoch loop.

    python benchmarks/train_speed.py [--width 0.25] [--batch 8] [--steps 5] [--warmup 2]
                                     [--variants fp32,bf16,channels_last,compile] [--device cpu]

Each variant runs ``training.loop.train_one_epoch`` (the scratch recipe's C3D-BN, AdamW) on clips held in
memory (no decoding: this measures compute; benchmarks/input_pipeline.py measures the input), first
``--warmup`` untimed steps (torch.compile compiles there), then ``--steps`` timed ones. Variants:
fp32 (eager), bf16 / fp16 (autocast; fp16 with a gradient scaler, GPU only), channels_last
(channels_last_3d), compile (torch.compile), and combinations joined by ``+``. Results:
``train-speed-<machine>-<date>.json`` and ``.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from results_file import machine_tag, write_results
from torch.utils.data import DataLoader, TensorDataset

from c3d_rt.core.config import ModelConfig, TrainConfig
from c3d_rt.core.machine import cpu_has_bf16, machine_info
from c3d_rt.model.c3d import C3D
from c3d_rt.training.loop import autocast_dtype, make_optimizer, train_one_epoch
from c3d_rt.training.recipes import RECIPES


def run_variant(variant: str, width: float, batch: int, steps: int, warmup: int, device: torch.device) -> dict:
    parts = set(variant.split("+"))
    precision = next((p for p in ("bf16", "fp16") if p in parts), "fp32")
    recipe = {k: v for k, v in RECIPES["scratch"].items() if k != "model"}
    cfg = TrainConfig(**recipe, batch_size=batch, workers=0, precision=precision,
                      channels_last="channels_last" in parts, compile="compile" in parts)
    torch.manual_seed(0)
    model = C3D(ModelConfig(num_classes=101, width=width, **RECIPES["scratch"]["model"]))
    model.to(device, memory_format=torch.channels_last_3d if cfg.channels_last else torch.contiguous_format)
    net = torch.compile(model) if cfg.compile else model
    optimizer = make_optimizer(model, cfg)
    dtype = autocast_dtype(cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    clips = torch.randn(batch * max(steps, warmup), 3, 16, 112, 112) * 50
    labels = torch.randint(0, 101, (len(clips),))

    def epoch(n: int) -> dict:
        loader = DataLoader(TensorDataset(clips[: n * batch], labels[: n * batch]), batch_size=batch)
        return train_one_epoch(net, loader, optimizer, scaler, device, cfg, lambda _p: None, False, variant, dtype)

    start = time.perf_counter()
    epoch(warmup)
    warmup_s = time.perf_counter() - start
    m = epoch(steps)
    return {"variant": variant, "width": width, "batch": batch, "steps": steps, "warmup_steps": warmup,
            "warmup_s": warmup_s, "clips_per_s": m["clips_per_s"], "s_per_step": batch / m["clips_per_s"],
            "loss": m["train_loss"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--variants", default="fp32,bf16,channels_last,compile,compile+channels_last")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    rows = []
    for variant in args.variants.split(","):
        row = run_variant(variant, args.width, args.batch, args.steps, args.warmup, device)
        rows.append(row)
        print(f"{variant}: {row['clips_per_s']:.2f} clips/s ({row['s_per_step']:.2f} s a step; warm-up "
              f"{row['warmup_s']:.1f} s)", file=sys.stderr)
    base = next((r["clips_per_s"] for r in rows if r["variant"] == "fp32"), None)
    for r in rows:
        r["vs_fp32"] = r["clips_per_s"] / base if base else None
    info = machine_info()
    if device.type == "cuda":
        info["gpu_torch"] = torch.cuda.get_device_name(0)
    result = {"machine": info, "device": str(device), "native_cpu_bf16": cpu_has_bf16(), "rows": rows,
              "command": "python " + " ".join(sys.argv)}
    where = machine_tag(info, info.get("gpu_torch"))
    write_results(args.out, args.name or f"train-speed-{where}-w{args.width:g}-b{args.batch}-{info['date']}", result,
                  markdown)


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"# Training speed by option ({m['date']})", "",
             f"Device {r['device']}; {m['cpu']}, {m['cores']} cores, flags `{m['cpu_flags']}` (native bf16: "
             f"{r['native_cpu_bf16']}); GPU {m.get('gpu_torch') or m['gpu']}; torch {m['torch']}, python {m['python']}. "
             f"Command: `{r['command']}`.", "",
             "| variant | width | batch | clips/s | s a step | vs eager fp32 | warm-up s |", "|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        vs = f"{row['vs_fp32']:.2f}x" if row["vs_fp32"] else "-"
        lines.append(f"| {row['variant']} | {row['width']:g} | {row['batch']} | {row['clips_per_s']:.2f} | "
                     f"{row['s_per_step']:.2f} | {vs} | {row['warmup_s']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
