"""tools/analysis/bench_program.py: the C++ harness that times the layer programs
(micronet_mm/csrc/program.h) step by step outside any framework. It compiles with the torch
library's compiler and flags, so these tests run where that library builds."""
import os.path as osp
import shutil
import subprocess

import pytest

from micronet_mm.errors import UserError
from tools.analysis import bench_program as B


@pytest.fixture(scope='module')
def harness(tmp_path_factory):
    return B.compile_harness(str(tmp_path_factory.mktemp('harness')))


@pytest.mark.parametrize('name', ['m0', 'm3'])
def test_bench_program_reports_every_layer(name, capsys, monkeypatch, harness):
    """M0 and M3 at 64x64, two runs: the output matches PyTorch (the tool refuses otherwise),
    one time per program, and the steps cover every layer record of every program exactly once
    (fused pairs as one step over two records)."""
    monkeypatch.setattr(B, 'compile_harness', lambda tmp: harness)
    res = B.main([name, '--blocks', '2', '--shape', '64', '64'])
    assert res['parity'] <= B.TOLERANCE
    _, programs, _ = B.compile_chain(name, (64, 64))
    assert sorted(res['programs']) == list(range(len(programs))) == list(range(5))
    covered = {(k, layer) for k, first, last, _ in res['steps']
               for layer in range(first, last + 1)}
    records = {(k, layer) for k, (prog, _, _) in enumerate(programs) for layer in range(prog[1])}
    assert covered == records
    assert sum(last - first + 1 for _, first, last, _ in res['steps']) == len(records)
    assert any(last > first for _, first, last, _ in res['steps'])  # the depthwise pairs
    # Shift-Max layers applied inside the next step (program.h's plan), as the table says: in
    # M0 a Shift-Max feeds each depthwise pair; M3 has one Shift-Max per block, after the
    # depthwise layers (micronet_archs.py), and it feeds a 1x1 convolution, which does not
    # take it
    assert bool(res['into']) == (name == 'm0')
    assert all(B.record(programs[k][0], l).kind == 'shift_max' for k, l in res['into'])
    assert res['chain_us'] >= max(res['programs'].values()) > 0
    assert {'grouped 1x1', 'Shift-Max (hyper-function + fusions)'} <= set(res['families'])
    out = capsys.readouterr().out
    assert out.count('| stages.') == 4 and '| kernel family |' in out
    assert ('the Shift-Max before it + conv' in out) == (name == 'm0')


def test_bench_program_head(capsys, monkeypatch, harness):
    """``--head`` appends the classifier head as two more programs (pool + fc1, fc2), which the
    parity check covers (the logits match PyTorch's head) and whose steps are the head family."""
    monkeypatch.setattr(B, 'compile_harness', lambda tmp: harness)
    res = B.main(['m0', '--head', '--blocks', '2', '--shape', '64', '64'])
    assert res['parity'] <= B.TOLERANCE
    _, programs, _ = B.compile_chain('m0', (64, 64), head=True)
    assert sorted(res['programs']) == list(range(7)) == list(range(len(programs)))
    heads = [B.record(programs[k][0], layer) for k in (5, 6) for layer in range(programs[k][0][1])]
    assert [r.kind for r in heads] == ['pool', 'linear', 'linear']
    assert B.describe(heads[-1]).startswith('linear ') and 'h-swish' in B.describe(heads[1])
    assert {B.category(r) for r in heads} == {'head (pool, fully connected)'}
    assert res['families']['head (pool, fully connected)'] > 0
    assert {k for k, _, _, _ in res['steps']} == set(range(7))
    out = capsys.readouterr().out
    assert '| 5 | head.pool |' in out and '| 6 | head.fc2 |' in out


def test_bench_program_openvino(capsys, monkeypatch, harness):
    """``--openvino``: the same model's OpenVINO export, cut into backbone and head, runs next to
    the harness; its logits match the harness's, and every part is timed in both."""
    monkeypatch.setattr(B, 'compile_harness', lambda tmp: harness)
    res = B.main(['m0', '--openvino', '--blocks', '3', '--rounds', '2', '--shape', '64', '64'])
    assert res['parity'] <= B.TOLERANCE and res['openvino_parity'] <= B.TOLERANCE
    assert sorted(res['programs']) == list(range(7))  # --openvino implies --head
    assert set(res['openvino']) == {'whole', 'backbone', 'head', 'empty'}
    assert set(res['harness_parts']) == {'whole', 'backbone', 'head'}
    assert all(0 < us < float('inf') for us in res['openvino'].values())
    # the harness's whole chain is at least its slowest part (minima of the same runs)
    parts = res['harness_parts']
    assert parts['whole'] >= max(parts['backbone'], parts['head']) > 0
    out = capsys.readouterr().out
    assert out.count('| whole classifier') == 1 and '| empty model' in out


@pytest.mark.parametrize('flag', ['--blocks', '--rounds'])
def test_bench_program_refuses_zero_counts(flag):
    with pytest.raises(UserError, match=f'{flag} 0: give at least 1'):
        B.main(['m0', flag, '0'])


