"""`trainctl report`: one self-contained HTML file about a run, a group of seeds, a cv or a sweep.

The runs are trained for real (tiny configs); every number the page shows is checked against the
run's own files (summary.json, test_predictions.csv), counted or computed here independently. The
page is parsed with the standard library's HTML parser, and opened in a real headless Chromium
where one is installed.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import shutil
import statistics
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainctl.output import Output

from helpers import CONFIGS, image_tree, run_cli, write_config

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DATA_PNG = "data:image/png;base64,"


# ---- reading the page back -----------------------------------------------------------------------


class Page(HTMLParser):
    """What a test needs of a report: its title, images, <pre> texts, every attribute that could load
    something, and each table (by its class) as rows of (text, data-value) cells."""

    def __init__(self, text: str):
        super().__init__()
        self.title = ""
        self.images: list[dict[str, str]] = []
        self.loading_attributes: list[tuple[str, str, str]] = []  # tag, attribute, value
        self.tags: Counter[str] = Counter()
        self.tables: dict[str, list[list[tuple[str, str | None]]]] = {}
        self.pre: list[str] = []
        self._in: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._cell_value: str | None = None
        self._text = ""
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags[tag] += 1
        for name in ("src", "href", "srcset", "data", "poster", "action", "background"):
            if name in attributes:
                self.loading_attributes.append((tag, name, attributes[name] or ""))
        if tag == "img":
            self.images.append(attributes)
        elif tag == "table":
            self._table = attributes.get("class") or f"table-{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell, self._cell_value = [], attributes.get("data-value")
        if tag not in ("img", "meta", "br"):
            self._in.append(tag)
            self._text = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append(("".join(self._cell).strip(), self._cell_value))
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "title":
            self.title = self._text
        elif tag == "pre":
            self.pre.append(self._text)
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data):
        self._text += data
        if self._cell is not None:
            self._cell.append(data)

    def rows(self, table: str) -> list[list[tuple[str, str | None]]]:
        """The body rows of a table (its header row left out)."""
        return self.tables[table][1:]

    def header(self, table: str) -> list[str]:
        return [text for text, _ in self.tables[table][0]]


def decoded_png(source: str) -> Image.Image:
    assert source.startswith(DATA_PNG), source[:40]
    payload = base64.b64decode(source.removeprefix(DATA_PNG), validate=True)
    assert payload.startswith(PNG_SIGNATURE)
    Image.open(io.BytesIO(payload)).verify()  # the whole file: chunks and their checksums
    return Image.open(io.BytesIO(payload))


def read_predictions(run: Path) -> list[dict[str, str]]:
    with (run / "test_predictions.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def report(run: Path, *options) -> tuple[object, Path]:
    """`trainctl report RUN OPTIONS`; returns the result and the file it wrote (by default in the folder)."""
    result = run_cli("report", run, *options)
    return result, run / "report.html"


# ---- runs trained for these tests ----------------------------------------------------------------


def train(config: Path, folder: Path, *settings: str) -> Path:
    from trainctl.workflows import train as run_training

    return run_training(config, list(settings), out=folder, output=Output(quiet=True)).run.path


def tiny_iris(directory: Path) -> Path:
    return write_config(directory, trainer={"epochs": 2, "device": "cpu"})


@pytest.fixture(scope="module")
def calibrated_digits(tmp_path_factory) -> Path:
    """The default digits config, 2 epochs, with temperature scaling: every section of a run's page."""
    folder = tmp_path_factory.mktemp("digits")
    return train(
        CONFIGS / "digits_mlp.yaml",
        folder / "run",
        "trainer.epochs=2",
        "trainer.device=cpu",
        "trainer.calibrate=temperature",
    )


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    """A small CNN on generated PNGs in two class folders, one of them named with HTML's characters."""
    folder = tmp_path_factory.mktemp("images")
    root = image_tree(folder / "images", {"red": 10, "<b>&blue": 10})
    config = write_config(
        folder,
        name="images",
        data={"name": "image_folder", "root": str(root), "batch_size": 8, "val_fraction": 0.2, "test_fraction": 0.3},
        model={"name": "cnn", "channels": [4], "hidden": 8},
        trainer={"epochs": 1, "device": "cpu"},
    )
    return train(config, folder / "run")


@pytest.fixture
def digits_copy(calibrated_digits, tmp_path) -> Path:
    """A copy of the digits run a test may change."""
    return Path(shutil.copytree(calibrated_digits, tmp_path / "run"))


