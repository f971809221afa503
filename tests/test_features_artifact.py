"""The features artifact: c3d.features.onnx gives fc6 and fc7 (after ReLU) beside the logits, proven layer by layer
against the eager model, read through ``Engine.layers``, and chosen only when a layer beyond the logits is asked for."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from c3d_rt.artifacts.formats import CHECKPOINT, FORMATS, format_of, layer_formats, read_artifact_info
from c3d_rt.artifacts.info import FEATURE_LAYERS, ArtifactInfo
from c3d_rt.core.errors import C3DError
from c3d_rt.data.datasets import VideoClipDataset
from c3d_rt.data.splits import load_data_split
from c3d_rt.engines import EngineError, EngineUnavailable, load_engine, open_engine, plans
from c3d_rt.engines.equivalence import judge, judge_layer
from c3d_rt.engines.pytorch import reference_engine
from c3d_rt.engines.resolve import resolve
from c3d_rt.export.inputs import random_clips, real_clips
from c3d_rt.export.job import export_checkpoint
from c3d_rt.export.report import result_line
from c3d_rt.export.verify import verify_artifact
from c3d_rt.model.c3d import build_c3d
from c3d_rt.model.checkpoint import load_checkpoint

QUIET = {"log": lambda _m: None}
FEATURES = FORMATS["onnx-features"].file


@pytest.fixture(scope="module")
def features_export(tiny_ckpt, tmp_path_factory):
    """(folder, report): the tiny checkpoint as c3d.onnx and c3d.features.onnx."""
    out = tmp_path_factory.mktemp("features")
    return out, export_checkpoint(tiny_ckpt, out, formats=["onnx", "onnx-features"], check_clips=20, **QUIET)


@pytest.fixture(scope="module")
def eager(tiny_ckpt, tiny_data):
    """(model, clips, its fc6/fc7/logits on them): 3 random clips and 4 held-out clips of the tiny data set."""
    ckpt = load_checkpoint(tiny_ckpt)
    model = ckpt.build_model()
    split = load_data_split(tiny_data)
    real, _ = real_clips(VideoClipDataset(split.root, split.val, split.classes, ckpt.preprocessing, train=False), 4)
    clips = np.concatenate([random_clips(model.config.input_shape)[1], real])
    with torch.inference_mode():
        outputs = model.forward_layers(torch.from_numpy(clips))
    layers = dict(zip((*FEATURE_LAYERS, "logits"), (t.numpy() for t in outputs)))
    return model, clips, layers


def test_forward_is_forward_layers_logits_with_relu_features():
    model = build_c3d(num_classes=5, width=0.125, crop_size=32)
    clip = torch.randn(2, 3, 16, 32, 32) * 50
    for train in (False, True):  # dropout draws in the same order: the same numbers in training too
        model.train(train)
        torch.manual_seed(3)
        logits = model(clip)
        torch.manual_seed(3)
        fc6, fc7, again = model.forward_layers(clip)
        assert torch.equal(logits, again)
        assert fc6.shape == (2, model.config.fc_width) and fc7.shape == (2, model.config.fc_width)
        assert (fc6 >= 0).all() and (fc7 >= 0).all() and (fc6 == 0).any()  # after ReLU


def test_the_features_file_is_proven_layer_by_layer(features_export):
    out, report = features_export
    result = {a.format: a for a in report.artifacts}["onnx-features"]
    assert result.status == "ok", result.reason
    assert set(result.layers) == set(FEATURE_LAYERS)
    for record in result.layers.values():
        assert record["status"] == "ok" and record["tolerance_used"] < 0.1 and record["min_cosine"] > 0.9999
    assert {a.format: a for a in report.artifacts}["onnx"].layers is None  # the logits file has none
    saved = {a["format"]: a for a in json.loads((out / "report.json").read_text())["artifacts"]}
    assert saved["onnx-features"]["layers"]["fc6"]["status"] == "ok"
    assert "fc6 max|d|" in result_line(result)
    info = read_artifact_info(out / FEATURES)
    assert info.outputs == ("fc6", "fc7", "logits") and read_artifact_info(out / "c3d.onnx").outputs == ("logits",)
    assert format_of(out / FEATURES) == "onnx-features" and format_of(out / "c3d.onnx") == "onnx"
    meta = {p.key: p.value for p in onnx.load(str(out / FEATURES), load_external_data=False).metadata_props}
    assert "after their ReLU" in json.loads(meta["features_note"])
    assert [o.name for o in onnx.load(str(out / FEATURES)).graph.output] == ["fc6", "fc7", "logits"]


def test_metadata_of_older_files_reads_as_logits_only(features_export):
    meta = read_artifact_info(features_export[0] / FEATURES).to_metadata()
    del meta["outputs"], meta["features_note"]
    assert ArtifactInfo.from_metadata(meta, "old.onnx").outputs == ("logits",)


@pytest.mark.parametrize("engine,options", [("ort", {}), ("openvino", {}), ("openvino", {"mode": "throughput"})])
def test_engine_layers_equal_the_eager_model(features_export, eager, engine, options):
    _, clips, expected = eager
    with load_engine(features_export[0], engine, "fp32", "cpu", layer="fc6", **options) as model:
        assert model.path.name == FEATURES and model.outputs == ("fc6", "fc7", "logits")
        got = model.layers(clips)
        assert list(got) == ["fc6", "fc7", "logits"]
        for name in got:
            assert got[name].dtype == np.float32 and got[name].shape == expected[name].shape
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=1e-4)
            if name in FEATURE_LAYERS:
                assert judge_layer(expected[name], got[name], name).ok and (got[name] >= 0).all()
        assert list(model.layers(clips[:1], "fc7")) == ["fc7"]  # one name, as a string
        assert judge(expected["logits"], model(clips), "fp32").ok  # the logits as ever
        with pytest.raises(EngineError, match="unknown layer 'fc8'; choose from fc6, fc7, logits"):
            model.layers(clips, ["fc8"])
        with pytest.raises(EngineError, match=r"expected clips as a float32 array"):
            model.layers(clips[:, :, :8], ["fc6"])


@pytest.mark.cuda
def test_ort_cuda_binds_every_output(features_export, eager):
    """The I/O-binding path (with CUDA graphs): one buffer set a batch size, every output bound."""
    _, clips, expected = eager
    with load_engine(features_export[0], "ort", "fp32", "cuda", layer="fc6") as model:
        for _ in range(2):  # the second call replays the captured graph
            got = model.layers(clips)
            for name in got:
                rule = judge_layer(expected[name], got[name], name) if name in FEATURE_LAYERS else \
                    judge(expected[name], got[name], "fp32")
                assert rule.ok, rule.reason
        assert judge(expected["logits"], model(clips), "fp32").ok and model.buffers_allocated == 1


def test_the_eager_engine_gives_every_layer(tiny_ckpt, eager):
    model, clips, expected = eager
    engine = reference_engine(load_checkpoint(tiny_ckpt), model)
    assert engine.outputs == ("fc6", "fc7", "logits")
    got = engine.layers(clips, ("fc6", "logits"))
    assert np.array_equal(got["fc6"], expected["fc6"]) and np.array_equal(got["logits"], expected["logits"])


def test_a_layer_picks_the_features_file_and_logits_keep_c3d_onnx(features_export, tiny_ckpt):
    folder = features_export[0]
    assert layer_formats("fc6") == ("onnx-features", CHECKPOINT)
    logits = {p.key: p.path.name for p in plans(folder)}
    fc6 = {p.key: p.path.name for p in plans(folder, layer="fc6")}
    assert logits["ort/fp32/cpu"] == "c3d.onnx" and logits["openvino/fp32/cpu"] == "c3d.onnx"
    assert fc6["ort/fp32/cpu"] == FEATURES and fc6["openvino/fp32/cpu"] == FEATURES
    assert set(fc6) <= {"ort/fp32/cpu", "ort/fp32/cuda", "openvino/fp32/cpu", "tensorrt/fp32/cuda"}
    with_ckpt = {p.key: p.fmt for p in plans(folder, checkpoint=tiny_ckpt, layer="fc7")}
    assert with_ckpt["torch/fp32/cpu"] == CHECKPOINT
    with load_engine(folder, "ort", "fp32", "cpu") as model:  # logits: c3d.onnx, as before
        assert model.path.name == "c3d.onnx" and model.outputs == ("logits",)
    with open_engine(folder, "auto", device="cpu", layer="fc6", **QUIET) as model:  # proven candidates only
        assert model.path.name == FEATURES and "fc6" in model.outputs
    with pytest.raises(EngineUnavailable, match="serves the logits only"):
        resolve(folder, "triton", "fp32", "cpu", layer="fc6")
    with pytest.raises(C3DError, match="unknown layer 'pool5'; choose from fc6, fc7, logits"):
        plans(folder, layer="pool5")


def test_a_file_without_the_layer_says_which_file_has_it(features_export, eager, tmp_path):
    folder = features_export[0]
    hint = (r"c3d.onnx \(ort/fp32/cpu\) gives logits, not fc6\. fc6 is an output of c3d.features.onnx "
            r"\(`c3d-rt export CKPT --formats onnx-features`")
    with load_engine(folder / "c3d.onnx", "ort", "fp32", "cpu") as model, pytest.raises(EngineUnavailable, match=hint):
        model.layers(eager[1], ["fc6"])
    with pytest.raises(EngineUnavailable, match=r"nothing for engine ort .* that gives fc7.*--formats onnx-features"):
        load_engine(folder / "c3d.onnx", "ort", "fp32", "cpu", layer="fc7")
    shutil.copy(folder / "c3d.onnx", tmp_path / "c3d.onnx")
    with pytest.raises(EngineUnavailable, match="holds nothing that gives fc6 for auto.*--formats onnx-features"):
        open_engine(tmp_path, "auto", device="cpu", layer="fc6", **QUIET)


def _tampered(folder, tmp_path, edit) -> object:
    """A copy of the export folder whose features file was edited by ``edit(proto)`` (and re-saved)."""
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    proto = onnx.load(str(copy / FEATURES))
    edit(proto.graph)
    onnx.save(proto, str(copy / FEATURES))
    return copy / FEATURES


def _scale_fc6_weight(graph) -> None:
    weight = next(t for t in graph.initializer if t.name.endswith("fc6.weight"))
    weight.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(weight) * 1.01, weight.name))


def _fc6_before_relu(graph) -> None:
    """fc6 taken before its ReLU (the logits unchanged): the mistake the layer check exists for."""
    relu = next(n for n in graph.node if n.op_type == "Relu" and list(n.output) == ["fc6"])
    relu.output[0] = "fc6_relu"
    for node in graph.node:
        node.input[:] = ["fc6_relu" if name == "fc6" else name for name in node.input]
    graph.node.append(onnx.helper.make_node("Identity", [relu.input[0]], ["fc6"]))


def test_a_tampered_features_file_is_refused(features_export, tmp_path):
    path = _tampered(features_export[0], tmp_path / "weight", _scale_fc6_weight)
    result = verify_artifact(path, check_clips=20)
    assert result.status == "FAILED" and result.layers["fc6"]["status"] == "FAILED"
    assert "fc6 differs beyond atol" in result.reason
    saved = json.loads((path.parent / "report.json").read_text())["artifacts"]
    assert next(a for a in saved if a["file"].endswith(FEATURES))["status"] == "FAILED"


def test_fc6_before_relu_is_refused_though_its_logits_agree(features_export, tmp_path):
    path = _tampered(features_export[0], tmp_path / "relu", _fc6_before_relu)
    result = verify_artifact(path, check_clips=20)
    assert result.max_abs_err < 1e-4  # the logits alone would have passed
    assert result.status == "FAILED" and result.layers["fc6"]["status"] == "FAILED"
    assert result.layers["fc7"]["status"] == "ok" and "fc7" not in result.reason


def test_the_layer_rule_judges_by_the_row_scale():
    reference = np.array([[100.0, 0.01, 0.0, 3.0]], np.float32)
    near_zero = np.array([[100.00005, 0.0101, 2e-5, 3.0]], np.float32)  # float noise on values near zero
    assert not judge(reference, near_zero, "fp32").ok  # the per-value rule cannot hold there
    verdict = judge_layer(reference, near_zero, "fc6")
    assert verdict.ok and verdict.min_cosine > 0.999999 and verdict.record()["status"] == "ok"
    wrong = np.array([[100.2, 0.01, 0.0, 3.0]], np.float32)  # 0.2% of the row's scale
    verdict = judge_layer(reference, wrong, "fc6")
    assert not verdict.ok and "1 of 4 values" in verdict.reason and verdict.tolerance_used > 1
    assert not judge_layer(reference, near_zero[:, :3], "fc6").ok  # a shape that differs
