from __future__ import annotations

import pytest

from fusionrt.calibration import TARGETS
from fusionrt.cli import QUANT_TARGETS, main


def test_the_cli_offers_the_targets_the_quantizer_knows():
    assert QUANT_TARGETS == TARGETS


def test_an_unknown_target_exits_non_zero_listing_the_valid_ones(capsys, tmp_path):
    with pytest.raises(SystemExit) as stopped:
        main(["quantize", str(tmp_path), "--calib", "builtin", "--mode", "int8-static", "--target", "x86-sse"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "--target" in err and "x86-sse" in err
    assert all(t in err for t in TARGETS)


def test_an_explicit_mode_the_target_cannot_run_exits_with_the_reason(capsys, tmp_path):
    from calibration_models import write_bundle

    bundle = write_bundle(tmp_path / "bundle")
    code = main(["quantize", str(bundle), "--calib", "builtin", "--mode", "int8-dynamic", "--target", "tensorrt"])
    assert code == 1
    assert "dynamic INT8 is a CPU-only choice" in capsys.readouterr().err
