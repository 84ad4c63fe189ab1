"""The errors a user can cause, and the exit codes the command line turns them into.

Anything raised as a `UserError` is the user's to fix: the CLI prints its message as one red line
(one per problem for a config) and exits with `EXIT_USER_ERROR`. Every other exception is a bug in
trainctl and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

SHOWN_VALUE_LENGTH = 80  # an echoed value is cut to this many characters
LINE_LENGTH = 2000  # and a whole message line to this many, whatever it echoes


def shown(value: object, limit: int = SHOWN_VALUE_LENGTH, *, quote: bool = True) -> str:
    """A value as a message echoes it: its repr (or str), cut with an ellipsis when long.

    A config value can be megabytes long; the message needs only enough of it to recognise it.
    """
    text = repr(value) if quote else str(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text):,} characters)"


def _bounded(line: str) -> str:
    """The start and the end of an over-long line: the end says what is allowed."""
    if len(line) <= LINE_LENGTH:
        return line
    keep = LINE_LENGTH // 2
    return f"{line[:keep]} … {line[-keep:]}"


def install_hint(package: str, extra: str) -> str:
    """How to install an optional dependency. The package itself, by name: `pip install
    'trainctl[extra]'` run outside a trainctl checkout fetches another project called trainctl from
    the package index, not this one."""
    return f"pip install {package} (or, in the trainctl checkout, pip install -e '.[{extra}]')"


class UserError(Exception):
    """A problem with the user's input: a config, a file, a run folder, a checkpoint."""

    def lines(self) -> list[str]:
        return [_bounded(str(self))]


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a config: where it stands and what is wrong with it."""

    where: str  # "configs/x.yaml:12" or "--set optimizer.lr"
    key: str  # dotted key, e.g. "optimizer.lr"; empty for the whole file
    message: str

    def __str__(self) -> str:
        key = f" {shown(self.key, quote=False)}:" if self.key else ""
        return _bounded(f"{self.where}:{key} {self.message}")


class ConfigError(UserError):
    """Every problem found in one config, reported together rather than one per run."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]
