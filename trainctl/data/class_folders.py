"""Folders of labelled files, one sub-folder per class, found without torch: what `trainctl init`
counts before writing an image or audio config, and what `eval --data` scores a run on.

Images are found as torchvision's ImageFolder finds them for training (every sub-folder is a class,
sorted by name; files below it, recursively, whose suffix is an image type), so the classes counted
here are the classes training sees. Audio files are found as the audio_folder dataset finds them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trainctl.errors import UserError

# torchvision.datasets.folder.IMG_EXTENSIONS, compared with the lower-cased file name as ImageFolder does.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ClassFolders:
    root: Path
    classes: list[str]  # sub-folder names, sorted
    files: list[list[Path]]  # each class's files, sorted

    def counts(self) -> list[int]:
        return [len(files) for files in self.files]

    def described(self, shown: int = 6) -> str:
        """`circle 60, square 60, triangle 60` (the first `shown` classes, then how many more)."""
        listed = ", ".join(f"{name} {len(files)}" for name, files in list(zip(self.classes, self.files))[:shown])
        more = len(self.classes) - shown
        return listed + (f" and {more} more" if more > 0 else "")


def _class_names(root: Path, what: str, option: str) -> list[str]:
    if not root.exists():
        raise UserError(f"{option} {root}: folder not found")
    if not root.is_dir():
        raise UserError(f"{option} {root}: not a folder; give a folder with one sub-folder of {what} per class")
    names = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not names:
        raise UserError(f"{option} {root}: no class folders in it (expected one sub-folder of {what} per class)")
    return names


def image_class_folders(root: Path, option: str) -> ClassFolders:
    """The image files below root/<class>/, as ImageFolder lists them; a class folder without an
    image is an error (ImageFolder refuses it too)."""
    classes = _class_names(root, "images", option)
    files = []
    for name in classes:
        found = [
            Path(folder, file)
            for folder, _, names in sorted(os.walk(root / name, followlinks=True))
            for file in sorted(names)
            if file.lower().endswith(IMAGE_SUFFIXES)
        ]
        if not found:
            raise UserError(f"{option} {root / name}: no images in it ({', '.join(IMAGE_SUFFIXES)})")
        files.append(found)
    return ClassFolders(root, classes, files)


def audio_class_folders(root: Path, option: str) -> ClassFolders:
    """The audio files below root/<class>/, as the audio_folder dataset lists them (hidden folders
    are not classes; a file of another type in a class folder is refused by name)."""
    from trainctl.data.audio import ALLOWED, audio_files_below

    classes = [name for name in _class_names(root, "audio files", option) if not name.startswith(".")]
    if not classes:
        raise UserError(f"{option} {root}: no class folders in it (expected one sub-folder of audio files per class)")
    files = []
    for name in classes:
        found = audio_files_below(root / name)
        if not found:
            raise UserError(f"{option} {root / name}: no audio files in it ({ALLOWED})")
        files.append(found)
    return ClassFolders(root, classes, files)
