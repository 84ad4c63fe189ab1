"""Shell completion: the installed `trainctl` asked as each shell's script asks it (bash's COMP_WORDS
and COMP_CWORD, or trainctl's bash script's line; zsh's and fish's _TYPER_COMPLETE_ARGS), in a fresh
process, with its index cache in a temporary folder. No torch in any of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import TRAINCTL, write_config


def completion_env(cache, **variables):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("COMP_", "_TRAINCTL", "_TYPER"))}
    return {**env, "XDG_CACHE_HOME": str(cache), **variables}


def bash(line: str, cache, cwd=None, command=(TRAINCTL,)) -> list[str]:
    """What bash gets for a line typed up to the cursor, with the words bash itself passes (COMP_WORDS)."""
    words = line.split(" ")
    env = completion_env(cache, COMP_WORDS=line, COMP_CWORD=str(len(words) - 1), _TRAINCTL_COMPLETE="complete_bash")
    process = subprocess.run(list(command), env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert process.returncode == 0, process.stderr
    return process.stdout.split()


def other_shell(shell: str, line: str, cache, cwd=None) -> str:
    env = completion_env(cache, _TYPER_COMPLETE_ARGS=line, _TRAINCTL_COMPLETE=f"complete_{shell}")
    if shell == "fish":
        env["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    process = subprocess.run([TRAINCTL], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert process.returncode == 0, process.stderr
    return process.stdout


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """An index cache, filled by a first completion (which builds it)."""
    folder = tmp_path_factory.mktemp("cache")
    bash("trainctl list-losses fo", folder)
    assert (folder / "trainctl" / "completion.json").is_file()
    return folder


@pytest.fixture
def runs(tmp_path):
    """A working folder with runs/ holding two runs, a sweep of one trial, and a folder of no runs."""
    for run in ("runs/digits-1", "runs/iris-2", "runs/sweep/trial-0"):
        (tmp_path / run).mkdir(parents=True)
        (tmp_path / run / "config.yaml").write_text("name: x\n")
    (tmp_path / "runs" / "notes").mkdir()
    (tmp_path / "configs").mkdir()
    return tmp_path


def test_commands_complete(cache):
    assert bash("trainctl tr", cache) == ["train"]
    assert bash("trainctl list-l", cache) == ["list-losses"]
    assert bash("trainctl --debug ev", cache) == ["eval"]


def test_options_complete(cache):
    assert bash("trainctl eval --ch", cache) == ["--checkpoint"]
    assert bash("trainctl init --c", cache) == ["--csv"]


def test_registered_names_complete(cache):
    assert bash("trainctl list-losses fo", cache) == ["focal"]
    assert bash("trainctl list-losses --details hu", cache) == ["huber"]
    assert bash("trainctl list-losses --task r", cache) == ["regression"]
    assert bash("trainctl list-models emb", cache) == ["embedding_bag"]
    assert bash("trainctl init --dataset ir", cache) == ["iris"]


def test_fixed_choices_complete(cache):
    assert bash("trainctl eval runs/x --checkpoint b", cache) == ["best"]
    assert bash("trainctl eval runs/x --split ", cache) == ["test", "val", "train"]
    assert bash("trainctl export runs/x --format o", cache) == ["onnx"]


def test_config_keys_complete_one_level_at_a_time(cache):
    assert bash("trainctl train c.yaml --set optimizer.l", cache) == ["optimizer.lr="]
    below = bash("trainctl train c.yaml --set optimizer.", cache)
    assert {"optimizer.lr=", "optimizer.name=", "optimizer.groups=", "optimizer.momentum=", "optimizer.betas="} <= set(
        below
    )
    assert bash("trainctl train c.yaml -s trainer.ea", cache) == ["trainer.early_stopping."]
    assert bash("trainctl train c.yaml --set trainer.early_stopping.pa", cache) == ["trainer.early_stopping.patience="]
    assert bash("trainctl train c.yaml --set sched", cache) == ["scheduler."]
    assert bash("trainctl train c.yaml --set scheduler", cache) == ["scheduler.", "scheduler="]
    assert bash("trainctl sweep c.yaml --grid optimizer.l", cache) == ["optimizer.lr="]
    assert bash("trainctl validate c.yaml --set trainer.precision=", cache) == [
        "trainer.precision=32",
        "trainer.precision=bf16",
        "trainer.precision=16-mixed",
    ]


def test_a_config_file_narrows_a_section_to_its_component(cache, tmp_path):
    config = write_config(tmp_path, optimizer={"name": "sgd", "lr": 0.1})
    keys = bash(f"trainctl train {config} --set optimizer.", cache)
    assert "optimizer.momentum=" in keys and "optimizer.betas=" not in keys  # sgd's, not adam's
    keys = bash(f"trainctl train {config} --set optimizer.name=adam --set optimizer.", cache)
    assert "optimizer.betas=" in keys and "optimizer.momentum=" not in keys


def test_values_after_the_equals_sign(cache):
    for shell in ("zsh", "fish"):
        assert "loss.name=focal" in other_shell(shell, "trainctl train c.yaml --set loss.name=fo", cache)


def test_run_folders_complete(cache, runs):
    assert bash("trainctl eval ", cache, cwd=runs) == ["runs/"]
    assert bash("trainctl eval runs/", cache, cwd=runs) == ["runs/digits-1", "runs/iris-2", "runs/sweep/"]
    assert bash("trainctl compare runs/digits-1 runs/sw", cache, cwd=runs) == ["runs/sweep/"]
    assert bash("trainctl train --resume runs/i", cache, cwd=runs) == ["runs/iris-2"]


def test_trainctls_bash_script_completes_a_value_after_the_equals_sign_and_keeps_no_space_after_a_key(cache):
    env = completion_env(cache, _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    script = subprocess.run([TRAINCTL, "--show-completion", "bash"], env=env, capture_output=True, text=True).stdout
    assert "_TRAINCTL_COMPLETE_LINE" in script and "complete -o default -F _trainctl_completion trainctl" in script
    # As bash calls the function on Tab: COMP_WORDS split at `=` (COMP_WORDBREAKS), the line, the cursor.
    driver = f"""
{script}
complete_line() {{
    COMP_LINE="$1"; COMP_POINT=${{#COMP_LINE}}
    COMP_WORDBREAKS=$' \\t\\n"\\'><=;|&(:'
    read -r -a COMP_WORDS <<< "${{1//=/ = }}"
    COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
    [[ "$1" == *" " ]] && COMP_CWORD=${{#COMP_WORDS[@]}}
    _trainctl_completion {TRAINCTL}  # $1: the command as typed, the installed one here
    echo "${{COMPREPLY[*]}}"
}}
complete_line "trainctl train c.yaml --set loss.name=fo"
complete_line "trainctl train c.yaml --set optimizer.l"
complete_line "trainctl list-losses fo"
"""
    process = subprocess.run(["bash", "--norc", "-c", driver], env=env, capture_output=True, text=True, timeout=60)
    assert process.returncode == 0, process.stderr
    assert process.stdout.splitlines() == ["focal", "optimizer.lr=", "focal"]


def test_the_answers_from_the_index_are_typers(cache, runs, monkeypatch, capsys):
    """The answers written before typer loads, and typer's and click's own, for the same lines in
    each shell: the same text."""
    from trainctl import completion
    from trainctl.cli import app

    monkeypatch.chdir(runs)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    index = completion.load_index()
    lines = [
        "trainctl ",
        "trainctl li",
        "trainctl --debug ev",
        "trainctl list-losses ",
        "trainctl list-losses --task ",
        "trainctl list-models r",
        "trainctl train c.yaml --set optimizer.",
        "trainctl train c.yaml -s trainer.precision=",
        "trainctl train c.yaml --set loss.name=fo",
        "trainctl train --resume runs/",
        "trainctl eval runs/digits-1 --checkpoint ",
        "trainctl eval runs/",
        "trainctl plot runs/digits-1 runs/",
        "trainctl init --dataset ",
        "trainctl -",
        "trainctl --debug --",
        "trainctl eval --",
        "trainctl eval runs/digits-1 --force --checkpoint best --",
        "trainctl train c.yaml --set a=1 -",
    ]
    compared = 0
    for shell in ("bash", "zsh", "fish"):
        for line in lines:
            for key in ("COMP_WORDS", "COMP_CWORD", completion.LINE_VAR, "_TYPER_COMPLETE_ARGS"):
                monkeypatch.delenv(key, raising=False)
            monkeypatch.setenv(completion.COMPLETE_VAR, f"complete_{shell}")
            monkeypatch.setenv("_TYPER_COMPLETE_FISH_ACTION", "get-args")
            monkeypatch.setenv(completion.WORDBREAKS_VAR, " \t\n\"'><=;|&(:")
            monkeypatch.setenv(completion.LINE_VAR if shell == "bash" else "_TYPER_COMPLETE_ARGS", line)
            quick = completion.quick_output(index)
            if quick is None:  # option names for zsh and fish: typer's, with its rendering of their help
                assert shell != "bash" and line.split(" ")[-1].startswith("-"), (shell, line)
                continue
            with pytest.raises(SystemExit):
                completion._answer(app, f"complete_{shell}")
            assert quick + "\n" == capsys.readouterr().out, (shell, line)
            compared += 1
    assert compared == 3 * len(lines) - 2 * 5


def test_the_index_leaves_unknown_options_and_helped_option_names_to_typer(cache):
    from trainctl import completion

    index = completion.load_index()
    assert completion.quick_answers(index, ["eval"], "--ch") == [("--checkpoint", None)]
    assert completion.quick_answers(index, ["eval"], "--ch", option_names=False) is None  # zsh, fish: with help
    assert completion.quick_answers(index, ["eval"], "--split=v") is None
    assert completion.quick_answers(index, ["eval", "--nope"], "") is None
    assert completion.quick_answers(index, ["train", "--set=optimizer.lr=1"], "") is None


def imported_modules(process_stderr: str) -> list[str]:
    return [line.rsplit("|", 1)[-1].strip() for line in process_stderr.splitlines() if line.startswith("import time:")]


@pytest.mark.parametrize("warm", [False, True], ids=["first completion (builds the index)", "later ones"])
def test_a_completion_imports_no_torch(tmp_path, warm):
    cache = tmp_path / "cache"
    line = "trainctl train c.yaml --set optimizer.l"
    env = completion_env(cache, COMP_WORDS=line, COMP_CWORD="4", _TRAINCTL_COMPLETE="complete_bash")
    command = [sys.executable, "-X", "importtime", "-m", "trainctl"]
    if warm:
        subprocess.run(command, env=env, capture_output=True, check=True)
    process = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert process.stdout.split() == ["optimizer.lr="]
    imported = imported_modules(process.stderr)
    assert "trainctl.completion" in imported
    assert not [name for name in imported if name.split(".")[0] == "torch"]
    if warm:  # answered from the index before typer (and its pydantic) loaded
        assert not [name for name in imported if name.split(".")[0] in ("typer", "pydantic", "rich")]
    else:
        assert "trainctl.components.registries" in imported


def test_a_damaged_or_stale_cache_is_built_again(tmp_path):
    index_file = tmp_path / "trainctl" / "completion.json"
    index_file.parent.mkdir(parents=True)
    index_file.write_text("{not json")
    assert bash("trainctl list-losses fo", tmp_path) == ["focal"]
    index = json.loads(index_file.read_text())
    assert "focal" in [name for name, _ in index["names"]["losses"]]
    index_file.write_text(json.dumps({**index, "fingerprint": "an earlier trainctl", "names": {}}))
    assert bash("trainctl list-losses fo", tmp_path) == ["focal"]
    assert json.loads(index_file.read_text())["fingerprint"] == index["fingerprint"]


def test_an_unwritable_cache_folder_still_completes(tmp_path):
    (tmp_path / "trainctl").write_text("a file where the cache folder would be")
    assert bash("trainctl list-losses fo", tmp_path) == ["focal"]


def test_install_completion_writes_each_shells_script(tmp_path):
    env = completion_env(tmp_path / "cache", HOME=str(tmp_path), _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    for shell in ("bash", "zsh", "fish"):
        process = subprocess.run([TRAINCTL, "--install-completion", shell], env=env, capture_output=True, text=True)
        assert process.returncode == 0, process.stderr
        assert f"{shell} completion installed in" in process.stdout
    bash_script = (tmp_path / ".bash_completions" / "trainctl.sh").read_text()
    assert "_TRAINCTL_COMPLETE_LINE" in bash_script and "compopt -o nospace" in bash_script  # trainctl's own
    assert f"source '{tmp_path / '.bash_completions' / 'trainctl.sh'}'" in (tmp_path / ".bashrc").read_text()
    assert "_TRAINCTL_COMPLETE=complete_zsh" in (tmp_path / ".zfunc" / "_trainctl").read_text()
    fish = (tmp_path / ".config" / "fish" / "completions" / "trainctl.fish").read_text()
    assert "_TRAINCTL_COMPLETE=complete_fish" in fish


def test_fish_asks_first_whether_there_are_answers(cache, runs):
    env = completion_env(cache, _TRAINCTL_COMPLETE="complete_fish", _TYPER_COMPLETE_FISH_ACTION="is-args")
    for line, expected in (("trainctl eval runs/", 0), ("trainctl eval nowhere/", 1)):
        process = subprocess.run([TRAINCTL], env={**env, "_TYPER_COMPLETE_ARGS": line}, cwd=runs, capture_output=True)
        assert process.returncode == expected, line  # 1: no answers, so fish offers files
