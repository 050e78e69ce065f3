from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Test output (screenshots, built sites) goes here; ignored by git
TEST_OUTPUT = ROOT / 'test-output'


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    # labml and matplotlib write caches under HOME; keep every test away from the real one
    home = tmp_path_factory.getbasetemp() / 'home'
    home.mkdir(exist_ok=True)
    monkeypatch.setenv('HOME', str(home))
    monkeypatch.setenv('MPLCONFIGDIR', str(home / 'mpl'))


@pytest.fixture(autouse=True)
def _seed():
    import torch
    torch.manual_seed(0)


@pytest.fixture(scope='session')
def test_output():
    TEST_OUTPUT.mkdir(exist_ok=True)
    return TEST_OUTPUT
