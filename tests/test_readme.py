"""The README's quick start stays true: CI runs its test command, and it trains the default config."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from helpers import REPO


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


def bash_block_with(text: str) -> list[str]:
    """The commands of the README's bash block that contains `text`, comments dropped."""
    for block in (REPO / "README.md").read_text().split("```bash\n")[1:]:
        block = block.split("```", 1)[0]
        if text in block:
            return [line for line in block.splitlines() if line.strip()]
    raise AssertionError(f"no bash block in the README contains {text!r}")


def readme_args(command: str, tmp_path: Path) -> list[str]:
    """A README command's arguments as the CLI gets them: configs/ from the checkout, runs/ in tmp_path."""
    words = shlex.split(command, comments=True)
    assert words[0] == "trainctl"
    return [
        str(REPO / w) if w.startswith("configs/") else str(tmp_path / w) if w.startswith("runs/") else w
        for w in words[1:]
    ]


@pytest.mark.slow
def test_readme_extends_a_run_as_it_shows_and_refuses_a_cosine_one_as_it_says(cli, tmp_path):
    """The extend example, at 2 and 4 epochs instead of 20 and 40, and the refusal the text quotes."""
    train_command, extend_command = bash_block_with("--resume runs/b")
    trained = cli(*readme_args(train_command, tmp_path), "--set", "trainer.epochs=2", "--quiet")
    assert trained.exit_code == 0, trained.output
    extend = [arg.replace("trainer.epochs=40", "trainer.epochs=4") for arg in readme_args(extend_command, tmp_path)]
    assert "trainer.epochs=4" in extend
    extended = cli(*extend, "--quiet")
    assert extended.exit_code == 0, extended.output
    epochs = [
        json.loads(line)["epoch"] for line in (tmp_path / "runs" / "b" / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs == [1, 2, 3, 4]

    text = " ".join((REPO / "README.md").read_text().split())
    refused_command, quoted = re.search(
        r"so `(trainctl train --resume runs/a [^`]+)` is refused \(`([^`]+)`\)", text
    ).groups()
    assert "--set trainer.epochs=40" in refused_command
    cosine = cli(
        "train",
        REPO / "configs" / "digits_mlp.yaml",
        "--out",
        tmp_path / "runs" / "a",
        "--set",
        "trainer.epochs=1",
        "--quiet",
    )
    assert cosine.exit_code == 0, cosine.output
    refused = cli(*readme_args(refused_command, tmp_path))
    assert refused.exit_code == 2
    before, after = quoted.removesuffix("...").split("over 20 epochs")
    assert f"{before}over 1 epochs{after}" in refused.stderr


def test_install_hints_name_a_command_that_installs_this_project():
    """`pip install 'trainctl[...]'` outside a checkout fetches another project: no hint may say it."""
    sources = [REPO / "README.md", *(REPO / "trainctl").rglob("*.py")]
    for path in sources:
        assert "pip install 'trainctl[" not in path.read_text(), path
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(requirement.startswith("torchvision") for requirement in extras["vision"])
    assert any(requirement.startswith("torchvision") for requirement in extras["test"])


def test_readme_says_image_datasets_need_torchvision_before_introducing_them():
    text = (REPO / "README.md").read_text()
    hint = text.index("**Image datasets need torchvision**")
    paragraph = text[hint : text.index("\n\n", hint)]
    assert "pip install -e '.[vision]'" in paragraph
    for name in ("MNIST family", "`image_folder`"):
        assert name in paragraph
    assert (
        hint < text.index("`mnist`, `fashion_mnist` and `kmnist` read") < text.index("`image_folder` (torchvision too)")
    )


def test_readme_puts_learned_loss_parameters_in_the_test_record():
    text = " ".join((REPO / "README.md").read_text().split())
    assert "`summary.json`'s `test.loss_parameters`" in text
