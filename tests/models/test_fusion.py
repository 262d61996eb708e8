from __future__ import annotations

import pytest
import torch

from fusionrt.config import FusionConfig, FusionKind
from fusionrt.errors import ModelError
from fusionrt.models import LateFusion, build_fusion

MODALITIES = ("text", "image", "audio")
KINDS = list(FusionKind)


def _head(kind: FusionKind, num_outputs: int = 5):
    torch.manual_seed(0)
    return build_fusion(FusionConfig(kind=kind, hidden=16, heads=2), MODALITIES, 8, num_outputs).eval()


def _inputs(batch: int = 6):
    g = torch.Generator().manual_seed(1)
    embeddings = [torch.randn(batch, 8, generator=g) for _ in MODALITIES]
    presence = torch.tensor([[1, 1, 1], [0, 1, 1], [1, 0, 1], [1, 1, 0], [0, 0, 1], [0, 1, 0]], dtype=torch.float32)
    return embeddings, presence[:batch]


@pytest.mark.parametrize("kind", KINDS)
def test_missing_modality_embedding_does_not_change_the_output(kind):
    head = _head(kind)
    embeddings, presence = _inputs()
    with torch.no_grad():
        out = head(*embeddings, presence)
        for i in range(len(MODALITIES)):
            changed = list(embeddings)
            changed[i] = 100.0 * torch.randn_like(changed[i])
            new = head(*changed, presence)
            missing = presence[:, i] == 0
            torch.testing.assert_close(new[missing], out[missing], atol=1e-6, rtol=1e-6)
            assert not torch.allclose(new[~missing], out[~missing])  # a present modality does matter


@pytest.mark.parametrize("kind", KINDS)
def test_all_missing_gives_finite_outputs(kind):
    head = _head(kind)
    embeddings, _ = _inputs(batch=2)
    with torch.no_grad():
        out = head(*embeddings, torch.zeros(2, 3))
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_every_parameter(kind):
    head = _head(kind).train()
    embeddings, _ = _inputs()
    head(*embeddings, torch.ones(6, 3)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_late_fusion_with_one_modality_is_that_modality_head():
    head = _head(FusionKind.LATE)
    assert isinstance(head, LateFusion)
    embeddings, _ = _inputs(batch=1)
    with torch.no_grad():
        out = head(*embeddings, torch.tensor([[0.0, 1.0, 0.0]]))
        torch.testing.assert_close(out, head.heads["image"](embeddings[1]))


def test_wrong_number_of_inputs_is_an_error():
    head = _head(FusionKind.EARLY)
    embeddings, presence = _inputs()
    with pytest.raises(ModelError, match="expects 3 embeddings"):
        head(*embeddings[:2], presence)


def test_heads_must_divide_hidden():
    with pytest.raises(ModelError, match="divisible"):
        build_fusion(FusionConfig(kind=FusionKind.CROSS_ATTENTION, hidden=10, heads=4), MODALITIES, 8, 3)


@pytest.mark.parametrize("kind", KINDS)
def test_example_inputs_follow_the_modality_order(kind):
    head = build_fusion(FusionConfig(kind=kind, hidden=16, heads=2), ("audio", "text"), 8, 1)
    example = head.example_inputs(batch=4)
    assert list(example) == ["audio", "text", "presence"]
    assert example["audio"].shape == (4, 8) and torch.equal(example["presence"], torch.ones(4, 2))
    with torch.no_grad():
        assert head.eval()(*example.values()).shape == (4, 1)  # regression: one raw output


@pytest.mark.parametrize("kind", KINDS)
def test_exports_to_onnx(kind, onnx_parity):
    embeddings, presence = _inputs()
    check = {**dict(zip(MODALITIES, embeddings)), "presence": presence}
    assert onnx_parity(_head(kind), output_name="logits", check=check) < 1e-3
