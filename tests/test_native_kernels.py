"""The native engine's kernels (micronet_mm/csrc/program_kernels.h) against their plain-loop
references (micronet_mm/csrc/reference/), on the compilers, architectures and ISA levels the
engine is built for.

tests/native/kernel_test.cpp runs every fast path at each vector width and dtype the engine
runs (float32 at 32 and 64 bytes, float64 at 64) on seeded random layers and on a fixed list
that reaches every path; it fails on a mismatch beyond the stated tolerance, an output element
left unwritten or one written past the output, or a fast path that no case reached
(docs/native_engine.md). It is built here

- with g++ and the engine's flags (-O3) for one ISA level of the engine's ``target_clones``:
  x86-64-v4 (AVX-512), x86-64-v3 (AVX2) or the baseline, compiled for that level alone. The
  level that the engine's dispatch runs on this CPU (its best) runs; a level the CPU lacks is
  skipped, not passed; a lower one runs too where ``MICRONET_KERNEL_TEST_EXTRA=1``;
- with clang++ (-O3; no target_clones: the baseline ISA);
- cross-compiled with aarch64-linux-gnu-g++ (static; -O2: -O3 triples the compile time) and
  run under qemu-aarch64, on small shapes; the same with clang++ where
  ``MICRONET_KERNEL_TEST_EXTRA=1``.

A missing compiler or qemu skips its build, or fails it where ``MICRONET_REQUIRE_NATIVE_TOOLS=1``
(CI, which installs them)."""
from __future__ import annotations

import os
import platform
import re
import subprocess
from dataclasses import dataclass

import pytest
from conftest import ROOT, native_tool

CSRC = os.path.join(ROOT, 'micronet_mm', 'csrc')
SOURCE = os.path.join(ROOT, 'tests', 'native', 'kernel_test.cpp')
#: the engine's flags (micronet_mm/csrc/build.py), warnings as errors
FLAGS = ('-std=c++17', '-O3', '-fopenmp-simd', '-Wall', '-Werror', '-Wno-psabi')
VARIANTS = ('f32 width 32', 'f32 width 64', 'f64 width 64')
#: the x86-64 ISA levels of the engine's target_clones, best first, and the CPU flags of each
LEVELS = {
    'x86-64-v4': ('avx2', 'fma', 'bmi2', 'movbe', 'avx512f', 'avx512bw', 'avx512cd', 'avx512dq',
                  'avx512vl'),
    'x86-64-v3': ('avx2', 'fma', 'bmi2', 'movbe'),
    'x86-64': (),
}
EXTRA = os.environ.get('MICRONET_KERNEL_TEST_EXTRA') == '1'


@dataclass(frozen=True)
class Build:
    """One build of the kernel test: compiler, its extra flags, what runs it and with what."""
    name: str
    compiler: str
    flags: tuple[str, ...] = ()
    level: str | None = None  # the x86-64 ISA level it is compiled for alone
    runner: str | None = None  # an emulator, for another architecture
    args: tuple[str, ...] = ()
    extra: bool = False  # runs only where MICRONET_KERNEL_TEST_EXTRA=1


AARCH64 = ('--small',)
BUILDS = (
    *(Build(f'g++ {level}', 'g++', (f'-march={level}', '-DKERNEL_TEST_SINGLE_ISA'), level)
      for level in LEVELS),
    Build('clang++', 'clang++'),
    Build('aarch64-linux-gnu-g++', 'aarch64-linux-gnu-g++', ('-static', '-O2'),
          runner='qemu-aarch64', args=AARCH64),
    Build('clang++ aarch64', 'clang++', ('--target=aarch64-linux-gnu', '-static', '-O2'),
          runner='qemu-aarch64', args=AARCH64, extra=True),
)


def cpu_flags() -> set[str]:
    """The x86 feature flags of this machine's CPU (empty where /proc/cpuinfo has none)."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def skip_reason(build: Build) -> str | None:
    """Why ``build`` does not run on this machine, or None."""
    if build.extra and not EXTRA:
        return f'{build.name}: only where MICRONET_KERNEL_TEST_EXTRA=1'
    if build.runner is not None:
        return None
    if platform.machine() not in ('x86_64', 'AMD64'):
        return f'{build.name}: an x86-64 build, on {platform.machine()}'
    if build.level is None:
        return None
    flags = cpu_flags()
    lacking = sorted(set(LEVELS[build.level]) - flags)
    if lacking:
        return f'the CPU lacks {", ".join(lacking)}: no {build.level} code runs here'
    best = next(level for level, needs in LEVELS.items() if set(needs) <= flags)
    if best != build.level and not EXTRA:
        return (f"the engine's dispatch runs {best} on this CPU (that build runs); "
                f'MICRONET_KERNEL_TEST_EXTRA=1 runs {build.level} too')
    return None


@pytest.mark.parametrize('build', BUILDS, ids=[b.name for b in BUILDS])
def test_kernels_match_references(build: Build, tmp_path):
    """Every fast path, width and dtype equals its reference, and each variant reached every
    path (kernel_test's summary lines)."""
    why = skip_reason(build)
    if why:
        pytest.skip(why)
    compiler = native_tool(build.compiler)
    runner = [native_tool(build.runner)] if build.runner else []
    exe = str(tmp_path / 'kernel_test')
    built = subprocess.run([compiler, *FLAGS, *build.flags, '-I', CSRC, SOURCE, '-o', exe],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-4000:]
    proc = subprocess.run([*runner, exe, *build.args], capture_output=True, text=True,
                          timeout=600)
    if proc.returncode == 77:  # an ISA the CPU lacks (the driver's own check)
        pytest.skip(proc.stdout.strip())
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    summary = {line.split(':')[0]: line for line in proc.stdout.splitlines()}
    for variant in VARIANTS:
        line = summary[variant]
        cases, failed, reached, paths = (int(v) for v in re.match(
            r'.*: (\d+) cases, (\d+) failed, .*, (\d+) of (\d+) fast paths', line).groups())
        assert cases > 100 and failed == 0 and reached == paths > 30, line
    assert proc.stdout.rstrip().endswith('PASSED')
