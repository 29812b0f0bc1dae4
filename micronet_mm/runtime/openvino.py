"""OpenVINO with Dynamic Shift-Max as one native operation.

The extension library (``micronet_mm/csrc/openvino``: the operations ``micronet::ShiftMax``,
whose ``evaluate()`` runs the kernels of ``micronet_mm/csrc/shift_max_kernels.h``, and
``micronet::Program``, a fused block's layer program run by ``micronet_mm/csrc/program.h``, with
the conversions of the ONNX nodes ``micronet.ShiftMax`` and ``micronet.Program`` to them) is
compiled with cmake against the openvino wheel's own headers and CMake config.
``tools/setup_env.sh`` runs ``python -m micronet_mm.runtime.openvino``, which builds it once into
``$MICRONET_CACHE`` (default ``~/.cache/micronet_mm``), in a folder keyed by the hash of the
sources, the flags and the openvino version (as ``micronet_mm.csrc.build`` does for the PyTorch
operator), and prints one line. Nothing builds at import or at run time.

The deploy model for it is ``switch_to_deploy(model, 'openvino')``
(:mod:`micronet_mm.deploy.backends.openvino`): every Dynamic Shift-Max exports as ONE
``micronet.ShiftMax`` node, its hyper-function included. :func:`compile_model` opens an IR or
ONNX file with the extension loaded, on the CPU, in float32 (OpenVINO's default on CPUs with AMX
is bf16), one stream, ``threads`` threads.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import os
import os.path as osp
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence

import numpy as np

from micronet_mm.errors import UserError

from .loaders import Runner

LIBRARY_NAME = 'libmicronet_openvino.so'
CSRC = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'csrc')
SOURCES = ('shift_max.h', 'shift_max_kernels.h', 'program.h', 'program_format.h',
           'program_kernels.h', 'openvino/CMakeLists.txt',
           'openvino/extension.cpp', 'openvino/shift_max_op.cpp', 'openvino/shift_max_op.hpp',
           'openvino/program_op.cpp', 'openvino/program_op.hpp')
#: the extension's operation types (a model holding one needs the library)
NATIVE_OPS = ('ShiftMax', 'Program')
#: compile flags (CMakeLists.txt adds them), those of the PyTorch operator
#: (``micronet_mm.csrc.build``): the compiler's baseline ISA (the header's vectorised loops carry
#: their own AVX2 / AVX-512 clones, picked at load time, so a cached library runs anywhere) and
#: ``-fopenmp-simd`` for its ``#pragma omp simd``
FLAGS = ('-O3', '-fopenmp-simd')
#: a library to use instead of the cached build
ENV_LIBRARY = 'MICRONET_OPENVINO_EXTENSION'


def library_path() -> str:
    """Where the extension built from the current sources for this openvino lies (in the
    cache, ``$MICRONET_CACHE/openvino/KEY/``)."""
    import openvino
    digest = hashlib.sha256(' '.join(FLAGS).encode())
    for name in SOURCES:
        with open(osp.join(CSRC, name), 'rb') as f:
            digest.update(name.encode() + b'\0' + f.read())
    from micronet_mm.csrc.build import cache_dir  # the PyTorch operator's cache
    version = '-'.join(openvino.__version__.split('-')[:2])  # 2026.4.1-22982
    key = f'{digest.hexdigest()[:16]}-openvino{version}'
    return osp.join(cache_dir(), 'openvino', key, LIBRARY_NAME)


def build_extension(force: bool = False) -> tuple[str, float | None]:
    """Compile the extension with cmake into the cache unless it is there (``force``: rebuild
    anyway); returns its path and the build time in seconds (``None`` when cached), as
    ``micronet_mm.csrc.build.build`` does for the PyTorch operator."""
    import openvino
    path = library_path()
    if osp.isfile(path) and not force:
        return path, None
    if shutil.which('cmake') is None:
        raise UserError('cmake not found: install it (apt-get install cmake) to build the '
                        'OpenVINO extension')
    start = time.perf_counter()
    os.makedirs(osp.dirname(path), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=osp.dirname(path)) as build:
        for cmd in (['cmake', '-S', osp.join(CSRC, 'openvino'), '-B', build,
                     '-DOpenVINO_DIR=' + osp.join(osp.dirname(openvino.__file__), 'cmake'),
                     '-DMICRONET_FLAGS=' + ';'.join(FLAGS)],
                    ['cmake', '--build', build]):
            subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        os.replace(osp.join(build, LIBRARY_NAME), path)  # atomic: never half a library
    return path, time.perf_counter() - start


def extension_library() -> str:
    """The extension library: ``$MICRONET_OPENVINO_EXTENSION``, else the cached build of the
    current sources."""
    path = os.environ.get(ENV_LIBRARY) or library_path()
    if not osp.isfile(path):
        how = ('no such file' if os.environ.get(ENV_LIBRARY) else
               'not built for these sources; build it with bash tools/setup_env.sh (or python '
               '-m micronet_mm.runtime.openvino)')
        raise UserError(f'OpenVINO extension {path}: {how}')
    return path


_CORES: dict[str | None, object] = {}


def core():
    """The process's ``openvino.Core`` with the extension loaded when it is there (models
    without ``micronet`` nodes need none; :func:`read_model` says when one is missing), one per
    extension library.

    One Core is kept for the life of the process: OpenVINO unloads its CPU plugin when the last
    Core goes, and in a process that went on to start subprocesses (mmengine runs ``git`` when a
    training starts) that crashed with SIGSEGV in the parent after some OpenVINO runs (test suite,
    reproduced in one pytest process; not in a short script).
    """
    import openvino as ov
    try:
        library = extension_library()
    except UserError:
        library = None
    if library not in _CORES:
        c = ov.Core()
        if library is not None:
            c.add_extension(library)
        _CORES[library] = c
    return _CORES[library]


def read_model(path: str):
    """``openvino.Model`` of an IR or ONNX file, with a one-line error where a native Shift-Max
    node meets a missing extension."""
    try:
        return core().read_model(path)
    except RuntimeError as e:
        if any(name in str(e) for name in NATIVE_OPS):
            extension_library()  # raises the UserError naming the missing library
        raise


def save_ir(onnx_file: str, xml: str, force: bool = False) -> None:
    """Convert an ONNX file to OpenVINO IR ``xml`` + its ``.bin`` (float32 weights, both written
    under temp names, then renamed); when the model has native Shift-Max nodes, copy the
    extension library next to them (``LIBRARY_NAME``).

    Args:
        onnx_file: the ONNX model.
        xml: the IR to write (the caller has checked that it may be replaced).
        force: replace an existing ``.bin`` or a different library of that name.
    """
    import filecmp

    import openvino as ov

    from micronet_mm.fileio import copy_atomic, refuse_overwrite
    folder = osp.dirname(osp.abspath(xml))
    stem = osp.splitext(xml)[0]
    refuse_overwrite(stem + '.bin', force)
    model = read_model(onnx_file)
    native = any(op.get_type_name() in NATIVE_OPS for op in model.get_ops())
    library = osp.join(folder, LIBRARY_NAME)
    if native and osp.exists(library) and not filecmp.cmp(library, extension_library(),
                                                          shallow=False):
        refuse_overwrite(library, force)
    os.makedirs(folder, exist_ok=True)
    # the IR pair is written in a fresh folder (a unique name, made by this process) and moved
    # into place; the library is copied through its own unique temp file
    staging = tempfile.mkdtemp(prefix=f'.{osp.basename(stem)}.', suffix='.partial', dir=folder)
    try:
        tmp = osp.join(staging, 'model')
        ov.save_model(model, tmp + '.xml', compress_to_fp16=False)
        os.replace(tmp + '.bin', stem + '.bin')
        os.replace(tmp + '.xml', xml)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if native:
        copy_atomic(extension_library(), library)


def compile_model(path_or_model, threads: int = 1, profile: bool = False):
    """Compile an IR/ONNX file (or an ``ov.Model``) for the CPU, float32, one stream.

    Args:
        path_or_model: ``.xml`` / ``.onnx`` file or ``openvino.Model``.
        threads: inference threads.
        profile: turn on per-node profiling (``PERF_COUNT``; see :func:`profile_by_type`).
    """
    model = read_model(path_or_model) if isinstance(path_or_model, str) else path_or_model
    config = {'INFERENCE_PRECISION_HINT': 'f32', 'NUM_STREAMS': '1',
              'INFERENCE_NUM_THREADS': str(threads), 'PERF_COUNT': 'YES' if profile else 'NO'}
    return core().compile_model(model, 'CPU', config)


def load(path: str, threads: int = 1) -> Runner:
    """The runner of an ``.xml`` / ``.onnx`` file in OpenVINO (:func:`compile_model`: CPU,
    float32, one stream, with the extension where it is built, so that the plain export and the
    ``--backend openvino`` one both run)."""
    compiled = compile_model(path, threads=threads)

    def run(x: np.ndarray) -> list[np.ndarray]:
        result = compiled(x)
        return [result[o] for o in compiled.outputs]
    return Runner(run, [o.get_any_name() for o in compiled.outputs])


def profile_by_type(request) -> dict[str, tuple[float, int]]:
    """``{node type: (ms, executed node count)}`` of an infer request's last run (compiled with
    ``profile=True``); node type is OpenVINO's ``node_type`` (``Reorder``, ``Convolution``,
    ``ShiftMax``, ...)."""
    out = collections.defaultdict(lambda: [0.0, 0])
    for info in request.get_profiling_info():
        if info.status.name != 'EXECUTED':
            continue
        out[info.node_type][0] += info.real_time.total_seconds() * 1e3
        out[info.node_type][1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description='build the OpenVINO extension (cached)')
    parser.add_argument('--force', action='store_true', help='rebuild even when cached')
    path, seconds = build_extension(parser.parse_args(argv).force)
    print(f'OpenVINO extension (micronet::ShiftMax, micronet::Program): '
          f'{"cached" if seconds is None else f"built in {seconds:.0f} s"}, {path}')
    return path


if __name__ == '__main__':
    from micronet_mm.errors import run_cli
    run_cli(main)
