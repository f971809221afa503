"""Export: one module per writer (:mod:`.torch_formats`, :mod:`.onnx`, :mod:`.openvino`), what each file is
checked on (:mod:`.inputs`), the proof (:mod:`.proof`), ``report.json`` (:mod:`.report`), the whole job
(:mod:`.job`) and ``verify`` (:mod:`.verify`).

May import: core, artifacts, data, model, engines. Needs torch, except :mod:`.inputs` (the bench uses it).
"""
