"""The TF Serving model repository: `models.config`, version labels, pruning, server config templates.

Under the export root (e.g. `saved_models/`):

    models.config              text-format ModelServerConfig, one entry per model
    batching_parameters.txt    a starting point for --enable_batching (written once, yours to edit)
    monitoring.config          Prometheus metrics at /monitoring/prometheus/metrics (written once)
    <name>/<version>/          the exported versions

Each entry's version policy is `latest` while the model has no labels; with
labels it is `specific` over the labelled versions plus the newest, because
TF Serving only lets a label point at a version it has loaded.

Safe under concurrency: every change of the repository (a new version's
number and rename, `models.config`, labels, pruning) happens under an
exclusive `fcntl` lock on `<export root>/.keras_mtmm.lock`, as a
read-modify-write of the current file; the new file is written to a unique
temporary file (created with `O_EXCL | O_NOFOLLOW`) in the same folder and
renamed over the old one. Symbolic links in the repository are never
followed for a write or a delete: a planted temporary file cannot redirect a
write, and pruning a version that is a link removes the link, not its target.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from keras_mtmm.config.names import check_model_name
from keras_mtmm.errors import ExportError, UserError

CONFIG_FILE = "models.config"
BATCHING_FILE = "batching_parameters.txt"
MONITORING_FILE = "monitoring.config"
LOCK_FILE = ".keras_mtmm.lock"
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9_]+$")
MAX_VERSION = 2**63 - 1  # TF Serving's versions are positive int64

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
    if path.is_symlink():
        raise UserError(str(path), "is a symbolic link", "replace it with the file itself (or delete it)")
    if path.is_file():
        try:
            text_format.Parse(path.read_text(encoding="utf-8"), config)
        except text_format.ParseError as error:
            raise UserError(str(path), f"not a text-format ModelServerConfig ({error})", "fix or delete it") from None
    return config


def existing_versions(base_path: str | Path) -> list[int]:
    """The version folders under a model's base path (positive int64 names, as TF Serving reads), sorted."""
    base_path = Path(base_path)
    if not base_path.is_dir():
        return []
    versions = (int(p.name) for p in base_path.iterdir() if p.name.isascii() and p.name.isdigit() and p.is_dir())
    return sorted(v for v in versions if 1 <= v <= MAX_VERSION)


def next_version(base_path: str | Path) -> int:
    """One more than the highest existing version (1 for a new model)."""
    versions = existing_versions(base_path)
    return versions[-1] + 1 if versions else 1


def check_free(base_path: Path, version: int) -> Path:
    """The folder of a version that does not exist yet (an ExportError if anything is there, a link included)."""
    final = base_path / str(version)
    if os.path.lexists(final):
        raise ExportError(
            "export.version",
            f"version {version} already exists at {final}",
            "leave export.version unset to take the next version, or pick a free one",
        )
    return final


def versions_of(export_dir: str | Path, name: str) -> list[int]:
    return existing_versions(Path(export_dir) / name)


# ------------------------------------------------------------------ checks (before anything is written)


def check_version(version, where: str = "--version") -> int:
    """A TF Serving version: a positive int64."""
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise UserError(where, f"expected a whole number from 1 to {MAX_VERSION}, got {version!r}", "e.g. 3")
    return version


def check_label(label, where: str = "--label") -> str:
    if not isinstance(label, str) or not LABEL_PATTERN.match(label):
        raise UserError(where, f"{label!r} is not a valid TF Serving label", "use letters, digits and _ only")
    return label


def check_keep(keep, where: str = "--keep") -> int:
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise UserError(where, f"expected at least 1, got {keep!r}", "keep the newest version at least")
    return keep


def check_request(name: str, version=None, labels=None, keep=None) -> None:
    """Everything an export is asked for, checked before it writes anything."""
    check_model_name(name, "name")
    if version is not None:
        check_version(version)
    for label in labels or []:
        check_label(label)
    if keep is not None:
        check_keep(keep)