# ---- a run's page --------------------------------------------------------------------------------


def test_a_runs_report_is_one_file_that_loads_nothing(digits_copy):
    before = {p.name for p in digits_copy.iterdir()}
    result, written = report(digits_copy)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"written: {written} (run report, ")
    assert {p.name for p in digits_copy.iterdir()} - before == {"report.html"}  # no temporary left beside it
    text = written.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    page = Page(text)
    assert page.tags["script"] == page.tags["link"] == page.tags["iframe"] == page.tags["object"] == 0
    assert page.loading_attributes == [("img", "src", image["src"]) for image in page.images]  # images only
    sizes = [decoded_png(image["src"]).size for image in page.images]
    assert len(sizes) == 3  # curves, confusion matrix, reliability diagram
    assert all(width > 100 and height > 100 for width, height in sizes)
    assert page.title == "trainctl report: run run"


def test_the_pages_numbers_are_the_runs(digits_copy):
    result, written = report(digits_copy)
    assert result.exit_code == 0, result.output
    page = Page(written.read_text(encoding="utf-8"))
    summary = json.loads((digits_copy / "summary.json").read_text())
    shown = {name: float(value) for (name, _), (_, value) in page.rows("test-metrics")}
    expected = {key: value for key, value in summary["test"].items() if isinstance(value, float)}
    assert shown == expected and set(shown) >= {"loss", "accuracy", "f1", "ece"}

    # Per class, as training scored them (summary.json's per_class), in the classes' order.
    per_class = {row[0][0]: [float(value) for _, value in row[1:]] for row in page.rows("per-class")}
    assert list(per_class) == [str(digit) for digit in range(10)]
    for name, values in per_class.items():
        stored = summary["test"]["per_class"][name]
        assert values == [stored["precision"], stored["recall"], stored["f1"], stored["support"]]

    # ECE before and after temperature scaling, as summary.json has them.
    calibration = summary["test"]["calibration"]
    assert f"{calibration['ece_before']:.4f} before temperature scaling" in written.read_text()
    assert f"{summary['test']['ece']:.4f} after it (T = {calibration['temperature']:.3f}" in written.read_text()

    # The highest-loss samples: the CSV's rows sorted by loss, here.
    predictions = read_predictions(digits_copy)
    worst = sorted(predictions, key=lambda row: -float(row["loss"]))[:12]
    rows = page.rows("highest-loss")
    assert [int(row[0][0]) for row in rows] == [int(sample["row"]) for sample in worst]
    assert [(row[1][0], row[2][0], float(row[4][1])) for row in rows] == [
        (sample["target"], sample["prediction"], float(sample["loss"])) for sample in worst
    ]

    # The resolved config, as the run folder holds it.
    assert page.pre == [(digits_copy / "config.yaml").read_text()]


def shown_confusion(page: Page) -> dict[tuple[str, str], int]:
    header = page.header("confusion-counts")[1:]
    return {
        (row[0][0], predicted): int(cell[0])
        for row in page.rows("confusion-counts")
        for predicted, cell in zip(header, row[1:])
    }


def counted_confusion(run: Path) -> dict[tuple[str, str], int]:
    counts = Counter((row["target"], row["prediction"]) for row in read_predictions(run))
    names = json.loads((run / "data.json").read_text())["task"]["class_names"]
    return {(true, predicted): counts[(true, predicted)] for true in names for predicted in names}


def test_the_confusion_matrix_counts_the_test_predictions(digits_copy):
    result, written = report(digits_copy)
    assert result.exit_code == 0, result.output
    assert shown_confusion(Page(written.read_text(encoding="utf-8"))) == counted_confusion(digits_copy)

    # A summary without the matrix (an earlier version's run): counted from test_predictions.csv.
    summary = json.loads((digits_copy / "summary.json").read_text())
    del summary["test"]["confusion_matrix"]
    (digits_copy / "summary.json").write_text(json.dumps(summary))
    result, written = report(digits_copy, "--force")
    assert result.exit_code == 0, result.output
    assert shown_confusion(Page(written.read_text(encoding="utf-8"))) == counted_confusion(digits_copy)


