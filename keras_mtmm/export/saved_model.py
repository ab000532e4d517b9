"""Export for TensorFlow Serving: `<export_dir>/<name>/<version>/`, raw inputs in, named outputs out.

The SavedModel's `serving_default` signature takes one raw input per
modality (named after it: image bytes, text, float32 numerics, category
strings; "" / NaN = missing), runs the Preprocessor and the model inside the
graph, and returns `{task: output}`; `predict_<task>` takes the same inputs
and returns one task's output plus, for classifiers, `<task>_label`. It loads with the plain TensorFlow
loader, no keras_mtmm import, as `tensorflow_model_server` does.

A version is written into `<export_dir>/.tmp/` and renamed into place only
when complete, so the server (which polls the base path) never sees a
half-written version; an existing version is never overwritten.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import keras
import tensorflow as tf

from keras_mtmm.data.tables import as_table, load_splits, warmup_split
from keras_mtmm.disk_space import DiskFull, is_disk_full, model_bytes, require_free_space
from keras_mtmm.errors import ExportError
from keras_mtmm.export.repository import check_free, check_request, existing_versions, next_version, publish_version  # noqa: F401 (re-exported)
from keras_mtmm.export.warmup import warmup_requests, write_warmup
from keras_mtmm.models.network import CONDITIONAL_SUFFIX
from keras_mtmm.run_folder import RunFolder
from keras_mtmm.tasks import get_task_type
from keras_mtmm.tasks.base import task_settings
from keras_mtmm.version import __version__

CONFIG_ASSET = "keras_mtmm_config.yaml"
METADATA_ASSET = "keras_mtmm_metadata.json"
STAGING_FOLDER = ".tmp"
DEFAULT_SIGNATURE = "serving_default"
TASK_SIGNATURE_PREFIX = "predict_"
LABEL_SUFFIX = "_label"


def export_model(
    model: keras.Model,
    preprocessor,
    config_yaml: str,
    metadata: dict,
    export_dir: str | Path,
    name: str,
    version: int | None = None,
    warmup_inputs: dict | None = None,
    labels: list[str] | None = None,
    keep: int | None = None,
) -> Path:
    """Write a new SavedModel version for TF Serving and return its folder.

    The version gets TF Serving warmup requests (from `warmup_inputs`, raw
    rows), and the repository's `models.config` names the model; `labels`
    (e.g. `["canary"]`) then point at the new version, and `keep` prunes all
    but the newest `keep` unlabelled versions.

    Args:
        model: the trained model (dict of preprocessed inputs -> dict of task outputs).
        preprocessor: the adapted `Preprocessor` that made its inputs.
        config_yaml: the resolved config, stored as `assets.extra/keras_mtmm_config.yaml`.
        metadata: task weights, classes, inputs, versions; stored as
            `assets.extra/keras_mtmm_metadata.json`.
        export_dir: the model repository root (e.g. `saved_models`).
        name: the model name (its base path is `<export_dir>/<name>`).
        version: the version number; default: the next free one.
        warmup_inputs: raw serving inputs of a few examples, for
            `assets.extra/tf_serving_warmup_requests` (each signature, batch sizes 1 and 8).
        labels: version labels to point at the new version.
        keep: versions to keep (labelled ones are always kept).
    """
    check_request(name, version, labels, keep)
    check_finite_weights(model)
    export_dir = Path(export_dir)
    base_path = export_dir / name
    for folder in (export_dir / STAGING_FOLDER, base_path):
        if folder.is_symlink():
            raise ExportError(str(folder), "is a symbolic link", "remove the link: exports never write through one")
    if version is not None:
        check_free(base_path, version)
    fix = "free disk space or pick another --export-dir, then export again (mtmm export --run RUN)"
    require_free_space(export_dir, 2 * model_bytes(model, optimizer=False), "the export", fix)
    staging = export_dir / STAGING_FOLDER / f"{name}-{uuid.uuid4().hex}"
    try:
        staging.mkdir(parents=True)  # one call: another export may remove an empty .tmp at any moment
        write_saved_model(model, preprocessor, staging)
        if warmup_inputs is not None:
            dtypes = {key: spec.dtype for key, spec in preprocessor.raw_input_signature().items()}
            signatures = [DEFAULT_SIGNATURE, *(task_signature(task) for task in model.output)]
            write_warmup(staging, warmup_requests(warmup_inputs, dtypes, name, signatures=signatures))
        extra = staging / "assets.extra"
        extra.mkdir(exist_ok=True)
        (extra / CONFIG_ASSET).write_text(config_yaml, encoding="utf-8")
        metadata_path = extra / METADATA_ASSET

        def stamp(number: int) -> None:
            metadata_path.write_text(json.dumps({**metadata, "version": number}, indent=1), encoding="utf-8")

        final = publish_version(export_dir, name, staging, version, labels, keep, before_rename=stamp)
    except OSError as error:
        raise ExportError(
            str(error.filename or export_dir), f"cannot write the export ({error.strerror or error})", fix
        ) from None
    except Exception as error:  # TensorFlow's writers report a full disk in their own errors
        if not is_disk_full(error):
            raise
        what = "no space left while writing the export; no version was published"
        raise DiskFull(str(export_dir), what, fix) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_if_empty(staging.parent)
    return final


def check_finite_weights(model: keras.Model) -> None:
    """Refuse to export a model whose variables hold NaN or ±inf (it would serve garbage)."""
    import numpy as np

    bad = [weight.path for weight in model.weights if not np.all(np.isfinite(keras.ops.convert_to_numpy(weight)))]
    if bad:
        raise ExportError(
            "export",
            f"{len(bad)} of {len(model.weights)} model variables hold NaN or infinite values (first: {bad[0]})",
            "the training diverged or its data held non-finite values: fix the data or lower the learning rate",
        )


def task_signature(task: str) -> str:
    """The name of a task's own serving signature."""
    return f"{TASK_SIGNATURE_PREFIX}{task}"


