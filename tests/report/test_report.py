"""The run report (`mtmm report`): sections, skipped notes, embedded PNGs, numbers equal to the run's JSON files."""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import json
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from keras_mtmm.cli.commands import main
from keras_mtmm.report.build import build_report
from tests.conftest import TINY_OVERRIDES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SECTIONS = ("run", "curves", "weights", "inspection", "health", "transfer", "evaluation")


class ReportPage(HTMLParser):
    """What a test needs from the report: section ids, skipped notes per section, images, tagged numbers."""

    def __init__(self, text: str):
        super().__init__()
        self.sections: dict[str, list[str]] = {}  # section id -> its skipped notes
        self.images: list[str] = []
        self.numbers: list[tuple[str, str, str]] = []  # (source, key, text)
        self.external: list[str] = []
        self._section = None
        self._capture = None  # ("skipped", chunks) or ("number", source, key, chunks)
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._section = attrs["id"]
            self.sections[self._section] = []
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag in ("script", "link", "iframe") or (tag == "a" and not attrs.get("href", "#").startswith("#")):
            self.external.append(tag)
        elif tag == "p" and attrs.get("class") == "skipped":
            self._capture = ["skipped", []]
        elif tag == "span" and "data-key" in attrs:
            self._capture = ["number", attrs["data-source"], attrs["data-key"], []]

    def handle_data(self, data):
        if self._capture is not None:
            self._capture[-1].append(data)

    def handle_endtag(self, tag):
        if self._capture is None:
            return
        if tag == "p" and self._capture[0] == "skipped":
            self.sections[self._section].append("".join(self._capture[1]))
            self._capture = None
        elif tag == "span" and self._capture[0] == "number":
            _, source, key, chunks = self._capture
            self.numbers.append((source, key, "".join(chunks)))
            self._capture = None


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("logs", "report"))
    return target


def fake_baselines(metrics: dict, folder: Path, worse: str) -> Path:
    """Single-task reports: every metric 10% "better" than the multi-task one for `worse`, 10% worse for others."""
    from keras_mtmm.evaluation.transfer import HIGHER_IS_BETTER

    for task, result in metrics["tasks"].items():
        single = copy.deepcopy(metrics)
        entry = {}
        for name, value in result.items():
            if name in ("loss", "labelled") or value is None:
                entry[name] = value
                continue
            better = 1.1 if HIGHER_IS_BETTER[name] else 0.9
            entry[name] = value * (better if task == worse else 1 / better)
        single["tasks"] = {task: entry}
        (folder / task).mkdir(parents=True)
        (folder / task / "metrics.json").write_text(json.dumps(single), encoding="utf-8")
    return folder


def check_images(page: ReportPage, folder: Path) -> None:
    assert page.images
    written = {path.read_bytes() for path in folder.glob("*.png")}
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        data = base64.b64decode(src[len(prefix) :], validate=True)
        assert data.startswith(PNG_SIGNATURE)
        assert data in written, "every embedded image is also written beside the HTML"


