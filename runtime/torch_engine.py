"""`TorchEngine`: the opt-in PyTorch reference backend (`realtime-infer --backend torch`).

It runs a component's sub-module of the trained model a bundle carries under "reference"
(reference/config.yaml + reference/model.safetensors, written by `fusionrt export`): no pickle,
no code from the bundle. torch and fusionrt.models are imported inside the functions that need
them, so `import fusionrt.runtime` stays torch-free; they come with `pip install 'fusionrt[export]'`.
The components of one bundle share one rebuilt model.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from fusionrt.bundle import Bundle, TensorSpec, load
from fusionrt.errors import EngineError, FusionRTError


class TorchEngine:
    """One bundle component run by PyTorch from the bundle's reference weights (CUDA when available)."""

    fallback = None  # torch runs where it says it runs; there is no provider to fall back from

    def __init__(self, bundle: Bundle | str | Path, component: str, *, threads: int | None = None) -> None:
        if not isinstance(bundle, Bundle):
            bundle = load(bundle)
        if bundle.reference is None:
            raise EngineError(
                f"bundle {bundle.root} carries no reference PyTorch weights (no 'reference' in its manifest), "
                f"which the torch backend runs; export it with `fusionrt export --config CONFIG --checkpoint CKPT` "
                f"to get them, or use --backend ort"
            )
        if component not in bundle.components:
            raise EngineError(f"bundle {bundle.root} has no component {component!r}; it has {sorted(bundle.components)}")
        spec = bundle.components[component]
        self.path = bundle.reference.weights
        self.input_names = [s.name for s in spec.inputs]
        self.output_names = [s.name for s in spec.outputs]
        self._inputs, self._outputs = tuple(spec.inputs), tuple(spec.outputs)
        self._dtypes = {s.name: np.dtype(s.dtype) for s in spec.inputs}
        model, self._device = _reference_model(bundle)
        if threads is not None:
            _set_threads(threads)
        self._module = model.fusion if spec.role == "fusion" else model.encoders[spec.modality]
        self.name = component

    @property
    def providers(self) -> list[str]:
        return [f"torch-{self._device}"]

    def input_specs(self) -> tuple[TensorSpec, ...]:
        """The manifest's inputs: a PyTorch module declares none, and to_tensors checks the dtypes against them."""
        return self._inputs

    def output_specs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def close(self) -> None:
        """Let go of the module (the rebuilt model stays cached for the bundle's other components)."""
        self._module = None

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.to_numpy(self.forward(self.to_tensors(feeds)))

    # run() in its three steps, which `fusionrt bench` times apart (host copy vs compute).
    def to_tensors(self, feeds: dict[str, np.ndarray]) -> list:
        """Check the feeds and copy them into tensors on the engine's device."""
        import torch

        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise EngineError(f"{self.name} (torch): missing inputs {missing}; expected {self.input_names}")
        for name in self.input_names:
            found = getattr(feeds[name], "dtype", type(feeds[name]).__name__)
            if found != self._dtypes[name]:
                raise EngineError(f"{self.name} (torch): input {name!r} is {found}; the model expects {self._dtypes[name]}")
        return [torch.tensor(np.asarray(feeds[n]), device=self._device) for n in self.input_names]

    def forward(self, tensors: list):
        """The module on tensors from to_tensors; returns once the device has finished."""
        import torch

        if self._module is None:
            raise EngineError(f"{self.name} (torch): the engine is closed; open the bundle again to run it")
        try:
            with torch.inference_mode():
                out = self._module(*tensors)
            if self._device == "cuda":
                torch.cuda.synchronize()
        except (RuntimeError, ValueError, IndexError, FusionRTError) as e:
            raise EngineError(f"{self.name} (torch): PyTorch failed to run: {e}") from e
        return out

    def to_numpy(self, out) -> dict[str, np.ndarray]:
        """The module's output copied back to a float32 host array."""
        return {self.output_names[0]: out.float().cpu().numpy()}


def _set_threads(threads: int) -> None:
    """PyTorch's intra-op threads (process-wide, like ONNX Runtime's per-session setting is per engine)."""
    import torch

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise EngineError(f"torch backend: threads = {threads!r}; expected a whole number >= 1")
    torch.set_num_threads(threads)


def _reference_model(bundle: Bundle):
    """The bundle's reference model and its device, rebuilt once per bundle (keyed by path and hashes)."""
    files, ref = bundle.manifest["files"], bundle.reference
    digests = tuple(files[p.relative_to(bundle.root).as_posix()] for p in (ref.config, ref.weights))
    tokenizer_json = bundle.tokenizer_dir / "tokenizer.json" if bundle.tokenizer_dir else None
    return _rebuild(bundle.root.resolve(), ref.config, ref.weights, tokenizer_json, digests)


@functools.lru_cache(maxsize=4)
def _rebuild(root: Path, config: Path, weights: Path, tokenizer_json: Path | None, digests: tuple[str, str]):
    try:
        import torch

        from fusionrt.config import load_config
        from fusionrt.models import MultimodalModel
        from fusionrt.models.train import load_checkpoint
    except ImportError as e:
        raise EngineError(f"the torch backend needs PyTorch: pip install 'fusionrt[export]' ({e})") from e
    try:
        cfg = load_config(config)
        vocab_size = 0
        if "text" in cfg.model.modalities:
            if tokenizer_json is None:
                raise EngineError(f"bundle {root} has a text encoder but no tokenizer; re-export it")
            from tokenizers import Tokenizer

            vocab_size = Tokenizer.from_file(str(tokenizer_json)).get_vocab_size()
        model = MultimodalModel(cfg.model, vocab_size=vocab_size)
        load_checkpoint(model, weights)
    except EngineError:
        raise
    except FusionRTError as e:
        raise EngineError(f"torch backend: cannot rebuild the reference model of bundle {root}: {e}") from e
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.eval().to(device), device
