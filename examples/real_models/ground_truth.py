"""Ground truth for the real-model cases, measured WITHOUT the harness: each exporter and each
runtime called directly on the canonical inputs, every error against a fresh eager module.

    PYTHONPATH=/tmp/rmw/site:. python ground_truth.py [beatnet|mtcnn_pnet ...] > ground_truth.md

(only the case modules' model builders and input makers are reused; nothing from harness runs.)
Artifacts go to $GT_OUT (default /tmp/rm_gt). AOTI compiles C++: GT_AOTI=0 skips it.
"""

from __future__ import annotations

import copy
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore")
OUT = Path(os.environ.get("GT_OUT", "/tmp/rm_gt"))
OUT.mkdir(parents=True, exist_ok=True)
ATOL = RTOL = 1e-4  # the cases' tolerance
ROWS: list[tuple] = []


def np_out(out):
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [np.asarray(o.detach().numpy() if torch.is_tensor(o) else o, dtype=np.float32) for o in out]


def first_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    keep = [t for t in text if t.strip()][:3]
    return " / ".join(keep)[:300]


def worst(ref, got):
    """(largest abs error, passes atol+rtol*|ref| on every element) over lists of output lists."""
    err, ok = 0.0, True
    for r_call, g_call in zip(ref, got):
        for r, g in zip(r_call, g_call):
            if r.shape != g.shape:
                return float("inf"), False
            d = np.abs(r.astype(np.float64) - g)
            err = max(err, float(np.nanmax(d)) if d.size else 0.0)
            ok &= bool(np.all(d <= ATOL + RTOL * np.abs(r))) and bool(np.all(np.isfinite(g)))
    return err, ok


