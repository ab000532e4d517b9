"""`mtmm predict`: score a CSV or JSON-lines file with an exported model, no server needed.

The input rows hold the raw columns the model was trained on (the export's
metadata `inputs` names them): an image column is a path to an image file,
relative to the input file's folder, as in the CSV data source; text, numeric
and categorical columns hold their values. An empty cell, a JSON `null` or a
missing JSON key is a missing value (the model serves without the modality);
label columns may be there and are ignored.

Rows are read, scored and written `batch_size` at a time, so a file of any
size runs in bounded memory. The predictions go to a temporary file beside
the target, renamed into place at the end: a failed run leaves no
half-written predictions file.

Output columns, per row: the `--id-column` value (else `row`, the 0-based
index of the data row), then per task:

- binary: `<task>` (the predicted class: the second class when P > 0.5) and
  `<task>_probability` (P(second class));
- multiclass: `<task>` (argmax class), `<task>_probability` (its probability)
  and, in JSON lines, `<task>_probabilities` (`{class: p}`);
- multilabel: `<task>` (the classes with P > 0.5, joined by the data's label
  separator) and, in JSON lines, `<task>_probabilities`;
- regression: `<task>` (the value, in the label's units);
- token_tagging: `<task>` (one tag per token of the text, joined by spaces; words past the
  modality's `sequence_length` get none) and, in JSON lines, `<task>_probability` (each tag's
  probability, a list).

The decision rule (P > 0.5, argmax) is the one the metrics and the export's
`<task>_label` outputs use.

Example:
    >>> summary = predict_file("saved_models/demo/3", "new.csv", "preds.jsonl")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from keras_mtmm.data.columns import cell_kind, non_finite_rows
from keras_mtmm.data.pipeline import data_errors
from keras_mtmm.errors import DataError, UserError
from keras_mtmm.evaluation.predictor import load_predictor
from keras_mtmm.evaluation.scoring import raw_inputs

# _parse_cell: the CSV source's own cell parser (numbers, image paths -> checked bytes, text).
from keras_mtmm.serve.batch_predict_io import (  # noqa: F401 (the readers: re-exported)
    InputRow,
    count_rows,
    read_csv_rows,
    read_jsonl_rows,
)
from keras_mtmm.tasks import get_task_type

# File formats by extension (input and output).
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
ROW_FIELD = "row"  # the output's row index column when there is no --id-column


@dataclass(frozen=True)
class PredictSummary:
    """What `predict_file` did."""

    rows: int
    seconds: float
    output: Path

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    def line(self) -> str:
        return (
            f"predicted {self.rows} rows in {self.seconds:.1f} s ({self.rows_per_second:.0f} rows/s) -> {self.output}"
        )


def predict_file(
    model_path: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    batch_size: int = 256,
    id_column: str | None = None,
    quiet: bool = False,
    progress_stream=None,
) -> PredictSummary:
    """Score every row of a CSV or JSON-lines file with a saved model and write the predictions.

    Args:
        model_path: an exported version folder (e.g. `saved_models/demo/3`),
            run with its `serving_default` signature as TF Serving runs it;
            a run folder's `.keras` file works too.
        input_path: a `.csv` (header row) or `.jsonl` file (one JSON object per line).
        output_path: the predictions file; `.csv` or `.jsonl` (`.ndjson`) picks the format.
        batch_size: rows read and scored at a time.
        id_column: an input column copied to the output to identify rows
            (default: the 0-based row index, as `row`).
        quiet: no progress bar.
        progress_stream: where the progress bar goes (default: stderr).

    Returns:
        A `PredictSummary` (rows, seconds, output path).
    """
    input_path, output_path = Path(input_path), Path(output_path)
    input_format = file_format(input_path, "--input")
    output_format = file_format(output_path, "--output")
    if batch_size < 1:
        raise UserError("--batch-size", f"expected a positive integer, got {batch_size}", "e.g. --batch-size 256")
    if not input_path.is_file():
        raise UserError("--input", f"'{input_path}' is not a file", "pass the CSV or JSON-lines file to score")
    if output_path.resolve() == input_path.resolve():
        raise UserError("--output", "is the input file", "write the predictions to another file")
    predict, _, metadata = load_predictor(model_path, batch_size)
    columns = input_columns(metadata)
    fields = output_fields(metadata, id_column or ROW_FIELD, jsonl=output_format == "jsonl")
    if id_column is not None and fields.count(id_column) > 1:
        raise UserError("--id-column", f"'{id_column}' is also the name of an output column", "pick another column")
    read = read_csv_rows if input_format == "csv" else read_jsonl_rows
    rows = read(input_path, columns, id_column)
    stream = sys.stderr if progress_stream is None else progress_stream
    progress = Progress(None if quiet else count_rows(input_path, input_format), stream, enabled=not quiet)
    started = time.perf_counter()
    done = 0
    with atomic_output(output_path) as handle:
        write = record_writer(output_format, handle, fields)
        for batch in batched(rows, batch_size):
            table = column_table(batch, columns)
            with data_errors():
                outputs = predict(raw_inputs(table, metadata))
            identifiers = [row.identifier for row in batch] if id_column else range(done, done + len(batch))
            for record in prediction_records(outputs, metadata, identifiers, id_column or ROW_FIELD, output_format):
                write(record)
            done += len(batch)
            progress.update(done)
        if done == 0:  # raised inside the block: no predictions file appears
            raise DataError(str(input_path), "has no data rows", "add rows to score")
    progress.close(done)
    return PredictSummary(done, time.perf_counter() - started, output_path)


def file_format(path: Path, flag: str) -> str:
    """`csv` or `jsonl`, from the file's extension."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise UserError(
            flag,
            f"cannot tell the format of '{path}' from its extension '{path.suffix}'",
            "name it .csv, or .jsonl (.ndjson) for JSON lines",
        )
    return kind


