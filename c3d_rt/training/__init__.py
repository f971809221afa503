"""The trainer: recipes, the epoch loop, distributed runs, resuming, TensorBoard, run folders, and ``fit`` that
wires them; ``eval`` (:mod:`.evaluation`).

May import: core, data, model. Needs torch, except :mod:`.runfolder` (the CLI checks ``--out`` without it).
"""
