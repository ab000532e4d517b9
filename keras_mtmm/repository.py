"""The TF Serving model repository: `models.config`, version labels, pruning, server config templates.

Under the export root (e.g. `saved_models/`):

    models.config              text-format ModelServerConfig, one entry per model
    batching_parameters.txt    a starting point for --enable_batching (written once, yours to edit)
    monitoring.config          Prometheus metrics at /monitoring/prometheus/metrics (written once)
    <name>/<version>/          the exported versions

Each entry's version policy is `latest` while the model has no labels; with
labels it is `specific` over the labelled versions plus the newest, because
TF Serving only lets a label point at a version it has loaded. The file is
rewritten atomically (written beside it, then renamed).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from keras_mtmm.errors import UserError

CONFIG_FILE = "models.config"
BATCHING_FILE = "batching_parameters.txt"
MONITORING_FILE = "monitoring.config"
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9_]+$")

BATCHING_TEMPLATE = """# TF Serving batching:
#   tensorflow_model_server --enable_batching --batching_parameters_file=<this file>
# A starting point for small models on CPU: raise max_batch_size for throughput, lower
# batch_timeout_micros for latency. A request with more rows than max_batch_size is refused
# (keras_mtmm's ServingClient splits at batch_size=64). keras_mtmm writes this file once and
# never overwrites it.
max_batch_size { value: 64 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 4 }
allowed_batch_sizes: 1
allowed_batch_sizes: 8
allowed_batch_sizes: 64
"""

MONITORING_TEMPLATE = """# TF Serving metrics for Prometheus (the REST port, /monitoring/prometheus/metrics):
#   tensorflow_model_server --monitoring_config_file=<this file>
prometheus_config {
  enable: true
  path: "/monitoring/prometheus/metrics"
}
"""


def read_models_config(export_dir: str | Path):
    """The repository's ModelServerConfig (an empty one if there is no models.config yet)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    path = Path(export_dir) / CONFIG_FILE
    if path.is_file():
        try:
            text_format.Parse(path.read_text(encoding="utf-8"), config)
        except text_format.ParseError as error:
            raise UserError(str(path), f"not a text-format ModelServerConfig ({error})", "fix or delete it") from None
    return config


def versions_of(export_dir: str | Path, name: str) -> list[int]:
    from keras_mtmm.export import existing_versions

    return existing_versions(Path(export_dir) / name)


def register_model(export_dir: str | Path, name: str) -> Path:
    """Make sure `models.config` names the model (and the server templates exist); return the file."""
    export_dir = Path(export_dir)
    _write_once(export_dir / BATCHING_FILE, BATCHING_TEMPLATE)
    _write_once(export_dir / MONITORING_FILE, MONITORING_TEMPLATE)
    config = read_models_config(export_dir)
    _entry(config, export_dir, name)
    return _write(config, export_dir)


def set_label(export_dir: str | Path, name: str, version: int, label: str) -> Path:
    """Point `label` (e.g. stable, canary) at an existing version of a model."""
    export_dir = Path(export_dir)
    if not LABEL_PATTERN.match(label or ""):
        raise UserError("label", f"'{label}' is not a valid TF Serving label", "use letters, digits and _ only")
    versions = versions_of(export_dir, name)
    if version not in versions:
        raise UserError(
            "version",
            f"model '{name}' has no version {version} under {export_dir}",
            f"existing versions: {', '.join(map(str, versions)) or 'none'}",
        )
    config = read_models_config(export_dir)
    entry = _entry(config, export_dir, name)
    entry.version_labels[label] = version
    return _write(config, export_dir)


def prune_versions(export_dir: str | Path, name: str, keep: int) -> list[int]:
    """Delete all but the newest `keep` versions, never one a label points to; return the deleted versions."""
    if keep < 1:
        raise UserError("--keep", f"expected at least 1, got {keep}", "keep the newest version at least")
    export_dir = Path(export_dir)
    config = read_models_config(export_dir)
    entry = _entry(config, export_dir, name)
    labelled = set(entry.version_labels.values())
    versions = versions_of(export_dir, name)
    deleted = [v for v in versions[: max(0, len(versions) - keep)] if v not in labelled]
    for version in deleted:
        # Rename first: the server never sees a half-deleted version.
        doomed = export_dir / name / f".deleting-{version}"
        os.rename(export_dir / name / str(version), doomed)
        shutil.rmtree(doomed)
    _write(config, export_dir)
    return deleted


def _entry(config, export_dir: Path, name: str):
    for entry in config.model_config_list.config:
        if entry.name == name:
            return entry
    entry = config.model_config_list.config.add()
    entry.name = name
    entry.base_path = str((export_dir / name).resolve())
    entry.model_platform = "tensorflow"
    return entry


def _write(config, export_dir: Path) -> Path:
    """Refresh every entry's version policy, drop labels of vanished versions, write atomically."""
    from google.protobuf import text_format

    for entry in config.model_config_list.config:
        versions = versions_of(export_dir, entry.name)
        for label, version in list(entry.version_labels.items()):
            if version not in versions:
                del entry.version_labels[label]
        entry.ClearField("model_version_policy")
        if entry.version_labels:
            served = sorted(set(entry.version_labels.values()) | set(versions[-1:]))
            entry.model_version_policy.specific.versions.extend(served)
        else:
            entry.model_version_policy.latest.num_versions = 1
    path = export_dir / CONFIG_FILE
    export_dir.mkdir(parents=True, exist_ok=True)
    staging = export_dir / f".{CONFIG_FILE}.tmp"
    staging.write_text(text_format.MessageToString(config), encoding="utf-8")
    os.replace(staging, path)
    return path


def _write_once(path: Path, text: str) -> None:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
