"""Budget validation and the overrun state machine each policy runs on."""

from __future__ import annotations

import dataclasses

import pytest

from fusionrt.errors import BudgetError
from fusionrt.frame import Modality
from fusionrt.runtime.budget import Action, Budget, OverrunGuard, OverrunPolicy, StageBudget


def test_defaults_camera_drops_oldest_and_stage_budget_falls_back_to_the_deadline():
    budget = Budget()
    assert budget.deadline_ms == 33.0
    assert budget.image.policy is OverrunPolicy.DROP_OLDEST
    assert budget.audio.policy is budget.text.policy is OverrunPolicy.SKIP_REUSE
    assert budget.stage_ms("image") == 33.0
    custom = dataclasses.replace(budget, audio=StageBudget(ms=7.5))
    assert custom.stage_ms("audio") == 7.5 and custom.stage_ms("text") == 33.0
    assert budget.staleness_ns(Modality.IMAGE) == 200_000_000
    assert budget.staleness_ns("audio") == 500_000_000
    assert budget.staleness_ns("text") == 10_000_000_000


def test_policy_given_as_text_becomes_the_enum():
    assert StageBudget(policy="degrade").policy is OverrunPolicy.DEGRADE


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: Budget(deadline_ms=0), "deadline_ms"),
        (lambda: Budget(deadline_ms=float("nan")), "deadline_ms"),
        (lambda: Budget(audio_staleness_s=-1), "audio_staleness_s"),
        (lambda: StageBudget(ms=-2), "StageBudget.ms"),
        (lambda: StageBudget(policy="fastest"), "StageBudget.policy"),
        (lambda: StageBudget(degrade_after=0), "degrade_after"),
        (lambda: Budget(image=5), "Budget.image"),
    ],
)
def test_invalid_budgets_name_the_field(make, field):
    with pytest.raises(BudgetError, match=field):
        make()


def test_unknown_stage_is_refused():
    with pytest.raises(BudgetError, match="no stage 'video'"):
        Budget().stage("video")


def test_skip_reuse_skips_the_inputs_whose_budget_an_overrun_spent():
    guard = OverrunGuard(StageBudget(policy=OverrunPolicy.SKIP_REUSE), budget_ms=3.0, faster_variants=0)
    assert guard.after_run(2.9) is Action.NONE
    assert not guard.take_skip()
    assert guard.after_run(10.0) is Action.SKIP_REUSE  # ceil(10 / 3) - 1 = 3 inputs skipped
    assert [guard.take_skip() for _ in range(5)] == [True, True, True, False, False]
    assert guard.after_run(3.5) is Action.SKIP_REUSE  # ceil(3.5 / 3) - 1 = 1
    assert [guard.take_skip() for _ in range(2)] == [True, False]


def test_drop_oldest_asks_to_drop_on_every_overrun():
    guard = OverrunGuard(StageBudget(policy=OverrunPolicy.DROP_OLDEST), budget_ms=5.0, faster_variants=1)
    assert [guard.after_run(ms) for ms in (4.0, 6.0, 9.0)] == [Action.NONE, Action.DROP_OLDEST, Action.DROP_OLDEST]
    assert not guard.take_skip()


def test_degrade_after_consecutive_overruns_then_skip_reuse_when_no_variant_is_left():
    guard = OverrunGuard(StageBudget(policy=OverrunPolicy.DEGRADE, degrade_after=2), budget_ms=5.0, faster_variants=1)
    assert guard.after_run(8.0) is Action.OVERRUN
    assert guard.after_run(1.0) is Action.NONE  # the streak is broken
    assert guard.after_run(8.0) is Action.OVERRUN
    assert guard.after_run(8.0) is Action.DEGRADE
    assert guard.after_run(8.0) is Action.OVERRUN
    assert guard.after_run(12.0) is Action.NO_FASTER_VARIANT
    assert guard.policy is OverrunPolicy.SKIP_REUSE
    assert [guard.take_skip() for _ in range(3)] == [True, True, False]  # ceil(12 / 5) - 1 = 2
    assert guard.after_run(6.0) is Action.SKIP_REUSE
