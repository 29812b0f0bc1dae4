"""The program format is defined once (micronet_mm/csrc/program_format.py): the C++ header that
names the fields is the one generated from it, nothing else indexes a record by number, and the
Python record API refuses what the format does not have."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from micronet_mm.csrc import program_format as pf
from micronet_mm.csrc.program_format import FIELDS, Record, program_of, records

ROOT = Path(__file__).resolve().parents[1]
#: every file that reads or writes records, but the schema
USERS = ['micronet_mm/csrc/program.h', 'micronet_mm/csrc/program_kernels.h',
         'micronet_mm/csrc/program_torch.cpp', 'micronet_mm/csrc/openvino/program_op.cpp',
         'micronet_mm/deploy/rewrites/native_block.py',
         'micronet_mm/deploy/rewrites/program_chain.py', 'tools/analysis/bench_program.py',
         'tests/test_native_program.py', 'tests/test_openvino_program.py',
         'tests/test_native_safety.py', 'tests/test_native_fuzz.py', 'tests/test_bench_program.py',
         'tests/test_program_chain.py', 'tests/native/kernel_test.cpp']
#: a record (r, r2, rec, record(...)) indexed by a number
RAW_INDEX = re.compile(r'\b(?:r|r2|rec|record)\[\s*\d+\s*\]|record\([^)]*\)\[\s*\d+\s*\]')


def test_header_is_generated_from_the_schema():
    """program_format.h is what ``python -m micronet_mm.csrc.program_format`` writes, so the
    C++ names and the Python ones are the same fields at the same positions."""
    assert pf.HEADER.read_text() == pf.header(), (
        'run python -m micronet_mm.csrc.program_format')
    text = pf.header()
    for name, (code, fields) in pf.OPS.items():
        assert f'k{pf._camel(name)} = {code}' in text
        for f in fields:
            assert f'k{pf._camel(name)}{pf._camel(f)} = {pf.index_of(name, f)}' in text
    assert f'kFields = {FIELDS}' in text and f'kVersion = {pf.VERSION}' in text


def test_check_mode_refuses_a_stale_header(tmp_path, monkeypatch):
    stale = tmp_path / 'program_format.h'
    stale.write_text(pf.header().replace('kConvGroups = 6', 'kConvGroups = 7'))
    monkeypatch.setattr(pf, 'HEADER', stale)
    with pytest.raises(pf.UserError, match='differs'):
        pf.main(['--check'])
    stale.write_text(pf.header())
    pf.main(['--check'])


@pytest.mark.parametrize('path', USERS)
def test_no_raw_record_index(path):
    """Records are read by field name everywhere but in the schema."""
    hits = [f'{path}:{i}: {line.strip()}'
            for i, line in enumerate((ROOT / path).read_text().splitlines(), 1)
            if RAW_INDEX.search(line)]
    assert not hits, hits


def test_raw_index_pattern_finds_what_it_should():
    assert RAW_INDEX.search('h = r[11] + 1') and RAW_INDEX.search('record(prog, l)[1]')
    assert not RAW_INDEX.search('r[kConvPh]') and not RAW_INDEX.search('rows[1]')


def test_record_fields_by_name():
    r = Record.make('conv', 0, c_in=4, c_out=8, groups=4, kh=3, kw=1, sh=2, sw=1, ph=1, pw=0,
                    dh=1, dw=1, act=1, weights=7)
    assert (r.kind, r.c_out, r.kh, r.weights, r.in_perm) == ('conv', 8, 3, 7, -1)
    r.weights += 5
    assert r.values[pf.index_of('conv', 'weights')] == 12 and len(r.values) == FIELDS
    prog = program_of([r, Record.make('pool', 1, channels=8, relu6=0, hswish=1)])
    assert [x.kind for x in records(prog)] == ['conv', 'pool'] and prog[:2] == [pf.VERSION, 2]
    assert pf.output_shape(prog, (2, 4, 9, 9)) == (2, 8, 1, 1)
    assert pf.output_shape(program_of([r]), (2, 4, 9, 9)) == (2, 8, 5, 9)
    with pytest.raises(KeyError, match='squeeze'):
        r.squeeze  # noqa: B018 (a shift_max field, not a conv one)
    with pytest.raises(KeyError, match='without'):
        Record.make('add', 0, channels=3)
    with pytest.raises(ValueError, match='fields'):
        Record([1, 0])
