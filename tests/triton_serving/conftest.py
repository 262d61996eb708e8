"""Fixtures of the Triton tests: a tiny real bundle (tests/runtime/runtime_models.py), its Triton
repository, and one real `tritonserver` (the CI stand-in of tools/triton_ci) serving it on 127.0.0.1.

The server venv (.venv-triton) is made by `make triton-venv` (which `make test` runs) or, when
missing, here; when its wheel cannot be installed the server tests skip with the installer's reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "runtime")]

from runtime_models import write_bundle  # noqa: E402
from tools.triton_ci.server import ServerUnavailable, TritonServer, server_venv  # noqa: E402

from fusionrt.bundle import load  # noqa: E402
from fusionrt.triton import Serving, write_repository  # noqa: E402

# A queue delay long enough that concurrent requests meet in one batch on a busy 2-core machine.
TEST_SERVING = Serving(max_batch=8, instances=1, delay_us=5000)


@pytest.fixture(scope="session")
def triton_bundle(tmp_path_factory):
    return load(write_bundle(tmp_path_factory.mktemp("triton") / "bundle", fast_int8_image=True))


@pytest.fixture(scope="session")
def triton_repository(triton_bundle, tmp_path_factory):
    return write_repository(triton_bundle, tmp_path_factory.mktemp("triton") / "repo", variant="fp32",
                            serving=TEST_SERVING)


@pytest.fixture(scope="session")
def triton_venv():
    try:
        return server_venv()
    except ServerUnavailable as e:
        pytest.skip(f"the Triton server wheel (nvidia-pytriton) is not installable here: {e}")


@pytest.fixture(scope="session")
def triton_server(triton_venv, triton_repository):
    """One server for the whole group, every model loaded; stopped (and checked gone) at the end."""
    models = (*triton_repository.variants, triton_repository.ensemble)
    server = TritonServer(triton_repository.root, models=models, venv=triton_venv).start()
    yield server
    code = server.stop()
    server.cleanup()
    assert code == 0 and server.left_behind == [], f"tritonserver exited with {code}; left: {server.left_behind}"
