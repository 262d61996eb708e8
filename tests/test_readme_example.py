"""README.md's user-module example (the block after its "tests/test_readme_example.py runs" marker) runs as written."""

import re
import runpy
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

README = Path(__file__).parents[1] / "README.md"
MARKER = "<!-- tests/test_readme_example.py runs the next block -->"


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    assert MARKER in text, f"README.md lost the marker {MARKER!r} before its user-module example"
    block = re.match(r"\s*```python\n(.*?)\n```", text[text.index(MARKER) + len(MARKER):], re.DOTALL)
    assert block, "the README marker is not followed by a ```python block"
    return block.group(1)


@pytest.fixture
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(previous)


def test_readme_user_module_example_runs(tmp_path, monkeypatch, one_thread, capsys):
    script = tmp_path / "readme_example.py"  # a real file, so torch.export can read the classes' source
    script.write_text(readme_example(), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(str(script), run_name="readme_example")

    bundle, results = namespace["bundle"], namespace["results"]
    assert bundle.root == Path("bundles/mine") and (tmp_path / "bundles" / "mine" / "manifest.json").is_file()
    assert bundle.modalities == ("image", "text") and len(bundle.labels) == 10
    assert (bundle.encoder("image").input.channel_order, bundle.encoder("image").input.height) == ("rgb", 64)
    text = bundle.encoder("text")
    assert text.input.input_names == ("input_ids", "attention_mask", "token_type_ids") and text.input.max_length == 16
    graph = onnx.load(text.variant("fp32").path).graph
    assert {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.input} == {
        name: ["batch", "sequence"] for name in text.input.input_names
    }
    assert results and all(r.top_label in bundle.labels for r in results)
    assert f"{len(results)} results, the last:" in capsys.readouterr().out

    from fusionrt.runtime.engine import OrtEngine

    feeds = {  # another batch and sequence length than the example's 2 x 16
        "input_ids": np.random.default_rng(0).integers(5, 30, (3, 7)), "attention_mask": np.ones((3, 7), np.int64),
        "token_type_ids": np.zeros((3, 7), np.int64),
    }  # fmt: skip
    with torch.no_grad():
        expected = namespace["text_encoder"].eval()(*(torch.from_numpy(v) for v in feeds.values())).numpy()
    got = OrtEngine(text.variant("fp32").path).run(feeds)["embedding"]
    np.testing.assert_allclose(got, expected, atol=1e-4)
