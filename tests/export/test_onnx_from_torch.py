import numpy as np
import onnx
import pytest
import torch
from export_modules import (
    DataDependentBranch,
    MaskedMeanEmbedding,
    SymmetricEigenvalues,
    TinyConvEncoder,
    TinyFusion,
    TinyMLP,
    fusion_inputs,
    image_inputs,
    token_inputs,
)

from fusionrt.errors import ExportError
from fusionrt.export import Tolerance, export_component
from fusionrt.runtime.engine import OrtEngine

SEQUENCE_AXES = {"input_ids": {1: "sequence"}, "attention_mask": {1: "sequence"}}


def test_conv_encoder_round_trip_with_parity_report(tmp_path):
    module = TinyConvEncoder()
    example = image_inputs()
    report = export_component(module, example, tmp_path / "image_encoder.fp32.onnx", output_names=["embedding"])

    assert report.name == "image_encoder"
    assert (report.exporter, report.fallback_reason, report.opset) == ("dynamo", None, 17)
    assert [(s.name, s.dtype, s.shape) for s in report.inputs] == [("image", "uint8", ("batch", 16, 16, 3))]
    assert [(s.name, s.dtype, s.shape) for s in report.outputs] == [("embedding", "float32", ("batch", 8))]
    fp32 = report.variants["fp32"]
    assert fp32.optimization == "basic"
    assert fp32.parity.inputs == 9  # the example and 8 generated input sets
    (embedding,) = fp32.parity.outputs
    assert embedding.cosine > 0.99999 and embedding.max_abs < 1e-4
    assert report.export_parity.outputs[0].cosine > 0.99999

    model = onnx.load(fp32.path)
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import} == {"ai.onnx": 17}
    assert model.ir_version == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image_encoder.fp32.onnx"]  # no temporaries left

    batch = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8)
    with torch.no_grad():
        expected = module.eval()(batch).numpy()
    got = OrtEngine(fp32.path).run({"image": batch.numpy()})["embedding"]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_dynamic_batch_and_sequence_run_in_onnxruntime(tmp_path):
    module = MaskedMeanEmbedding()
    path = tmp_path / "text_encoder.fp32.onnx"
    report = export_component(module, token_inputs(), path, dynamic_axes=SEQUENCE_AXES)
    assert [s.shape for s in report.inputs] == [("batch", "sequence"), ("batch", "sequence")]

    ids = torch.randint(0, 40, (3, 7))
    mask = torch.tensor([[1] * 7, [1] * 3 + [0] * 4, [1] + [0] * 6])
    with torch.no_grad():
        expected = module(ids, mask).numpy()
    got = OrtEngine(path).run({"input_ids": ids.numpy(), "attention_mask": mask.numpy()})["output"]
    assert got.shape == (3, 8)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_fusion_with_varargs_forward_and_mlp(tmp_path):
    modalities = ("text", "image", "audio")
    report = export_component(
        TinyFusion(modalities), fusion_inputs(modalities), tmp_path / "fusion.fp32.onnx", output_names=["logits"]
    )
    assert [s.name for s in report.inputs] == ["text", "image", "audio", "presence"]
    assert report.outputs[0].shape == ("batch", 4)
    assert report.variants["fp32"].parity.outputs[0].argmax_agreement == 1.0

    mlp = export_component(TinyMLP(), {"x": torch.randn(2, 12)}, tmp_path / "mlp.fp32.onnx")
    assert mlp.exporter == "dynamo" and mlp.variants["fp32"].parity.worst_cosine > 0.99999


