"""Image datasets read from their standard files: the MNIST family's IDX files, CIFAR's python
batches and folders of image files, each checked before anything trains."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from trainctl.data.raw import ImageSource, RawData, classification_task
from trainctl.data.task import Task
from trainctl.errors import UserError

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# Mean and standard deviation of each dataset's training images (the values published with them),
# what `normalize` uses when a config gives neither.
STATISTICS = {
    "MNIST": ([0.1307], [0.3081]),
    "FashionMNIST": ([0.2860], [0.3530]),
    "KMNIST": ([0.1918], [0.3483]),
    "CIFAR10": ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
    "CIFAR100": ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]),
}


IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # unsigned bytes: images (3 dimensions), labels (1 dimension)


def _idx_count(path: Path, dimensions: int) -> int:
    """The number of items an MNIST IDX file holds, after checking its header against its size:
    torchvision's own checks are bare asserts, which give an empty reason."""
    with path.open("rb") as handle:
        header = handle.read(4 + 4 * dimensions)
    kind = "images" if dimensions == 3 else "labels"
    magic = int.from_bytes(header[:4], "big") if len(header) >= 4 else None
    if magic != IDX_MAGIC[dimensions] or len(header) < 4 + 4 * dimensions:
        found = "a file too short for a header" if magic is None else f"magic number {magic:#010x}"
        raise UserError(
            f"data.root: {path}: not an MNIST-format {kind} file: {found}, expected "
            f"{IDX_MAGIC[dimensions]:#010x} (an uncompressed IDX file; .gz files must be unpacked)"
        )
    sizes = [int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(dimensions)]
    expected = len(header) + math.prod(sizes)
    actual = path.stat().st_size
    if actual != expected:
        raise UserError(
            f"data.root: {path}: the header describes {' × '.join(map(str, sizes))} bytes of {kind} "
            f"({expected} bytes in all), but the file has {actual} bytes: it is truncated or damaged"
        )
    return sizes[0]


def _check_mnist_files(folder: Path) -> None:
    for part in ("train", "t10k"):
        images = _idx_count(folder / f"{part}-images-idx3-ubyte", 3)
        labels = _idx_count(folder / f"{part}-labels-idx1-ubyte", 1)
        if images != labels:
            raise UserError(
                f"data.root: {folder}: {part}-images-idx3-ubyte holds {images} images but "
                f"{part}-labels-idx1-ubyte {labels} labels"
            )


def mnist_family(class_name: str, root: str, download: bool) -> RawData:
    """An MNIST-format dataset through torchvision, from root/<class_name>/raw in torchvision's layout."""
    import numpy as np

    folder = Path(root) / class_name / "raw"
    missing = [name for name in MNIST_FILES if not (folder / name).is_file()]
    if missing and not download:
        raise UserError(
            f"data.root: {folder} lacks {', '.join(missing)}; put the {class_name} files there uncompressed "
            "(torchvision's layout), or set data.download: true on a machine that can reach the internet"
        )
    from trainctl.data.images import torchvision

    dataset_class = getattr(torchvision(f"data.name: {class_name}").datasets, class_name)
    if not missing:
        _check_mnist_files(folder)
    try:
        train = dataset_class(root, train=True, download=download)
        test = dataset_class(root, train=False, download=download)
    except Exception as error:  # torchvision raises plain RuntimeError/ValueError for bad files
        reason = str(error).strip() or type(error).__name__
        raise UserError(f"data.root: {folder}: cannot read the {class_name} files: {reason}") from None
    pixels = np.concatenate([train.data.numpy(), test.data.numpy()])[:, None]
    labels = np.concatenate([train.targets.numpy(), test.targets.numpy()]).astype("int64")
    names = tuple(str(name) for name in train.classes)
    return _in_memory_images(pixels, labels, names, class_name, test_rows=np.arange(len(train.data), len(pixels)))


def _in_memory_images(pixels: Any, labels: Any, names: tuple[str, ...], statistics: str, test_rows: Any) -> RawData:
    import numpy as np

    task = Task("classification", num_classes=len(names), class_names=names)
    source = ImageSource(pixels=pixels, channels=pixels.shape[1], statistics=STATISTICS[statistics])
    return RawData(
        np.zeros((len(pixels), 0), dtype="float32"),
        labels,
        task,
        tuple(pixels.shape[1:]),
        test_rows=test_rows,
        images=source,
    )


