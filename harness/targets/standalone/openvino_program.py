"""An OpenVINO IR (or ONNX file) compiled for the CPU plugin, at the precision the harness used;
a lifted state (``state.X`` in, ``next_state.X`` out) made internal again (MakeStateful), so the
infer request carries it, starting from the export's initial values."""

import numpy as np

PACKAGES = ("openvino",)


class OpenVinoProgram:
    def __init__(self, path, config):
        import openvino as ov
        from openvino._offline_transformations import apply_make_stateful_transformation

        core = ov.Core()
        model = core.read_model(str(path))
        state = config.get("state") or {}
        inputs = {i.get_any_name() for i in model.inputs}
        outputs = {name for o in model.outputs for name in o.get_names()}
        pairs = {
            i: o
            for i, o in zip(state.get("inputs", []), state.get("outputs", []))
            if i in inputs and o in outputs
        }
        if pairs:
            apply_make_stateful_transformation(model, pairs)
        variables = {
            f"{i}{o}": n
            for i, o, n in zip(state.get("inputs", []), state.get("outputs", []), state.get("names", []))
        }
        precision = config.get("options", {}).get("precision")
        settings = {"INFERENCE_PRECISION_HINT": precision} if precision else {}
        self.compiled = core.compile_model(model, "CPU", settings)
        self.request = self.compiled.create_infer_request()
        self.case_inputs = config["inputs"]
        by_name = {name: o for o in self.compiled.outputs for name in o.get_names()}
        self.outputs = (
            [by_name[n] for n in config["outputs"]]
            if all(n in by_name for n in config["outputs"])
            else list(self.compiled.outputs)
        )
        initial = config.get("initial_state") or {}
        for variable in self.request.query_state():
            value = initial.get(variables.get(variable.name, variable.name))
            if value is not None and np.any(value):
                variable.state = ov.Tensor(np.ascontiguousarray(value))

    def run(self, inputs):
        result = self.request.infer({n: np.ascontiguousarray(x) for n, x in zip(self.case_inputs, inputs)})
        return [np.array(result[o], copy=True) for o in self.outputs]


def open_program(path, config):
    return OpenVinoProgram(path, config)
