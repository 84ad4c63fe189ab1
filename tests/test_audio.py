"""Audio folders: real WAV and FLAC files written here, resampled, turned into log-mel features,
trained on, predicted on; and the signal processing checked against known signals and formulas."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from trainctl.config.loading import ConfigError, load_config
from trainctl.data.audio_features import fit_length, hz_to_mel, mel_filterbank, resample
from trainctl.errors import UserError
from trainctl.output import Output
from trainctl.workflows import resume, train

from helpers import TRAINCTL, read_jsonl, write_config

RATE = 8000  # the tiny datasets' rate: 0.5 s clips of 4,000 samples


def sine(frequency: float, rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds), dtype=np.float64) / rate  # float64 times: float32 ones jitter the phase
    return amplitude * np.sin(2 * np.pi * frequency * t)


def clip_of(kind: str, rng: np.random.Generator, rate: int) -> np.ndarray:
    """0.3 to 0.6 s of a low tone, a high tone or white noise, at a random level: clips shorter
    than data.duration (0.5 s) are padded, longer ones cut."""
    level, seconds = rng.uniform(0.1, 0.8), rng.uniform(0.3, 0.6)
    if kind == "noise":
        return level * rng.uniform(-1, 1, round(rate * seconds))
    frequency = rng.uniform(250, 500) if kind == "low" else rng.uniform(2000, 3000)
    return sine(frequency, rate, seconds, level) + 0.01 * rng.standard_normal(round(rate * seconds))


def sound_tree(root: Path, per_class: int = 10, seed: int = 0) -> Path:
    """low/, high/, noise/: WAV files at 8 kHz mono and FLAC files at 16 kHz stereo (resampled and
    mixed down on reading), alternating."""
    rng = np.random.default_rng(seed)
    for kind in ("low", "high", "noise"):
        (root / kind).mkdir(parents=True)
        for index in range(per_class):
            if index % 2:
                stereo = np.stack([clip_of(kind, rng, 2 * RATE)] * 2, axis=1)
                soundfile.write(root / kind / f"{index:02d}.flac", stereo, 2 * RATE)
            else:
                soundfile.write(root / kind / f"{index:02d}.wav", clip_of(kind, rng, RATE), RATE)
    return root


FEATURES = {"name": "log_mel", "n_mels": 16, "n_fft": 256, "hop_length": 128}


def audio_config(
    directory: Path, root: Path, *, model: dict | None = None, epochs: int = 4, lr: float = 0.01, **data
) -> Path:
    """30 clips: 18 train, 6 validation (by loss: accuracy on 6 clips ties too often), 6 test."""
    paths = {key: str(value) if isinstance(value, Path) else value for key, value in data.items()}
    return write_config(
        directory,
        data={
            "name": "audio_folder",
            "root": str(root),
            "sample_rate": RATE,
            "duration": 0.5,
            "features": FEATURES,
            "batch_size": 8,
            "val_fraction": 0.2,
            "test_fraction": 0.2,
            **paths,
        },
        model=model or {"name": "audio_cnn", "channels": [8, 16]},
        optimizer={"name": "adam", "lr": lr},
        trainer={"epochs": epochs, "device": "cpu", "monitor": "val/loss"},
    )


def spectrum_peak(wave: np.ndarray, rate: int) -> tuple[float, float]:
    """(frequency, amplitude) of the strongest component, through a Hann window (amplitude-corrected)."""
    window = np.hanning(len(wave))
    spectrum = np.abs(np.fft.rfft(wave * window)) / (window.sum() / 2)
    peak = int(spectrum.argmax())
    return peak * rate / len(wave), float(spectrum[peak])


# ---- resampling ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "target"), [(44100, 16000), (16000, 44100), (22050, 16000), (8000, 16000)])
def test_resampling_a_sine_keeps_its_frequency_and_amplitude(source, target):
    wave = torch.from_numpy(sine(1000, source)).float()
    out = resample(wave, source, target).numpy()
    assert len(out) == target  # one second stays one second
    frequency, amplitude = spectrum_peak(out, target)
    assert frequency == 1000  # 1 Hz bins over one second
    assert amplitude == pytest.approx(0.5, rel=0.01)
    middle = out[target // 10 : -target // 10]  # away from the edges, where the signal starts and stops
    assert np.abs(middle).max() == pytest.approx(0.5, rel=0.01)


def test_resampling_removes_what_would_alias():
    """A 10 kHz tone has no place at 16 kHz (Nyquist: 8 kHz); dropping samples would fold it to 6 kHz."""
    wave = sine(10000, 44100)
    out = resample(torch.from_numpy(wave).float(), 44100, 16000).numpy()
    middle = out[1600:-1600]
    assert np.sqrt(np.mean(middle**2)) < 0.5 * 10 ** (-60 / 20)  # attenuated by more than 60 dB
    naive = np.interp(np.arange(16000) / 16000, np.arange(44100) / 44100, wave)  # no low-pass filter
    frequency, amplitude = spectrum_peak(naive, 16000)
    assert frequency == 6000 and amplitude > 0.1  # what the filter prevents: the tone folded back


def test_resampling_agrees_with_scipy_in_the_passband():
    """A band-limited signal resampled as scipy's polyphase resampler does with a Kaiser window of
    the same steepness: the two filters differ only near the cut-off."""
    import scipy.signal

    rng = np.random.default_rng(0)
    t = np.arange(44100) / 44100
    wave = sum(rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in rng.uniform(50, 6000, 8))
    ours = resample(torch.from_numpy(wave).float(), 44100, 16000).numpy()
    reference = scipy.signal.resample_poly(wave, 160, 441, window=("kaiser", 10.0))
    assert np.abs(ours - reference)[500:-500].max() < 1e-4


# ---- features --------------------------------------------------------------------------------------


def test_mel_filterbank_of_a_tiny_case_computed_by_hand():
    """8 kHz, n_fft 8: bins at 0, 1000, 2000, 3000, 4000 Hz. Two bands need four points evenly
    spaced in mel from 0 to mel(4000) = 2146.06: at 0, 715.35, 1430.71, 2146.06 mel, which are
    0, 620.58, 1791.33 and 4000 Hz (f = 700 (10^(m / 2595) - 1))."""
    points = [0.0, 620.58, 1791.33, 4000.0]
    expected = [
        [0, 0],
        [(points[2] - 1000) / (points[2] - points[1]), (1000 - points[1]) / (points[2] - points[1])],
        [0, (points[3] - 2000) / (points[3] - points[2])],
        [0, (points[3] - 3000) / (points[3] - points[2])],
        [0, 0],
    ]
    np.testing.assert_allclose(mel_filterbank(8000, 8, 2, 0.0, 4000.0).numpy(), expected, atol=1e-4)


def test_mel_filterbank_matches_librosa_formula():
    """librosa.filters.mel(htk=True, norm=None), written out bin by bin: each filter's lower and
    upper slopes between consecutive mel points (librosa itself is not installed here)."""
    rate, n_fft, n_mels, f_min, f_max = 16000, 400, 40, 20.0, 7600.0

    def mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    def hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    points = [hz(mel(f_min) + (mel(f_max) - mel(f_min)) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    bins = [k * rate / n_fft for k in range(n_fft // 2 + 1)]
    expected = np.zeros((len(bins), n_mels))
    for m in range(n_mels):
        for k, f in enumerate(bins):
            lower = (f - points[m]) / (points[m + 1] - points[m])
            upper = (points[m + 2] - f) / (points[m + 2] - points[m + 1])
            expected[k, m] = max(0.0, min(lower, upper))
    ours = mel_filterbank(rate, n_fft, n_mels, f_min, f_max).numpy()
    assert ours.shape == (201, 40)
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_a_tone_peaks_in_the_mel_band_that_holds_its_frequency():
    from trainctl.data.audio_features import LogMel

    features = LogMel(16000, 400, 160, 40, 0.0, 8000.0)
    out = features(torch.from_numpy(sine(1000, 16000)).float().unsqueeze(0))
    assert out.shape == (1, 1, 101, 40) == (1, *features.shape(16000))
    band = int(out[0, 0, 50].argmax())
    edges = torch.linspace(0, float(hz_to_mel(torch.tensor(8000.0))), 42)  # band b spans points b to b + 2
    centre = float(hz_to_mel(torch.tensor(1000.0)))
    assert edges[band] < centre < edges[band + 2]


def test_fit_length_pads_and_cuts_around_the_centre_or_a_given_position():
    wave = torch.arange(1.0, 7.0)  # 1..6
    assert fit_length(wave, 4).tolist() == [2, 3, 4, 5]  # the centre
    assert fit_length(wave, 4, position=0.0).tolist() == [1, 2, 3, 4]
    assert fit_length(wave, 4, position=1.0).tolist() == [3, 4, 5, 6]
    assert fit_length(wave, 10).tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 0, 0]  # padded on both sides
    assert fit_length(wave, 9, position=0.0).tolist() == [1, 2, 3, 4, 5, 6, 0, 0, 0]
    assert fit_length(wave, 6) is wave


# ---- files -----------------------------------------------------------------------------------------


def test_stereo_is_mixed_down_and_resampled_on_reading(tmp_path):
    from trainctl.data.audio import read_clip

    left, right = sine(440, 22050, 0.5, 0.6), sine(440, 22050, 0.5, 0.2)
    soundfile.write(tmp_path / "stereo.flac", np.stack([left, right], axis=1), 22050)
    clip = read_clip(tmp_path / "stereo.flac", 16000).numpy()
    assert len(clip) == 8000
    frequency, amplitude = spectrum_peak(clip, 16000)
    assert frequency == 440 and amplitude == pytest.approx(0.4, rel=0.01)  # the mean of 0.6 and 0.2


def test_corrupt_empty_and_unsupported_files_and_empty_folders_are_named(cli, tmp_path):
    root = sound_tree(tmp_path / "sounds", per_class=2)
    config = audio_config(tmp_path, root)

    def error_of() -> str:
        result = cli("train", config)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        return result.stderr

    (root / "low" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    assert f"{root / 'low' / 'broken.wav'}: cannot read as audio (.wav, .flac, .ogg, .oga, .opus, .mp3): " in error_of()
    (root / "low" / "broken.wav").unlink()
    soundfile.write(root / "high" / "empty.wav", np.zeros(0), RATE)
    assert f"{root / 'high' / 'empty.wav'}: holds no audio samples (0 frames)" in error_of()
    (root / "high" / "empty.wav").unlink()
    (root / "noise" / "notes.txt").write_text("recorded in the kitchen")
    assert (
        f"{root / 'noise' / 'notes.txt'}: not an audio file trainctl reads (.wav, .flac, .ogg, .oga, .opus, .mp3); "
        f"move it out of {root / 'noise'}"
    ) in error_of()
    (root / "noise" / "notes.txt").unlink()
    (root / "noise" / ".DS_Store").write_bytes(b"\x00")  # hidden files are skipped
    (root / "silence").mkdir()
    assert f"data: {root / 'silence'}: no audio files in it (.wav, .flac" in error_of()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("train", audio_config(tmp_path, empty))
    assert result.exit_code == 2
    assert f"data: {empty}: no class folders in it (expected one sub-folder of audio files per class)" in result.stderr


def test_a_test_folder_with_other_classes_is_refused(cli, tmp_path):
    root = sound_tree(tmp_path / "train", per_class=2)
    other = tmp_path / "test"
    (other / "low").mkdir(parents=True)
    soundfile.write(other / "low" / "a.wav", sine(300, RATE, 0.5), RATE)
    result = cli("train", audio_config(tmp_path, root, test_root=other))
    assert result.exit_code == 2
    assert f"data: {other}: class folders low differ from the training folder's high, low, noise" in result.stderr


# ---- configs ---------------------------------------------------------------------------------------


def test_image_transforms_on_audio_and_audio_transforms_on_images_are_refused(tmp_path):
    config = audio_config(tmp_path, tmp_path, transforms={"train": [{"name": "horizontal_flip"}]})
    with pytest.raises(
        ConfigError,
        match="'horizontal_flip' transforms images, and dataset 'audio_folder' reads audio; its transforms: time_crop, gain, noise, time_mask, frequency_mask",
    ):
        load_config(config)
    images = write_config(
        tmp_path,
        data={"name": "image_folder", "root": str(tmp_path), "transforms": {"train": [{"name": "time_mask"}]}},
        file="images.yaml",
    )
    with pytest.raises(ConfigError, match="'time_mask' transforms audio, and dataset 'image_folder' reads images"):
        load_config(images)
    unknown = audio_config(tmp_path, tmp_path, features={"name": "mfcc"})
    with pytest.raises(ConfigError, match=r"data\.features"):
        load_config(unknown)


def test_transforms_out_of_the_pipelines_order_are_named(cli, tmp_path):
    root = sound_tree(tmp_path / "sounds", per_class=3)
    transforms = {"train": [{"name": "time_mask", "max_frames": 4}, {"name": "gain"}]}
    result = cli("train", audio_config(tmp_path, root, transforms=transforms))
    assert result.exit_code == 2
    assert (
        "data.transforms.train.1: gain acts on the waveform, which comes before the features that time_mask acts on"
        in result.stderr
    )


# ---- training, predict, eval -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sounds(tmp_path_factory) -> Path:
    return sound_tree(tmp_path_factory.mktemp("audio") / "sounds")


def test_an_audio_folder_trains_better_than_chance_and_predicts_files_and_folders(cli, tmp_path, sounds):
    result = cli("train", audio_config(tmp_path, sounds), "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert sum(map(sum, summary["test"]["confusion_matrix"])) == 6  # 20 % of 30 clips
    assert summary["test"]["accuracy"] > 0.8  # chance: 1/3
    saved = json.loads((tmp_path / "run" / "data.json").read_text())
    assert saved["input_shape"] == [1, 32, 16]  # 1 + 4000 // 128 frames of 16 mel bands
    assert saved["audio"]["sample_rate"] == RATE and saved["audio"]["length"] == 4000
    assert len(saved["audio"]["mean"]) == 16

    new = tmp_path / "new"
    new.mkdir()
    soundfile.write(new / "hum.wav", sine(350, 44100, 2.0, 0.3), 44100)  # another rate, longer: the centre is read
    soundfile.write(new / "whistle.flac", sine(2500, 16000, 0.35, 0.3), 16000)  # shorter: padded
    result = cli("predict", tmp_path / "run", new / "hum.wav", new / "whistle.flac", "-o", tmp_path / "p.json")
    assert result.exit_code == 0, result.output
    records = json.loads((tmp_path / "p.json").read_text())
    assert [(Path(r["input"]).name, r["prediction"]) for r in records] == [("hum.wav", "low"), ("whistle.flac", "high")]
    result = cli("predict", tmp_path / "run", new, "-o", tmp_path / "folder.json")
    assert result.exit_code == 0, result.output
    assert [Path(r["input"]).name for r in json.loads((tmp_path / "folder.json").read_text())] == [
        "hum.wav",
        "whistle.flac",
    ]
    (new / "junk.wav").write_text("not audio")
    result = cli("predict", tmp_path / "run", new / "junk.wav")
    assert result.exit_code == 2 and f"{new / 'junk.wav'}: cannot read as audio" in result.stderr

    data_json = tmp_path / "run" / "data.json"
    damaged = json.loads(data_json.read_text())
    damaged["audio"]["mean"] = damaged["audio"]["mean"][:3]
    data_json.write_text(json.dumps(damaged))
    result = cli("predict", tmp_path / "run", new / "hum.wav")
    assert result.exit_code == 2
    assert f"{data_json}: audio.mean is not a list of 16 numbers; the file is damaged" in result.stderr
    data_json.write_text(json.dumps(saved))

    result = cli("eval", tmp_path / "run", "--worst", "3", "--split", "train")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "eval-train-best.json").read_text())
    worst = record["loss_report"]["worst"]
    assert len(worst) == 3
    for sample in worst:  # each names its file, whose folder is its class
        assert Path(sample["file"]).parent.name == sample["target"]
        assert Path(sample["file"]).name in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "features"),
    [
        ({"name": "rnn", "cell": "gru", "hidden_size": 16}, FEATURES),  # frame by frame: 32 steps of 16 mel bands
        ({"name": "audio_cnn", "channels": [8, 16]}, {"name": "waveform"}),  # 1-D convolutions over samples
    ],
)
def test_an_rnn_over_frames_and_a_cnn_over_the_waveform_train(tmp_path, sounds, model, features):
    config = audio_config(tmp_path, sounds, model=model, features=features, epochs=6, lr=0.02)
    result = train(config, out=tmp_path / "run", output=Output(quiet=True))
    assert result.summary["test"]["accuracy"] > 0.5  # chance: 1/3
    weights = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
    if model["name"] == "rnn":
        assert weights["recurrent.weight_ih_l0"].shape == (48, 16)  # 3 gates × 16 units over 16 mel bands a step
    else:
        assert weights["features.0.weight"].shape == (8, 1, 80)  # the wide first layer over the waveform


AUGMENTED = {
    "train": [
        {"name": "time_crop"},
        {"name": "gain", "min_db": -6, "max_db": 6},
        {"name": "noise", "min_snr_db": 10, "max_snr_db": 30},
        {"name": "time_mask", "max_frames": 4},
        {"name": "frequency_mask", "max_bands": 3},
    ]
}


def test_augmentation_is_seeded_per_clip_and_epoch_and_evaluation_is_cached(tmp_path, sounds):
    from trainctl.data.streaming import StreamedInputs
    from trainctl.training.build import build_data

    config = load_config(audio_config(tmp_path, sounds, transforms=AUGMENTED))
    data = build_data(config, torch.device("cpu"))
    assert isinstance(data.train.inputs, StreamedInputs)  # augmented: per clip and epoch
    assert isinstance(data.val.inputs, torch.Tensor) and isinstance(data.test.inputs, torch.Tensor)  # cached once
    batches = [torch.arange(0, 8), torch.arange(8, 16)]
    before = torch.get_rng_state()
    first = torch.cat(list(data.train.batch_inputs(batches, epoch=1)))
    again = torch.cat(list(data.train.batch_inputs(batches[::-1], epoch=1)))
    assert torch.equal(torch.get_rng_state(), before)  # the training process's random state is untouched
    assert torch.equal(again, torch.cat([first[8:], first[:8]]))  # same clip, same epoch: same augmentation
    second = torch.cat(list(data.train.batch_inputs(batches, epoch=2)))
    assert sum(not torch.equal(a, b) for a, b in zip(first, second)) == 16  # a new epoch draws anew
    masked = (first == 0).all(dim=2).sum()  # frequency masks blank whole columns of bands
    assert masked > 0
    plain = load_config(audio_config(tmp_path, sounds))
    cached = build_data(plain, torch.device("cpu")).train.inputs
    assert isinstance(cached, torch.Tensor) and cached.shape == (len(data.train), 1, 32, 16)
    # Standardised with the training split's statistics: each mel band has mean 0 and std 1 there.
    assert cached.mean(dim=(0, 1, 2)).abs().max() < 1e-4
    assert cached.std(dim=(0, 1, 2), unbiased=False).sub(1).abs().max() < 1e-3


@pytest.mark.slow
def test_an_augmented_audio_run_resumes_exactly(tmp_path, sounds):
    straight = train(
        audio_config(tmp_path, sounds, transforms=AUGMENTED, epochs=3),
        out=tmp_path / "straight",
        output=Output(quiet=True),
    )
    (tmp_path / "b").mkdir()
    first = train(
        audio_config(tmp_path / "b", sounds, transforms=AUGMENTED, epochs=2),
        out=tmp_path / "b" / "run",
        output=Output(quiet=True),
    )
    resume(first.run.path, ["trainer.epochs=3"], output=Output(quiet=True))
    a = torch.load(straight.run.path / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(first.run.path / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[key], b[key]) for key in a)
    losses = [
        [row["train/loss"] for row in read_jsonl(run / "metrics.jsonl")] for run in (straight.run.path, first.run.path)
    ]
    assert losses[0] == losses[1]


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.distributed
def test_augmented_audio_trains_in_two_processes_as_in_one(tmp_path, sounds):
    """Each rank computes its part of every batch, with the augmentation seeded per clip; no batch
    norm or dropout, whose statistics and masks would differ between ranks."""
    model = {"name": "audio_cnn", "channels": [8, 16], "batch_norm": False, "dropout": 0.0}
    config = audio_config(tmp_path, sounds, model=model, transforms=AUGMENTED, epochs=2)
    one = train(config, out=tmp_path / "one", output=Output(quiet=True))
    finished = subprocess.run(
        [TRAINCTL, "train", config, "--nproc", "2", "--out", tmp_path / "two", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    a = torch.load(one.run.path / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "two" / "checkpoints" / "last.pt", weights_only=True)["model"]
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=0), key
    rows = [read_jsonl(path / "metrics.jsonl") for path in (one.run.path, tmp_path / "two")]
    assert [row["val/loss"] for row in rows[0]] == pytest.approx([row["val/loss"] for row in rows[1]], abs=1e-5)


# ---- imports ---------------------------------------------------------------------------------------


@pytest.mark.subprocess
def test_listings_and_other_datasets_leave_soundfile_and_the_audio_modules_alone(tmp_path):
    config = write_config(tmp_path)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom trainctl.cli import app\n"
            "for command in (['list-datasets'], ['list-transforms'], ['list-models']):\n"
            "    try:\n        app(command)\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules, 'soundfile' in sys.modules)\n"
            "import torch\nfrom trainctl.config.loading import load_config\nfrom trainctl.training.build import build_data\n"
            f"build_data(load_config({str(config)!r}), torch.device('cpu'))\n"
            "print('soundfile' in sys.modules, 'trainctl.data.audio_pipeline' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.stdout.splitlines()[-2:] == ["False False", "False False"], probe.stderr[-2000:]


def test_without_soundfile_an_audio_config_says_how_to_install_it(cli, tmp_path, monkeypatch, sounds):
    monkeypatch.setitem(sys.modules, "soundfile", None)  # what an install without it gives
    result = cli("train", audio_config(tmp_path, sounds))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {tmp_path / 'tiny.yaml'}:4: data.name: audio_folder needs soundfile, which is not installed; "
        "pip install soundfile (or, in the trainctl checkout, pip install -e '.[audio]')\n"
    )


def test_features_too_fine_for_the_window_are_refused(tmp_path, sounds):
    from trainctl.training.build import build_data

    config = load_config(
        audio_config(tmp_path, sounds, features={"name": "log_mel", "n_mels": 128, "n_fft": 64, "hop_length": 32})
    )
    with pytest.raises(UserError, match=r"data\.features\.n_mels: 128 mel bands between 0 and 4000 Hz are narrower"):
        build_data(config, torch.device("cpu"))
