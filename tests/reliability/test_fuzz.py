"""Property-based fuzz of the config loader and the CSV reader: every input loads or is one UserError."""

from __future__ import annotations

import string

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_mtmm.config.loading import config_from_dict, load_config
from keras_mtmm.config.yaml_reader import load_yaml
from keras_mtmm.data.tables import load_splits
from keras_mtmm.errors import UserError

from ..conftest import DEMO_CONFIG

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

KEYS = ["name", "seed", "data", "modalities", "tasks", "training", "fusion", "sharing", "weighting", "export"]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


@FUZZ
@given(text=st.text(alphabet=string.printable + "&*!|>{}[]:-#'\"é\u2028", max_size=300))
def test_any_config_file_loads_or_is_a_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except UserError:
        pass


@FUZZ
@given(st.text(max_size=200))
def test_the_bounded_loader_raises_only_yaml_or_config_errors(text):
    import yaml

    try:
        load_yaml(text, "fuzz.yaml")
    except (UserError, yaml.YAMLError):
        pass


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=5))
def test_any_structure_builds_or_is_a_config_error(raw):
    try:
        config_from_dict(raw, check_files=False)
    except UserError:
        pass


@FUZZ
@given(st.sampled_from(["training", "fusion", "sharing", "data", "weighting", "export"]), st.text(max_size=12), VALUES)
def test_any_override_of_the_demo_loads_or_is_a_config_error(block, key, value):
    import yaml

    try:
        override = f"{block}.{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"
    except yaml.YAMLError:
        return
    if "\n" in override:
        return
    try:
        load_config(DEMO_CONFIG, [override])
    except UserError:
        pass


CELLS = st.text(alphabet=string.printable.replace("\r", "") + "é€\x00", max_size=10)


@FUZZ
@given(st.lists(st.lists(CELLS, min_size=1, max_size=4), min_size=1, max_size=8), st.booleans())
def test_any_csv_loads_or_is_a_data_error(tmp_path_factory, rows, skip):
    import csv

    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "rows.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "t", "y"])
        writer.writerows(rows)
    config = config_from_dict(
        {
            "name": "fuzz",
            "data": {"source": "csv", "path": str(path), "on_bad_record": "skip" if skip else "error"},
            "modalities": {
                "numbers": {"type": "numeric", "columns": ["a"], "encoder": {"type": "identity"}},
                "words": {"type": "text", "columns": ["t"]},
            },
            "tasks": {"y": {"type": "binary", "label": "y"}},
        }
    )
    try:
        splits = load_splits(config)
    except UserError:
        return
    for split in splits.values():
        assert not np.isinf(np.asarray(split["a"], dtype=np.float64)).any()
