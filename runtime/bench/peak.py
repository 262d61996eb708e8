"""This machine's achievable FP32 GEMM rate: an N x N x N MatMul as a one-node ONNX graph in ONNX
Runtime (per intra-op thread count), and the same product in NumPy (its BLAS limited to the same
thread count with threadpoolctl when that is installed). GFLOP/s = 2 N^3 / the fastest run's time:
the limit is what the machine can do, and load from other processes only ever slows a run down."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

GEMM_SIZE = 1024
MIN_RUNS = 5
MIN_SECONDS = 0.3


def fastest_seconds(run: Callable[[], object]) -> float:
    """Fastest wall time of `run` after one warm-up call, over at least MIN_RUNS runs and MIN_SECONDS."""
    run()
    times = []
    start = time.perf_counter()
    while len(times) < MIN_RUNS or time.perf_counter() - start < MIN_SECONDS:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return min(times)


def gemm_operands(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)


def ort_gemm_gflops(threads: int, n: int = GEMM_SIZE) -> float:
    import onnx
    from onnx import TensorProto, helper

    from fusionrt.runtime.engine import OrtEngine

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n]) for name in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    a, b = gemm_operands(n)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gemm.onnx"
        onnx.save(model, path)
        engine = OrtEngine(path, providers=["CPUExecutionProvider"], threads=threads)
        seconds = fastest_seconds(lambda: engine.run({"a": a, "b": b}))
    return 2 * n**3 / seconds / 1e9


def numpy_gemm_gflops(threads: int, n: int = GEMM_SIZE) -> tuple[float, str]:
    """(GFLOP/s, how NumPy's BLAS threads were set)."""
    a, b = gemm_operands(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        seconds = fastest_seconds(lambda: a @ b)
        return 2 * n**3 / seconds / 1e9, "BLAS default threads (threadpoolctl not installed)"
    with threadpool_limits(limits=threads, user_api="blas"):
        seconds = fastest_seconds(lambda: a @ b)
    return 2 * n**3 / seconds / 1e9, f"{threads} BLAS threads"


def measure_peak(threads: list[int], n: int = GEMM_SIZE, progress: Callable[[str], None] = print) -> dict:
    """{"size": n, "ort_gflops": {threads: GFLOP/s}, "numpy_gflops": {...}, "numpy_threads": how}, keyed by
    the thread count as a string (as JSON keeps it)."""
    ort, numpy_rates, how = {}, {}, ""
    for t in threads:
        ort[str(t)] = ort_gemm_gflops(t, n)
        numpy_rates[str(t)], how = numpy_gemm_gflops(t, n)
        progress(f"peak FP32 GEMM {n}x{n}x{n}, {t} thread(s): ONNX Runtime {ort[str(t)]:.1f} GFLOP/s, "
                 f"NumPy {numpy_rates[str(t)]:.1f} GFLOP/s ({how})")
    return {"size": n, "ort_gflops": ort, "numpy_gflops": numpy_rates, "numpy_threads": how}
