"""`mtmm inspect`: what an export or a checkpoint holds (signatures, classes, ready-to-send requests, gates)."""

from __future__ import annotations

from pathlib import Path

from keras_mtmm.data.tables import SPLITS, as_table, load_splits
from keras_mtmm.errors import UserError
from keras_mtmm.evaluation.inspection import (
    format_gates,
    format_modality_weights,
    format_selected_experts,
    fusion_summary,
    gate_summary,
    mixing_summary,
)
from keras_mtmm.export.saved_model import is_saved_model, read_export_metadata
from keras_mtmm.export.warmup import WARMUP_FILE, read_warmup, rest_body
from keras_mtmm.models.network import CONDITIONAL_SUFFIX
from keras_mtmm.run_folder import RunFolder

INSPECT_ROWS = 20000


def inspect_command(args) -> int:
    if str(args.model).endswith(".keras"):
        return _inspect_checkpoint(args)
    if not is_saved_model(args.model):
        raise UserError(
            "--model", f"'{args.model}' has no saved_model.pb and is not a .keras file", "pass an export or best.keras"
        )
    return _inspect_export(args)


def _inspect_export(args) -> int:
    import json

    import tensorflow as tf

    _, metadata = read_export_metadata(args.model)
    signatures = tf.saved_model.load(args.model).signatures
    if args.requests:
        return _print_requests(args, metadata, list(signatures))
    print(f"model {metadata['name']} version {metadata.get('version')}")
    print("inputs (the same for every signature):")
    specs = signatures["serving_default"].structured_input_signature[1]
    for input_name, info in metadata["inputs"].items():
        spec = specs[input_name]
        shape = str(spec.shape)
        print(f"  {input_name:<14} {spec.dtype.name:<8} {shape:<12} {info.get('type', '')} {info.get('columns', '')}")
    for name, signature in signatures.items():
        print(f"signature {name} outputs:")
        for output_name, spec in sorted(signature.structured_outputs.items()):
            task = metadata["tasks"].get(output_name, {})
            dependent = output_name.removesuffix(CONDITIONAL_SUFFIX)
            if output_name.endswith("_label") and output_name not in metadata["tasks"]:
                meaning = "predicted class name(s)"
            elif dependent != output_name and dependent in metadata["tasks"]:
                parent = metadata["tasks"][dependent].get("depends_on")
                meaning = f"p({dependent} | {parent}): the head of {dependent} = {parent} x this"
            else:
                classes = f" classes={task['classes']}" if task.get("classes") else ""
                meaning = f"{task.get('type', '')}{classes}"
            print(f"  {output_name:<14} {spec.dtype.name:<8} {str(spec.shape):<12} {meaning}")
    print("task weights: " + json.dumps(metadata["task_weights"]))
    return 0


def _print_requests(args, metadata: dict, signatures: list[str]) -> int:
    """A REST body from the export's warmup records, the curl command to send it, and the same call over gRPC."""
    import json
    import shlex

    if args.signature not in signatures:
        raise UserError("--signature", f"the export has no signature '{args.signature}'", f"choose: {signatures}")
    model_path = Path(args.model).resolve()
    recorded = read_warmup(model_path)
    names = [r.model_spec.signature_name for r in recorded]
    requests = [r for r in recorded if r.model_spec.signature_name == args.signature]
    if not requests:
        raise UserError("--model", "the export has no warmup requests to build an example from", "export it again")
    name, version = model_path.parent.name, model_path.name  # the server names a model after its folder
    body = json.dumps(rest_body(requests[0]))
    url = f"http://{args.host}:{args.rest_port}/v1/models/{name}/versions/{version}:predict"
    print(f"# REST: POST {url}")
    print("# body (row form; one validation example from the warmup records; bytes travel as {'b64': ...}):")
    print(body)
    print("\n# send it with curl:")
    print(shlex.join(["curl", "-s", "-X", "POST", url, "-H", "Content-Type: application/json", "-d", body]))
    print("\n# the same request over gRPC (tensorflow-serving-api), replayed from the warmup file:")
    warmup = str(model_path / "assets.extra" / WARMUP_FILE)
    print(
        "python - <<'PY'\n"
        "import grpc, tensorflow as tf\n"
        "from tensorflow_serving.apis import prediction_log_pb2, prediction_service_pb2_grpc\n"
        f"records = tf.data.TFRecordDataset({warmup!r})\n"
        "logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in records]\n"
        f"request = [log.predict_log.request for log in logs][{names.index(args.signature)}]\n"
        f"request.model_spec.version.value = {int(version)}\n"
        f"channel = grpc.insecure_channel('{args.host}:{args.grpc_port}')\n"
        "response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)\n"
        "print({name: tf.make_ndarray(tensor).tolist() for name, tensor in response.outputs.items()})\n"
        "PY"
    )
    print("\n# or with the keras_mtmm client (raw Python values; image bytes or pathlib.Path):")
    print(
        f"ServingClient({args.host!r}, rest_port={args.rest_port}, grpc_port={args.grpc_port}, model={name!r}, "
        f"version={int(version)}, signature={args.signature!r}, transport='grpc').predict(rows)"
    )
    return 0


def _inspect_checkpoint(args) -> int:
    import json

    checkpoint = Path(args.model)
    run = RunFolder(checkpoint.parent)
    if not checkpoint.is_file() or not (run / run.CONFIG).is_file():
        raise UserError("--model", f"'{checkpoint}' is not a checkpoint in a run folder", "pass runs/<name>/best.keras")
    if args.split not in SPLITS:
        raise UserError("--split", f"unknown split '{args.split}'", f"choose one of: {', '.join(SPLITS)}")
    config, preprocessor, network = run.load_config(), run.load_preprocessor(), run.load_network(checkpoint.name)
    table = as_table(load_splits(config)[args.split], INSPECT_ROWS)
    summary = {"split": args.split, "gates": gate_summary(network, preprocessor, table), **mixing_summary(network)}
    summary["modality_weights"] = fusion_summary(network, preprocessor, table)
    print(format_gates(summary["gates"]))
    print(format_modality_weights(summary["modality_weights"]))
    if "selected_experts" in summary:
        print(format_selected_experts(summary["selected_experts"]))
    for key in ("cross_stitch", "fusion_weights"):
        if key in summary:
            print(f"{key}: {json.dumps(summary[key])}")
    if args.output:
        Path(args.output).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return 0