def expected_text(source: str, key: str, value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    if key.endswith(("relative_gain", "delta", "delta_m")):
        return f"{value:+.2f}"
    if "/drop/" in key:  # health: a modality's signed contribution
        return f"{value:+.4f}"
    digits = {"timings": 0 if key == "examples_per_s" else 1}.get(source, 4)
    return f"{value:.{digits}f}"


def lookup(data: dict, key: str):
    for part in key.split("/"):
        data = data[part]
    return data


@pytest.fixture(scope="module")
def full_run(tiny_run, tmp_path_factory):
    """The tiny run plus a robustness table (evaluate.py --robustness --output) and transfer.json."""
    from keras_mtmm.evaluation.evaluate import evaluate_model
    from keras_mtmm.evaluation.transfer import compare

    run_dir = copy_run(tiny_run.run_dir, tmp_path_factory.mktemp("report"))
    evaluate_model(run_dir / "best.keras", output=run_dir / "metrics.json", robustness=True, quiet=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    folder = fake_baselines(metrics, run_dir.parent / "baselines", worse="premium")
    reports = {task: json.loads((folder / task / "metrics.json").read_text()) for task in metrics["tasks"]}
    (run_dir / "transfer.json").write_text(json.dumps(compare(metrics, reports)), encoding="utf-8")
    return run_dir


@pytest.fixture(scope="module")
def full_report(full_run):
    """The report of `full_run`, built once: (its path, the parsed page)."""
    out = build_report(full_run)
    return out, ReportPage(out.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def gated_run(tmp_path_factory):
    """MMoE + PCGrad + per-task attention fusion, trained through `mtmm train` (which builds the report at its end).

    Per-task fusion gives each task's gate its own fused vector (a case `gate_summary` must map by task name).

    Returns the run folder and what the command printed.
    """
    output = tmp_path_factory.mktemp("gated") / "run"
    overrides = [*TINY_OVERRIDES, "sharing.type=mmoe", "sharing.num_experts=2", "sharing.expert_units=[8]"]
    overrides += ["weighting.strategy=pcgrad", "fusion.strategy=attention", "fusion.units=8", "fusion.per_task=true"]
    argv = ["train", "--output-dir", str(output), "--no-export", "--quiet"]
    for override in overrides:
        argv += ["--set", override]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    return output, printed.getvalue()


def test_every_section_with_data_is_there_and_every_image_is_a_png(full_run, full_report):
    out, page = full_report
    assert out == full_run / "report" / "report.html"
    assert tuple(page.sections) == SECTIONS
    assert page.external == [], "the page must open offline: no scripts, stylesheets or links out"
    check_images(page, out.parent)
    # A hard-sharing, early-fusion, static run has no gates, modality weights or gradient cosines: notes say so.
    assert page.sections["inspection"] == [
        "skipped: sharing type 'hard' has no gates (mmoe and ple have)",
        "skipped: fusion strategy 'early' has no modality weights (weighted, late, gated, attention and "
        "cross_attention have)",
    ]
    assert len(page.sections["weights"]) == 1 and "gradient cosines" in page.sections["weights"][0]
    for name in ("run", "curves", "health", "transfer", "evaluation"):
        assert page.sections[name] == [], name
    names = {path.name for path in out.parent.glob("*.png")}
    assert {"training_curves.png", "task_weights.png", "transfer.png", "evaluation_shape.png"} <= names
    assert {"evaluation_premium.png", "evaluation_price.png"} <= names


def test_numbers_in_the_tables_equal_the_run_files(full_run, full_report):
    _, page = full_report
    files = {
        source: json.loads((full_run / f"{source}.json").read_text())
        for source in ("metrics", "transfer", "data_sizes", "timings", "metadata", "inspection")
    }
    for source, key, text in page.numbers:
        value = lookup(files[source], key)
        assert text == expected_text(source, key, value), (source, key)
        if value is not None:
            assert float(text) == pytest.approx(value, abs=0.51 * 10 ** -len(text.partition(".")[2]))
    shown = {(source, key) for source, key, _ in page.numbers}
    metrics = files["metrics"]
    for task, result in metrics["tasks"].items():
        for name in result:
            assert ("metrics", f"tasks/{task}/{name}") in shown
        for condition in metrics["robustness"]:
            for name in result:
                if name not in ("loss", "labelled"):
                    assert ("metrics", f"robustness/{condition}/{task}/{name}") in shown
        for name in files["transfer"]["tasks"][task]["metrics"]:
            assert ("transfer", f"tasks/{task}/metrics/{name}/mtl") in shown
    assert ("metrics", "loss") in shown and ("transfer", "delta_m") in shown
    health = files["inspection"]["health"]
    for modality in health["dead_units"]:
        assert ("inspection", f"health/dead_units/{modality}/dead") in shown
        for task in metrics["tasks"]:
            assert ("inspection", f"health/modality_contribution/{task}/drop/{modality}") in shown
    for split, count in files["data_sizes"]["examples"].items():
        assert ("data_sizes", f"examples/{split}") in shown
        assert isinstance(count, int) and count > 0
    # training's data sizes agree with the test scores
    assert files["data_sizes"]["labelled"]["test"] == {t: r["labelled"] for t, r in metrics["tasks"].items()}


def test_negative_transfer_is_highlighted(full_run, full_report):
    text = full_report[0].read_text(encoding="utf-8")
    transfer = json.loads((full_run / "transfer.json").read_text())
    assert transfer["negative_transfer"] == ["premium"]
    assert '<p class="flag">negative transfer: premium</p>' in text
    assert text.count('<tr class="negative">') == len(transfer["tasks"]["premium"]["metrics"]) + 1


def test_report_command_compares_a_baselines_folder_and_writes_where_asked(full_run, tmp_path, capsys):
    from keras_mtmm.evaluation.transfer import compare

    metrics = json.loads((full_run / "metrics.json").read_text())
    folder = fake_baselines(metrics, tmp_path / "baselines", worse="price")
    out = tmp_path / "pages" / "demo.html"
    assert main(["report", str(full_run), "--baselines", str(folder), "--out", str(out)]) == 0
    assert f"run report: {out}" in capsys.readouterr().out
    page = ReportPage(out.read_text(encoding="utf-8"))
    check_images(page, out.parent)
    assert (out.parent / "training_curves.png").is_file()
    reports = {task: json.loads((folder / task / "metrics.json").read_text()) for task in metrics["tasks"]}
    expected = compare(metrics, reports)
    assert expected["negative_transfer"] == ["price"]
    assert ("transfer", "delta_m", f"{expected['delta_m']:+.2f}") in page.numbers
    shutil.rmtree(folder / "shape")
    assert main(["report", str(full_run), "--baselines", str(folder), "--out", str(out)]) == 2
    assert "error: --baselines: no single-task baseline for task 'shape'" in capsys.readouterr().err


def test_sections_without_data_are_skipped_with_a_note(full_run, tmp_path):
    run_dir = copy_run(full_run, tmp_path)
    for name in ("history.json", "inspection.json", "evaluation.npz", "timings.json", "data_sizes.json"):
        (run_dir / name).unlink()
    (run_dir / "transfer.json").unlink()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    del metrics["robustness"]
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    out = build_report(run_dir)
    page = ReportPage(out.read_text(encoding="utf-8"))
    assert tuple(page.sections) == SECTIONS
    assert page.images == [] and list(out.parent.glob("*.png")) == []
    notes = {name: " | ".join(found) for name, found in page.sections.items()}
    assert "no timings.json" in notes["run"] and "no data_sizes.json" in notes["run"]
    assert notes["curves"] == "skipped: no history.json in the run folder"
    assert notes["weights"] == "skipped: history.json has no weight_<task> entries"
    assert notes["inspection"].startswith("skipped: no inspection.json in the run folder")
    assert notes["health"].startswith("skipped: inspection.json has no health section")
    assert notes["transfer"].startswith("skipped: no single-task baselines")
    assert "no evaluation.npz" in notes["evaluation"] and "no robustness section" in notes["evaluation"]


def test_gates_modality_weights_and_gradient_conflicts(gated_run):
    gated_run, printed = gated_run
    out = gated_run / "report" / "report.html"
    assert out.is_file(), "mtmm train builds the report at its end"
    assert f"run report: {out}" in printed
    page = ReportPage(out.read_text(encoding="utf-8"))
    assert page.sections["inspection"] == [] and page.sections["weights"] == []
    check_images(page, out.parent)
    assert {"gates.png", "modality_weights.png", "task_weights.png"} <= {p.name for p in out.parent.glob("*.png")}
    inspection = json.loads((gated_run / "inspection.json").read_text())
    assert inspection["split"] == "validation"
    for task, gates in inspection["gates"].items():
        assert list(gates) == ["expert_0", "expert_1"] and sum(gates.values()) == pytest.approx(1, abs=1e-5)
        assert sum(inspection["modality_weights"][task].values()) == pytest.approx(1, abs=1e-5)
    history = json.loads((gated_run / "history.json").read_text())
    cosines = [key for key in history if key.startswith("grad_cosine_")]
    assert cosines == [f"grad_cosine_{pair}" for pair in ("shape__premium", "shape__price", "premium__price")]
    timings = json.loads((gated_run / "timings.json").read_text())
    assert timings["epochs_run"] == 2
    assert timings["examples_per_s"] == pytest.approx(timings["train_rows"] * 2 / timings["fit_s"])


def test_evaluation_dump_matches_the_metrics(full_run):
    from keras_mtmm.evaluation.dump import evaluation_dump_path, read_evaluation_dump

    assert evaluation_dump_path(full_run / "metrics.json") == full_run / "evaluation.npz"
    assert evaluation_dump_path(full_run / "other.json") == full_run / "other.npz"
    split, dumps = read_evaluation_dump(full_run / "evaluation.npz")
    metrics = json.loads((full_run / "metrics.json").read_text())
    assert split == metrics["split"] == "test"
    assert set(dumps) == set(metrics["tasks"])
    for task, dump in dumps.items():
        assert int(dump["mask"].sum()) == metrics["tasks"][task]["labelled"]
    labelled = dumps["price"]["mask"] > 0
    error = dumps["price"]["predictions"][labelled, 0] - dumps["price"]["targets"][labelled, 0]
    assert float(np.mean(np.abs(error))) == pytest.approx(metrics["tasks"]["price"]["mae"], rel=1e-5)


def test_a_folder_that_is_not_a_run_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"error: RUN_DIR: '{tmp_path}' is not a keras_mtmm run folder")
    assert "\n" not in line


def test_corrupt_run_file_is_a_user_error(full_run, tmp_path, capsys):
    run_dir = copy_run(full_run, tmp_path)
    (run_dir / "metrics.json").write_text("{not json")
    assert main(["report", str(run_dir)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {run_dir / 'metrics.json'}: not valid JSON")


def test_missing_matplotlib_names_the_pip_command(full_run, monkeypatch, capsys):
    from keras_mtmm.cli.notes import report_after

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "keras_mtmm\[report\]"'):
        build_report(full_run)
    report_after("run report", build_report, full_run)  # after training: a note, not a failure
    assert capsys.readouterr().out.startswith("note: no run report (the run report draws its figures with matplotlib")


def test_an_inspection_failure_never_fails_training(tmp_path, capsys):
    from keras_mtmm.training.run_files import write_inspection

    table = {"x": np.zeros(3, dtype=np.float32)}
    assert write_inspection(tmp_path / "inspection.json", network=None, preprocessor=None, table=table) is False
    assert not (tmp_path / "inspection.json").exists()
    assert capsys.readouterr().out.startswith("warning: inspection.json not written (")
