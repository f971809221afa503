"""Self-describing model files: their metadata (:mod:`.info`), the one table of formats and a file's identity
(:mod:`.formats`), the proofs ``report.json`` records (:mod:`.proofs`), the OpenVINO IR reader and the Triton
model repository.

May import: core. Torch-free: the runtime reads every model file through here.
"""
