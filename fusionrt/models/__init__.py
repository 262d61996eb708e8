"""Reference multimodal models (torch): modality encoders, fusion heads, decision head."""

from fusionrt.models.audio import AudioEncoder, SpectralFrontend, dct_matrix, mel_filterbank
from fusionrt.models.fusion import (
    CrossAttentionFusion,
    EarlyFusion,
    FusionHead,
    LateFusion,
    build_fusion,
)
from fusionrt.models.image import ImageEncoder
from fusionrt.models.multimodal import MultimodalModel, build_encoder
from fusionrt.models.text import (
    SUPPORTED_MODEL_TYPES,
    TextEncoder,
    build_text_encoder,
    build_tokenizer,
    demo_vocabulary,
)

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "AudioEncoder",
    "CrossAttentionFusion",
    "EarlyFusion",
    "FusionHead",
    "ImageEncoder",
    "LateFusion",
    "MultimodalModel",
    "SpectralFrontend",
    "TextEncoder",
    "build_encoder",
    "build_fusion",
    "build_text_encoder",
    "build_tokenizer",
    "dct_matrix",
    "demo_vocabulary",
    "mel_filterbank",
]
