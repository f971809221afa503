"""Videos and data sets: reading frames (:mod:`.video`), data folders and splits (:mod:`.splits`), the clip
data set (:mod:`.datasets`), the frame cache (:mod:`.framecache`, :mod:`.cache`), UCF101 preparation
(:mod:`.prepare`), the synthetic set (:mod:`.synth`) and its real footage (:mod:`.footage`).

May import: core. Torch-free (the DataLoader's collate makes tensors in the trainer).
"""
