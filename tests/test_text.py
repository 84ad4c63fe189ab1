"""Labelled text: tokenizer and vocabulary fitted on the training split, embedding models, predict on lines."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow
import pyarrow.parquet
import pytest

from trainctl.data.text import TextEncoding, tokenize
from trainctl.workflows import validate

from helpers import REPO, write_config


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def sentiment_rows(count: int = 160, seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    good, bad, filler = ["great", "lovely", "superb"], ["awful", "broken", "poor"], ["the", "item", "was", "really"]
    rows = []
    for i in range(count):
        label = "pos" if i % 2 else "neg"
        words = [*rng.choice(filler, 3), rng.choice(good if label == "pos" else bad)]
        rng.shuffle(words)
        rows.append((" ".join(words).capitalize() + "!", label))
    return rows


def text_config(directory: Path, data_path: Path, model: dict | None = None) -> Path:
    return write_config(
        directory,
        data={"name": "text", "path": data_path.name, "batch_size": 16, "min_freq": 2},
        model=model or {"name": "embedding_bag", "embedding_dim": 16},
        optimizer={"name": "adam", "lr": 0.05},
        trainer={"epochs": 10, "device": "cpu"},
    )


def test_tokenizer_and_vocabulary():
    assert tokenize("Great item, REALLY!", "words", True) == ["great", "item", ",", "really", "!"]
    assert tokenize("Ab c", "chars", False) == ["A", "b", " ", "c"]
    encoding = TextEncoding.fit(["a b b", "b c"], "words", True, min_freq=2, max_size=None, max_length=10)
    assert encoding.vocabulary == ["<pad>", "<unk>", "b"]  # a and c are seen once: <unk>
    assert encoding.length == 3
    assert encoding.transform(["b a", "c c b b"]).tolist() == [[2, 1, 0], [1, 1, 2]]  # padded on the right; cut after 3


@pytest.mark.slow
@pytest.mark.parametrize(
    "model",
    [{"name": "embedding_bag", "embedding_dim": 16}, {"name": "rnn", "embedding_dim": 16, "hidden_size": 16}],
    ids=["embedding_bag", "rnn"],
)
def test_text_trains_and_predicts_lines(cli, tmp_path, model):
    data = write_tsv(tmp_path / "reviews.tsv", sentiment_rows())
    result = cli("train", text_config(tmp_path, data, model), "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "data.json").read_text())
    assert saved["task"]["class_names"] == ["neg", "pos"]
    assert {"great", "awful", "the"} <= set(saved["text"]["vocabulary"])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test"]["accuracy"] >= 0.9
    data.unlink()
    lines = tmp_path / "new.txt"
    lines.write_text("the item was superb\n\nreally awful, never again\n")
    result = cli("predict", tmp_path / "run", lines, "--checkpoint", "last", "-o", tmp_path / "out.json")
    assert result.exit_code == 0, result.output
    records = json.loads((tmp_path / "out.json").read_text())
    assert [(r["input"], r["prediction"]) for r in records] == [(f"{lines}:1", "pos"), (f"{lines}:3", "neg")]


def test_text_errors_name_the_columns(cli, tmp_path):
    data = write_tsv(tmp_path / "reviews.tsv", sentiment_rows(20))
    config = write_config(
        tmp_path,
        data={"name": "text", "path": data.name, "text_column": "body"},
        model={"name": "embedding_bag"},
        optimizer={"name": "adam"},
    )
    result = cli("train", config)
    assert result.exit_code == 2
    assert "data.text_column: no column 'body' in" in result.stderr and "its columns: text, label" in result.stderr
    result = cli(
        "train",
        text_config(tmp_path, data, {"name": "embedding_bag"}),
        "--set",
        "data.name=iris",
        "--set",
        "data={name: iris}",
    )
    assert result.exit_code == 2
    assert "model 'embedding_bag' reads token ids; use it with the text dataset" in result.stderr


def test_the_shipped_text_example_is_valid():
    report = validate(REPO / "examples" / "text" / "reviews.yaml", ["trainer.device=cpu"])
    assert report.errors == []
    assert report.input_shape[-1] <= 40  # max_length caps the sequence


def test_batches_are_padded_to_their_longest_text_and_padding_changes_no_output():
    import torch

    from trainctl.components.models import ModelContext
    from trainctl.components.registries import MODELS
    from trainctl.data.prepare import Split, ordered_batches

    encoding = TextEncoding.fit(["a b c d e f", "a b", "c"], "words", True, min_freq=1, max_size=None, max_length=10)
    ids = torch.as_tensor(encoding.transform(["a b", "c", "a b c d e f", "a"]))
    split = Split(
        ids, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long), lengths=(ids != 0).sum(dim=1)
    )
    assert [inputs.shape[1] for inputs, _, _ in ordered_batches(split, 2)] == [2, 6]
    shuffled = split.batch_inputs([torch.tensor([3, 1]), torch.tensor([0, 2])], epoch=1)
    assert [batch.tolist() for batch in shuffled] == [[[2], [4]], [[2, 3, 0, 0, 0, 0], [2, 3, 4, 5, 6, 7]]]

    for cell, bidirectional in (("lstm", True), ("gru", False)):
        model = MODELS.get("rnn").build(
            ModelContext((10,), 3, len(encoding.vocabulary)),
            {"cell": cell, "bidirectional": bidirectional, "hidden_size": 8},
        )
        alone = model(ids[:1, :2])
        beside_a_long_text = model(ids[[0, 2]])[:1]
        assert torch.allclose(alone, beside_a_long_text, atol=1e-6)


def test_predict_reads_a_tables_text_column_and_warns_when_no_word_is_known(cli, tmp_path):
    """A TSV with a header and a label column gives its text column only; unknown-only texts are flagged.

    The labels hold square brackets, which the predictions table shows as they are (not as markup)."""
    data = write_tsv(tmp_path / "reviews.tsv", [(text, f"[{label}]") for text, label in sentiment_rows()])
    trained = cli(
        "train", text_config(tmp_path, data), "--out", tmp_path / "run", "--quiet", "--set", "trainer.epochs=4"
    )
    assert trained.exit_code == 0, trained.output
    texts = ["the item was superb", "really awful, never again", "qwerty zxcvb"]
    table = tmp_path / "new.tsv"
    with table.open("w", newline="") as handle:  # the label first: columns are found by name
        csv.writer(handle, delimiter="\t").writerows([["label", "text"], *(["[neg]", text] for text in texts)])
    lines = tmp_path / "new.txt"
    lines.write_text("\n".join(texts) + "\n")
    parquet = tmp_path / "new.parquet"
    pyarrow.parquet.write_table(pyarrow.table({"label": ["[neg]"] * 3, "text": texts}), parquet)

    result = cli("predict", tmp_path / "run", table, lines, parquet, "-o", tmp_path / "out.json")
    assert result.exit_code == 0, result.output
    records = json.loads((tmp_path / "out.json").read_text())
    assert [r["input"] for r in records[:6]] == [f"{table}:{n}" for n in (2, 3, 4)] + [
        f"{lines}:{n}" for n in (1, 2, 3)
    ]
    assert [r["input"].startswith(f"{parquet}:") for r in records[6:]] == [True] * 3
    # The same texts give the same probabilities whether they come from a table or one per line.
    assert [r["probabilities"] for r in records[:3]] == [r["probabilities"] for r in records[3:6]]
    assert [r["probabilities"] for r in records[6:]] == [r["probabilities"] for r in records[3:6]]
    assert [r["prediction"] for r in records[:2]] == ["[pos]", "[neg]"]
    assert "│ [pos]      │" in result.stdout and "│ [neg]      │" in result.stdout
    message = "none of its words is in the model's vocabulary: the prediction is a guess from the model's biases"
    assert result.stderr.splitlines()[:2] == [f"warning: {table}:4: {message}", f"warning: {lines}:3: {message}"]
    assert result.stderr.splitlines()[2].startswith(f"warning: {parquet}:")


def test_predict_names_the_missing_text_column(cli, tmp_path):
    data = write_tsv(tmp_path / "reviews.tsv", sentiment_rows(40))
    trained = cli(
        "train", text_config(tmp_path, data), "--out", tmp_path / "run", "--quiet", "--set", "trainer.epochs=1"
    )
    assert trained.exit_code == 0, trained.output
    table = tmp_path / "new.csv"
    table.write_text("review,label\ngreat item,pos\n")
    result = cli("predict", tmp_path / "run", table)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {table}: no column 'text', the run's data.text_column; its columns: review, "
        "label (a file not ending in .csv, .tsv, .tab, .parquet, .pq is read as one text per line)\n"
    )
