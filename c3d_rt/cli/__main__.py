"""``python -m c3d_rt.cli``: the console script's entry point (torchrun starts training this way)."""

from . import main

main()
