"""Build the fused Dynamic Shift-Max operator (``micronet::shift_max``) once and cache it.

``tools/setup_env.sh`` runs ``python -m micronet_mm.csrc.build``; it prints one line. The shared
library is cached under ``$MICRONET_CACHE`` (default ``~/.cache/micronet_mm``) in a folder keyed
by the hash of the sources and flags, the torch version and the Python version, as the mmcv
wheel is: a second run finds it and builds nothing. Nothing builds at import or at run time
(:mod:`micronet_mm.ops.fused_shift_max` only loads what is here, else falls back).

Flags: ``-O3`` with the compiler's baseline x86-64 ISA (the library may run on another machine
than the one that built it, as on CI), and ``-fopenmp-simd``, which honours the kernel's
``#pragma omp simd`` (vectorised loops and reductions) without linking an OpenMP runtime. The
kernels themselves are compiled three times (``target_clones``: baseline, x86-64-v3, x86-64-v4;
``MICRONET_SIMD_CLONES`` in ``program.h``) and the CPU picks one at load time, so building with
``-march`` for the host gains nothing.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
SOURCES = ('shift_max.h', 'shift_max_kernels.h', 'shift_max_torch.cpp', 'program.h',
           'program_format.h', 'program_kernels.h', 'program_torch.cpp')
FLAGS = ('-O3', '-fopenmp-simd')
NAME = 'micronet_ops'


def cache_dir() -> Path:
    """``$MICRONET_CACHE`` or ``~/.cache/micronet_mm`` (shared with tools/setup_env.sh)."""
    return Path(os.environ.get('MICRONET_CACHE', '~/.cache/micronet_mm')).expanduser()


def library_path() -> Path:
    """Where the library built from the current sources for this torch and Python lies."""
    digest = hashlib.sha256(' '.join(FLAGS).encode())
    for name in SOURCES:
        digest.update(name.encode() + b'\0' + (HERE / name).read_bytes())
    key = (f'{digest.hexdigest()[:16]}-torch{torch.__version__}'
           f'-cp{sys.version_info[0]}{sys.version_info[1]}')
    return cache_dir() / 'ops' / key / f'{NAME}.so'


def build(force: bool = False) -> tuple[Path, float | None]:
    """Compile the library into the cache unless it is there.

    Args:
        force: rebuild even when the cached library exists.

    Returns:
        The library's path, and the build time in seconds (``None`` when it was cached).
    """
    path = library_path()
    if path.is_file() and not force:
        return path, None
    from torch.utils import cpp_extension
    start = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        cpp_extension.load(name=NAME, sources=[str(HERE / 'shift_max_torch.cpp'), str(HERE / 'program_torch.cpp')],
                           extra_cflags=list(FLAGS), build_directory=tmp,
                           is_python_module=False, verbose=False)
        staged = Path(tmp) / f'{NAME}.staged'
        shutil.copyfile(Path(tmp) / f'{NAME}.so', staged)
        os.replace(staged, path)  # atomic: a reader never sees half a library
    return path, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--force', action='store_true', help='rebuild even when cached')
    args = parser.parse_args(argv)
    path, seconds = build(args.force)
    if seconds is None:
        print(f'fused Shift-Max op: cached, {path}')
    else:
        print(f'fused Shift-Max op: built in {seconds:.0f} s, {path}')
    return path


if __name__ == '__main__':
    from micronet_mm.errors import run_cli
    run_cli(main)
