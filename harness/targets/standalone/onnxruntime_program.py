"""An ONNX file on an onnxruntime CPU session, with the graph optimisation the harness used."""

import numpy as np

PACKAGES = ("onnxruntime",)


class OnnxProgram:
    def __init__(self, path, config):
        import onnxruntime as ort

        options = ort.SessionOptions()
        level = config.get("options", {}).get("graph_optimization", "all")
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run_named(self, feed):
        values = self.session.run(None, {k: np.ascontiguousarray(v) for k, v in feed.items()})
        return dict(zip(self.output_names, values))


def open_program(path, config):
    return OnnxProgram(path, config)