def write_saved_model(model: keras.Model, preprocessor, path: str | Path) -> None:
    """Write the SavedModel (graph, variables, assets) with the raw-input signatures.

    `serving_default` returns every task's output; `predict_<task>` returns
    that task's output and, for classification tasks, `<task>_label` (the
    predicted class names, tf.string [batch]; multilabel names joined by
    `data.label_separator`).
    """
    signature = preprocessor.raw_input_signature()
    names = list(signature)
    if not isinstance(model.output, dict):
        raise ValueError("export_model: the model must return a dict of outputs keyed by task name")
    output_names = list(model.output.keys())  # the tasks, and a dependent task's `<task>_conditional`
    task_names = [name for name in output_names if name in preprocessor.tasks]

    def forward(raw_inputs):
        features = preprocessor.transform(dict(zip(names, raw_inputs)))
        return model(features, training=False)

    def run(raw_inputs):
        # An empty batch answers with empty outputs: it runs on one all-missing row, sliced away (some
        # layers cannot run on 0 rows), so every signature has the same output shapes for any batch.
        def empty():
            outputs = forward([_missing_row(spec) for spec in input_signature])
            return {key: value[:0] for key, value in outputs.items()}

        rows = tf.shape(raw_inputs[0])[0]
        return tf.cond(rows > 0, lambda: forward(raw_inputs), empty)

    input_signature = [signature[name] for name in names]
    # Traced once (both branches of its cond) and called by every signature: tracing the model once per
    # signature costs seconds each on CPU, and the saved graph holds one copy of the network's function.
    run = tf.function(run, input_signature=[input_signature], autograph=False)

    def serve(*raw_inputs):
        outputs = run(list(raw_inputs))
        return {name: outputs[name] for name in output_names}

    def serve_task(task):
        task_type = get_task_type(preprocessor.tasks[task]["type"])
        classes = preprocessor.classes(task) if task_type.has_classes else []

        def serve_one(*raw_inputs):
            outputs = run(list(raw_inputs))
            output = outputs[task]
            served = {name: outputs[name] for name in output_names if name in (task, f"{task}{CONDITIONAL_SUFFIX}")}
            labels = task_type.predicted_labels(output, classes, preprocessor.label_separator)
            if labels is not None:
                served[f"{task}{LABEL_SUFFIX}"] = labels
            return served

        return serve_one

    archive = keras.export.ExportArchive()
    archive.track(model)
    for layer in preprocessor.tracked_layers():
        archive.track(layer)
    archive.add_endpoint(DEFAULT_SIGNATURE, serve, input_signature=input_signature)
    for task in task_names:
        archive.add_endpoint(task_signature(task), serve_task(task), input_signature=input_signature)
    archive.write_out(str(path), verbose=False)


