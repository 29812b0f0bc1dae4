"""ncnn: convert a model with pnnx to ``.param`` + ``.bin``, load it, run it.

:func:`convert` traces the model with TorchScript (or takes a TorchScript or ONNX file) and
runs the ``pnnx`` wheel's converter binary on a copy in a fresh folder (a child process with a
time limit; pnnx writes its side files next to its input, so never next to the user's). Weights
stay float32 (``fp16=0``). Layers that ncnn does not have (pnnx leaves ``pnnx.Expression``,
``Tensor.*``, ``aten::*`` ... where it has no ncnn layer) are refused with one line naming them:
deploy MicroNet with ``switch_to_deploy(model, 'ncnn')`` first (4-D standard operators,
:mod:`micronet_mm.deploy.backends.edge`). The exported output names and their order are kept by
one ``Noop`` layer per output, in order, at the end of the ``.param`` file (ncnn lists a
network's outputs, the blobs no layer reads, in the order they appear).

A model that pnnx converts differently at another input size (a layer holding a size of the
trace, such as an interpolation to a traced size: MR-ASPP's upsampling to the stride-8 map) has
its input size written on its ``Input`` layer, and :func:`load`'s runner refuses other sizes
(ncnn itself would run them and mix maps of different sizes); an ONNX source keeps its
exported size the same way.

:func:`load` opens the pair in float32 (no fp16 / bf16 storage or arithmetic) on ``threads``
threads and returns a :class:`~.loaders.Runner`: ncnn runs one image at a time (its tensors have no
batch axis), so a batch runs image by image and the outputs are stacked.
"""
from __future__ import annotations

import filecmp
import os
import os.path as osp
import re
import shutil
import tempfile
from collections.abc import Sequence

import numpy as np

from micronet_mm.errors import UserError
from micronet_mm.fileio import copy_atomic, refuse_overwrite

from .edge import CONVERT_TIMEOUT, check_model_file, run_converter, trace
from .loaders import Runner

#: prefixes of the layer types pnnx writes for operators it could not map to ncnn
_FOREIGN = ('pnnx.', 'Tensor.', 'aten::', 'torch.', 'F.', 'nn.', 'prim::')


def bin_path(param: str) -> str:
    """The weights file of ``param``: ``MODEL.param`` -> ``MODEL.bin``."""
    return osp.splitext(param)[0] + '.bin'


def layers(param_text: str) -> list[list[str]]:
    """The layer lines of a ``.param`` text, each split into fields (type, name, counts, blobs,
    parameters)."""
    lines = [line.split() for line in param_text.splitlines()[2:]]
    return [f for f in lines if f]


def unsupported_layers(param_text: str) -> dict[str, int]:
    """``{layer type: count}`` of the layers ncnn has no implementation of."""
    import ncnn
    out: dict[str, int] = {}
    for fields in layers(param_text):
        kind = fields[0]
        if kind.startswith(_FOREIGN) or ncnn.layer_to_index(kind) < 0:
            out[kind] = out.get(kind, 0) + 1
    return out


def name_outputs(param_text: str, names: Sequence[str]) -> str:
    """``param_text`` with pnnx's outputs ``out0``, ``out1``, ... passed on by one ``Noop``
    layer each to a blob named as exported, in order."""
    head = param_text.splitlines()[:2]
    layer_count, blob_count = (int(v) for v in head[1].split())
    lines = param_text.rstrip('\n').splitlines()
    for i, name in enumerate(names):
        lines.append(f'Noop output_{i} 1 1 out{i} {name}')
    lines[1] = f'{layer_count + len(names)} {blob_count + len(names)}'
    return '\n'.join(lines) + '\n'


