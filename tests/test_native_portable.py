"""The native engine (micronet_mm/csrc/program.h) is portable C++17: it builds with GCC and
with clang (no GCC-only builtins outside ``#if !defined(__clang__)``), and the clang build
computes what the GCC-built torch op computes on the fuzzer's random programs
(tests/test_native_fuzz.py) and refuses the same mutated ones.

The engine runs here through tests/native/program_driver.cpp, a command-line driver without
PyTorch. Each compiler's test skips when that compiler is not installed (``apt-get install
clang``), and fails instead where ``MICRONET_REQUIRE_NATIVE_TOOLS=1`` (CI, which installs it)."""
from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
import torch
from conftest import native_tool
from test_native_fuzz import mutate, valid_case

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(os.path.dirname(HERE), 'micronet_mm', 'csrc')
DRIVER = os.path.join(HERE, 'native', 'program_driver.cpp')
CASES = 40


@pytest.fixture(scope='module', params=['clang++', 'g++'])
def driver(request, tmp_path_factory):
    """The driver built with one compiler (-Werror: the engine compiles cleanly)."""
    compiler = native_tool(request.param)
    exe = str(tmp_path_factory.mktemp('driver') / 'program_driver')
    subprocess.run([compiler, '-std=c++17', '-O2', '-fopenmp-simd', '-Wall', '-Werror',
                    '-Wno-psabi', '-I', CSRC, DRIVER, '-o', exe], check=True,
                   capture_output=True, text=True)
    return exe


def _text(prog, x, weights, tables) -> str:
    parts = [len(prog), *prog, weights.numel(), *(repr(float(v)) for v in weights.double()),
             tables.numel(), *(int(v) for v in tables), *x.shape,
             *(repr(float(v)) for v in x.double().reshape(-1))]
    return ' '.join(str(p) for p in parts)


def _run(exe: str, dtype: str, case) -> tuple[str, torch.Tensor | None]:
    proc = subprocess.run([exe, dtype], input=_text(*case), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    if proc.stdout.startswith('ERROR'):
        return proc.stdout.strip(), None
    head, *values = proc.stdout.split('\n')
    shape = tuple(int(v) for v in head.split())
    return '', torch.tensor([float(v) for v in values if v], dtype=torch.float64).view(shape)


def test_driver_matches_torch_op(driver):
    """Random valid programs (float32 and float64) and mutated ones: the driver's output equals
    torch.ops.micronet.program's, its refusals are the op's."""
    from micronet_mm.csrc.build import library_path
    torch.ops.load_library(str(library_path()))
    rng = np.random.default_rng(20)
    refused = ran = 0
    for i in range(CASES):
        case = valid_case(rng)
        if i % 2:
            case = mutate(rng, case)
            if case[1].numel() > 10 ** 5:
                continue
        prog, x, weights, tables = case
        for dtype, torch_dtype, tol in (('f32', torch.float32, 1e-4),
                                        ('f64', torch.float64, 1e-9)):
            error, got = _run(driver, dtype, case)
            try:
                want = torch.ops.micronet.program(x.to(torch_dtype), weights.to(torch_dtype),
                                                  tables, prog)
            except RuntimeError as e:
                assert got is None and error, (i, str(e))
                assert str(e).splitlines()[0].split(' (layer')[0] in error, (error, str(e))
                refused += 1
                continue
            assert got is not None, (i, error)
            ran += 1
            scale = float(want.abs().max()) + 1e-3
            assert got.shape == want.shape
            assert float((got - want.double()).abs().max()) <= tol * scale, i
    assert ran >= CASES // 2 and refused >= CASES // 10, (ran, refused)


def test_no_gcc_only_builtins_outside_guards():
    """The kernels' GCC-only constructs sit under ``#if !defined(__clang__)`` (or its #else)."""
    for name in ('program.h', 'program_kernels.h', 'shift_max.h', 'shift_max_kernels.h'):
        depth, guarded = 0, []
        for line in open(os.path.join(CSRC, name)):
            s = line.strip()
            if s.startswith('#if'):
                guarded.append('__clang__' in s)
            elif s.startswith('#else') and guarded:
                guarded[-1] = True  # (the GCC branch of an #if defined(__clang__))
            elif s.startswith('#endif') and guarded:
                guarded.pop()
            if '__builtin_shuffle(' in s and not s.startswith('//'):
                depth += 0 if any(guarded) else 1
        assert depth == 0, f'{name}: __builtin_shuffle outside a __clang__ guard'
