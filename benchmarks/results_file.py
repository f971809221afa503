"""Naming and writing a benchmark's result files: ``<what>-<machine>-<date>.json`` and ``.md``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path


def machine_tag(info: dict, gpu: str | None = None) -> str:
    """``h100`` for a GPU; ``amd-epyc-2c`` (first two words of the CPU model, core count) otherwise."""
    if gpu:
        return gpu.split()[-1].lower()
    words = re.sub(r"\((r|tm)\)", "", info["cpu"], flags=re.IGNORECASE).split()  # Intel(R) Xeon(R) -> intel-xeon
    return f"{'-'.join(words[:2]).lower()}-{info['cores']}c"


def write_results(out: Path, stem: str, result: dict, markdown: Callable[[dict], str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))