def convert(model_or_file, out: str, *, shape: Sequence[int] = (1, 3, 224, 224),
            dynamic: bool = False, output_names: Sequence[str] | None = None,
            force: bool = False, timeout: float = CONVERT_TIMEOUT) -> list[str]:
    """Write ``out`` (``.param``) and its ``.bin``.

    Args:
        model_or_file: a module (``images -> tensor or tuple``, eval mode; traced with
            TorchScript at ``shape``), or a TorchScript (``.pt``) or ONNX (``.onnx``) file.
        out: the ``.param`` file to write (its weights go to the same name with ``.bin``).
        shape: the input shape ``(1, C, H, W)`` pnnx converts at.
        dynamic: a module or TorchScript file: pnnx also traces ``(H + 32, W + 32)`` and keeps
            the shapes that differ as expressions. Slow: ncnn evaluates them at every call
            (M2 with reshapes to traced sizes: 15x the time); the deploy form for ncnn has no
            size-dependent reshape.
            Without it, a module is traced and converted at a second size too, and the model
            is marked with its input size where the two differ (module doc); a file is marked
            always.
        output_names: names of the outputs, in order (default: an ONNX file's own, else
            ``output0``, ``output1``, ...).
        force: replace existing files.
        timeout: seconds pnnx may run.

    Returns:
        The output names written.

    Raises:
        UserError: an output exists (without ``force``), pnnx failed or left layers that ncnn
            does not have.
    """
    if not out.endswith('.param'):
        raise UserError(f'{out}: the ncnn model file must end in .param')
    for path in (out, bin_path(out)):
        refuse_overwrite(path, force)
    with tempfile.TemporaryDirectory(prefix='micronet-ncnn-') as tmp:
        if isinstance(model_or_file, str):
            ext = osp.splitext(model_or_file)[1]
            if ext not in ('.pt', '.onnx'):
                raise UserError(f'{model_or_file}: give a TorchScript (.pt) or ONNX (.onnx) '
                                'file, or the model')
            check_model_file(model_or_file, ext)
            src = osp.join(tmp, 'model' + ext)
            shutil.copyfile(model_or_file, src)
            if output_names is None:
                output_names = _onnx_outputs(src) if ext == '.onnx' else None
        else:
            src = osp.join(tmp, 'model.pt')
            output_names = trace(model_or_file, shape, src, onnx=False,
                                 output_names=output_names)
        text, weights = _pnnx(src, shape, dynamic, tmp, 'a', timeout)
        bad = unsupported_layers(text)
        if bad:
            listed = ', '.join(f'{k} x{v}' for k, v in sorted(bad.items()))
            raise UserError(f'pnnx left layers ncnn does not have ({listed}); deploy the model '
                            "with switch_to_deploy(model, 'ncnn') before converting it")
        if isinstance(model_or_file, str):  # traced or exported at one size
            if not dynamic or src.endswith('.onnx'):
                text = fix_input_shape(text, shape)
        elif not dynamic:  # traced and converted again at another size: does it depend on it?
            other = [*shape[:2], shape[2] + 32, shape[3] + 32]
            os.makedirs(osp.join(tmp, 'other'))
            src2 = osp.join(tmp, 'other', 'model.pt')
            trace(model_or_file, other, src2, onnx=False, output_names=output_names)
            text2, weights2 = _pnnx(src2, other, False, tmp, 'b', timeout)
            if text2 != text or not filecmp.cmp(weights, weights2, shallow=False):
                text = fix_input_shape(text, shape)
        count = len({t for f in layers(text) for t in f if re.fullmatch(r'out\d+', t)})
        names = list(output_names) if output_names else [f'output{i}' for i in range(count)]
        if len(names) != count:
            raise UserError(f'{len(names)} output names for the {count} outputs pnnx wrote')
        param = osp.join(tmp, 'model.param')
        with open(param, 'w') as f:
            f.write(name_outputs(text, names))
        copy_atomic(weights, bin_path(out))
        copy_atomic(param, out)
    return names