def _missing_row(spec: tf.TensorSpec) -> tf.Tensor:
    """One row of a raw serving input with the modality missing ("" or NaN)."""
    shape = [1, *spec.shape[1:]]
    if spec.dtype == tf.string:
        return tf.fill(shape, "")
    return tf.fill(shape, tf.constant(float("nan"), spec.dtype))


def read_export_metadata(path: str | Path) -> tuple[str, dict]:
    """(resolved config YAML, metadata) stored in an export's assets.extra."""
    extra = Path(path) / "assets.extra"
    try:
        config_yaml = (extra / CONFIG_ASSET).read_text(encoding="utf-8")
        metadata = json.loads((extra / METADATA_ASSET).read_text(encoding="utf-8"))
    except OSError:
        raise ExportError(
            str(path),
            "not a keras_mtmm export (assets.extra/keras_mtmm_*.* missing)",
            "pass a version folder written by train.py",
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ExportError(
            str(extra / METADATA_ASSET),
            f"is damaged or not keras_mtmm's ({error.__class__.__name__}: {error})",
            "re-export the model (mtmm export --run RUN)",
        ) from None
    if not isinstance(metadata, dict):
        raise ExportError(
            str(extra / METADATA_ASSET),
            f"is not keras_mtmm export metadata (a JSON {type(metadata).__name__}, not an object)",
            "re-export the model (mtmm export --run RUN)",
        )
    return config_yaml, metadata


def is_saved_model(path: str | Path) -> bool:
    return (Path(path) / "saved_model.pb").is_file()


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def model_metadata(config, preprocessor, task_weights: dict[str, float]) -> dict:
    """What a consumer of the model needs besides the graph: tasks, classes, weights, inputs, versions."""
    tasks = {}
    for task, task_config in config.tasks.items():
        offset, scale = preprocessor.target_statistics(task)
        tasks[task] = {
            "type": task_config.type,
            "label": task_config.label,
            "classes": preprocessor.classes(task),
            "metrics": list(task_config.metrics) if task_config.metrics else None,
            "top_k": task_config.top_k,
            "group": task_config.group,
            "depends_on": task_config.depends_on,
            "ndcg_k": task_config.ndcg_k,
            "target_offset": offset,
            "target_scale": scale,
            **task_settings(config, task_config),
        }
    inputs = {
        name: {
            "type": modality.type,
            "columns": list(modality.columns),
            "dtype": spec.dtype.name,
            "shape": spec.shape.as_list(),
        }
        for (name, modality), spec in zip(config.modalities.items(), preprocessor.raw_input_signature().values())
    }
    return {
        "name": config.name,
        "task_weights": {task: float(task_weights[task]) for task in config.tasks},
        "weighting": config.weighting.strategy,
        "tasks": tasks,
        "inputs": inputs,
        "label_separator": config.data.label_separator,
        "versions": {"keras_mtmm": __version__, "tensorflow": tf.__version__, "keras": keras.__version__},
    }


def export_run(
    run_dir: str | Path,
    export_dir: str | Path | None = None,
    version: int | None = None,
    labels: list[str] | None = None,
    keep: int | None = None,
    checkpoint: str = RunFolder.BEST,
) -> Path:
    """Export a finished run folder's checkpoint again (e.g. after `--no-export`, or into another repository).

    The run's resolved config, metadata and adapted Preprocessor are used as
    they are; the warmup requests come from the run's data (validation rows).
    """
    run = RunFolder(run_dir)
    absent = [name for name in (run.CONFIG, run.METADATA, run.PREPROCESSOR, checkpoint) if not (run / name).exists()]
    if absent:
        raise ExportError(
            "--run",
            f"'{run_dir}' is not a finished run folder ({', '.join(absent)} missing)",
            "pass the folder train.py printed as 'run folder: ...'",
        )
    config_yaml, config, metadata = run.config_yaml(), run.load_config(), run.metadata()
    metadata.pop("version", None)
    preprocessor = run.load_preprocessor()
    network = run.load_network(checkpoint)
    warmup = preprocessor.raw_inputs(as_table(warmup_split(load_splits(config)), 8))
    return export_model(
        network,
        preprocessor,
        config_yaml,
        metadata,
        export_dir if export_dir is not None else config.export.dir,
        config.name,
        version,
        warmup_inputs=warmup,
        labels=labels,
        keep=keep,
    )