def ort_session(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def et_method(path):
    from executorch.runtime import Runtime

    return Runtime.get().load_program(str(path)).load_method("forward")


def ov_compiled(path, precision=None):
    import openvino as ov

    core = ov.Core()
    cfg = {"INFERENCE_PRECISION_HINT": precision} if precision else {}
    compiled = core.compile_model(core.read_model(str(path)), "CPU", cfg)
    return compiled, compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()


def et_program(module, example, backend, dynamic_shapes=None):
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes.init_mutable_pass import InitializedMutableBufferPass

    parts = []
    if backend == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        parts = [XnnpackPartitioner()]
    ep = torch.export.export(module, example, dynamic_shapes=dynamic_shapes, strict=False)
    edge = to_edge_transform_and_lower(ep, partitioner=parts)
    sig = edge.exported_program().graph_signature
    mutated = set(sig.buffers_to_mutate.values())
    init = sorted(ph for ph, fqn in sig.inputs_to_buffers.items() if fqn in mutated)
    cfg = ExecutorchBackendConfig(passes=[InitializedMutableBufferPass(init)] if init else [])
    return edge.to_executorch(cfg).buffer


def record(model, target, inp, err, ok, metric, verdict, note=""):
    ROWS.append((model, target, inp, err, ok, metric, verdict, note))
    print(
        f"  {model:11s} {target:20s} {inp:14s} err={err:.3g} metric={metric} -> {verdict} {note}",
        file=sys.stderr,
        flush=True,
    )


# ============================================================================================
# MTCNN PNet: stateless, dynamic height and width
# ============================================================================================


def gt_pnet():
    import mtcnn_case as C

    name = "mtcnn_pnet"
    # the written-out PNet is the package's own class: exec its mtcnn.py without torchvision
    import importlib.util

    src = (
        Path(importlib.util.find_spec("facenet_pytorch").submodule_search_locations[0]) / "models/mtcnn.py"
    ).read_text()
    src = src.replace("from .utils.detect_face import detect_face, extract_face", "")
    ns: dict = {
        "__file__": str(
            Path(importlib.util.find_spec("facenet_pytorch").submodule_search_locations[0])
            / "models/mtcnn.py"
        )
    }
    exec(compile(src, "facenet_pytorch/models/mtcnn.py", "exec"), ns)
    theirs = ns["PNet"](pretrained=True).eval()
    inputs = {
        k: v()[0]
        for k, v in {
            "photo_scale_0": lambda: C._level(0),
            "photo_scale_2": lambda: C._level(2),
            "photo_scale_4": lambda: C._level(4),
        }.items()
    }
    with torch.no_grad():
        ref = {k: np_out(C.build()(*x)) for k, x in inputs.items()}
        pkg = max(
            float(np.abs(a - b).max()) for k, x in inputs.items() for a, b in zip(ref[k], np_out(theirs(*x)))
        )
    print(
        f"mtcnn_pnet: written-out PNet vs facenet_pytorch's own PNet class: largest difference {pkg:.3g}",
        file=sys.stderr,
    )
    ROWS.append(
        (
            name,
            "(package's own PNet)",
            "all",
            pkg,
            pkg == 0.0,
            "-",
            "identical" if pkg == 0 else "differs",
            "",
        )
    )
    example = inputs["photo_scale_0"]

    def metric(e, g):
        return C._face_decisions({"face_prob": e[1]}, {"face_prob": g[1]})

    def judge(target, run, approx=False, note=""):
        for k, x in inputs.items():
            try:
                got = np_out(run(x))
            except Exception as exc:  # noqa: BLE001
                record(name, target, k, float("inf"), False, "-", "rejected", first_line(exc))
                continue
            err, ok = worst([ref[k]], [got])
            m = metric(ref[k], got)
            verdict = ("pass" if m <= 0.01 else "fail") if approx else ("pass" if ok and m == 0 else "fail")
            record(name, target, k, err, ok, f"{m:.3g}", verdict, note)

    H, W = torch.export.Dim("h", min=12, max=200), torch.export.Dim("w", min=12, max=200)
    dyn = {"x": {2: H, 3: W}}

    judge("eager", lambda x: C.build()(*x))
    tr = torch.jit.trace(C.build(), example)
    judge("torchscript", lambda x: tr(*x))
    refusal = ""
    try:
        ep = torch.export.export(C.build(), example, dynamic_shapes=dyn, strict=False)
        ep_note = "dynamic H, W"
    except Exception as exc:  # noqa: BLE001
        refusal = first_line(exc)
        ep = torch.export.export(C.build(), example, strict=False)
        ep_note = f"dynamic H/W refused ({refusal[:120]}); fixed at {tuple(example[0].shape)}"
    judge("torch-export", lambda x: ep.module()(*x), note=ep_note)
    for target, dynamo in (("onnx", True), ("onnx-legacy", False)):
        path = OUT / f"pnet.{target}.onnx"
        try:
            kw = (
                dict(dynamic_shapes=dyn)
                if dynamo
                else dict(dynamic_axes={"image": {2: "h", 3: "w"}}, opset_version=17)
            )
            torch.onnx.export(
                C.build(),
                example,
                str(path),
                dynamo=dynamo,
                input_names=["image"],
                output_names=["box_offsets", "face_prob"],
                **kw,
            )
            note = ""
        except Exception as exc:  # noqa: BLE001
            if not dynamo:
                raise
            note = f"dynamic refused ({first_line(exc)[:100]}); fixed"
            torch.onnx.export(
                C.build(),
                example,
                str(path),
                dynamo=True,
                input_names=["image"],
                output_names=["box_offsets", "face_prob"],
            )
        s = ort_session(path)
        shape = [
            d.dim_value or d.dim_param
            for d in __import__("onnx").load(str(path)).graph.input[0].type.tensor_type.shape.dim
        ]
        judge(
            target,
            lambda x, s=s: s.run(None, {"image": x[0].numpy()}),
            note=(note + f" graph input {shape}").strip(),
        )
        if dynamo:
            from onnxruntime.quantization import quantize_dynamic

            q = OUT / "pnet.int8.onnx"
            quantize_dynamic(str(path), str(q))
            sq = ort_session(q)
            judge("onnx-int8", lambda x, sq=sq: sq.run(None, {"image": x[0].numpy()}), approx=True)
    for backend in ("xnnpack", "portable"):
        target = f"executorch-{backend}"
        try:
            buf = et_program(C.build(), example, backend, dyn)
            note = "dynamic H, W"
        except Exception as exc:  # noqa: BLE001
            note = f"dynamic refused ({first_line(exc)[:100]}); fixed at example"
            buf = et_program(C.build(), example, backend)
        p = OUT / f"pnet.{backend}.pte"
        p.write_bytes(buf)
        meth = et_method(p)
        judge(target, lambda x, meth=meth: meth.execute([x[0].contiguous()]), note=note)
    import openvino as ov

    ovm = ov.convert_model(C.build(), example_input=example)
    ov.save_model(ovm, str(OUT / "pnet.xml"), compress_to_fp16=False)
    for prec in (None, "f32"):
        comp, used = ov_compiled(OUT / "pnet.xml", prec)
        judge(
            "openvino" if prec is None else "openvino (f32 hint)",
            lambda x, comp=comp: [comp(x[0].numpy())[i] for i in range(2)],
            approx=(used != "f32"),
            note=f"precision {used}",
        )
    if os.environ.get("GT_AOTI", "1") == "1":
        t0 = time.time()
        try:
            ep2 = torch.export.export(
                C.build(), example, dynamic_shapes=dyn if not refusal else None, strict=False
            )
            pkg_path = torch._inductor.aoti_compile_and_package(ep2, package_path=str(OUT / "pnet.aoti.pt2"))
            runner = torch._inductor.aoti_load_package(pkg_path)
            judge("aoti", lambda x: runner(*x), note=f"compile {time.time() - t0:.0f} s")
        except Exception as exc:  # noqa: BLE001
            record(name, "aoti", "all", float("inf"), False, "-", "export-error", first_line(exc))


# ============================================================================================
# BeatNet: streaming, LSTM state in plain tensor attributes (self.hidden / self.cell)
# ============================================================================================


class ExplicitState(torch.nn.Module):
    """BDA.forward with the state in the signature: (features, hidden, cell) -> (logits, hidden, cell)."""

    def __init__(self, bda):
        super().__init__()
        self.bda = bda

    def forward(self, data, hidden, cell):
        b = self.bda
        x = torch.reshape(data, (-1, b.dim_in)).unsqueeze(0).transpose(0, 1)
        x = F.max_pool1d(F.relu(b.conv1(x)), 2)
        x = x.view(-1, b.num_flat_features(x))
        x = b.linear0(x)
        x = torch.reshape(x, (data.shape[0], data.shape[1], b.conv_out))
        x, (hidden, cell) = b.lstm(x, (hidden, cell))
        return b.linear(x).transpose(1, 2), hidden, cell


def as_buffers(bda):
    """The same model with hidden / cell registered as buffers (what a state-carrying export needs)."""
    m = copy.deepcopy(bda)
    h, c = m.hidden.clone(), m.cell.clone()
    del m.hidden, m.cell
    m.register_buffer("hidden", h)
    m.register_buffer("cell", c)
    return m


def gt_beatnet():
    import beatnet_case as C

    name = "beatnet"
    streams = {"kick_808": C._kick_calls(), "clicks_100bpm": C._click_calls()}
    example = streams["kick_808"][0]
    h0 = torch.zeros(2, 1, 150)

    def eager_stream(calls, model=None):
        model = model or C.build()
        with torch.no_grad():
            return [np_out(model(*x)) for x in calls]

    ref = {k: eager_stream(v) for k, v in streams.items()}
    with torch.no_grad():  # BeatNet's online mode: whole song, one call, from the initial state
        offline = {k: np_out(C.build()(torch.cat([x[0] for x in v], dim=1)))[0] for k, v in streams.items()}
    for k in streams:
        streamed = np.concatenate([r[0] for r in ref[k]], axis=2)
        print(
            f"beatnet {k}: streamed (1 frame/call) vs BeatNet's online mode (whole song): "
            f"{np.abs(streamed - offline[k]).max():.3g}",
            file=sys.stderr,
        )
        ROWS.append(
            (
                name,
                "eager stream vs online mode",
                k,
                float(np.abs(streamed - offline[k]).max()),
                True,
                "-",
                "agree",
                "stream-offline truth",
            )
        )

    def metric(e, g):
        return C.beat_activation_error(0).compute(
            {"logits": np.stack([c[0] for c in e])}, {"logits": np.stack([c[0] for c in g])}
        )[0]

    def judge(target, make_runner, approx=False, note=""):
        for k, calls in streams.items():
            try:
                run = make_runner()
                got = [np_out(run(x))[:1] for x in calls]
            except Exception as exc:  # noqa: BLE001
                record(name, target, k, float("inf"), False, "-", "error", first_line(exc))
                continue
            err, ok = worst([r[:1] for r in ref[k]], got)
            first, _ = worst([ref[k][0][:1]], got[:1])
            m = metric([r[:1] for r in ref[k]], got)
            verdict = ("pass" if m <= 0.05 else "fail") if approx else ("pass" if ok else "fail")
            extra = f"first call {first:.2g}" if verdict == "fail" else ""
            record(name, target, k, err, ok, f"{m:.3g}", verdict, "; ".join(x for x in (note, extra) if x))

    # explicit-state wrapper equals the package's stateful BDA
    ex = ExplicitState(C.build())

    def explicit_runner(module):
        state = [h0.clone(), h0.clone()]

        def run(x):
            out, state[0], state[1] = module(x[0], state[0], state[1])
            return out

        return run

    with torch.no_grad():
        e2 = [np_out(explicit_runner(ex)(x)) for x in streams["kick_808"]]
    with torch.no_grad():
        r = explicit_runner(ex)
        e2 = [np_out(r(x)) for x in streams["kick_808"]]
    d = worst([c[:1] for c in ref["kick_808"]], e2)[0]
    ROWS.append(
        (
            name,
            "(explicit-state wrapper vs BDA)",
            "kick_808",
            d,
            d == 0,
            "-",
            "identical" if d == 0 else "differs",
            "",
        )
    )

    def mod(m):
        return lambda x: m(*x)

    judge("eager", lambda: mod(C.build()))
    # --- plain exports of the package's module, as a user writes them (state attributes frozen)
    judge(
        "torchscript (plain trace)", lambda: mod(torch.jit.trace(C.build(), example, check_trace=False))
    )  # the check refuses: the state constants differ between its two traces
    try:
        ep_plain = torch.export.export(C.build(), example, strict=False)
        judge("torch-export (plain)", lambda: mod(ep_plain.module()))
    except Exception as exc:  # noqa: BLE001
        record(name, "torch-export (plain)", "all", float("inf"), False, "-", "export-error", first_line(exc))
    for target, dynamo in (("onnx", True), ("onnx-legacy", False)):
        path = OUT / f"beatnet.{target}.onnx"
        try:
            torch.onnx.export(
                C.build(),
                example,
                str(path),
                dynamo=dynamo,
                input_names=["features"],
                output_names=["logits"],
                **({} if dynamo else {"opset_version": 17}),
            )
            s = ort_session(path)
            judge(f"{target} (plain)", lambda s=s: lambda x: s.run(None, {"features": x[0].numpy()}))
        except Exception as exc:  # noqa: BLE001
            record(
                name, f"{target} (plain)", "all", float("inf"), False, "-", "export-error", first_line(exc)
            )
    # --- state-carrying exports: hidden / cell registered as buffers, or lifted into the signature
    ep = torch.export.export(as_buffers(C.build()), example, strict=False)
    mutated = sorted(ep.graph_signature.buffers_to_mutate.values())
    judge(
        "torch-export (buffers)",
        lambda: mod(torch.export.export(as_buffers(C.build()), example, strict=False).module()),
        note=f"mutated buffers {mutated}",
    )
    path = OUT / "beatnet.stateful.onnx"
    torch.onnx.export(
        ExplicitState(C.build()),
        (example[0], h0.clone(), h0.clone()),  # two tensors: aliased inputs are merged by the exporter
        str(path),
        dynamo=True,
        input_names=["features", "state.hidden", "state.cell"],
        output_names=["logits", "next_state.hidden", "next_state.cell"],
    )

    def ort_lifted(session):
        def make():
            st = [h0.numpy().copy(), h0.numpy().copy()]

            def run(x):
                out, st[0], st[1] = session.run(
                    None, {"features": x[0].numpy(), "state.hidden": st[0], "state.cell": st[1]}
                )
                return out

            return run

        return make

    judge("onnx-stateful (lifted)", ort_lifted(ort_session(path)))
    from onnxruntime.quantization import quantize_dynamic

    q = OUT / "beatnet.int8.onnx"
    quantize_dynamic(str(path), str(q))
    judge("onnx-int8 (lifted)", ort_lifted(ort_session(q)), approx=True)
    for backend in ("xnnpack", "portable"):
        p = OUT / f"beatnet.{backend}.pte"
        p.write_bytes(et_program(as_buffers(C.build()), example, backend))
        judge(
            f"executorch-{backend} (buffers)",
            lambda p=p: (lambda m: lambda x: m.execute([x[0].contiguous()]))(et_method(p)),
        )
        try:
            p2 = OUT / f"beatnet.{backend}.plain.pte"
            p2.write_bytes(et_program(C.build(), example, backend))
            judge(
                f"executorch-{backend} (plain)",
                lambda p2=p2: (lambda m: lambda x: m.execute([x[0].contiguous()]))(et_method(p2)),
            )
        except Exception as exc:  # noqa: BLE001
            record(
                name,
                f"executorch-{backend} (plain)",
                "all",
                float("inf"),
                False,
                "-",
                "export-error",
                first_line(exc),
            )
    import openvino as ov

    ov.save_model(ov.convert_model(str(path)), str(OUT / "beatnet.xml"), compress_to_fp16=False)
    for prec in (None, "f32"):
        comp, used = ov_compiled(OUT / "beatnet.xml", prec)

        def make(comp=comp):
            st = [h0.numpy().copy(), h0.numpy().copy()]

            def run(x):
                res = comp([x[0].numpy(), st[0], st[1]])
                out, st[0], st[1] = (res[i] for i in range(3))
                return out

            return run

        judge(
            "openvino (lifted)" if prec is None else "openvino (lifted, f32 hint)",
            make,
            approx=(used != "f32"),
            note=f"precision {used}",
        )
    if os.environ.get("GT_AOTI", "1") == "1":
        t0 = time.time()
        try:
            epb = torch.export.export(as_buffers(C.build()), example, strict=False)
            pk = torch._inductor.aoti_compile_and_package(epb, package_path=str(OUT / "beatnet.aoti.pt2"))
            secs = time.time() - t0
            judge(
                "aoti (buffers)",
                lambda: mod(torch._inductor.aoti_load_package(pk)),
                note=f"compile {secs:.0f} s",
            )
        except Exception as exc:  # noqa: BLE001
            record(name, "aoti (buffers)", "all", float("inf"), False, "-", "export-error", first_line(exc))


def table() -> str:
    lines = [
        "| model | target (how exported) | input | worst abs error | within 1e-4+1e-4·|ref| | task metric | verdict | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, target, inp, err, ok, metric, verdict, note in ROWS:
        lines.append(
            f"| {model} | {target} | {inp} | {err:.3g} | {'yes' if ok else 'no'} | {metric} | **{verdict}** | {note} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    torch.manual_seed(0)
    torch.set_num_threads(1)
    which = sys.argv[1:] or ["mtcnn_pnet", "beatnet"]
    for w in which:
        try:
            with torch.no_grad():
                (
                    {
                        "mtcnn_pnet": gt_pnet,
                        "beatnet": gt_beatnet,
                        "g2p_en": lambda: __import__("g2p_case").ground_truth(ROWS, record),
                    }[w]
                )()
        except Exception:  # noqa: BLE001
            traceback.print_exc()
    print(f"torch {torch.__version__}")
    for mod in ("onnxruntime", "executorch", "openvino"):
        try:
            print(f"{mod} {__import__(mod).__version__}  ", end="")
        except Exception:  # noqa: BLE001
            pass
    print("\n")
    print(table())