def test_class_names_are_escaped_and_image_samples_have_thumbnails(image_run, tmp_path):
    output = tmp_path / "images.html"
    result = run_cli("report", image_run, "-o", output)
    assert result.exit_code == 0, result.output
    text = output.read_text(encoding="utf-8")
    assert "<b>" not in text and "&lt;b&gt;&amp;blue" in text
    page = Page(text)
    assert [row[0][0] for row in page.rows("per-class")] == ["<b>&blue", "red"]
    assert shown_confusion(page) == counted_confusion(image_run)

    predictions = read_predictions(image_run)
    rows = page.rows("highest-loss")
    assert len(rows) == len(predictions) == 6  # 30% of 20 images, fewer than the 12 shown at most
    assert page.header("highest-loss")[-2:] == ["image", "file"]
    by_file = {row["file"]: row for row in predictions}
    thumbnails = [image for image in page.images if image.get("class") == "thumbnail"]
    assert len(thumbnails) == len(rows)
    for row, image in zip(rows, thumbnails):
        file = row[-1][0]
        assert by_file[file]["row"] == row[0][0]  # the thumbnail's row is the file's
        thumbnail = decoded_png(image["src"]).convert("RGB")
        assert max(thumbnail.size) == 64
        red, _, blue = np.asarray(thumbnail, dtype=np.float64).mean(axis=(0, 1))
        assert (red > blue) == (Path(file).parent.name == "red")  # the file's own pixels: red or blue


def test_a_regression_run_shows_values_and_no_classes(tmp_path):
    config = write_config(
        tmp_path,
        data={"name": "diabetes", "batch_size": 32},
        model={"name": "mlp", "hidden": [8]},
        loss={"name": "mse"},
        trainer={"epochs": 1, "device": "cpu"},
    )
    run = train(config, tmp_path / "run")
    result, written = report(run)
    assert result.exit_code == 0, result.output
    page = Page(written.read_text(encoding="utf-8"))
    assert "confusion-counts" not in page.tables and "per-class" not in page.tables
    assert len(page.images) == 1  # the curves
    worst = sorted(read_predictions(run), key=lambda row: -float(row["loss"]))[:12]
    assert [(row[0][0], float(row[-1][1])) for row in page.rows("highest-loss")] == [
        (sample["row"], float(sample["loss"])) for sample in worst
    ]


def test_an_unfinished_run_shows_its_curves_and_says_it_has_no_results(digits_copy):
    (digits_copy / "summary.json").unlink()
    (digits_copy / "test_predictions.csv").unlink()
    result, written = report(digits_copy)
    assert result.exit_code == 0, result.output
    page = Page(written.read_text(encoding="utf-8"))
    assert "no summary.json yet: the run has not finished or was interrupted (2 epochs written" in written.read_text()
    assert [image["alt"] for image in page.images] == ["curves of digits_mlp"]
    assert "test-metrics" not in page.tables and "highest-loss" not in page.tables


def test_a_folder_of_runs_is_ranked_by_the_validation_value_of_their_monitor(tmp_path):
    config = tiny_iris(tmp_path)
    for lr in ("0.001", "0.05"):
        train(config, tmp_path / "runs" / f"lr-{lr}", f"optimizer.lr={lr}")
    result, written = report(tmp_path / "runs")
    assert result.exit_code == 0, result.output
    page = Page(written.read_text(encoding="utf-8"))
    best_values = {
        run.name: json.loads((run / "summary.json").read_text())["best_value"]
        for run in (tmp_path / "runs").iterdir()
        if run.is_dir()
    }
    rows = page.rows("leaderboard")
    assert [(row[0][0], row[1][0], row[2][0]) for row in rows] == [
        (str(rank), name, name.removeprefix("lr-"))
        for rank, name in enumerate(sorted(best_values, key=lambda name: (-best_values[name], name)), 1)
    ]
    assert page.images[0]["alt"] == "curves of tiny"  # the best run's own section follows

    # A run that monitors another metric: listed, not ranked, and no run is called the best.
    train(config, tmp_path / "runs" / "by-loss", "trainer.monitor=val/loss")
    result, written = report(tmp_path / "runs", "--force")
    page = Page(written.read_text(encoding="utf-8"))
    assert [row[0][0] for row in page.rows("leaderboard")] == ["—", "—", "—"]
    assert "the runs monitor different metrics (val/accuracy, val/loss): not ranked" in written.read_text()
    assert page.images == []


# ---- what the command refuses --------------------------------------------------------------------


