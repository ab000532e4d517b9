"""User-facing errors: each names where the problem is, what is wrong and how to fix it.

The command line turns any `UserError` into one line on stderr,
`error: <where>: <what>; <fix>`, and exit status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake in the user's config, data or flags (not a bug in keras_mtmm).

    Args:
        where: the dotted config key, `file:line`, column or flag at fault.
        what: what is wrong, naming what was expected and what was received.
        fix: how to fix it.
    """

    def __init__(self, where: str, what: str, fix: str = ""):
        self.where = where
        self.what = what
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        message = f"{self.where}: {self.what}"
        return f"{message}; {self.fix}" if self.fix else message


class ConfigError(UserError, ValueError):
    """The experiment config (YAML or `--set`) is invalid."""


class DataError(UserError, ValueError):
    """The data does not match the config or cannot be read."""


class UnknownLabel(DataError):
    """A label that is not one of a task's classes, at row `row` of the table being encoded.

    `locate_label` turns it into an error at the row's file and line where the table knows them.
    """

    def __init__(self, where: str, label: str, row: int, classes: list[str], fix: str):
        self.label, self.row, self.classes = label, row, list(classes)
        super().__init__(where, f"label {label!r} (row {row}) is not one of the known classes {self.classes}", fix)


class BadNumber(UnknownLabel):
    """A regression label that is not a finite number, at row `row` (placed by `locate_label` as well)."""

    def __init__(self, where: str, value, row: int, fix: str):
        self.label, self.row, self.classes = value, row, []
        DataError.__init__(self, where, f"expected a number, got {value!r} (row {row})", fix)


def locate_label(error: UnknownLabel, table, column: str, task: str) -> UserError:
    """The error at the row's place in its source (`d.csv:62: column 'y'`) where the table knows it."""
    where = table.where(error.row) if hasattr(table, "where") else None
    if where is None:
        return error
    if isinstance(error, BadNumber):
        return DataError(
            f"{where}: column '{column}'",
            f"expected a number (task {task} is a regression), got {error.label!r}",
            error.fix,
        )
    split = getattr(table, "split", "")
    seen = f" (this row is in the {split} split)" if split and split != "train" else ""
    return DataError(
        f"{where}: column '{column}'",
        f"label {error.label!r} is not one of the classes the model learns {error.classes}{seen}",
        f"list every class in tasks.{task}.classes (a class with no train row cannot be learned), or fix the label",
    )


class ExportError(UserError, ValueError):
    """An export cannot be written or read as asked."""


def one_line(text: str) -> str:
    """`text` with line breaks and other control characters written as escapes (`\\n`, `\\x1b`).

    An error names what the user gave (a path, a label, a flag's value), which can hold them:
    the error must still be one line, and must not move the terminal's cursor.
    """
    return "".join(
        char if char.isprintable() or char == " " else char.encode("unicode_escape").decode("ascii") for char in text
    )


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return `"did you mean 'x'?"` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


def choice_hint(name: str, choices: Iterable[str]) -> str:
    """Return a fix hint listing the choices and the closest one."""
    choices = sorted(choices)
    hint = f"choose one of: {', '.join(choices)}"
    suggestion = did_you_mean(name, choices)
    return f"{hint}; {suggestion}" if suggestion else hint


class TrainingDiverged(UserError):
    """The training loss became NaN or infinite; training stopped before anything was saved from it."""
