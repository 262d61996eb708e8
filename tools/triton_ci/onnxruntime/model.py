"""CI STAND-IN for Triton's native `onnxruntime` backend — not a product backend.

The `tritonserver` binary the tests run (from the `nvidia-pytriton` wheel) ships only the python
backend. Triton lets a folder `backends/<name>/model.py` act as the backend `<name>`, so this file,
copied to `backends/onnxruntime/model.py`, serves the models of a `fusionrt triton-export`
repository unchanged: each model's `<version>/model.onnx` runs in an ONNX Runtime CPU session. A
full Triton (container, Jetson build) uses its native onnxruntime backend on the same repository.

Requests that arrive together (dynamic batching) and have the same shapes run as one batch.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        parameters = config.get("parameters", {})
        threads = int(parameters.get("intra_op_thread_count", {}).get("string_value", "1"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        feeds = [{n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs} for r in requests]
        groups = {}
        for index, feed in enumerate(feeds):
            key = tuple((feed[n].dtype.str, feed[n].shape[1:]) for n in self.inputs)
            groups.setdefault(key, []).append(index)
        responses = [None] * len(requests)
        for members in groups.values():
            for index, response in zip(members, self._run_batch([feeds[i] for i in members])):
                responses[index] = response
        return responses

    def _run_batch(self, feeds):
        sizes = [len(feed[self.inputs[0]]) for feed in feeds]
        batch = {n: np.concatenate([feed[n] for feed in feeds]) for n in self.inputs}
        try:
            values = self.session.run(self.outputs, batch)
        except Exception as e:  # the client gets ORT's message as this request's error
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(f"onnxruntime: {e}")) for _ in feeds]
        ends = np.cumsum(sizes)
        return [
            pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(n, np.ascontiguousarray(v[end - size:end]))
                                for n, v in zip(self.outputs, values)]
            )
            for size, end in zip(sizes, ends)
        ]
