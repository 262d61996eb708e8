"""`Budget`: latency per stage and end to end, staleness per modality, and the policy on an overrun.

An overrun is a stage run that took longer than the stage's budget (its own `ms`, or the end-to-end
deadline when it has none). `OverrunGuard` is the per-stage state machine that judges each run and
says what the pipeline does next; the pipeline applies the action and counts it by reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from fusionrt.errors import BudgetError
from fusionrt.frame import Modality

STAGES = ("image", "audio", "text", "fusion")


class OverrunPolicy(str, Enum):
    DROP_OLDEST = "drop_oldest"  # keep only the newest queued input (newest frame wins)
    SKIP_REUSE = "skip_reuse"  # skip the next inputs; fusion reuses the stage's last embedding
    DEGRADE = "degrade"  # after `degrade_after` consecutive overruns switch to a faster variant


class Action(str, Enum):
    """What `OverrunGuard.after_run` asks the pipeline to do."""

    NONE = "none"  # within budget
    OVERRUN = "overrun"  # over budget, nothing to do yet (DEGRADE counting towards its limit)
    DROP_OLDEST = "drop_oldest"  # drop every queued input but the newest
    SKIP_REUSE = "skip_reuse"  # skip the next `skips_left` inputs, reusing the last embedding
    DEGRADE = "degrade"  # switch the stage to its next faster variant
    NO_FASTER_VARIANT = "no_faster_variant"  # DEGRADE had nothing left: from now on SKIP_REUSE


@dataclass(frozen=True)
class StageBudget:
    ms: float | None = None  # None: the end-to-end deadline is the stage's budget
    policy: OverrunPolicy = OverrunPolicy.SKIP_REUSE
    degrade_after: int = 3  # consecutive overruns before DEGRADE switches variant

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "policy", OverrunPolicy(self.policy))
        except ValueError:
            raise BudgetError(
                f"StageBudget.policy = {self.policy!r}; expected one of {[p.value for p in OverrunPolicy]}"
            ) from None
        if self.ms is not None:
            _require_positive("StageBudget.ms", self.ms)
        if not isinstance(self.degrade_after, int) or self.degrade_after < 1:
            raise BudgetError(f"StageBudget.degrade_after = {self.degrade_after!r}; expected an integer >= 1")


@dataclass(frozen=True)
class Budget:
    deadline_ms: float = 33.0  # end to end, from capture of the triggering input to the result
    image: StageBudget = field(default_factory=lambda: StageBudget(policy=OverrunPolicy.DROP_OLDEST))
    audio: StageBudget = field(default_factory=StageBudget)
    text: StageBudget = field(default_factory=StageBudget)
    fusion: StageBudget = field(default_factory=StageBudget)
    image_staleness_s: float = 0.2  # an embedding older than this (vs the trigger) is fused as missing
    audio_staleness_s: float = 0.5
    text_staleness_s: float = 10.0
    # Skip a trigger input already too old to give its result by the deadline (judged by its stage's and
    # fusion's running time) instead of answering late; counted as a "budget" drop and a "skip_late" action.
    skip_late: bool = False

    def __post_init__(self) -> None:
        _require_positive("Budget.deadline_ms", self.deadline_ms)
        for modality in Modality:
            _require_positive(f"Budget.{modality.value}_staleness_s", getattr(self, f"{modality.value}_staleness_s"))
        for name in STAGES:
            if not isinstance(getattr(self, name), StageBudget):
                raise BudgetError(f"Budget.{name} must be a StageBudget, found {type(getattr(self, name)).__name__}")

    def stage(self, name: str) -> StageBudget:
        if name not in STAGES:
            raise BudgetError(f"no stage {name!r} in a budget; stages are {list(STAGES)}")
        return getattr(self, name)

    def stage_ms(self, name: str) -> float:
        """The stage's own budget, or the end-to-end deadline when it has none."""
        ms = self.stage(name).ms
        return self.deadline_ms if ms is None else ms

    def staleness_ns(self, modality: Modality | str) -> int:
        return round(getattr(self, f"{Modality(modality).value}_staleness_s") * 1e9)


class OverrunGuard:
    """Judges each run of one stage against its budget and keeps the policy's state.

    SKIP_REUSE keeps the stage's average cost at its budget: a run that took d ms with a budget
    of b ms spends the budget of the next ceil(d / b) - 1 inputs, which are skipped (fusion reuses
    the last embedding). DEGRADE counts consecutive overruns; at `degrade_after` it asks for the
    next faster variant, and once none is left it behaves as SKIP_REUSE.
    """

    def __init__(self, budget: StageBudget, budget_ms: float, faster_variants: int) -> None:
        self.policy = budget.policy
        self.budget_ms = budget_ms
        self.degrade_after = budget.degrade_after
        self.faster_left = faster_variants
        self.consecutive = 0
        self.skips_left = 0

    def after_run(self, elapsed_ms: float) -> Action:
        if elapsed_ms <= self.budget_ms:
            self.consecutive = 0
            return Action.NONE
        self.consecutive += 1
        if self.policy is OverrunPolicy.DEGRADE:
            if self.consecutive < self.degrade_after:
                return Action.OVERRUN
            self.consecutive = 0
            if self.faster_left > 0:
                self.faster_left -= 1
                return Action.DEGRADE
            self.policy = OverrunPolicy.SKIP_REUSE
            self._owe(elapsed_ms)
            return Action.NO_FASTER_VARIANT
        if self.policy is OverrunPolicy.SKIP_REUSE:
            self._owe(elapsed_ms)
            return Action.SKIP_REUSE
        return Action.DROP_OLDEST

    def variant_used(self) -> None:
        """A faster variant was switched to outside `after_run` (after an engine error)."""
        self.faster_left = max(0, self.faster_left - 1)

    def take_skip(self) -> bool:
        """Whether the next input is skipped (one skip is used up when it is)."""
        if self.skips_left > 0:
            self.skips_left -= 1
            return True
        return False

    def _owe(self, elapsed_ms: float) -> None:
        self.skips_left = max(0, math.ceil(elapsed_ms / self.budget_ms) - 1)


def _require_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise BudgetError(f"{name} = {value!r}; expected a positive number")