def input_columns(metadata: dict) -> dict[str, str]:
    """`{column: modality type}` for every raw column the model reads."""
    return {column: spec["type"] for spec in metadata["inputs"].values() for column in spec["columns"]}


# ---------------------------------------------------------------------------
# Reading rows


def batched(rows: Iterable[InputRow], size: int) -> Iterator[list[InputRow]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def column_table(rows: list[InputRow], columns: dict[str, str]) -> dict[str, np.ndarray]:
    """A column table (as the data sources make them) of parsed rows."""
    table = {}
    for column, kind in columns.items():
        values = [row.values[column] for row in rows]
        table[column] = _float32(values, rows, column) if cell_kind(kind) == "number" else _objects(values)
    return table


def _float32(values: list, rows: list[InputRow], column: str) -> np.ndarray:
    """A numeric column as the model reads it; `inf`, or a number beyond float32 (1e39), is an error at its row."""
    with np.errstate(over="ignore"):
        numbers = np.asarray(values, dtype=np.float64).astype(np.float32)
    bad = non_finite_rows(numbers)
    if bad.size:
        row = rows[int(bad[0])]
        raise DataError(
            f"{row.where}: column '{column}'",
            f"{row.values[column]!r} is not a finite number (float32 holds magnitudes up to 3.4e38)",
            "fix the value or leave it empty for a missing value",
        )
    return numbers


def _objects(values: list) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


# ---------------------------------------------------------------------------
# Writing predictions


def output_fields(metadata: dict, id_field: str, jsonl: bool) -> list[str]:
    """The output columns, in order: the id, then each task's columns."""
    fields = [id_field]
    for task, spec in metadata["tasks"].items():
        fields.append(task)
        if spec["type"] in ("binary", "multiclass"):
            fields.append(f"{task}_probability")
        if jsonl and spec["type"] in ("multiclass", "multilabel"):
            fields.append(f"{task}_probabilities")
        if jsonl and spec["type"] == "token_tagging":
            fields.append(f"{task}_probability")
    return fields


def prediction_records(
    outputs: dict[str, np.ndarray], metadata: dict, identifiers: Iterable, id_field: str, output_format: str
) -> Iterator[dict]:
    """One output record per row of a batch of model outputs (see the module docstring for the columns)."""
    separator = metadata.get("label_separator", "|")
    jsonl = output_format == "jsonl"
    # The class names by the rule the metrics and the export's `<task>_label` outputs use (one call per batch).
    labels = {}
    for task, spec in metadata["tasks"].items():
        chosen = get_task_type(spec["type"]).predicted_labels(
            np.asarray(outputs[task]), spec.get("classes") or [], separator
        )
        if chosen is not None and np.ndim(chosen) == 2:  # a tag per token, "" past the text's end
            labels[task] = [" ".join(tag.decode("utf-8") for tag in tags if tag) for tags in np.asarray(chosen)]
        elif chosen is not None:
            labels[task] = [value.decode("utf-8") for value in np.asarray(chosen)]
    for row, identifier in enumerate(identifiers):
        record = {id_field: identifier}
        for task, spec in metadata["tasks"].items():
            values = np.asarray(outputs[task])[row]
            kind, classes = spec["type"], spec.get("classes") or []
            record[task] = labels[task][row] if task in labels else _number(values.ravel()[0])
            if kind == "binary":
                record[f"{task}_probability"] = _number(values[0])
            elif kind == "multiclass":
                record[f"{task}_probability"] = _number(values[classes.index(record[task])])
            if jsonl and kind in ("multiclass", "multilabel"):
                record[f"{task}_probabilities"] = {name: _number(p) for name, p in zip(classes, values)}
            if jsonl and kind == "token_tagging":
                record[f"{task}_probability"] = [_number(p) for p in values.max(axis=-1) if p > 0]
        yield record


def _number(value) -> float | None:
    """A float32 output as the shortest Python float that reads back as it; None if not finite."""
    value = np.float32(value)
    return float(str(value)) if math.isfinite(value) else None


def record_writer(output_format: str, handle, fields: list[str]):
    """A function that writes one record (a dict keyed by `fields`) to the open output file."""
    if output_format == "jsonl":

        def write_json(record: dict) -> None:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")

        return write_json
    writer = csv.DictWriter(handle, fieldnames=fields)
    writer.writeheader()
    return writer.writerow


@contextlib.contextmanager
def atomic_output(path: Path):
    """An open text file that becomes `path` only if the block finishes (written beside it, then renamed)."""
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = staging.open("w", newline="", encoding="utf-8")
    except OSError as error:
        raise UserError("--output", f"cannot write '{path}' ({error.strerror})", "check the folder") from None
    try:
        with handle:
            yield handle
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


class Progress:
    """A progress line on a stream: rows done (of the total, when known) and rows/s.

    On a terminal the line is redrawn in place a few times a second; elsewhere
    (a log file) a line is written every `log_seconds` and at the end.
    """

    def __init__(self, total: int | None, stream, enabled: bool = True, log_seconds: float = 10.0):
        self.total = total
        self.stream = stream
        self.enabled = enabled
        self.interactive = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.interval = 0.2 if self.interactive else log_seconds
        self.started = time.perf_counter()
        self.shown = self.started

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if self.enabled and now - self.shown >= self.interval:
            self.shown = now
            self._show(done, now, final=False)

    def close(self, done: int) -> None:
        if self.enabled:
            self._show(done, time.perf_counter(), final=True)

    def _show(self, done: int, now: float, final: bool) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        if self.total:
            fraction = min(done / self.total, 1.0)
            filled = int(fraction * 24)
            text = f"{done}/{self.total} rows [{'#' * filled}{'.' * (24 - filled)}] {fraction:4.0%}  {rate:.0f} rows/s"
            if not final and rate > 0:
                text += f"  eta {max(self.total - done, 0) / rate:.0f} s"
        else:
            text = f"{done} rows  {rate:.0f} rows/s"
        if self.interactive:  # redraw in place; \x1b[K clears the rest of the old line
            self.stream.write(f"\r{text}\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
