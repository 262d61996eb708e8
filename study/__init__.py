"""`fusionrt study` (alias `fusionrt eval --study`): is the multimodal model worth its cost?

On the built-in digits task, with one training budget (the config's data, epochs, optimizer and
modality drop-out) and several train seeds, it trains one model per kind:

- single modality, "text" / "image" / "audio": that modality's encoder and an MLP head (the
  early-fusion head over one embedding);
- fusion, "early" / "late" / "cross_attention": every modality of the config, that fusion head;

and measures, on the test split:

- accuracy, macro-F1 and per-class recall (PyTorch, FP32), mean ± sample std over seeds;
- a robustness grid: the noise level of one modality at a time (the others at the config's noise)
  x one modality missing at inference (presence 0 and a zero embedding, as the runtime fuses it);
- the bundle variants STUDY_VARIANTS (FP32 / FP16 / INT8 / default) of the best fusion kind,
  through its exported ONNX files in ONNX Runtime;

then judges the three claims from those numbers and writes study.json, study.md and the charts.
Trained runs and bundles go to a separate work directory.

What is shared to save time changes nothing that is compared: the splits are generated and
tokenized once for every run; a single-modality model holds only its own encoder; the grid
computes each encoder's embeddings once per noise level and reruns only the fusion head per
(noise, missing) cell; only the best fusion kind is exported and quantized.

The study is a stage above export, calibration and runtime: it imports them; nothing but the CLI
imports it. Modules: `kinds` (shared names, imports no other study module), `run` (training and
the grid), `precision` (export, INT8, evaluation), `claims`, `report` and `charts` (outputs).
"""

from fusionrt.study.claims import claims
from fusionrt.study.kinds import (
    FUSION_KINDS,
    NOISE_LEVELS,
    NONE,
    SINGLE_HEAD,
    STUDY_VARIANTS,
    aggregate,
    kind_config,
    kind_label,
    parse_kinds,
    parse_seeds,
    study_kinds,
)
from fusionrt.study.precision import precision_study
from fusionrt.study.report import markdown, write_report
from fusionrt.study.run import best_kinds, robustness_grid, run_study, summarize

__all__ = [
    "FUSION_KINDS", "NOISE_LEVELS", "NONE", "SINGLE_HEAD", "STUDY_VARIANTS", "aggregate", "best_kinds", "claims",
    "kind_config", "kind_label", "markdown", "parse_kinds", "parse_seeds", "precision_study", "robustness_grid",
    "run_study", "study_kinds", "summarize", "write_report",
]
