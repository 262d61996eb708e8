"""`check_bundle`: the whole runtime contract of a bundle, checked the way `realtime-infer` builds it.

Loading a bundle checks the manifest and the hashes; it never opens a model file. A bundle whose
files were swapped or corrupted and then rehashed loads fine and fails only when the runtime opens
it. `check_bundle` opens every variant of every component in ONNX Runtime (CPU provider), checks
the model's IO against the manifest (`check_engine_io`), builds each encoder's host preprocessor
(the tokenizer loads and tokenizes), runs one inference per variant through the same stages the
pipeline uses (embedding width, fusion widths, logits against the labels), and returns one line per
problem. `fusionrt inspect` runs it by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fusionrt.bundle import Bundle, Component, load
from fusionrt.errors import FusionRTError
from fusionrt.frame import Modality
from fusionrt.runtime.engine import CPU, OrtEngine
from fusionrt.runtime.stages import EncoderStage, FusionStage

MAX_LINE = 400  # a problem is one line; ONNX Runtime's multi-line messages are folded and cut


@dataclass(frozen=True)
class BundleCheck:
    """What `check_bundle` found: one line per problem, and what it checked."""

    root: Path | None
    problems: tuple[str, ...]
    checked: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        if self.ok:
            return f"check: OK ({len(self.checked)} variants opened and run in ONNX Runtime: {', '.join(self.checked)})"
        return "\n".join(f"check: {p}" for p in self.problems)


def check_bundle(bundle: Bundle | str | Path, *, threads: int = 1) -> BundleCheck:
    """Open and run every ONNX variant of `bundle` as the runtime would; one line per problem.

    A bundle that fails to load gives its load error as the one problem. TensorRT plans are not
    opened here (they need the GPU they were built on: `fusionrt doctor --bundle` on the device)."""
    if not isinstance(bundle, Bundle):
        try:
            bundle = load(bundle)
        except FusionRTError as e:
            return BundleCheck(None, (_line(str(e)),), ())
    problems: list[str] = []
    checked: list[str] = []
    widths: dict[Modality, int] = {}
    for component in bundle.encoders:
        for variant in component.variants:
            width = _check_encoder(component, variant, threads, problems)
            if width is not None:
                checked.append(f"{component.name}.{variant}")
                widths.setdefault(Modality(component.modality), width)
    for variant in bundle.fusion.variants:
        if _check_fusion(bundle, variant, widths, threads, problems):
            checked.append(f"{bundle.fusion.name}.{variant}")
    return BundleCheck(bundle.root, tuple(problems), tuple(checked))


def _check_encoder(component: Component, variant: str, threads: int, problems: list[str]) -> int | None:
    """The real embedding width of one encoder variant, or None after recording its problem."""

    def embed_dim(engine: OrtEngine) -> int:
        stage = EncoderStage(component, [(variant, engine)])
        stage.warmup()  # the host preprocessor's neutral input (the tokenizer's "hello") through the model
        return stage.embed_dim

    return _run_checked(component, variant, threads, problems, embed_dim)


def _check_fusion(bundle: Bundle, variant: str, widths: dict[Modality, int], threads: int,
                  problems: list[str]) -> bool:
    """One fusion variant run on absent embeddings of the encoders' real widths."""

    def runs(engine: OrtEngine) -> bool:
        stage = FusionStage(bundle.fusion, [(variant, engine)], contract=bundle.fusion_input, task=bundle.task,
                            labels=bundle.labels)
        for modality, width in widths.items():
            stage.set_dim(modality, width)  # a fusion width that does not fit its encoder is refused here
        stage.warmup()
        return True

    return bool(_run_checked(bundle.fusion, variant, threads, problems, runs))


def _run_checked(component: Component, variant: str, threads: int, problems: list[str], body):
    """`body(engine)` on a CPU session of the variant; None after recording what failed, as the runtime would."""
    what = f"components.{component.name}.variants.{variant}"
    engine = None
    try:
        engine = OrtEngine(component.variant(variant).path, providers=[CPU], threads=threads)
        return body(engine)
    except FusionRTError as e:
        problems.append(_line(f"{what}: {e}"))
        return None
    except Exception as e:  # noqa: BLE001 - a checker reports what the runtime would crash on
        problems.append(_line(f"{what}: the runtime fails with {type(e).__name__}: {e}"))
        return None
    finally:
        if engine is not None:
            engine.close()


def _line(text: str) -> str:
    """One line: newlines folded, cut at MAX_LINE characters."""
    folded = " ".join(text.split())
    return folded if len(folded) <= MAX_LINE else folded[: MAX_LINE - 1] + "…"
