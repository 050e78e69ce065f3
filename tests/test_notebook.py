"""
The Colab notebooks, every `notebooks/*.py`: each `.ipynb` is generated from its jupytext `.py`
source, stored without outputs, Colab-ready (GPU metadata, Open-in-Colab badge, the guarded
install cell, the device cell), and runs end to end with nbclient in smoke mode
(`LABML_NN_BN_SMOKE=1`). A new notebook is tested as soon as its `.py` is in `notebooks/`.
"""
import json
import os

import jupytext
import nbformat
import pytest
import yaml
from nbclient import NotebookClient

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / 'notebooks').glob('*.py'))
names = pytest.mark.parametrize('name', [p.stem for p in NOTEBOOKS])


def _without_cell_ids(notebook_json):
    for cell in notebook_json['cells']:
        cell.pop('id', None)
    return notebook_json


def _ipynb(name):
    path = ROOT / 'notebooks' / f'{name}.ipynb'
    assert path.exists(), f'{path.name} is missing: run `make notebooks`'
    return path


def test_there_are_notebooks():
    assert 'mnist' in [p.stem for p in NOTEBOOKS]


@names
def test_notebook_is_generated_from_the_py_source(name):
    # What `make notebooks` would write is what is committed (cell ids are random per write)
    source = ROOT / 'notebooks' / f'{name}.py'
    expected = _without_cell_ids(json.loads(jupytext.writes(jupytext.read(source), fmt='ipynb')))
    assert expected == _without_cell_ids(json.loads(_ipynb(name).read_text())), \
        f'notebooks/{name}.ipynb differs from notebooks/{name}.py: run `make notebooks`'


@names
def test_notebook_is_stored_without_outputs(name):
    nb = nbformat.read(_ipynb(name), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == 'code':
            assert cell.outputs == [] and cell.execution_count is None


@names
def test_notebook_is_ready_for_colab(name):
    nb = nbformat.read(_ipynb(name), as_version=4)
    assert nb.metadata.get('accelerator') == 'GPU'
    assert 'colab' in nb.metadata
    assert nb.metadata['kernelspec']['name'] == 'python3'
    repo = yaml.safe_load((ROOT / 'mkdocs.yml').read_text())['repo_url'].rstrip('/')
    owner_name = repo.split('github.com/')[1]
    badge = nb.cells[0].source
    assert f'https://colab.research.google.com/github/{owner_name}/blob/main/notebooks/{name}.ipynb' \
        in badge
    assert 'colab-badge.svg' in badge
    code = [c.source for c in nb.cells if c.cell_type == 'code']
    install = next((c for c in code if 'pip' in c), None)
    assert install is not None, 'no install cell'
    assert "if 'google.colab' in sys.modules:" in install
    assert f'git+{repo}' in install
    assert any('torch.cuda.is_available()' in c for c in code), 'no device cell'
    assert any('LABML_NN_BN_SMOKE' in c for c in code), 'no smoke switch'


def _execute(name, tmp_path, monkeypatch):
    monkeypatch.setenv('LABML_NN_BN_SMOKE', '1')
    # The kernel imports this checkout's package
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
    nb = nbformat.read(_ipynb(name), as_version=4)
    NotebookClient(nb, timeout=600, kernel_name='python3',
                   resources={'metadata': {'path': str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs]
    errors = [o for o in outputs if o.output_type == 'error']
    assert not errors, '\n'.join(f'{e.ename}: {e.evalue}' for e in errors)
    text = ''.join(o.get('text', '') for o in outputs if o.output_type == 'stream')
    return outputs, text


@names
def test_notebook_runs_end_to_end_in_smoke_mode(name, tmp_path, monkeypatch):
    outputs, text = _execute(name, tmp_path, monkeypatch)
    if name == 'mnist':
        assert 'No GPU: training runs on the CPU' in text or 'GPU: ' in text
        assert 'with batch norm   :' in text and 'without batch norm:' in text
        assert any('image/png' in o.get('data', {}) for o in outputs), 'no plot was drawn'
        # Both runs were stored by labml under the notebook's folder
        assert {p.name for p in (tmp_path / 'logs').iterdir()} == \
            {'mnist_batch_norm', 'mnist_no_batch_norm'}
    if name == 'batch_norm':
        # Every check the notebook asserts ran, through to the last exercise
        for line in ('all give y', "the paper's formulas match autograd", 'gradcheck passed',
                     'BatchNorm agree with the hand-written statistics',
                     'within 1 % from batch 44 on', 'reproduces batch normalization',
                     'batch   2: batch statistics'):
            assert line in text, line
        assert any('image/png' in o.get('data', {}) for o in outputs), 'no plot was drawn'