def test_bench_program_refuses_a_corrupt_program(tmp_path, harness):
    """A program whose weights offset points outside its array is one line from program::check
    and exit code 2, before anything runs; a truncated file likewise."""
    _, programs, x = B.compile_chain('m0', (32, 32))
    prog, weights, tables = programs[1]
    bad = list(prog)
    bad[2 + 16] = weights.size  # layer 0's weights start past the end
    B.write_input(str(tmp_path / 'in.bin'), [programs[0], (bad, weights, tables)], x)
    done = subprocess.run([harness, str(tmp_path / 'in.bin'), str(tmp_path / 'out.bin'), '1'],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ''
    assert done.stderr.count('\n') == 1 and 'conv weights' in done.stderr
    assert 'layer 0' in done.stderr
    data = (tmp_path / 'in.bin').read_bytes()
    (tmp_path / 'short.bin').write_bytes(data[:len(data) // 2])
    done = subprocess.run([harness, str(tmp_path / 'short.bin'), str(tmp_path / 'out.bin'), '1'],
                          capture_output=True, text=True)
    assert done.returncode == 2 and 'truncated or malformed' in done.stderr
    assert not osp.exists(tmp_path / 'out.bin')


def test_bench_program_catches_a_wrong_output(monkeypatch, harness):
    """The parity check can fail: with the chain's input perturbed after the reference was
    computed, the tool stops with a UserError naming the relative difference."""
    real = B.write_input

    def perturbed(path, programs, x):
        real(path, programs, x + 0.5)
    monkeypatch.setattr(B, 'compile_harness', lambda tmp: harness)
    monkeypatch.setattr(B, 'write_input', perturbed)
    with pytest.raises(UserError, match='differs from PyTorch'):
        B.main(['m0', '--blocks', '1', '--shape', '32', '32'])


def test_bench_program_checks_every_program(monkeypatch, harness):
    """The parity check covers each program's output, not only the last: with the head
    appended and one stage's weights scaled in the harness's input, the tool stops with a
    UserError (the logits of random weights alone hardly depend on the backbone)."""
    real = B.write_input

    def scaled(path, programs, x):
        programs = list(programs)
        prog, weights, tables = programs[1]
        programs[1] = (prog, weights * 1.5, tables)
        real(path, programs, x)
    monkeypatch.setattr(B, 'compile_harness', lambda tmp: harness)
    monkeypatch.setattr(B, 'write_input', scaled)
    with pytest.raises(UserError, match='differs from PyTorch'):
        B.main(['m0', '--blocks', '1', '--shape', '32', '32', '--head'])


def test_describe_and_category():
    prog, _, _ = B.compile_chain('m0', (32, 32))[1][3]
    texts = [B.describe(B.record(prog, layer)) for layer in range(prog[1])]
    assert any(t.startswith('shift-max C') for t in texts)
    assert any(t.startswith('conv ') and ' g' in t for t in texts)
    kinds = {B.category(B.record(prog, layer)) for layer in range(prog[1])}
    assert 'depthwise' in kinds and 'grouped 1x1' in kinds


def _tree_harness(monkeypatch, harness):
    """compile_harness: the module's build for this tree, the real one for a revision."""
    real = B.compile_harness
    monkeypatch.setattr(B, 'compile_harness',
                        lambda tmp, *a, **k: real(tmp, *a, **k) if a or k else harness)


def test_bench_program_against_a_revision(capsys, monkeypatch, harness):
    """``--against HEAD`` builds a second harness from HEAD's kernels and times both in
    alternating rounds: the same programs run through both, and where this tree's kernels are
    HEAD's the outputs are bit-for-bit equal; every part has a time from each build."""
    _tree_harness(monkeypatch, harness)
    res = B.main(['m0', '--against', 'HEAD', '--blocks', '2', '--rounds', '2',
                  '--shape', '32', '32'])
    against = res['against']
    assert against['rev'] == 'HEAD' and against['relative'] <= B.TOLERANCE
    unchanged = subprocess.run(['git', '-C', B.ROOT, 'diff', '--quiet', 'HEAD', '--',
                                'micronet_mm/csrc']).returncode == 0
    if unchanged:
        assert against['equal'] and against['relative'] == 0
    assert set(against['this']) == set(against['other']) == {'chain', 0, 1, 2, 3, 4}
    assert all(0 < us < float('inf') for d in (against['this'], against['other'])
               for us in d.values())
    out = capsys.readouterr().out
    assert '| part | this tree us | HEAD us | this tree / HEAD |' in out
    assert out.count('| 4: stages.3 |') == 1


def _commit_kernels(repo, edit):
    """A git repository at ``repo`` whose one commit holds this tree's micronet_mm/csrc, its
    Shift-Max kernel header shift_max_kernels.h ``edit``ed."""
    csrc = repo / 'micronet_mm' / 'csrc'
    shutil.copytree(B.CSRC, csrc, ignore=shutil.ignore_patterns('__pycache__'))
    kernels = csrc / 'shift_max_kernels.h'
    kernels.write_text(edit(kernels.read_text()))
    git = ['git', '-C', str(repo), '-c', 'user.name=t', '-c', 'user.email=t@t']
    for cmd in (['init', '-q'], ['add', '.'], ['commit', '-qm', 'kernels']):
        subprocess.run(git + cmd, check=True, capture_output=True)


def test_bench_program_against_refuses_another_model(tmp_path, monkeypatch, harness):
    """A revision whose kernels compute something else (the hyper-function's scale 3/6 of
    act_max instead of 2/6) is refused with the relative difference, before any timing; one
    without the kernels, or that git cannot name, is one line naming the revision."""
    def broken(text):
        assert 'T(2) * h.act_max / T(6)' in text
        return text.replace('T(2) * h.act_max / T(6)', 'T(3) * h.act_max / T(6)')
    _commit_kernels(tmp_path / 'repo', broken)
    _tree_harness(monkeypatch, harness)
    monkeypatch.setattr(B, 'ROOT', str(tmp_path / 'repo'))
    with pytest.raises(UserError, match='do not compute the same model'):
        B.main(['m0', '--against', 'HEAD', '--blocks', '1', '--shape', '32', '32'])
    with pytest.raises(UserError, match='--against nosuchrev: git finds no micronet_mm/csrc'):
        B.main(['m0', '--against', 'nosuchrev', '--blocks', '1', '--shape', '32', '32'])
