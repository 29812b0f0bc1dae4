"""tools/analysis/gpu_check.py: the prepared GPU check, run here in its CPU smoke mode (every
part at toy sizes: classification eager and compiled, RetinaNet on the demo data, a
two-process DDP step)."""
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, assert_one_line_error

from tools.analysis import gpu_check


def test_smoke_runs_every_part(tmp_path):
    out = tmp_path / 'gpu_check.md'
    results = gpu_check.main(['--smoke', '--out', str(out)])
    assert set(results['cls']) == {('m2', False), ('m2', True)}
    for key, r in results['cls'].items():
        assert r['status'] == 'ok', (key, r.get('stderr'))
        assert r['images_per_s'] > 0 and r['loss'] == r['loss']
    assert results['det']['status'] == 'ok', results['det'].get('stderr')
    assert results['det']['iters_per_s'] > 0
    ddp = results['ddp']
    assert ddp['status'] == 'ok', ddp.get('stderr')
    assert ddp['processes'] == 2 and ddp['backend'] == 'gloo'
    text = out.read_text()
    assert text.startswith('# GPU check: CPU smoke run')
    assert '| MicroNet-M2 | torch.compile |' in text and 'RetinaNet-MicroNet-M3' in text


@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is visible: the full check runs')
def test_without_gpu_one_line_error():
    out = subprocess.run([sys.executable, 'tools/analysis/gpu_check.py'], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert_one_line_error(out.stderr, '--smoke')
