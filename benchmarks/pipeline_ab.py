"""Pipeline cost of one checkout against another, on the same bundle: run this file with each
checkout's Python, alternately, and compare (the two code versions cannot share one process).

    for i in 1 2 3; do OLD/.venv/bin/python benchmarks/pipeline_ab.py B; NEW/.venv/bin/python benchmarks/pipeline_ab.py B; done

Prints one line: the wall time per result of a deterministic replay (60 s of test sources, every
input processed inline on one thread, best of 3) and, for the realtime threads with the camera as
fast as the test source renders (8 s), results/s and the runtime overhead p50 (end to end minus
engine time). Uses only APIs both sides of issue 9's refactor have.
"""

from __future__ import annotations

import argparse
import time

from fusionrt.bundle import load
from fusionrt.runtime import Budget, Pipeline, SourceOptions, open_source

URIS = (("image", "test://digits"), ("audio", "test://dtmf"), ("text", "test://digits"))


def sources(options: SourceOptions) -> dict:
    return {modality: open_source(uri, modality, options=options) for modality, uri in URIS}


def replay_ms_per_result(bundle, capture_s: float = 60.0, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        options = SourceOptions(replay="deterministic", duration_s=capture_s, sample_rate=16000)
        pipeline = Pipeline.from_bundle(bundle, sources(options), threads=1)
        t0 = time.perf_counter()
        summary = pipeline.run()
        best = min(best, (time.perf_counter() - t0) / summary.results * 1e3)
    return best


def max_rate(bundle, seconds: float = 8.0) -> tuple[float, float]:
    options = SourceOptions(fps=3000, sample_rate=16000)
    pipeline = Pipeline.from_bundle(bundle, sources(options), budget=Budget(deadline_ms=33.0), audio_hop_s=0.1,
                                    threads=1)
    metrics = pipeline.run(duration_s=seconds).metrics
    return metrics["results_per_s"], metrics["overhead_ms"]["p50"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="a bundle both checkouts can load (format version 1 for a pre-issue-9 checkout)")
    args = parser.parse_args()
    bundle = load(args.bundle)
    replay = replay_ms_per_result(bundle)
    rate, overhead = max_rate(bundle)
    print(f"replay {replay:.4f} ms/result | max rate {rate:.0f} results/s, overhead p50 {overhead:.3f} ms")


if __name__ == "__main__":
    main()
