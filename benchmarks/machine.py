"""What every benchmark records beside its figures: the machine it ran on, and a JSON writer.

Timings from different machines (or from one noisy machine at different
times) do not compare; the benchmarks therefore report ratios measured side
by side in one run, and write this description next to them.

Example:
    >>> from machine import machine_info, write_json
    >>> write_json("results/x.json", {"machine": machine_info(), "figures": {...}})
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    """The platform, CPU, memory and library versions of this process's machine."""
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "cgroup_cpu_limit": _cgroup_cpu_limit(),
        "memory_gib": _memory_gib(),
        "load_average_1_5_15": _load_average(),
        "gpu": _gpus(),
    }
    info.update(_versions())
    return info


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write `payload` as indented JSON (creating the folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(path.suffix + ".tmp")
    staging.write_text(json.dumps(payload, indent=1, default=_plain) + "\n", encoding="utf-8")
    staging.replace(path)
    return path


def describe(info: dict[str, Any]) -> str:
    """One line for a printed report."""
    return (
        f"{info['cpu_model']} ({info['usable_cores']} usable of {info['logical_cores']} logical cores), "
        f"{info['memory_gib']} GiB, {info['platform']}, Python {info['python']}, "
        f"TF {info['tensorflow']}, Keras {info['keras']}, keras_mtmm {info['keras_mtmm']}"
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _usable_cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def _cgroup_cpu_limit() -> float | None:
    """CPUs allowed by a cgroup v2 quota (`cpu.max`), or None when unlimited/unknown."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text(encoding="utf-8").split()
    except (OSError, ValueError):
        return None
    return None if quota == "max" else round(int(quota) / int(period), 2)


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages when this was called: other work on the machine shows here."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _gpus() -> list[str]:
    try:
        import tensorflow as tf
    except ImportError:
        return []
    return [device.name for device in tf.config.list_physical_devices("GPU")]


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for module in ("tensorflow", "keras", "numpy", "keras_mtmm"):
        try:
            versions[module] = getattr(__import__(module), "__version__", None)
        except ImportError:
            versions[module] = None
    versions["python_executable"] = sys.executable
    return versions


def _plain(value: Any) -> Any:
    """JSON fallback for NumPy scalars and paths."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
