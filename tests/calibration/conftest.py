"""Fixtures: a tiny 3-encoder bundle (built with onnx.helper) and labelled sets for it."""

from __future__ import annotations

import shutil

import pytest
from calibration_models import labelled_set, write_bundle

from fusionrt.bundle import load


@pytest.fixture(scope="session")
def pristine_bundle(tmp_path_factory):
    return write_bundle(tmp_path_factory.mktemp("calibration") / "bundle")


@pytest.fixture
def bundle_dir(pristine_bundle, tmp_path):
    """A fresh copy of the tiny bundle that the test may modify."""
    target = tmp_path / "bundle"
    shutil.copytree(pristine_bundle, target)
    return target


@pytest.fixture(scope="session")
def bundle(pristine_bundle):
    return load(pristine_bundle)


@pytest.fixture(scope="session")
def heldout(bundle):
    return labelled_set(bundle, 120, seed=2)
