"""The README's quick start stays true: CI runs its test command, and it trains the default config."""

from __future__ import annotations

from conftest import REPO


def quick_start() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_opens_with_two_commands():
    install_and_train, install_and_test = quick_start()
    assert install_and_train.endswith("trainctl train configs/digits_mlp.yaml")
    assert (REPO / "configs" / "digits_mlp.yaml").is_file()
    assert install_and_test.endswith("pytest -q")


def test_ci_runs_the_readme_test_command():
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert quick_start()[1] in ci_lines
