"""configs/seed.yaml scaled down for tests: the same block types, [CLS] pooling, MFCC front-end,
early fusion and binary task, at sizes that train in seconds. Every entry is a `--set` override."""

from pathlib import Path

SEED_CONFIG = Path(__file__).parents[2] / "configs" / "seed.yaml"

SEED_SMALL = (
    "model.embed_dim=16",
    "model.text={pooling: cls, max_length: 16, hidden_size: 32, num_layers: 2, num_heads: 2, intermediate_size: 64}",
    "model.image.size=32",
    "model.image.widths=[4, 8, 8, 8]",
    "model.image.blocks_per_stage=[1, 2, 1, 1]",
    "model.audio.widths=[8, 8]",
    "model.audio.n_mels=20",
    "model.audio.n_mfcc=12",
    "model.fusion.hidden=32",
    "model.fusion.heads=4",
    "data={train_size: 240, val_size: 60, test_size: 60}",
    "train={epochs: 2, batch_size: 32, lr: 0.003, threads: 1}",
)

CROSS_ATTENTION = "model.fusion.kind=cross_attention"
