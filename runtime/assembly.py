"""How `Pipeline.from_bundle` assembles its stages from a bundle: the backend request checked before
anything is opened, the engines of each stage opened through `open_engine` (variants picked by
`resolve_variants`; DEGRADE stages also open their faster variants), and the stages built from
the bundle's typed components. `StageEngines` remembers every engine it opened, so a build that
fails partway closes them all.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from fusionrt.bundle import Bundle, Component, resolve_variants
from fusionrt.errors import ConfigError
from fusionrt.frame import MODALITIES, Modality
from fusionrt.runtime.backend import REFERENCE, Backend, Engine, open_engine
from fusionrt.runtime.budget import Budget, OverrunPolicy
from fusionrt.runtime.cpu_kernels import target_mismatch
from fusionrt.runtime.sources.base import Source
from fusionrt.runtime.stages import EncoderStage, FusionStage, faster_order, provider_kind
from fusionrt.runtime.tensorrt_engine import recorded_engine


def bundle_sources(bundle: Bundle, sources: Mapping[Modality | str, Source]) -> dict[Modality, Source]:
    """The sources keyed by Modality; ConfigError for a modality the bundle does not fuse."""
    if not isinstance(sources, Mapping):
        raise ConfigError(f"sources must be a mapping {{modality: Source}}, found {type(sources).__name__}")
    names = [m.value if isinstance(m, Modality) else m for m in sources]
    strange = [m for m in names if m not in MODALITIES]
    if strange:
        raise ConfigError(f"sources given for {strange!r:.80}, which are not modalities; expected keys among "
                          f"{list(bundle.modalities)} (the bundle's modalities)")
    sources = {Modality(m): s for m, s in sources.items()}
    unknown = [m.value for m in sources if m.value not in bundle.modalities]
    if unknown:
        raise ConfigError(f"sources given for {unknown} but bundle {bundle.root} fuses only {list(bundle.modalities)}; "
                          f"drop those sources")
    return sources


def check_backend_request(
    bundle: Bundle, modalities: Iterable[Modality], backend: Backend | str, *, variant, providers, precision: str
) -> Backend:
    """The backend, after refusing options it does not use; for TensorRT every engine must be recorded
    before TensorRT is asked for, so a missing one is said on any machine."""
    backend = Backend.parse(backend)
    if backend is Backend.TORCH and (variant is not None or providers):
        raise ConfigError("variant and providers choose ONNX Runtime sessions; the torch backend runs the "
                          "bundle's reference weights — drop them or use backend 'ort'")
    if backend is Backend.TENSORRT:
        if variant is not None or providers:
            raise ConfigError("variant and providers choose ONNX Runtime sessions; the tensorrt backend runs the "
                              "bundle's TensorRT engines — drop them (choose the engines with precision)")
        for component in [*(bundle.encoder(m.value) for m in modalities), bundle.fusion]:
            recorded_engine(bundle, component.name, precision)
    return backend


class StageEngines:
    """Opens each stage's engines on one backend and keeps every engine it opened for `close()`."""

    def __init__(
        self,
        bundle: Bundle,
        backend: Backend,
        *,
        variant: str | Mapping[str, str] | None,
        precision: str,
        providers,
        threads: int | Mapping[str, int] | None,
        fail_on_fallback: bool,
    ) -> None:
        self.bundle, self.backend, self.precision = bundle, backend, precision
        target = backend.gpu_target(providers) if backend.runs_variants else None
        self.chosen = resolve_variants(bundle, variant, target=target) if backend.runs_variants else {}
        self.threads = threads
        self._options = {"providers": providers, "fail_on_fallback": fail_on_fallback}
        self.opened: list[Engine] = []
        self.notes: list[str] = []

    def for_stage(self, component: Component, policy: OverrunPolicy) -> list[tuple[str, Engine]]:
        """(variant, engine) pairs: the chosen variant first, then under DEGRADE the faster ones in order."""
        if not self.backend.runs_variants:
            only = REFERENCE if self.backend is Backend.TORCH else f"tensorrt-{self.precision}"
            if policy is OverrunPolicy.DEGRADE and not self.notes:
                self.notes.append(f"the {self.backend.value} backend has one variant ({only}): the DEGRADE budget "
                                  "policy cannot switch to a faster one")
            return [(only, self._open(component, self.precision if self.backend is Backend.TENSORRT else REFERENCE))]
        first = self.chosen[component.name]
        engines = [(first, self._open(component, first))]
        if policy is OverrunPolicy.DEGRADE:
            precisions = {name: v.precision for name, v in component.variants.items()}
            faster = faster_order(first, precisions, provider_kind(engines[0][1]))
            engines += [(name, self._open(component, name)) for name in faster]
        return engines

    def close(self) -> None:
        """Close every engine opened so far (a build that failed partway)."""
        engines, self.opened = self.opened, []
        for engine in engines:
            engine.close()

    def _open(self, component: Component, variant: str) -> Engine:
        engine = open_engine(self.bundle, component, variant, self.backend, threads=self._threads(component),
                             **self._options)
        self.opened.append(engine)
        self._check_int8_target(component, variant)
        return engine

    def _threads(self, component: Component) -> int | None:
        """Intra-op threads of a component's engines: one number for all, or per stage (modality or
        "fusion"; a stage not named gets 1)."""
        if not isinstance(self.threads, Mapping):
            return self.threads
        return self.threads.get(component.modality or component.name, 1)

    def _check_int8_target(self, component: Component, variant: str) -> None:
        """Note once per run when an INT8 variant was quantized for other INT8 kernels than this CPU's."""
        found = component.variants.get(variant) if self.backend.runs_variants else None
        if found is None or found.precision != "int8":
            return
        message = target_mismatch(found.target)
        if message and not any(message in note for note in self.notes):
            self.notes.append(f"{component.name} {variant}: {message}")


def encoder_stages(
    bundle: Bundle, modalities: Iterable[Modality], engines: StageEngines, budget: Budget, hop_s: float | None
) -> dict[Modality, EncoderStage]:
    """A warmed-up encoder stage per modality, each from its bundle component."""
    stages = {}
    for modality in modalities:
        component = bundle.encoder(modality.value)
        stage = EncoderStage(component, engines.for_stage(component, budget.stage(modality.value).policy), hop_s=hop_s)
        stage.warmup()
        stages[modality] = stage
    return stages


def fusion_stage(bundle: Bundle, engines: StageEngines, budget: Budget, top_k: int) -> FusionStage:
    """The fusion stage; the widths of modalities without an encoder stage come from their components."""
    head = bundle.fusion
    stage = FusionStage(head, engines.for_stage(head, budget.fusion.policy), contract=bundle.fusion_input,
                        task=bundle.task, labels=bundle.labels, top_k=top_k)  # fmt: skip
    for component in bundle.encoders:
        if component.embedding_dim is not None:
            stage.set_dim(Modality(component.modality), component.embedding_dim)
    return stage