class PadSplitConcat(torch.nn.Module):
    """Reflect padding, a chunk into halves and a max: Pad, Split and ReduceMax, which change in opset 18."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 8)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        padded = torch.nn.functional.pad(audio.unsqueeze(1), (4, 4), mode="reflect").squeeze(1)
        a, b = self.linear(padded[:, :8]).chunk(2, dim=-1)
        return torch.cat([a * b, padded.amax(-1, keepdim=True)], -1)


def test_opset_18_ops_are_lowered_so_dynamo_output_stays_at_17(tmp_path):
    report = export_component(PadSplitConcat(), {"audio": torch.randn(2, 40)}, tmp_path / "audio_encoder.fp32.onnx")
    assert (report.exporter, report.opset) == ("dynamo", 17)
    ops = {n.op_type for n in onnx.load(report.variants["fp32"].path).graph.node}
    assert {"Pad", "Split", "ReduceMax"} <= ops
    assert report.variants["fp32"].parity.worst_max_abs < 1e-5


def test_dynamo_failure_falls_back_to_torchscript_and_says_why(tmp_path):
    report = export_component(DataDependentBranch(), {"x": torch.randn(2, 5)}, tmp_path / "branchy.fp32.onnx")
    assert report.exporter == "torchscript"
    assert "data-dependent" in report.fallback_reason
    assert "GuardOnDataDependentSymNode" in report.fallback_reason
    assert any(w.startswith("TracerWarning") for w in report.warnings)
    assert report.variants["fp32"].parity.worst_max_abs < 1e-6
    assert onnx.load(report.variants["fp32"].path).opset_import[0].version == 17


def test_opset_below_17_uses_torchscript(tmp_path):
    report = export_component(TinyMLP(), {"x": torch.randn(2, 12)}, tmp_path / "mlp.fp32.onnx", opset=16)
    assert report.exporter == "torchscript"
    assert "lowers it to 17 at most; requested 16" in report.fallback_reason
    model = onnx.load(report.variants["fp32"].path)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [16]


def test_op_neither_exporter_supports_is_named(tmp_path):
    path = tmp_path / "eig.fp32.onnx"
    with pytest.raises(ExportError) as caught:
        export_component(SymmetricEigenvalues(), {"x": torch.randn(2, 4, 4)}, path)
    message = str(caught.value)
    assert "eig.fp32.onnx" in message
    assert "op aten._linalg_eigh" in message
    assert "node %_linalg_eigh" in message
    assert "dynamo exporter: DispatchError" in message
    assert "torchscript exporter: UnsupportedOperatorError: Exporting the operator 'aten::linalg_eigh'" in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_parity_failure_names_the_output_and_figures(tmp_path):
    tolerance = Tolerance(cosine=0.9999, max_abs=0.0)
    with pytest.raises(ExportError) as caught:
        export_component(
            TinyMLP(), {"x": torch.randn(2, 12)}, tmp_path / "head.fp32.onnx",
            output_names=["scores"], tolerance=tolerance,
        )  # fmt: skip
    message = str(caught.value)
    assert "output 'scores' diverges from PyTorch" in message
    assert "max abs err" in message and "(max 0)" in message and "cosine 1.000000" in message
    assert not (tmp_path / "head.fp32.onnx").exists()


def test_bad_arguments_are_reported(tmp_path):
    with pytest.raises(ExportError, match="dynamic_axes names 'ids'"):
        export_component(MaskedMeanEmbedding(), token_inputs(), tmp_path / "t.onnx", dynamic_axes={"ids": {1: "s"}})
    with pytest.raises(ExportError, match="output_names has 2 names but forward\\(\\) returns 1"):
        export_component(TinyMLP(), {"x": torch.randn(2, 12)}, tmp_path / "m.onnx", output_names=["a", "b"])
    with pytest.raises(ExportError, match="expected str names and torch tensors"):
        export_component(TinyMLP(), {"x": np.zeros((2, 12))}, tmp_path / "m.onnx")


def test_module_training_mode_is_restored(tmp_path):
    module = TinyConvEncoder().train()
    export_component(module, image_inputs(batch=2), tmp_path / "image_encoder.fp32.onnx")
    assert module.training


class NeedsLongSequences(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] < 4:
            raise ValueError(f"sequence of {x.shape[1]} is too short")
        return x.mean(1)


def test_pytorch_failing_on_a_generated_input_is_reported(tmp_path):
    with pytest.raises(ExportError) as caught:
        export_component(NeedsLongSequences(), {"x": torch.randn(2, 6)}, tmp_path / "m.onnx", dynamic_axes={"x": {1: "t"}})
    message = str(caught.value)
    assert message.startswith("m: PyTorch forward() failed on generated input set")
    assert "ValueError: sequence of" in message and "batch 1..3, others 1..max(example size, 8)" in message
