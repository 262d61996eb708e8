"""`fusionrt bench`: latency per component and whole model, variant, backend, threads and batch,
with perf_analyzer's stability rule, against this machine's measured FP32 GEMM peak."""

from fusionrt.runtime.bench.report import format_table, save
from fusionrt.runtime.bench.backends import MODEL
from fusionrt.runtime.bench.run import bench_bundle
from fusionrt.runtime.bench.timing import BenchSettings

__all__ = ["MODEL", "BenchSettings", "bench_bundle", "format_table", "save"]
