"""What the stages produce: an encoder's `Embedding`, the fusion head's `Result` (with its JSONL
record), the `Span`s of their path, and the softmax that turns logits into top-k scores."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from fusionrt.frame import Modality


@dataclass(frozen=True)
class Span:
    """One step of a result's path, in pipeline-clock nanoseconds."""

    name: str
    start_ns: int
    end_ns: int
    thread: str

    @property
    def ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass(frozen=True)
class Embedding:
    modality: Modality
    vector: np.ndarray  # float32 [E]
    t_capture_ns: int  # capture time of the newest input it was computed from
    seq: int  # that input's seq (the window index for audio)
    label: int | None
    spans: tuple[Span, ...]  # preprocess, encode
    engine_ms: float
    source_frame: np.ndarray | None = None  # the camera frame at source resolution (image only)
    source_format: str = "bgr"  # its pixel format (Frame.pixel_format)

    @property
    def ms(self) -> float:
        return (self.spans[-1].end_ns - self.spans[0].start_ns) / 1e6


@dataclass(frozen=True)
class Result:
    """One fused answer. Times in ns on the pipeline clock; `t_capture_ns` is the triggering input's."""

    seq: int
    t_capture_ns: int
    trigger: str  # the modality whose input triggered it, or "rate"
    task: str
    top_k: tuple[tuple[str, float], ...]  # (label, probability), best first; empty for regression
    outputs: np.ndarray  # raw logits or regression values [num_outputs]
    presence: dict[str, bool]  # per fusion modality, in fusion order
    input_t_ns: dict[str, int | None]  # capture time of each fused embedding
    staleness_ms: dict[str, float | None]  # trigger capture time minus embedding capture time
    reused: tuple[str, ...]  # modalities whose stage was skipped under SKIP_REUSE
    stage_ms: dict[str, float]  # per stage on the path: each fused embedding's stage, and fusion
    e2e_ms: float  # from capture (deterministic replay: from arrival) to the result
    engine_ms: float  # engine time on the critical path (the triggering stage and fusion)
    deadline_missed: bool
    label: int | None  # ground truth of the triggering input, when the source knows it
    spans: tuple[Span, ...]
    start_ns: int  # what e2e is measured from
    done_ns: int
    image: np.ndarray | None = field(default=None, repr=False)  # camera frame for overlays
    image_format: str = "bgr"  # its pixel format: sinks that draw convert it with runtime.native.to_bgr

    @property
    def top_label(self) -> str | None:
        return self.top_k[0][0] if self.top_k else None

    @property
    def top_score(self) -> float | None:
        return self.top_k[0][1] if self.top_k else None

    def to_json(self, labels: Sequence[str] = (), *, timings: bool = True) -> dict:
        """The JSONL record; without timings it is identical across deterministic replays."""
        record: dict = {"seq": self.seq, "t_capture_ns": self.t_capture_ns, "trigger": self.trigger}
        if self.task in ("classification", "binary"):
            record["top_k"] = [{"label": name, "score": score} for name, score in self.top_k]
        else:
            record["outputs"] = [float(v) for v in self.outputs]
        record["presence"] = dict(self.presence)
        record["input_t_ns"] = dict(self.input_t_ns)
        if self.reused:
            record["reused"] = list(self.reused)
        if self.label is not None:  # what a test:// source knows the answer is; never the prediction
            record["ground_truth"] = labels[self.label] if 0 <= self.label < len(labels) else self.label
        if timings:
            record["stage_ms"] = {k: round(v, 4) for k, v in self.stage_ms.items()}
            record["e2e_ms"] = round(self.e2e_ms, 4)
            record["deadline_missed"] = self.deadline_missed
        return record


def now_ns() -> int:
    return time.monotonic_ns()


def sigmoid(logit: float) -> float:
    return float(0.5 * (1.0 + np.tanh(0.5 * logit)))  # no overflow for large |logit|


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.asarray(logits, np.float64) - np.max(logits)
    e = np.exp(shifted)
    return e / e.sum()