@contextlib.contextmanager
def repository_lock(export_dir: str | Path) -> Iterator[Path]:
    """Hold the repository's exclusive lock (re-entrant within a process); yields the export root."""
    export_dir = Path(export_dir)
    key = str(export_dir.resolve())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield export_dir
        finally:
            _HELD[key] -= 1
        return
    _make_folder(export_dir)
    try:
        handle = os.open(export_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        raise UserError(
            str(export_dir / LOCK_FILE), f"cannot open the repository lock ({error.strerror})", "remove what is there"
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _HELD[key] = 1
        try:
            yield export_dir
        finally:
            del _HELD[key]
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)


_HELD: dict[str, int] = {}


# ------------------------------------------------------------------ changes (each under the lock)


def publish_version(
    export_dir: str | Path,
    name: str,
    staging: Path,
    version: int | None = None,
    labels: list[str] | None = None,
    keep: int | None = None,
    before_rename=None,
) -> Path:
    """Move a complete version folder into place as `<name>/<version>` and update `models.config`, under the lock.

    `version` None takes the next free number, so concurrent exports of one
    model get distinct consecutive versions; `before_rename(version)` runs
    under the lock once the number is known (to stamp it into the folder).
    `labels` then point at the new version and `keep` prunes old ones.
    Returns the version folder.
    """
    check_request(name, version, labels, keep)
    with repository_lock(export_dir) as export_dir:
        base_path = export_dir / name
        if base_path.is_symlink():
            raise UserError(str(base_path), "is a symbolic link", "remove the link: exports never write through one")
        number = next_version(base_path) if version is None else version
        final = check_free(base_path, number)
        if before_rename is not None:
            before_rename(number)
        base_path.mkdir(parents=True, exist_ok=True)
        os.rename(staging, final)
        register_model(export_dir, name)
        for label in labels or []:
            set_label(export_dir, name, number, label)
        if keep is not None:
            prune_versions(export_dir, name, keep)
    return final


def register_model(export_dir: str | Path, name: str) -> Path:
    """Make sure `models.config` names the model (and the server templates exist); return the file."""
    with repository_lock(export_dir) as export_dir:
        _write_once(export_dir / BATCHING_FILE, BATCHING_TEMPLATE)
        _write_once(export_dir / MONITORING_FILE, MONITORING_TEMPLATE)
        config = read_models_config(export_dir)
        _entry(config, export_dir, name)
        return _write(config, export_dir)


def set_label(export_dir: str | Path, name: str, version: int, label: str) -> Path:
    """Point `label` (e.g. stable, canary) at an existing version of a model."""
    check_model_name(name, "name")
    check_label(label, "label")
    check_version(version, "version")
    with repository_lock(export_dir) as export_dir:
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
    check_keep(keep)
    with repository_lock(export_dir) as export_dir:
        config = read_models_config(export_dir)
        entry = _entry(config, export_dir, name)
        labelled = set(entry.version_labels.values())
        versions = versions_of(export_dir, name)
        deleted = [v for v in versions[: max(0, len(versions) - keep)] if v not in labelled]
        for version in deleted:
            folder = export_dir / name / str(version)
            if folder.is_symlink():  # remove the link, never what it points at
                folder.unlink()
                continue
            # Rename first: the server never sees a half-deleted version.
            doomed = export_dir / name / f".deleting-{version}-{uuid.uuid4().hex[:8]}"
            os.rename(folder, doomed)
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
    _make_folder(export_dir)
    replace_file(path, text_format.MessageToString(config))
    return path


def replace_file(path: Path, text: str) -> None:
    """Write `text` to a new unique file beside `path` (never through a link) and rename it over `path`."""
    staging = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    handle = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(staging, path)  # replaces a link at `path` itself, not its target
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(staging)
        raise


def _write_once(path: Path, text: str) -> None:
    """Create `path` with `text` unless something (a file or a link) is already there."""
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        return
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(text)


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(str(folder), f"cannot create the folder ({error.strerror})", "pick a writable folder") from None
    if not folder.is_dir():
        raise UserError(str(folder), "is not a folder", "pick a folder for the model repository")
