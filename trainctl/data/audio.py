"""Audio files as clips: found in class folders, their headers checked before training, decoded
through soundfile (libsndfile), mixed down to mono and resampled. Read the same way for training
(audio_folder) and for predict. soundfile is imported where a file is read, never by listings."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainctl.data.raw import AudioSource, RawData, classification_task
from trainctl.errors import UserError, install_hint

# What libsndfile reads: WAV, FLAC, Ogg (Vorbis, Opus) and, from libsndfile 1.1, MP3.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")
ALLOWED = ", ".join(AUDIO_SUFFIXES)


def soundfile(what: str) -> Any:
    """The soundfile package, or a UserError saying that `what` needs it and how to install it."""
    try:
        import soundfile
    except ImportError:
        raise UserError(
            f"{what} needs soundfile, which is not installed; {install_hint('soundfile', 'audio')}"
        ) from None
    except OSError as error:  # the package is there but libsndfile is not
        raise UserError(f"{what} needs the libsndfile library, which soundfile cannot load: {error}") from None
    return soundfile


@contextlib.contextmanager
def _audio_errors(path: Path | str) -> Iterator[None]:
    """soundfile's errors for one file (libsndfile's reason), as one line naming it."""
    try:
        yield
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (RuntimeError, OSError) as error:  # soundfile.LibsndfileError is a RuntimeError
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path}: cannot read as audio ({ALLOWED}): {reason}") from None


@dataclass(frozen=True)
class AudioHeader:
    sample_rate: int
    channels: int
    frames: int


def read_header(path: str) -> AudioHeader:
    """A file's rate, channels and length from its header, without decoding it; an empty file is refused."""
    sf = soundfile("data.name: audio_folder")
    with _audio_errors(path):
        info = sf.info(path)
    if info.frames <= 0 or info.samplerate <= 0 or info.channels <= 0:
        raise UserError(f"{path}: holds no audio samples ({info.frames} frames); remove it or record it again")
    return AudioHeader(int(info.samplerate), int(info.channels), int(info.frames))


def read_clip(path: Path | str, sample_rate: int) -> Any:
    """One file as a mono float32 tensor at sample_rate: channels averaged, then resampled."""
    import torch

    from trainctl.data.audio_features import resample

    sf = soundfile("reading audio")
    with _audio_errors(path):
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (frames, channels)
    if len(samples) == 0:
        raise UserError(f"{path}: holds no audio samples; remove it or record it again")
    mono = torch.from_numpy(samples).mean(dim=1)
    return resample(mono, int(rate), sample_rate)


def audio_files_below(folder: Path) -> list[Path]:
    """Every audio file below folder, sorted; a file of another kind is refused by name, so that no
    recording is left out unnoticed. Hidden files (.DS_Store, ...) are skipped."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_dir() or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            raise UserError(f"{path}: not an audio file trainctl reads ({ALLOWED}); move it out of {folder}")
        found.append(path)
    return found


def find_audio(root: str, classes: list[str] | None) -> tuple[list[str], list[int], list[str]]:
    """The audio files below root/<class>/ and their classes (sorted folder names); given `classes`,
    the folder must hold the same ones (a validation or test folder)."""
    folder = Path(root)
    if not folder.is_dir():
        raise UserError(f"data: {root}: folder not found")
    found = sorted(path.name for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not found:
        raise UserError(f"data: {root}: no class folders in it (expected one sub-folder of audio files per class)")
    if classes is not None and found != classes:
        raise UserError(
            f"data: {root}: class folders {', '.join(found)} differ from the training folder's {', '.join(classes)}"
        )
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(found):
        files = audio_files_below(folder / name)
        if not files:
            raise UserError(f"data: {folder / name}: no audio files in it ({ALLOWED})")
        paths += [str(path) for path in files]
        labels += [label] * len(files)
    return paths, labels, found


def audio_folder(
    root: str,
    val_root: str | None,
    test_root: str | None,
    sample_rate: int,
    duration: float,
    features: dict[str, Any],
) -> RawData:
    """Audio files in one sub-folder per class below root (val_root and test_root, when given, hold
    the same classes and become those splits). Every file's header is read here, so an unreadable
    or empty file is named before anything is decoded or trained."""
    import numpy as np

    from trainctl.limits import require_memory

    paths, labels, classes = find_audio(root, None)
    task = classification_task(tuple(classes), f"data.root: {root} (one sub-folder per class)")
    given: dict[str, np.ndarray] = {}
    for key, folder in (("val_rows", val_root), ("test_rows", test_root)):
        if folder is not None:
            more, more_labels, _ = find_audio(folder, classes)
            given[key] = np.arange(len(paths), len(paths) + len(more))
            paths, labels = paths + more, labels + more_labels
    headers = [read_header(path) for path in paths]
    # Each clip is decoded whole (a training crop may take any part of it) as float32 at sample_rate.
    decoded = sum(header.frames * sample_rate // header.sample_rate + 1 for header in headers)
    require_memory(decoded * 4, f"data: {len(paths):,} audio files decoded at data.sample_rate {sample_rate} Hz")
    length = round(duration * sample_rate)
    if length < 1:
        raise UserError(f"data.duration: {duration} s at {sample_rate} Hz is less than one sample")
    source = AudioSource(files=paths, sample_rate=sample_rate, length=length, features=features)
    return RawData(
        np.zeros((len(paths), 0), dtype="float32"),
        np.array(labels, dtype="int64"),
        task,
        (1, length),  # the features' shape is known once they are built
        audio=source,
        files=paths,
        val_rows=given.get("val_rows"),
        test_rows=given.get("test_rows"),
    )
