"""OpenVINO with Dynamic Shift-Max as one native operation.

The extension library (``micronet_mm/csrc/openvino``: the ``micronet::ShiftMax`` operation,
whose ``evaluate()`` runs the kernels of ``micronet_mm/csrc/shift_max.h``, and the conversion of
the ONNX node ``micronet.ShiftMax`` to it) is built against the openvino wheel's own headers and
CMake config by :func:`build_extension`; ``tools/setup_env.sh`` builds it once and caches it.

The deploy model for it is ``switch_to_deploy(model, 'openvino')``
(:mod:`micronet_mm.deploy.backends.openvino`): every Dynamic Shift-Max exports as ONE
``micronet.ShiftMax`` node, its hyper-function included. :func:`compile_model` opens an IR or ONNX file with the extension loaded, on
the CPU, in float32 (OpenVINO's default on CPUs with AMX is bf16), one stream, ``threads``
threads.
"""
from __future__ import annotations

import collections
import hashlib
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile

from micronet_mm.errors import UserError

LIBRARY_NAME = 'libmicronet_openvino.so'
SOURCE_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'csrc')
#: where :func:`build_extension` puts the library by default: inside the virtual environment
DEFAULT_LIBRARY = osp.join(sys.prefix, 'lib', 'micronet_mm', LIBRARY_NAME)
ENV_LIBRARY = 'MICRONET_OPENVINO_EXTENSION'


def source_hash() -> str:
    """SHA-256 over the extension's sources, the shared kernel header and the openvino version:
    the cache key of a build."""
    import openvino
    h = hashlib.sha256(openvino.__version__.encode())
    files = [osp.join(SOURCE_DIR, 'shift_max.h')] + sorted(
        osp.join(SOURCE_DIR, 'openvino', f) for f in os.listdir(osp.join(SOURCE_DIR, 'openvino')))
    for path in files:
        with open(path, 'rb') as f:
            h.update(osp.basename(path).encode() + f.read())
    return h.hexdigest()


def build_extension(dest: str = DEFAULT_LIBRARY, native: bool = True) -> str:
    """Compile the extension with cmake and the C++ compiler of this machine and copy the
    library to ``dest``, with ``dest.sha256`` holding :func:`source_hash`.

    Args:
        dest: the library file to write.
        native: compile for this CPU (``-march=native``).

    Returns:
        ``dest``.
    """
    import openvino
    cmake_dir = osp.join(osp.dirname(openvino.__file__), 'cmake')
    if shutil.which('cmake') is None:
        raise UserError('cmake not found: install it (apt-get install cmake) to build the '
                        'OpenVINO extension')
    with tempfile.TemporaryDirectory() as build:
        for cmd in (['cmake', '-S', osp.join(SOURCE_DIR, 'openvino'), '-B', build,
                     f'-DOpenVINO_DIR={cmake_dir}', f'-DMICRONET_NATIVE={"ON" if native else "OFF"}'],
                    ['cmake', '--build', build]):
            subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        install_extension(osp.join(build, LIBRARY_NAME), dest, source_hash())
    return dest


def install_extension(library: str, dest: str = DEFAULT_LIBRARY, stamp: str | None = None) -> None:
    """Copy a built ``library`` (and its ``.sha256`` stamp, or ``stamp``) to ``dest``, never
    leaving a half-written file."""
    os.makedirs(osp.dirname(osp.abspath(dest)), exist_ok=True)
    if stamp is None:
        with open(library + '.sha256') as f:
            stamp = f.read().strip()
    shutil.copyfile(library, dest + '.tmp')
    os.replace(dest + '.tmp', dest)
    with open(dest + '.sha256.tmp', 'w') as f:
        f.write(stamp + '\n')
    os.replace(dest + '.sha256.tmp', dest + '.sha256')


def extension_library() -> str:
    """The extension library: ``$MICRONET_OPENVINO_EXTENSION``, or the build installed into the
    environment, which must be built from the sources of this checkout."""
    path = os.environ.get(ENV_LIBRARY)
    if path is not None:
        if not osp.isfile(path):
            raise UserError(f'{ENV_LIBRARY}={path}: no such file')
        return path
    if not osp.isfile(DEFAULT_LIBRARY):
        raise UserError(f'OpenVINO extension not found: {DEFAULT_LIBRARY}; build it with '
                        'bash tools/setup_env.sh')
    with open(DEFAULT_LIBRARY + '.sha256') as f:
        if f.read().strip() != source_hash():
            raise UserError(f'{DEFAULT_LIBRARY} was built from other sources than '
                            f'{SOURCE_DIR}; rebuild it with bash tools/setup_env.sh')
    return DEFAULT_LIBRARY


def core():
    """An ``openvino.Core`` with the extension loaded when it is there (models without
    ``micronet::ShiftMax`` nodes need none; :func:`read_model` says when one is missing)."""
    import openvino as ov
    c = ov.Core()
    try:
        c.add_extension(extension_library())
    except UserError:
        pass
    return c


def read_model(path: str):
    """``openvino.Model`` of an IR or ONNX file, with a one-line error where a native Shift-Max
    node meets a missing extension."""
    try:
        return core().read_model(path)
    except RuntimeError as e:
        if 'ShiftMax' in str(e):
            extension_library()  # raises the UserError naming the missing library
        raise


def save_ir(onnx_file: str, xml: str) -> None:
    """Convert an ONNX file to OpenVINO IR ``xml`` (+ ``.bin``, float32 weights); when the model
    has native Shift-Max nodes, copy the extension library next to it (``LIBRARY_NAME``)."""
    import openvino as ov
    model = read_model(onnx_file)
    os.makedirs(osp.dirname(osp.abspath(xml)), exist_ok=True)
    ov.save_model(model, xml, compress_to_fp16=False)
    if any(op.get_type_name() == 'ShiftMax' for op in model.get_ops()):
        dest = osp.join(osp.dirname(osp.abspath(xml)), LIBRARY_NAME)
        shutil.copy2(extension_library(), dest + '.tmp')
        os.replace(dest + '.tmp', dest)


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


if __name__ == '__main__':
    print(f'built {build_extension()}')  # python -m micronet_mm.runtime.openvino
