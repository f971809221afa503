"""Whether a bench batch fits: what its clips need against the memory available (a container's limit included),
checked before anything runs, and a run that still ran out of memory said as such (it could not run; it
computed nothing wrong)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import describe
from .rows import BenchError, Row

OUT_OF_MEMORY_SIGNS = ("out of memory", "bad_alloc", "failed to allocate", "unable to allocate",
                       "can't allocate memory", "cannot allocate memory")  # numpy, ONNX Runtime, OpenVINO, torch


def clips_gib(batch: int, clip_shape: tuple[int, ...]) -> float:
    """GiB of ``batch`` float32 clips of ``clip_shape`` (3, T, H, W): the input of one call, alone."""
    return batch * int(np.prod(clip_shape)) * 4 / 2**30


def available_gib() -> float:
    """Memory this process can still have: what the machine has available, or less where a container's memory
    limit (its cgroup, which the machine's figures do not show) leaves less."""
    import psutil

    return min([psutil.virtual_memory().available, *_cgroup_room()]) / 2**30


def _cgroup_room() -> list[int]:
    """Bytes left under this process's memory cgroup (v2 or v1), where it has a limit that can be read."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    rooms = []
    for hierarchy in (line.split(":", 2) for line in lines if line.count(":") >= 2):
        if hierarchy[1] == "":
            base, files = Path("/sys/fs/cgroup"), ("memory.max", "memory.current")
        elif "memory" in hierarchy[1].split(","):
            base, files = Path("/sys/fs/cgroup/memory"), ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        for folder in (base / hierarchy[2].lstrip("/"), base):  # inside a container its own cgroup is the root
            try:
                limit, used = (int((folder / name).read_text()) for name in files)
            except (OSError, ValueError):  # not there, or "max": no limit
                continue
            rooms.append(max(0, limit - used))
    return rooms


def _shape(clip_shape: tuple[int, ...]) -> str:
    return "x".join(map(str, clip_shape))


def check_batches(batches: tuple[int, ...], clip_shape: tuple[int, ...]) -> None:
    """Refuse, before anything is allocated, a batch whose clips alone take more than half the memory available:
    the engine needs at least as much again for its first layer's output, so it would end in a MemoryError (or
    the kernel killing the process) after every smaller row had been measured for nothing."""
    available = available_gib()
    fits = int(available / 2 / clips_gib(1, clip_shape))
    too_big = [b for b in batches if b > fits]
    if too_big:
        b = too_big[0]
        raise BenchError(
            f"--batch {','.join(map(str, too_big))}: {b} clips of {_shape(clip_shape)} float32 take about "
            f"{clips_gib(b, clip_shape):.1f} GiB as input alone, and the engines need at least as much again for "
            f"their layers' outputs; {available:.1f} GiB of memory is available here. "
            + (f"Use batches of at most {fits} (or free memory for more)." if fits else
               "Not even one clip fits: free some memory first."))


def could_not_run(exc: BaseException, row: Row, clip_shape: tuple[int, ...]) -> str:
    """The reason of an ERROR row: out of memory (with the size of the batch's clips), or the engine's error."""
    if not (isinstance(exc, MemoryError) or any(sign in str(exc).lower() for sign in OUT_OF_MEMORY_SIGNS)):
        return f"could not run at batch {row.batch}: {describe(exc)}"
    room = "on the GPU" if row.device == "cuda" else f"with {available_gib():.1f} GiB of memory available now"
    return (f"out of memory at batch {row.batch} {room}: its clips alone need about "
            f"{clips_gib(row.batch, clip_shape):.1f} GiB ({_shape(clip_shape)} float32 each), the engine more; use a "
            f"smaller --batch ({describe(exc)})")