def _pnnx(src: str, shape: Sequence[int], dynamic: bool, tmp: str, sub: str,
          timeout: float) -> tuple[str, str]:
    """Run pnnx on a copy of ``src`` in ``tmp/sub`` (it writes its side files next to its
    input) at the input ``shape``; returns the ``.param`` text and the ``.bin`` path."""
    import pnnx
    folder = osp.join(tmp, sub)
    os.makedirs(folder)
    local = osp.join(folder, osp.basename(src))
    shutil.copyfile(src, local)
    cmd = [pnnx.EXEC_PATH, local, 'inputshape=' + _shape_arg(shape), 'fp16=0', 'device=cpu']
    if dynamic and src.endswith('.pt'):
        cmd.append('inputshape2=' + _shape_arg([*shape[:2], shape[2] + 32, shape[3] + 32]))
    try:
        run_converter(cmd, folder, 'pnnx', timeout)
    except UserError as e:  # pnnx aborts on some operators (the 5-D reshapes of MicroNet)
        raise UserError(f"{e}; convert a MicroNet in switch_to_deploy(model, 'ncnn') form") \
            from None
    stem = osp.splitext(local)[0]
    param, weights = stem + '.ncnn.param', stem + '.ncnn.bin'
    if not (osp.isfile(param) and osp.isfile(weights)):
        raise UserError('pnnx wrote no ncnn model')
    with open(param) as f:
        return f.read(), weights


def fix_input_shape(param_text: str, shape: Sequence[int]) -> str:
    """``param_text`` with the input's ``(C, H, W)`` of ``shape`` written on its ``Input``
    layer (ncnn's ``0=W 1=H 2=C``): :func:`load` then refuses inputs of another size."""
    lines = param_text.splitlines()
    for i, line in enumerate(lines):
        if line.split()[:1] == ['Input']:
            lines[i] = f'{line} 0={shape[3]} 1={shape[2]} 2={shape[1]}'
            break
    return '\n'.join(lines) + '\n'


def input_shape(param_text: str) -> tuple[int, int, int] | None:
    """The ``(C, H, W)`` a model's ``Input`` layer fixes (:func:`fix_input_shape`), or None."""
    for fields in layers(param_text):
        if fields[0] == 'Input':
            values = dict(f.split('=', 1) for f in fields[4 + int(fields[2]) + int(fields[3]):]
                          if '=' in f)
            if '0' in values:
                return int(values.get('2', 1)), int(values.get('1', 1)), int(values['0'])
    return None


def _shape_arg(shape: Sequence[int]) -> str:
    return '[' + ','.join(str(int(v)) for v in shape) + ']'


def _onnx_outputs(path: str) -> list[str]:
    import onnx
    return [o.name for o in onnx.load(path, load_external_data=False).graph.output]


def load(path: str, threads: int = 1) -> Runner:
    """Open ``path`` (``.param``, with its ``.bin``) in ncnn: float32, ``threads`` threads.

    Returns:
        ``runner(images (N, C, H, W) float32) -> [output, ...]`` in the exported order, batch
        first, with ``runner.output_names``.
    """
    import ncnn
    check_model_file(path, '.param')
    check_model_file(bin_path(path), '.bin')
    net = ncnn.Net()
    opt = net.opt
    opt.num_threads = threads
    opt.use_fp16_packed = opt.use_fp16_storage = opt.use_fp16_arithmetic = False
    opt.use_bf16_storage = False
    opt.use_vulkan_compute = False
    if net.load_param(path) != 0 or net.load_model(bin_path(path)) != 0:
        raise UserError(f'{path}: ncnn cannot read this model')
    inputs, outputs = list(net.input_names()), list(net.output_names())
    if len(inputs) != 1:
        raise UserError(f'{path}: expected one input, the model has {len(inputs)}')
    with open(path) as f:
        fixed = input_shape(f.read())

    def run(x: np.ndarray) -> list[np.ndarray]:
        if fixed is not None and tuple(x.shape[1:]) != fixed:
            raise UserError(f'{path} takes images of {fixed[0]}x{fixed[1]}x{fixed[2]} (C x H x W):'
                            ' it was converted at that size and holds size-dependent layers; '
                            f'got {x.shape[1]}x{x.shape[2]}x{x.shape[3]}')
        per_image = []
        for image in x:
            image = np.ascontiguousarray(image)
            mat = ncnn.Mat(image)  # reads image's memory: both stay alive until extracted
            ex = net.create_extractor()
            ex.input(inputs[0], mat)
            got = []
            for name in outputs:
                ret, blob = ex.extract(name)
                if ret != 0:
                    raise RuntimeError(f'ncnn failed computing {name} (error {ret})')
                got.append(np.array(blob, dtype=np.float32))
            per_image.append(got)
        return [np.stack([p[i] for p in per_image]) for i in range(len(outputs))]

    return Runner(run, outputs)
