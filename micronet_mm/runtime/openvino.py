"""OpenVINO with Dynamic Shift-Max as one native operation.

The extension library (``micronet_mm/csrc/openvino``: the ``micronet::ShiftMax`` operation,
whose ``evaluate()`` runs the kernels of ``micronet_mm/csrc/shift_max.h``, and the conversion of
the ONNX node ``micronet.ShiftMax`` to it) is built against the openvino wheel's own headers and
CMake config by :func:`build_extension`; ``tools/setup_env.sh`` builds it once and caches it.

The deploy model for OpenVINO (:func:`switch_to_openvino`) is the ONNX Runtime deploy model
(BN folded, merged depthwise pairs, composed shuffles, folded head) in which every Dynamic
Shift-Max exports as ONE ``micronet.ShiftMax`` node, its hyper-function included, instead of
~10 standard nodes. :func:`compile_model` opens an IR or ONNX file with the extension loaded, on
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

import torch
from torch import nn

from micronet_mm.errors import UserError
from micronet_mm.ops import DynamicShiftMax
from micronet_mm.ops.shift_max import shift_index

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


class _ShiftMaxNode(torch.autograd.Function):
    """The ``micronet.ShiftMax`` ONNX node, for the exporter only: its ``forward`` gives a
    placeholder of the output's shape (the tracer records the node, not the values)."""

    @staticmethod
    def forward(ctx, x, groups, num_shifts, num_fusions, inner_shift, act_max, *params):  # noqa: D102
        return x.clone()

    @staticmethod
    def symbolic(g, x, groups, num_shifts, num_fusions, inner_shift, act_max, *params):  # noqa: D102
        out = g.op('micronet::ShiftMax', x, *params, groups_i=groups, num_shifts_i=num_shifts,
                   num_fusions_i=num_fusions, inner_shift_i=inner_shift, act_max_f=act_max)
        out.setType(x.type())
        return out


class OpenVINOShiftMax(nn.Module):
    """A trained :class:`DynamicShiftMax` that exports to ONNX as one ``micronet.ShiftMax`` node
    (the native OpenVINO operation; export with ``custom_opsets={'micronet': 1}``); in PyTorch
    it runs the module as it was.

    Inputs of the node: ``x`` and the hyper-function ``fc1.weight (S, C), fc1.bias, fc2.weight
    (K·J·C, S), fc2.bias, init (K, J)``, or for static Shift-Max ``x`` and the final coefficients
    ``(K, J, C)``.

    Args:
        dsm: the trained activation.
    """

    def __init__(self, dsm: DynamicShiftMax) -> None:
        super().__init__()
        self.reference = dsm
        self.channels, self.groups = dsm.channels, dsm.groups
        self.num_shifts, self.num_fusions, self.act_max = (dsm.num_shifts, dsm.num_fusions,
                                                           dsm.act_max)
        self.inner_shift = dsm.num_shifts < 2 or torch.equal(
            dsm.index[1], shift_index(dsm.channels, dsm.groups, 1, inner_shift=True))
        if not self.inner_shift and not torch.equal(
                dsm.index[1], shift_index(dsm.channels, dsm.groups, 1, inner_shift=False)):
            raise ValueError('OpenVINOShiftMax: the shift index is neither of the two variants')
        init = dsm.init.view(dsm.num_fusions, dsm.num_shifts)
        if dsm.fc is None:
            coef = (dsm.static_coef.detach() - 0.5) * (2 * dsm.act_max)
            params = [coef.view(dsm.num_fusions, dsm.num_shifts, dsm.channels)
                      + init.view(dsm.num_fusions, dsm.num_shifts, 1)]
        else:
            fc1, fc2 = dsm.fc[0], dsm.fc[2]
            params = [fc1.weight, fc1.bias, fc2.weight, fc2.bias, init]
        self.num_params = len(params)
        for i, p in enumerate(params):
            self.register_buffer(f'p{i}', p.detach().clone().contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.onnx.is_in_onnx_export():
            return self.reference(x)
        params = [getattr(self, f"p{i}") for i in range(self.num_params)]
        return _ShiftMaxNode.apply(x, self.groups, self.num_shifts, self.num_fusions,
                                   int(self.inner_shift), float(self.act_max), *params)

    def extra_repr(self) -> str:
        return (f'channels={self.channels}, groups={self.groups}, J={self.num_shifts}, '
                f'K={self.num_fusions}, inner_shift={self.inner_shift}')


def _replace_shift_max(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, DynamicShiftMax):
            setattr(module, name, OpenVINOShiftMax(child))
        else:
            _replace_shift_max(child)


def switch_to_openvino(model: nn.Module) -> nn.Module:
    """The deploy model whose ONNX export runs Dynamic Shift-Max natively in OpenVINO, in place:
    every :class:`DynamicShiftMax` becomes an :class:`OpenVINOShiftMax`, then the rest of the
    model gets the ONNX Runtime deploy rewrites (``switch_to_deploy(model, 'onnxruntime')``,
    which leaves the new modules alone: no shuffle is moved past them and they are not
    prescaled)."""
    from micronet_mm.deploy import switch_to_deploy
    model.eval()
    _replace_shift_max(model)
    return switch_to_deploy(model, 'onnxruntime')


if __name__ == '__main__':
    print(f'built {build_extension()}')  # python -m micronet_mm.runtime.openvino
