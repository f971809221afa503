"""The network: C3D (:mod:`.c3d`) and its checkpoints (:mod:`.checkpoint`: ours, the reference trainer's and
Sports-1M weights).

May import: core. Needs torch.
"""
