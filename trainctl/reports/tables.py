"""Every table trainctl prints, rendered in one place: rich tables for the terminal and the
markdown of `compare --format markdown`.

The callers choose what goes in (rows of plain strings: metrics, registry entries, runs, trials);
this module decides only how it looks. Every text goes in as `Text`, never as rich markup, which
would swallow a value such as "in [sigma_min, sigma_max]" as an unknown tag. No torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

MAX_KEY_WIDTH, RUN_WIDTH = 24, 10  # a side-by-side table holds as many runs as fit at least this wide


@dataclass(frozen=True)
class Column:
    header: str
    justify: Literal["left", "right"] = "left"
    style: str | None = None
    no_wrap: bool = False


def heading(text: str) -> Text:
    """A table's title as a line of its own, rather than a rich title wrapped to the table's width."""
    return Text(text, style="bold")


def table(columns: Sequence[Column], rows: Sequence[Sequence[str]], *, title: str | None = None) -> Table:
    """A plain table of text cells (metrics, losses per class, predictions, a sweep's trials)."""
    result = Table(title=Text(title), title_justify="left") if title is not None else Table()
    for column in columns:
        result.add_column(column.header, justify=column.justify, style=column.style, no_wrap=column.no_wrap)
    for row in rows:
        result.add_row(*(Text(cell) for cell in row))
    return result


@dataclass
class RegistryRow:
    """One registered component as its listing shows it."""

    name: str
    task: str | None
    summary: str
    details: list[tuple[str, str]] = field(default_factory=list)  # (label, value) lines under the summary
    parameters: list[str] = field(default_factory=list)  # one line per parameter
    source: str | None = None  # the plugin that registered it; None for trainctl's own


def registry_table(title: str, rows: Sequence[RegistryRow]) -> Table:
    """A registry listing: name (and task under it), a details column, the parameters. Names are
    never cut: their column is as wide as the longest name; details and parameters wrap beside it."""
    result = Table(title=title, show_lines=True, title_justify="left", expand=True)
    # The task goes under the name rather than in a column of its own: at 80 columns every column counts.
    result.add_column("name", no_wrap=True, min_width=max((len(row.name) for row in rows), default=4))
    result.add_column("details", ratio=3, overflow="fold")
    result.add_column("parameters", ratio=2, overflow="fold")
    for row in rows:
        name = Text(row.name, style="bold cyan")
        if row.task:
            name.append(f"\n{row.task}", style="default")
        details = Text(row.summary)
        # Only a plugin's component says where it comes from: trainctl's own listings stay as they were.
        for label, value in row.details + ([("from plugin", row.source)] if row.source else []):
            details.append(f"\n{label}: ", style="dim")
            details.append(value)
        result.add_row(name, details, Text("\n".join(row.parameters) or "—"))
    return result


def plugin_table(plugins: Sequence[tuple[str, Sequence[str]]]) -> Table:
    """`trainctl plugins`: each loaded plugin (its source) and the components it registers, one a line."""
    result = Table(title="plugins", title_justify="left", show_lines=True)
    result.add_column("plugin", style="bold cyan", overflow="fold")
    result.add_column("registers")
    for source, components in plugins:
        result.add_row(Text(source), Text("\n".join(components) or "nothing"))
    return result


def detail_view(name: str, summary: str, fields: Sequence[tuple[str, object]], example_yaml: str) -> Group:
    """One component in full: its name and summary, a label per field, and an example config."""
    rows = Table.grid(padding=(0, 2))
    rows.add_column(style="bold")
    rows.add_column()
    for label, value in fields:
        rows.add_row(label, Text(str(value)))
    return Group(
        Text.assemble((name, "bold cyan"), f" — {summary}"),
        rows,
        "",
        "[bold]example[/bold]",
        Syntax(example_yaml, "yaml", theme="ansi_dark", background_color="default"),
    )


def side_by_side(
    title: str, labels: Sequence[str], rows: Sequence[Sequence[str]], notes: Sequence[str], width: int
) -> list[RenderableType]:
    """Runs as columns, for a console `width` wide: the title, one table per group of runs that fits
    (long labels and values wrap, never cut), then the notes. Each row is its name, then a cell per run."""
    key_width = min(max(len(row[0]) for row in rows), MAX_KEY_WIDTH)
    # A table's width is its left border plus, per column, the content, two of padding and a border.
    room = width - 1 - (key_width + 3)
    per_table = max(1, room // (RUN_WIDTH + 3))
    out: list[RenderableType] = [Text(title, style="bold")]
    for start in range(0, len(labels), per_table):
        shown = labels[start : start + per_table]
        run_width = max(RUN_WIDTH, room // len(shown) - 3)
        result = Table()
        result.add_column("", overflow="fold", width=key_width)
        for label in shown:  # every run column gets a fixed share: long words fold instead of widening it
            result.add_column(Text(label, style="cyan"), justify="right", overflow="fold", max_width=run_width)
        for row in rows:
            result.add_row(Text(row[0]), *(Text(cell) for cell in row[1 + start : 1 + start + len(shown)]))
        out.append(result)
    out += [Text(note, style="dim") for note in notes]
    return out


def markdown_table(title: str, labels: Sequence[str], rows: Sequence[Sequence[str]], notes: Sequence[str]) -> str:
    """The same as markdown: the title, a table with a column per label (numbers right-aligned), the notes."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        title,
        "",
        "| | " + " | ".join(cell(label) for label in labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    lines += ["| " + " | ".join(cell(text) for text in row) + " |" for row in rows]
    lines += ["", *notes] if notes else []
    return "\n".join(lines) + "\n"
