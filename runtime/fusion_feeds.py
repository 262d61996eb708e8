"""The fusion head's inputs from per-modality embeddings: the one builder the runtime's fusion stage,
calibration, evaluation and benchmarks share. A modality without embeddings is fed zeros with
presence 0, exactly as the pipeline fuses a missing or stale modality."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from fusionrt.bundle import PRESENCE, Bundle
from fusionrt.errors import BundleError


def fusion_feeds(
    modalities: Sequence[str],
    widths: Mapping[str, int],
    embeddings: Mapping[str, np.ndarray | None],
    *,
    count: int | None = None,
    presence: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """{modality: float32 [N, E] for each of `modalities` in order, presence: float32 [N, M]}.

    `embeddings[m]` is [N, E] (or [E] for one row); absent or None means the modality is missing.
    `presence` ([N, M], optional) masks rows further: a masked row's embedding is zeroed.
    `count` is N when no embedding is given.
    """
    given = {}
    for modality, vector in embeddings.items():  # a loop, not np.shape(): the pipeline calls this per result
        if vector is not None:
            vector = np.asarray(vector, np.float32)
            given[modality] = vector.reshape(-1, vector.shape[-1])
    rows = {len(v) for v in given.values()}
    if count is not None:
        rows.add(count)
    if presence is not None:
        rows.add(len(presence))
    if len(rows) != 1:
        raise BundleError(f"fusion feeds: embeddings disagree on the number of rows ({sorted(rows)}) or none is given")
    n = rows.pop()
    mask = np.zeros((n, len(modalities)), np.float32)
    feeds = {}
    for i, modality in enumerate(modalities):
        vector = given.get(modality)
        if vector is None:
            feeds[modality] = np.zeros((n, widths[modality]), np.float32)
            continue
        mask[:, i] = 1.0
        feeds[modality] = vector
    if presence is not None:
        mask *= np.asarray(presence, np.float32)
        for i, modality in enumerate(modalities):
            if modality in given and not mask[:, i].all():
                feeds[modality] = feeds[modality] * mask[:, i : i + 1]
    feeds[PRESENCE] = mask
    return feeds


def bundle_fusion_feeds(bundle: Bundle, embeddings: Mapping[str, np.ndarray | None], **options) -> dict[str, np.ndarray]:
    """`fusion_feeds` with the bundle's modality order and embedding widths."""
    widths = {m: bundle.embedding_dim(m) for m in bundle.modalities if embeddings.get(m) is None}
    return fusion_feeds(bundle.modalities, widths, embeddings, **options)
