"""Fuzz of the command line itself: any flags, any hostile run folder or input file.

Every call ends with exit status 0, or 2 and exactly one `error:` line on stderr (argparse's
own usage errors: exit 2 and its usage text); never a traceback, never another status.
The calls run in-process through `keras_mtmm.cli.commands.main`, which is what `train.py`,
`evaluate.py` and `mtmm` run (tests/reliability/test_error_lines.py runs them as processes).
"""

from __future__ import annotations

import json
import shutil
import string

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keras_mtmm.cli.commands import main

from ..conftest import DEMO_CONFIG

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# argv cannot hold NUL; the rest of Unicode, separators and shell characters can.
ARG = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=16)
NUMBERISH = st.one_of(ARG, st.integers(-(2**70), 2**70).map(str), st.sampled_from(["0", "-1", "1e3", "nan", " 3"]))
FILE_TEXT = st.text(alphabet=string.printable + "é\u2028{}[]:&*!|", max_size=300)


def run_cli(argv: list[str], capfd) -> None:
    """Run one command line and check what the user sees."""
    capfd.readouterr()
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse: a flag it cannot parse
        assert exit_.code in (0, 2), (argv, exit_.code)
        event("argparse")
        return
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err, (argv, err)
    assert status in (0, 2), (argv, status, err)
    event(f"status {status}: {err.split(':')[1] if status else ''}")
    if status == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_fuzz")
    not_a_folder = root / "a_file"
    not_a_folder.write_text("x", encoding="utf-8")
    return {"root": root, "file": not_a_folder, "exports": root / "exports"}


PORT = st.integers(-10, 70_000).map(str)


@FUZZ
@given(name=st.one_of(ARG, st.just("demo")), version=st.one_of(st.integers(-3, 5).map(str), NUMBERISH), label=ARG)
def test_label(folders, capfd, name, version, label):
    run_cli(["label", name, version, label, "--export-dir", str(folders["exports"])], capfd)


@FUZZ
@given(config=FILE_TEXT, checkpoint=st.sampled_from([b"", b"PK\x03\x04junk", b"not a zip"]), flags=st.data())
def test_export_of_a_hostile_run_folder(folders, capfd, tmp_path_factory, config, checkpoint, flags):
    run = tmp_path_factory.mktemp("run")
    (run / "config.yaml").write_text(config, encoding="utf-8")
    (run / "best.keras").write_bytes(checkpoint)
    argv = ["export", "--run", str(run), "--export-dir", str(folders["exports"])]
    for flag in flags.draw(st.lists(st.sampled_from(["--version", "--keep", "--label", "--checkpoint"]), max_size=3)):
        argv += [flag, flags.draw(NUMBERISH)]
    run_cli(argv, capfd)


@FUZZ
@given(port=PORT, rest_port=PORT, host=ARG, poll=PORT)
def test_serve_dry_run(folders, capfd, port, rest_port, host, poll):
    argv = ["serve", "--dry-run", "--export-dir", str(folders["exports"]), "--port", port, "--rest-port", rest_port]
    run_cli(argv + ["--host", host, "--poll-seconds", poll], capfd)


@FUZZ
@given(overrides=st.lists(st.tuples(ARG, ARG).map("=".join), max_size=3), keys=st.data())
def test_train_with_any_overrides(folders, capfd, overrides, keys):
    # The run folder is a file: a config that loads ends there, before any data is read or model built.
    blocks = ["training", "fusion", "sharing", "weighting", "data", "export", "tasks.shape", "modalities.image"]
    overrides += [f"{keys.draw(st.sampled_from(blocks))}.{keys.draw(ARG)}={keys.draw(NUMBERISH)}"]
    argv = ["train", "--config", str(DEMO_CONFIG), "--output-dir", str(folders["file"] / "run"), "--no-report"]
    run_cli(argv + [part for override in overrides for part in ("--set", override)], capfd)


@FUZZ
@given(config=FILE_TEXT)
def test_train_with_any_config_file(folders, capfd, tmp_path_factory, config):
    path = tmp_path_factory.mktemp("config") / "c.yaml"
    path.write_text(config, encoding="utf-8")
    run_cli(["train", "--config", str(path), "--output-dir", str(folders["file"] / "run")], capfd)


RUN_FILES = ["config.yaml", "metadata.json", "history.json", "metrics.json", "inspection.json", "data_sizes.json"]


@settings(FUZZ, max_examples=15)
@given(name=st.sampled_from(RUN_FILES), text=st.one_of(FILE_TEXT, st.sampled_from(["[]", "{}", "null", "1", '"x"'])))
def test_report_of_a_run_folder_with_one_hostile_file(tiny_run, capfd, tmp_path_factory, name, text):
    run = tmp_path_factory.mktemp("run") / "run"
    shutil.copytree(tiny_run.run_dir, run, ignore=shutil.ignore_patterns("backup", "*.keras", "report", "logs"))
    (run / name).write_text(text, encoding="utf-8")
    run_cli(["report", str(run), "--out", str(run / "r.html")], capfd)


@FUZZ
@given(metadata=FILE_TEXT)
def test_evaluate_and_inspect_of_a_hostile_version_folder(capfd, tmp_path_factory, metadata):
    version = tmp_path_factory.mktemp("exports") / "1"
    (version / "assets.extra").mkdir(parents=True)
    (version / "assets.extra" / "keras_mtmm_metadata.json").write_text(metadata, encoding="utf-8")
    (version / "saved_model.pb").write_bytes(metadata.encode("utf-8"))
    run_cli(["evaluate", "--model", str(version)], capfd)
    run_cli(["inspect", "--model", str(version)], capfd)


JSONL_ROWS = st.lists(
    st.dictionaries(
        st.sampled_from(["image", "description", "weight_kg", "height_cm", "colour", "material", "x"]),
        st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=8)),
        max_size=6,
    ),
    max_size=4,
)


@pytest.mark.slow
@settings(FUZZ, max_examples=30)
@given(
    rows=st.one_of(FILE_TEXT, JSONL_ROWS.map(lambda rows: "\n".join(json.dumps(row) for row in rows))),
    suffix=st.sampled_from([".csv", ".jsonl"]),
    batch=st.integers(-2, 300).map(str),
)
def test_predict_any_input_file(tiny_run, capfd, tmp_path_factory, rows, suffix, batch):
    folder = tmp_path_factory.mktemp("predict")
    (folder / f"rows{suffix}").write_text(rows, encoding="utf-8")
    argv = ["predict", "--model", str(tiny_run.export_path), "--input", str(folder / f"rows{suffix}")]
    run_cli(argv + ["--output", str(folder / f"out{suffix}"), "--batch-size", batch, "--quiet"], capfd)
