"""`Trigger`: when the fusion head runs — on every processed input of one modality, or at a fixed rate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from fusionrt.errors import ConfigError
from fusionrt.frame import Modality
from fusionrt.values import MAX_TRIGGER_HZ, MIN_TRIGGER_HZ, number


@dataclass(frozen=True)
class Trigger:
    """When fusion runs: on every processed input of `modality`, or at `rate_hz`."""

    modality: Modality | None = Modality.IMAGE
    rate_hz: float | None = None

    def __post_init__(self) -> None:
        if (self.modality is None) == (self.rate_hz is None):
            raise ConfigError(
                f"Trigger needs exactly one of modality or rate_hz, found {self.modality!r} and {self.rate_hz!r}"
            )
        if self.modality is not None:
            object.__setattr__(self, "modality", Modality(self.modality))
        else:  # finite and sane: 1e-300 would overflow the scheduler's period, inf divide by zero
            number(self.rate_hz, "Trigger.rate_hz", low=MIN_TRIGGER_HZ, high=MAX_TRIGGER_HZ)

    @classmethod
    def on(cls, modality: Modality | str) -> Trigger:
        return cls(modality=Modality(modality))

    @classmethod
    def at_rate(cls, rate_hz: float) -> Trigger:
        return cls(modality=None, rate_hz=rate_hz)

    @classmethod
    def parse(cls, spec: str | None, *, what: str = "trigger") -> Trigger | None:
        """"image", "audio" or "text" (fuse on that modality), a rate in Hz, or None (the default trigger);
        `what` names the setting in the error message (e.g. "--trigger")."""
        if spec is None:
            return None
        if spec in tuple(m.value for m in Modality):
            return cls.on(spec)
        try:
            return cls.at_rate(float(spec))
        except ValueError:
            raise ConfigError(f"{what} {spec!r}; expected image, audio, text or a rate in Hz") from None

    @property
    def name(self) -> str:
        return self.modality.value if self.modality is not None else "rate"


def default_trigger(sources: Iterable[Modality]) -> Trigger:
    """Every camera frame when there is a camera, else every audio window, else every text message."""
    present = set(sources)
    for modality in (Modality.IMAGE, Modality.AUDIO, Modality.TEXT):
        if modality in present:
            return Trigger.on(modality)
    raise ConfigError("a pipeline needs at least one source")
