"""Imported first by `trainctl.cli`: when the shell asks for completions (a Tab) and the cached
index can answer, the answer is written and the process ends here, before typer, rich and pydantic
load (`trainctl.completion.answer_from_index`). Otherwise importing this does nothing."""

import os

if os.environ.get("_TRAINCTL_COMPLETE"):
    from trainctl.completion import answer_from_index

    answer_from_index()
