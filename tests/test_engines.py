"""The engine layer: every engine x precision x device in the registry honours one contract; auto picks and caches."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from c3d_rt.core.machine import cpu_has_bf16
from c3d_rt.data.datasets import VideoClipDataset
from c3d_rt.data.splits import load_data_split
from c3d_rt.engines import ENGINES, EngineError, EngineUnavailable, choose, load_engine
from c3d_rt.engines.equivalence import judge
from c3d_rt.engines.pytorch import reference_engine
from c3d_rt.engines.registry import missing_library
from c3d_rt.engines.resolve import resolve
from c3d_rt.export.inputs import real_clips
from c3d_rt.model.checkpoint import load_checkpoint
from c3d_rt.runtime import RunSettings, run_live

QUIET = dict(log=lambda _m: None)
EVERY_ENGINE = [pytest.param(e, p, d, id=f"{e}-{p}-{d}", marks=[pytest.mark.cuda] if d == "cuda" else [])
                for e, spec in ENGINES.items() for p in spec.formats for d in spec.devices]


@pytest.fixture(scope="module")
def held_out_clips(tiny_data, tiny_ckpt):
    split = load_data_split(tiny_data)
    prep = load_checkpoint(tiny_ckpt).preprocessing
    clips, _ = real_clips(VideoClipDataset(split.root, split.val, split.classes, prep, train=False), 4)
    return clips  # (4, 3, 16, 32, 32): real clips, where reduced precisions must keep top-1


@pytest.fixture(scope="module")
def reference(tiny_ckpt):
    ckpt = load_checkpoint(tiny_ckpt)
    return reference_engine(ckpt, ckpt.build_model())


@pytest.fixture(scope="module")
def contract_export(tiny_decided, tmp_path_factory):
    """(folder, checkpoint, held-out clips, reference engine): the decided tiny model exported in every default
    format on its own long videos, so that the reduced precisions are proven and written (the undecided tiny
    export's are refused for too little evidence) and each engine's contract is checked on them."""
    from c3d_rt.export.job import export_checkpoint

    ckpt_path, data = tiny_decided
    out = tmp_path_factory.mktemp("contract")
    export_checkpoint(ckpt_path, out, calib=data, calib_clips=8, log=lambda _m: None)
    ckpt = load_checkpoint(ckpt_path)
    split = load_data_split(data)
    clips, _ = real_clips(VideoClipDataset(split.root, split.val, split.classes, ckpt.preprocessing, train=False), 4)
    return out, ckpt_path, clips, reference_engine(ckpt, ckpt.build_model())


@pytest.mark.parametrize("engine,precision,device", EVERY_ENGINE)
def test_engine_contract(engine, precision, device, contract_export):
    folder, ckpt_path, held_out_clips, reference = contract_export
    try:
        model = load_engine(folder, engine, precision, device, checkpoint=ckpt_path)
    except EngineUnavailable as exc:
        pytest.skip(str(exc))
    ckpt = load_checkpoint(ckpt_path)
    with model:
        assert model.key == f"{engine}/{precision}/{device}"
        assert model.labels == ckpt.labels and model.info.preprocessing == ckpt.preprocessing
        assert model.input_shape == (3, 16, 32, 32)
        model.warmup()
        for batch in (held_out_clips[:1], held_out_clips[1:4]):  # batch 1 and 3
            logits = model(batch)
            assert logits.shape == (len(batch), 9) and logits.dtype == np.float32
            verdict = judge(reference(batch), logits, precision)
            assert verdict.ok, verdict.reason
        with pytest.raises(EngineError, match=r"expected clips as a float32 array \(B, 3, 16, 32, 32\)"):
            model(np.zeros((1, 3, 8, 32, 32), np.float32))
        with pytest.raises(EngineError, match="expected float32 clips"):
            model(np.zeros((1, 3, 16, 32, 32), np.uint8))


def test_what_cannot_run_says_what_can_and_what_to_install(tiny_export):
    folder = tiny_export[0]
    with pytest.raises(EngineError, match="unknown engine 'tflite'; choose auto or one of torch, torchscript, torch-export, aoti, ort"):
        resolve(folder, "tflite")
    with pytest.raises(EngineUnavailable, match=r"nothing for engine torchscript at precision int8 .*Available here: "
                                                r".*ort/fp32/cpu"):
        resolve(folder, "torchscript", "int8", "cpu")
    with pytest.raises(EngineUnavailable, match="engine openvino runs on cpu only, not cuda"):
        resolve(folder, "openvino", "fp32", "cuda")
    absent = dataclasses.replace(ENGINES["openvino"], library="no_such_runtime_xyz")
    assert missing_library(absent) == "no_such_runtime_xyz is not installed (pip install 'c3d-rt[openvino]')"


def test_device_cuda_without_a_gpu_is_an_error_not_a_fallback(tiny_export):
    from c3d_rt.engines.registry import gpu_available

    if gpu_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(EngineUnavailable, match="no usable NVIDIA GPU here"):
        load_engine(tiny_export[0], "ort", "fp32", "cuda")
    with pytest.raises(EngineUnavailable, match="--device cuda: no usable NVIDIA GPU"):
        choose(tiny_export[0], "cuda", **QUIET)


def test_auto_times_proven_engines_takes_the_fastest_and_caches_it(tiny_export, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    engine, choice = choose(tiny_export[0], "cpu", **QUIET)
    with engine:
        timed = [t for t in choice.trials if t.p50_ms is not None]
        assert len(timed) >= 4 and not choice.cached
        assert choice.chosen == engine.key == min(timed, key=lambda t: t.p50_ms).key
        assert all(t.reason for t in choice.trials if t.status == "skipped")
    cache = tmp_path / "cache" / "c3d-rt" / "auto.json"
    assert cache.is_file()
    again, second = choose(tiny_export[0], "cpu", **QUIET)
    again.close()
    assert second.cached and second.chosen == choice.chosen
    cache.write_text("{not json")  # a corrupt cache is ignored and rebuilt
    rebuilt, third = choose(tiny_export[0], "cpu", **QUIET)
    rebuilt.close()
    assert not third.cached and json.loads(cache.read_text())


def test_auto_only_takes_what_the_exporter_proved(tiny_export, tiny_ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "export"
    shutil.copytree(tiny_export[0], folder)
    report = json.loads((folder / "report.json").read_text())
    report["artifacts"] = [a for a in report["artifacts"] if a["format"] == "onnx"]  # only c3d.onnx proven,
    report["proofs"] = []  # and no precision a runtime lowers to (the exporter proves bf16 on CPUs that have it)
    (folder / "report.json").write_text(json.dumps(report))
    engine, choice = choose(folder, "cpu", checkpoint=tiny_ckpt, **QUIET)  # named: its eager engines are candidates
    engine.close()
    timed = {t.key for t in choice.trials if t.p50_ms is not None}
    assert timed <= {"ort/fp32/cpu", "openvino/fp32/cpu", "torch/fp32/cpu"}
    skipped = {t.key: t.reason for t in choice.trials if t.status == "skipped"}
    assert "report.json beside it has no passing check of c3d.ts" in skipped["torchscript/fp32/cpu"]
    if cpu_has_bf16():  # bf16 runs here, and autocast without a recorded check of it is not taken
        assert "lowers last.pt to bf16 itself, and no check of that is recorded" in skipped["torch/bf16/cpu"]


@pytest.mark.parametrize("engine,precision", [("openvino", "fp32"), ("torch", "fp32")])  # the tiny int8 is refused
def test_live_recognizer_runs_on_other_engines(tiny_export, tiny_ckpt, engine, precision):
    if engine == "openvino":
        pytest.importorskip("openvino", reason="OpenVINO is not installed (the openvino extra)")
    model = tiny_ckpt if engine == "torch" else tiny_export[0]  # a folder runs only its files: torch is named
    summary = run_live(model, "synthetic@200", RunSettings(show=False, max_frames=60), engine=engine,
                       precision=precision, **QUIET)
    assert summary.engine == f"{engine}/{precision}/cpu" and summary.predictions > 0 and summary.frames_read == 60


# --- GPU (run whenever a GPU machine is available: tools/gpu-check.sh) ---------------------------------------


@pytest.mark.cuda
def test_ort_cuda_binds_each_batch_size_once(tiny_export, held_out_clips):
    with load_engine(tiny_export[0], "ort", "fp32", "cuda") as model:
        for _ in range(3):
            model(held_out_clips[:1])
            model(held_out_clips[:3])
        assert model.buffers_allocated == 2 and "I/O binding" in model.detail


@pytest.mark.cuda
def test_ort_cuda_graphs_replay_the_same_logits(tiny_export, held_out_clips):
    with load_engine(tiny_export[0], "ort", "fp32", "cuda", cuda_graph=True) as graphs, \
            load_engine(tiny_export[0], "ort", "fp32", "cuda", cuda_graph=False) as plain:
        assert graphs.cuda_graph, graphs.detail
        for _ in range(3):  # capture, then replays
            np.testing.assert_allclose(graphs(held_out_clips[:3]), plain(held_out_clips[:3]), rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_torch_cuda_reduced_precision_and_compile(tiny_export, tiny_ckpt, held_out_clips, reference, precision):
    for compile_ in (False, True):
        with load_engine(tiny_export[0], "torch", precision, "cuda", checkpoint=tiny_ckpt, compile=compile_) as m:
            verdict = judge(reference(held_out_clips), m(held_out_clips), precision)
            assert verdict.ok, verdict.reason


@pytest.mark.cuda
def test_tensorrt_fp32_and_fp16_where_installed(tiny_export, held_out_clips, reference):
    for precision in ("fp32", "fp16"):
        try:
            model = load_engine(tiny_export[0], "tensorrt", precision, "cuda")
        except EngineUnavailable as exc:
            pytest.skip(f"TensorRT is not usable here: {exc}")
        with model:
            verdict = judge(reference(held_out_clips), model(held_out_clips), precision)
            assert verdict.ok, verdict.reason


def test_a_file_changed_after_its_proof_is_not_proven_until_verified(tiny_export, tmp_path, monkeypatch):
    import onnx

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "export"
    shutil.copytree(tiny_export[0], folder)
    model = onnx.load(str(folder / "c3d.onnx"))
    fc8 = next(t for t in model.graph.initializer if "fc8" in t.name and "weight" in t.name)
    fc8.CopyFrom(onnx.numpy_helper.from_array(np.ascontiguousarray(onnx.numpy_helper.to_array(fc8)[::-1]), fc8.name))
    onnx.save(model, str(folder / "c3d.onnx"))  # same metadata, different weights
    engine, choice = choose(folder, "cpu", **QUIET)
    engine.close()
    skipped = {t.key: t.reason for t in choice.trials if t.status == "skipped"}
    assert "no passing check of c3d.onnx as it is now" in skipped["ort/fp32/cpu"]
    from c3d_rt.export.verify import verify_artifact

    result = verify_artifact(folder / "c3d.onnx", check_clips=8)
    assert result.status == "FAILED"
    recorded = {a["format"]: a for a in json.loads((folder / "report.json").read_text())["artifacts"]}
    assert recorded["onnx"]["status"] == "FAILED" and recorded["onnx"]["sha256"]


def test_verify_with_an_engine_records_its_proof(tiny_export, tmp_path, monkeypatch):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (the openvino extra)")
    from c3d_rt.export.verify import verify_artifact

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "export"
    shutil.copytree(tiny_export[0], folder)
    result = verify_artifact(folder / "c3d.onnx", engine="openvino", precision="fp32", check_clips=8)
    assert result.status == "ok" and result.max_abs_err < 1e-3
    recorded = {a["format"]: a for a in json.loads((folder / "report.json").read_text())["artifacts"]}
    assert recorded["onnx"]["sha256"] == result.sha256 and recorded["onnx"]["status"] == "ok"


def test_an_unwritable_cache_costs_time_not_the_run(tiny_export, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", "/dev/null/not-a-folder")
    engine, choice = choose(tiny_export[0], "cpu", **QUIET)
    engine.close()
    assert choice.chosen and not choice.cached


def test_a_graph_that_disagrees_with_its_metadata_is_refused_at_load(tiny_export, tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (the openvino extra)")
    from c3d_rt.artifacts.info import ArtifactError, read_onnx_info
    from c3d_rt.core.config import ModelConfig
    from c3d_rt.export.openvino import write_openvino_ir

    info = read_onnx_info(tiny_export[0] / "c3d.onnx")
    wrong = dataclasses.replace(info, model_config=ModelConfig(**{**info.model_config.to_dict(), "crop_size": 48}))
    write_openvino_ir(tiny_export[0] / "c3d.onnx", wrong, tmp_path / "wrong.xml")
    with pytest.raises(ArtifactError, match=r"metadata says clips of \(B, 3, 16, 48, 48\) but the graph takes"):
        load_engine(tmp_path / "wrong.xml", "openvino", "fp32", "cpu")


def test_a_closed_engine_says_so(tiny_export, held_out_clips):
    model = load_engine(tiny_export[0], "ort", "fp32", "cpu")
    model.close()
    with pytest.raises(EngineError, match="was closed; load it again"):
        model(held_out_clips[:1])