def test_an_existing_file_is_replaced_only_with_force(digits_copy, tmp_path):
    output = tmp_path / "mine.html"
    output.write_text("my own notes")
    refused = run_cli("report", digits_copy, "-o", output)
    assert refused.exit_code == 2
    assert refused.stderr == f"error: --output {output}: already exists; add --force to replace it\n"
    assert output.read_text() == "my own notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.html", "run"]  # nothing half-written beside it
    replaced = run_cli("report", digits_copy, "-o", output, "--force")
    assert replaced.exit_code == 0, replaced.output
    assert output.read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "{p}/missing: not found"),
        (
            lambda p: (p / "notes").mkdir() or p / "notes",
            "{p}/notes: nothing to report on: no group.json (a group folder), cv.json (a cross-validation "
            "folder), config.yaml (a run folder) or run folders (a sweep folder) in it",
        ),
        (
            lambda p: (p / "a.txt").write_text("x") and p / "a.txt",
            "{p}/a.txt: not a folder; give a group, cross-validation, run or sweep folder",
        ),
    ],
    ids=["missing", "no-run", "a-file"],
)
def test_a_folder_with_nothing_to_report_is_one_line(tmp_path, make, message):
    folder = make(tmp_path)
    result = run_cli("report", folder)
    assert result.exit_code == 2
    assert result.stderr == f"error: {message.format(p=tmp_path)}\n"
    assert not (tmp_path / "notes" / "report.html").exists()


def test_a_damaged_summary_is_one_line_naming_it(digits_copy):
    summary = json.loads((digits_copy / "summary.json").read_text())
    summary["test"]["confusion_matrix"] = [[1, 2], [3]]
    (digits_copy / "summary.json").write_text(json.dumps(summary))
    result, written = report(digits_copy)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {digits_copy / 'summary.json'}: test.confusion_matrix is not a 10×10 matrix of counts; "
        "the file is damaged\n"
    )
    assert not written.exists()


@pytest.mark.subprocess
def test_the_report_imports_no_torch(calibrated_digits, tmp_path):
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom trainctl.cli import app\n"
            f"try:\n    app(['report', {str(calibrated_digits)!r}, '-o', {str(tmp_path / 'r.html')!r}])\n"
            "except SystemExit as done:\n    print(done.code, 'torch' in sys.modules, 'sklearn' in sys.modules)",
        ],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.splitlines()[-1] == "0 False False", probe.stderr
    assert (tmp_path / "r.html").is_file()