def cifar(class_name: str, labels_key: str, root: str, download: bool) -> RawData:
    """CIFAR-10/100 from the official python batches in root/<base folder>, torchvision's layout.

    torchvision's own CIFAR datasets unpickle the batches unrestricted; they are read here with an
    unpickler that builds arrays, lists and strings only (`trainctl.data.pickled_arrays`).
    """
    import numpy as np

    from trainctl.data import pickled_arrays
    from trainctl.data.images import torchvision

    vision = torchvision(f"data.name: {class_name.lower()}")
    spec = getattr(vision.datasets, class_name)  # the layout: folder, batch files, metadata file, where to get it
    folder = Path(root) / spec.base_folder
    train_files = [name for name, _ in spec.train_list]
    test_files = [name for name, _ in spec.test_list]
    expected = [*train_files, *test_files, spec.meta["filename"]]
    if any(not (folder / name).is_file() for name in expected) and download:
        vision.datasets.utils.download_and_extract_archive(spec.url, root, filename=spec.filename, md5=spec.tgz_md5)
    missing = [name for name in expected if not (folder / name).is_file()]
    if missing:
        raise UserError(
            f"data.root: {folder} lacks {', '.join(missing)}; extract {spec.filename} (from {spec.url}) into "
            f"{root}, or set data.download: true on a machine that can reach the internet"
        )

    def batch(name: str) -> tuple[Any, Any]:
        entry = pickled_arrays.load(folder / name)
        data = entry.get("data") if isinstance(entry, dict) else None
        labels = entry.get(labels_key) if isinstance(entry, dict) else None
        if (
            not isinstance(data, np.ndarray)
            or data.ndim != 2
            or data.shape[1] != 3072
            or labels is None
            or len(labels) != len(data)
        ):
            raise UserError(
                f"data.root: {folder / name} is not a {class_name} batch: expected 'data' of N×3072 "
                f"pixels and {len(data) if isinstance(data, np.ndarray) else 'N'} '{labels_key}'"
            )
        return data.astype("uint8").reshape(-1, 3, 32, 32), np.asarray(labels, dtype="int64")

    parts = [batch(name) for name in [*train_files, *test_files]]
    meta = pickled_arrays.load(folder / spec.meta["filename"])
    if not isinstance(meta, dict) or spec.meta["key"] not in meta:
        raise UserError(f"data.root: {folder / spec.meta['filename']} has no {spec.meta['key']!r} list")
    names = tuple(str(name) for name in meta[spec.meta["key"]])
    pixels = np.concatenate([p for p, _ in parts])
    labels = np.concatenate([y for _, y in parts])
    if labels.min() < 0 or labels.max() >= len(names):
        raise UserError(
            f"data.root: {folder}: labels run from {labels.min()} to {labels.max()}, "
            f"but {spec.meta['filename']} names {len(names)} classes"
        )
    train_count = sum(len(p) for p, _ in parts[: len(train_files)])
    return _in_memory_images(pixels, labels, names, class_name, test_rows=np.arange(train_count, len(pixels)))


def find_images(root: str, classes: list[str] | None) -> tuple[list[str], list[int], list[str]]:
    """The image files below root/<class>/ and their classes, through torchvision's ImageFolder
    (which lists the files without reading them)."""
    from trainctl.data.images import torchvision

    datasets = torchvision("data.name: image_folder").datasets
    if not Path(root).is_dir():
        raise UserError(f"data: {root}: folder not found")
    try:
        found = datasets.ImageFolder(root)
    except (FileNotFoundError, RuntimeError) as error:
        raise UserError(f"data: {root}: {error} (expected one sub-folder of images per class)") from None
    if classes is not None and found.classes != classes:
        raise UserError(
            f"data: {root}: class folders {', '.join(found.classes)} differ from the training "
            f"folder's {', '.join(classes)}"
        )
    return [path for path, _ in found.samples], list(found.targets), found.classes


def image_folder(
    root: str,
    val_root: str | None,
    test_root: str | None,
    channels: int,
    image_size: list[int] | None,
) -> RawData:
    """Images in one sub-folder per class below root (val_root and test_root, when given, hold the
    same classes and become those splits); every file's header is read here, so an unreadable file
    is named before training."""
    import numpy as np

    from trainctl.data.images import image_sizes

    if image_size is not None and (len(image_size) != 2 or min(image_size) < 1):
        raise UserError(f"data.image_size: expected [height, width], got {image_size}")
    paths, labels, classes = find_images(root, None)
    task = classification_task(tuple(classes), f"data.root: {root} (one sub-folder per class)")
    given: dict[str, np.ndarray] = {}
    for key, folder in (("val_rows", val_root), ("test_rows", test_root)):
        if folder is not None:
            more, more_labels, _ = find_images(folder, classes)
            given[key] = np.arange(len(paths), len(paths) + len(more))
            paths, labels = paths + more, labels + more_labels
    sizes = image_sizes(paths)  # reads each file's header: unreadable files are named before training
    if image_size is None and len(set(sizes)) > 1:
        listed = ", ".join(f"{width}×{height}" for width, height in sorted(set(sizes))[:4])
        raise UserError(f"data: the images under {root} have different sizes ({listed}); set data.image_size: [H, W]")
    height, width = image_size if image_size is not None else sizes[0][::-1]
    source = ImageSource(files=paths, channels=channels, size=(height, width) if image_size is not None else None)
    return RawData(
        np.zeros((len(paths), 0), dtype="float32"),
        np.array(labels, dtype="int64"),
        task,
        (channels, height, width),
        images=source,
        files=paths,
        val_rows=given.get("val_rows"),
        test_rows=given.get("test_rows"),
    )
