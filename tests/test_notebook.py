"""
The Colab notebook: generated from notebooks/mnist.py (jupytext), stored without outputs,
Colab-ready, and it runs end to end (smoke mode) with nbclient.
"""
import json

import jupytext
import nbformat
import yaml
from nbclient import NotebookClient

from conftest import ROOT

PY = ROOT / 'notebooks' / 'mnist.py'
IPYNB = ROOT / 'notebooks' / 'mnist.ipynb'


def _without_cell_ids(notebook_json):
    for cell in notebook_json['cells']:
        cell.pop('id', None)
    return notebook_json


def test_notebook_is_generated_from_the_py_source():
    # What `make notebooks` would write is what is committed (cell ids are random per write)
    expected = _without_cell_ids(json.loads(jupytext.writes(jupytext.read(PY), fmt='ipynb')))
    assert expected == _without_cell_ids(json.loads(IPYNB.read_text())), 'run `make notebooks`'


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(IPYNB, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == 'code':
            assert cell.outputs == [] and cell.execution_count is None


def test_notebook_is_ready_for_colab():
    nb = nbformat.read(IPYNB, as_version=4)
    assert nb.metadata['accelerator'] == 'GPU'
    assert 'colab' in nb.metadata
    assert nb.metadata['kernelspec']['name'] == 'python3'
    repo = yaml.safe_load((ROOT / 'mkdocs.yml').read_text())['repo_url'].rstrip('/')
    owner_name = repo.split('github.com/')[1]
    badge = nb.cells[0].source
    assert f'https://colab.research.google.com/github/{owner_name}/blob/main/notebooks/mnist.ipynb' in badge
    install = next(c.source for c in nb.cells if c.cell_type == 'code' and 'pip' in c.source)
    assert "if 'google.colab' in sys.modules:" in install
    assert f'git+{repo}' in install
    assert any('torch.cuda.is_available()' in c.source for c in nb.cells if c.cell_type == 'code')


def test_notebook_runs_end_to_end_in_smoke_mode(tmp_path, monkeypatch):
    monkeypatch.setenv('LABML_NN_BN_SMOKE', '1')
    nb = nbformat.read(IPYNB, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name='python3',
                   resources={'metadata': {'path': str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs]
    assert not [o for o in outputs if o.output_type == 'error']
    text = ''.join(o.get('text', '') for o in outputs if o.output_type == 'stream')
    assert 'No GPU: training runs on the CPU' in text or 'GPU: ' in text
    assert 'with batch norm   :' in text and 'without batch norm:' in text
    assert any('image/png' in o.get('data', {}) for o in outputs), 'no plot was drawn'
    # Both runs were stored by labml under the notebook's folder
    assert {p.name for p in (tmp_path / 'logs').iterdir()} == {'mnist_batch_norm', 'mnist_no_batch_norm'}
