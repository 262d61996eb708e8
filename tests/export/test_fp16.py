import numpy as np
import onnx
import pytest
import torch
from export_modules import MaskedMeanEmbedding, TinyConvEncoder, image_inputs, token_inputs

from fusionrt.errors import ExportError
from fusionrt.export import Tolerance, add_fp16_variant, export_component
from fusionrt.runtime.engine import OrtEngine


def test_fp16_variant_keeps_fp32_io_and_reports_parity(tmp_path):
    module, example = TinyConvEncoder(), image_inputs()
    report = export_component(module, example, tmp_path / "image_encoder.fp32.onnx", output_names=["embedding"])
    report = add_fp16_variant(report, module, example, tmp_path / "image_encoder.fp16.onnx")

    fp16 = report.variants["fp16"]
    assert fp16.precision == "fp16" and fp16.parity.inputs == 9
    assert fp16.parity.worst_cosine >= 0.999 and fp16.parity.worst_max_abs > 0  # weights really are fp16
    assert fp16.parity.min_cosine == 0.999 and fp16.parity.max_abs_limit is None
    model = onnx.load(fp16.path)
    onnx.checker.check_model(model, full_check=True)
    weights = {i.name: i.data_type for i in model.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in weights.values()
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [onnx.TensorProto.UINT8]
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [onnx.TensorProto.FLOAT]

    batch = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8)
    with torch.no_grad():
        expected = module.eval()(batch).numpy()
    got = OrtEngine(fp16.path).run({"image": batch.numpy()})["embedding"]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=5e-3)
    assert "fp32" in report.variants and sorted(p.name for p in tmp_path.iterdir()) == [
        "image_encoder.fp16.onnx", "image_encoder.fp32.onnx",
    ]  # fmt: skip


def test_fp16_keeps_ops_without_fp16_schema_in_fp32_and_records_them(tmp_path):
    module, example = MaskedMeanEmbedding(), token_inputs()
    axes = {"input_ids": {1: "sequence"}, "attention_mask": {1: "sequence"}}
    report = export_component(module, example, tmp_path / "text_encoder.fp32.onnx", dynamic_axes=axes)
    report = add_fp16_variant(report, module, example, tmp_path / "text_encoder.fp16.onnx")
    assert report.variants["fp16"].fp32_ops == ("Max",)  # torch.maximum -> Max, kept in fp32 by the default block list
    assert report.to_json()["variants"]["fp16"]["fp32_ops"] == ["Max"]
    ids, mask = np.ones((3, 7), dtype=np.int64), np.ones((3, 7), dtype=np.int64)
    assert OrtEngine(report.variants["fp16"].path).run({"input_ids": ids, "attention_mask": mask})["output"].shape == (3, 8)


def test_fp16_parity_failure_names_the_output(tmp_path):
    module, example = TinyConvEncoder(), image_inputs()
    report = export_component(module, example, tmp_path / "image_encoder.fp32.onnx", output_names=["embedding"])
    strict = Tolerance(fp16_cosine=1.0, fp16_max_abs=0.0)
    with pytest.raises(ExportError, match="image_encoder.fp16.onnx \\(fp16, fp32 IO\\): output 'embedding' diverges"):
        add_fp16_variant(report, module, example, tmp_path / "image_encoder.fp16.onnx", tolerance=strict)
    assert not (tmp_path / "image_encoder.fp16.onnx").exists()
