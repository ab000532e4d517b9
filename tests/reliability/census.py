"""The reliability census: every case under tests/reliability/, by the family of input it attacks.

The families are those of the hardening issue's tester: config and flags, CSV, TFRecord,
faults, serving, security (hostile files and links). `family(nodeid)` names a case's
family; the tests' conftest prints the count of cases tried and handled (passed) per
family at the end of any run that includes them. The README's reliability table is
one such run: `pytest tests/reliability -m "slow or not slow" -p no:randomly -n 2`.
"""

from __future__ import annotations

FAMILIES = ("config and flags", "CSV", "TFRecord", "faults", "serving", "security")

# (module, a word of the test's name or "" for any, family): the first rule that matches wins.
RULES = [
    ("test_config_inputs", "alias", "security"),
    ("test_config_inputs", "nesting", "security"),
    ("test_config_inputs", "", "config and flags"),
    ("test_error_lines", "", "config and flags"),
    ("test_fuzz", "csv", "CSV"),
    ("test_fuzz", "", "config and flags"),
    ("test_cli_fuzz", "hostile", "security"),
    ("test_cli_fuzz", "predict", "serving"),
    ("test_cli_fuzz", "", "config and flags"),
    ("test_csv_inputs", "", "CSV"),
    ("test_numeric_cells", "", "CSV"),
    ("test_label_classes", "", "CSV"),
    ("test_image_files", "", "security"),
    ("test_tfrecord_folders", "", "TFRecord"),
    ("test_disk_full", "", "faults"),
    ("test_resume_data", "", "faults"),
    ("test_repository_safety", "concurrent", "faults"),
    ("test_repository_safety", "link", "security"),
    ("test_repository_safety", "", "config and flags"),
    ("test_hostile_models", "keras", "security"),
    ("test_hostile_models", "tampered", "security"),
    ("test_hostile_models", "", "serving"),
    ("test_c_api_loader", "", "serving"),
]


def family(nodeid: str) -> str | None:
    """The family of a test id under tests/reliability/ (None for tests elsewhere)."""
    if "tests/reliability/" not in nodeid:
        return None
    module = nodeid.split("tests/reliability/", 1)[1].split(".py", 1)[0]
    name = nodeid.split("::", 1)[-1]
    for rule_module, word, name_family in RULES:
        if module == rule_module and word in name:
            return name_family
    return "other"


def summary(outcomes: dict[str, str]) -> list[str]:
    """Lines of the census table from {nodeid: outcome} (passed / failed / skipped)."""
    rows = {}
    for nodeid, outcome in outcomes.items():
        name = family(nodeid)
        if name is not None:
            counts = rows.setdefault(name, {"passed": 0, "failed": 0, "skipped": 0})
            counts[outcome] += 1
    if not rows:
        return []
    lines = [f"  {'family':<18}{'tried':>6}{'handled':>9}{'skipped':>9}"]
    for name in [*FAMILIES, "other"]:
        if name in rows:
            counts = rows[name]
            tried = counts["passed"] + counts["failed"]
            lines.append(f"  {name:<18}{tried:>6}{counts['passed']:>9}{counts['skipped']:>9}")
    return lines