# ---- groups and sweeps ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_groups_report_has_each_seed_and_the_interval_of_the_mean(tmp_path):
    from scipy import stats

    group = tmp_path / "group"
    trained = run_cli("train", tiny_iris(tmp_path), "--seeds", "0,1,2", "--jobs", "2", "--out", group)
    assert trained.exit_code == 0, trained.output
    result, written = report(group)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"written: {written} (group report, ")
    page = Page(written.read_text(encoding="utf-8"))
    assert page.title == "trainctl report: group group"

    seeds = {seed: json.loads((group / f"seed-{seed}" / "summary.json").read_text())["test"] for seed in (0, 1, 2)}
    header = page.header("per-seed")
    for row in page.rows("per-seed"):
        test = seeds[int(row[0][0])]
        shown = {name.removeprefix("test/"): float(value) for name, (_, value) in zip(header[4:], row[4:])}
        assert shown == {key: value for key, value in test.items() if isinstance(value, float)}

    summary_rows = {row[0][0]: [text for text, _ in row[1:]] for row in page.rows("group-summary")}
    accuracies = [seeds[seed]["accuracy"] for seed in (0, 1, 2)]
    mean, sd = statistics.mean(accuracies), statistics.stdev(accuracies)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert summary_rows["accuracy"][:2] == [f"{mean:.4f} ± {sd:.4f}", f"[{mean - half:.4f}, {mean + half:.4f}]"]
    assert summary_rows["accuracy"][2:] == [f"{min(accuracies):.4f}", f"{max(accuracies):.4f}", "3"]
    assert [image["alt"] for image in page.images] == ["curves of seed 0", "curves of seed 1", "curves of seed 2"]
    assert all(decoded_png(image["src"]).size == (640, 160) for image in page.images)  # small: 16×4 in at 40 dpi


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_cv_report_has_each_fold_and_the_out_of_fold_confusion_matrix(tmp_path):
    folder = tmp_path / "cv"
    trained = run_cli("cv", tiny_iris(tmp_path), "--folds", "3", "--jobs", "2", "--out", folder)
    assert trained.exit_code == 0, trained.output
    result, written = report(folder)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"written: {written} (cross-validation report, ")
    page = Page(written.read_text(encoding="utf-8"))
    assert page.title == "trainctl report: cross-validation cv"

    folds = {f"fold-{k}": json.loads((folder / f"fold-{k}" / "summary.json").read_text())["test"] for k in (1, 2, 3)}
    header = page.header("per-seed")
    for row in page.rows("per-seed"):
        shown = {name.removeprefix("test/"): float(value) for name, (_, value) in zip(header[3:], row[3:])}
        assert shown == {key: value for key, value in folds[row[1][0]].items() if isinstance(value, float)}
    accuracies = [folds[name]["accuracy"] for name in sorted(folds)]
    summary_rows = {row[0][0]: [text for text, _ in row[1:]] for row in page.rows("group-summary")}
    assert summary_rows["accuracy"][0] == f"{statistics.mean(accuracies):.4f} ± {statistics.stdev(accuracies):.4f}"

    # The confusion matrix of every sample's out-of-fold prediction: iris's 150 flowers, counted here.
    with (folder / "oof.csv").open() as handle:
        counts = Counter((line["target"], line["prediction"]) for line in csv.DictReader(handle))
    assert shown_confusion(page) == {pair: counts[pair] for pair in shown_confusion(page)}
    assert sum(shown_confusion(page).values()) == 150
    assert [image["alt"] for image in page.images][-3:] == [f"curves of fold-{k}" for k in (1, 2, 3)]


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_sweeps_report_ranks_the_trials_and_shows_the_best(tmp_path):
    sweep = tmp_path / "sweep"
    swept = run_cli("sweep", tiny_iris(tmp_path), "--grid", "optimizer.lr=0.001,0.05", "--out", sweep)
    assert swept.exit_code == 0, swept.output
    result, written = report(sweep)
    assert result.exit_code == 0, result.output
    page = Page(written.read_text(encoding="utf-8"))
    assert page.header("leaderboard")[:5] == ["rank", "run", "optimizer.lr", "best epoch", "val/accuracy (best epoch)"]

    # The sweep's own ranking: its leaderboard.csv, best first by the validation accuracy.
    with (sweep / "leaderboard.csv").open(newline="") as handle:
        leaderboard = list(csv.DictReader(handle))
    rows = page.rows("leaderboard")
    assert [row[1][0] for row in rows] == [trial["folder"] for trial in leaderboard]
    assert [float(row[4][1]) for row in rows] == [float(trial["val/accuracy"]) for trial in leaderboard]
    for row in rows:  # each trial's test metrics, as its summary.json has them
        test = json.loads((sweep / row[1][0] / "summary.json").read_text())["test"]
        assert float(row[6][1]) == test["accuracy"]
    best = sweep / leaderboard[0]["folder"]
    shown = {name: float(value) for (name, _), (_, value) in page.rows("test-metrics")}
    assert shown["accuracy"] == json.loads((best / "summary.json").read_text())["test"]["accuracy"]
    assert page.pre == [(best / "config.yaml").read_text()]  # the best trial's whole section


# ---- in a real browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> tuple[str, str]:
    """The system's Chromium and its driver, or a skip saying what is missing (before any run is trained)."""
    pytest.importorskip("selenium", reason="selenium is not installed (the test extra installs it)")
    browser = next(
        (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None
    )
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip(
            "no Chromium and chromedriver on this machine (Debian: apt install chromium chromium-driver): "
            "the report is opened in a real browser only where both are"
        )
    return browser, driver


@pytest.mark.slow
def test_the_pages_load_in_chromium_without_errors_and_show_every_image(chromium, digits_copy, image_run, tmp_path):
    browser, driver_path = chromium
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    pages = {"run": report(digits_copy)[1], "images": tmp_path / "images.html"}
    assert run_cli("report", image_run, "-o", pages["images"]).exit_code == 0
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        for (name, path), (title, count) in zip(
            pages.items(), [("trainctl report: run run", 3), ("trainctl report: run run", 9)]
        ):
            driver.get(path.resolve().as_uri())
            assert driver.title == title
            images = driver.execute_script(
                "return Array.from(document.images, image => {"
                " const box = image.getBoundingClientRect();"
                " return [image.alt, image.complete, image.naturalWidth, box.width, box.height]; });"
            )
            assert len(images) == count, name
            for alt, complete, natural_width, width, height in images:
                assert complete and natural_width > 0, f"{name}: {alt} did not load"
                assert width > 0 and height > 0, f"{name}: {alt} is not shown"
            errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
            assert errors == [], name
    finally:
        driver.quit()
