"""Whole Micro-Blocks as ONE native operation: the layer program of ``micronet_mm/csrc/program.h``.

:func:`compile_program` turns trained MicroNet modules (the stem, Micro-Blocks A/B/C, the
expansion block, or an ``nn.Sequential`` of them: a stage) into one program: every convolution
with its BN folded (ReLU6 in its epilogue), every Dynamic Shift-Max with its hyper-function, the
residual adds, and every channel shuffle as a table of plane indices (no shuffle moves data; a
shuffle at the very end is folded into the last layer's output planes). :class:`NativeProgram`
runs it in PyTorch through ``torch.ops.micronet.program`` and exports as ONE ONNX node
``micronet.Program`` (custom domain ``micronet``), which the OpenVINO extension runs natively
(``micronet::Program``): one node, one layout and cache-resident intermediates per block, where
the per-layer graph paid layout reorders around every shuffle and Shift-Max.

A module with parts the program has no layer for (the pose head's spatial attention, for
example) raises :class:`Unsupported`; callers keep such modules as they are.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from micronet_mm.csrc.program_format import MATVEC_BLOCK, Record, output_shape, program_of
from micronet_mm.ops import DynamicShiftMax
from micronet_mm.ops.blocks import ExpansionBlock, MicroBlockA, MicroBlockC
from micronet_mm.ops.depthwise import MicroFactorizedDepthwise
from micronet_mm.ops.lite import LiteCombination
from micronet_mm.ops.pointwise import ChannelShuffle
from micronet_mm.ops.shift_max import HSwish, rescale
from micronet_mm.ops.stem import MicroStem

from ..common import fold_bn


class Unsupported(TypeError):
    """A module that :func:`compile_program` has no layer for."""


@dataclass
class Value:
    """A tensor inside the program: buffer ``buffer`` read through the channel table ``perm``
    (logical channel c is plane ``perm[c]``; ``None``: identity)."""
    buffer: int
    channels: int
    perm: torch.Tensor | None = None


class ProgramBuilder:
    """Collects records, parameters (float64, cast at the end) and tables of one program."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.weights: list[torch.Tensor] = []
        self.tables: list[torch.Tensor] = []
        self._nw = self._nt = 0

    def weight(self, *tensors: torch.Tensor) -> int:
        offset = self._nw
        for t in tensors:
            t = t.detach().to(torch.float64).reshape(-1)
            self.weights.append(t)
            self._nw += t.numel()
        return offset

    def table(self, ints: torch.Tensor | None) -> int:
        if ints is None:
            return -1
        offset = self._nt
        self.tables.append(ints.detach().to(torch.int64).reshape(-1))
        self._nt += ints.numel()
        return offset

    def emit(self, op: str, src: Value, out_channels: int, **fields: int) -> Value:
        """Append a record of operation ``op`` (program_format.OPS) reading ``src``, its
        fields by name; the Value of its output (``out_channels`` channels)."""
        self.records.append(Record.make(op, src.buffer, self.table(src.perm), -1, **fields))
        return Value(len(self.records), out_channels)

    def finish(self, out: Value, dtype: torch.dtype) -> tuple[list[int], torch.Tensor,
                                                              torch.Tensor]:
        if out.perm is not None:  # write the last layer's planes in the final channel order
            if out.buffer != len(self.records):
                raise Unsupported('a program must end with its last layer')
            self.records[-1].out_perm = self.table(torch.argsort(out.perm))
        program = program_of(self.records)
        weights = torch.cat(self.weights) if self.weights else torch.zeros(0, dtype=torch.float64)
        tables = torch.cat(self.tables) if self.tables else torch.zeros(0, dtype=torch.int64)
        return program, weights.to(dtype), tables


def blocked_outputs(w: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
    """A fully connected layer's weight ``w`` (R, S) and bias ``b`` in program.h's blocked layout
    (``matvec_blocked``): the R outputs padded with zeros to whole blocks of B = 64 outputs
    (``kMatvecBlock``, the same in every dtype, so a program compiled for float32 also runs in
    float64), the weight stored block by block (``(R_pad / B, S, B)``), so that the kernel
    streams it contiguously with a block of outputs in registers."""
    block = MATVEC_BLOCK
    r, s = w.shape
    r_pad = -(-r // block) * block
    wp = torch.zeros(r_pad, s, dtype=torch.float64)
    wp[:r] = w.detach().double()
    bp = torch.zeros(r_pad, dtype=torch.float64)
    bp[:r] = b.detach().double()
    return [wp.view(r_pad // block, block, s).transpose(1, 2), bp]  # (blocks, S, B), (R_pad,)


def shift_max_params(act_max: float, init: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor,
                     w2: torch.Tensor, b2: torch.Tensor) -> list[torch.Tensor]:
    """The parameters of a dynamic Shift-Max layer in program.h's layout: ``act_max``,
    ``init`` (K, J), fc1 ``w1`` (S, C) and ``b1``, then fc2 (K·J·C outputs) blocked
    (:func:`blocked_outputs`)."""
    return [torch.tensor([float(act_max)]), init, w1, b1, *blocked_outputs(w2, b2)]


class HeadPart(nn.Module):
    """Part of a classifier head as a module of 4-D tensors, what :func:`compile_program` makes
    a program of: ``(N, C, H, W)`` -> optional global pool -> flatten -> each ``(Linear,
    activation)`` in turn -> ``(N, C', 1, 1)``.

    Args:
        pool: ``nn.AdaptiveAvgPool2d(1)``, optionally between an ``nn.ReLU6`` and an h-swish in
            an ``nn.Sequential`` (:class:`MicroNetClsHead`'s), or ``None`` (input ``(N, C, 1,
            1)``).
        layers: ``(nn.Linear, activation)`` pairs; activation ``nn.Identity``, ``nn.ReLU6`` or
            ``HSwish``.
    """

    def __init__(self, pool: nn.Module | None,
                 layers: list[tuple[nn.Linear, nn.Module]]) -> None:
        super().__init__()
        self.pool = pool if pool is not None else nn.Identity()
        self.fcs = nn.ModuleList(fc for fc, _ in layers)
        self.acts = nn.ModuleList(act for _, act in layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x).flatten(1)  # (N, C)
        for fc, act in zip(self.fcs, self.acts):
            x = act(fc(x))  # (N, C')
        return x[:, :, None, None]  # (N, C', 1, 1)


def _act_code(m: nn.Module) -> int:
    """program.h's activation code of a head activation (0 none, 1 ReLU6, 2 h-swish)."""
    for code, kinds in ((0, (nn.Identity,)), (1, (nn.ReLU6,)), (2, (HSwish,))):
        if isinstance(m, kinds):
            return code
    raise Unsupported(type(m).__name__)


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The convolution's weight and bias in float64 with ``bn`` folded (:func:`fold_bn`)."""
    w = conv.weight.detach().to(torch.float64)
    b = (conv.bias.detach().to(torch.float64) if conv.bias is not None
         else torch.zeros(w.shape[0], dtype=torch.float64))
    if bn is None:
        return w, b
    with torch.no_grad():
        return fold_bn(w, b, bn)


class _Compiler:
    def __init__(self) -> None:
        self.b = ProgramBuilder()

    def conv(self, x: Value, conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> Value:
        if conv.padding_mode != 'zeros' or isinstance(conv.padding, str):
            raise Unsupported('only explicit zero padding')
        w, bias = _fold(conv, bn)
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (conv.kernel_size, conv.stride, conv.padding,
                                                  conv.dilation)
        return self.b.emit('conv', x, conv.out_channels, c_in=conv.in_channels,
                           c_out=conv.out_channels, groups=conv.groups, kh=kh, kw=kw, sh=sh, sw=sw,
                           ph=ph, pw=pw, dh=dh, dw=dw, act=0, weights=self.b.weight(w, bias))

    def relu6(self, x: Value) -> Value:
        last = self.b.records[-1] if self.b.records else None
        if last is None or last.kind != 'conv' or x.buffer != len(self.b.records) or last.act:
            raise Unsupported('ReLU6 only after a convolution')
        last.act = 1  # ReLU6 commutes with the channel table
        return x

    def shuffle(self, x: Value, groups: int) -> Value:
        c = torch.arange(x.channels)
        src = (c % groups) * (x.channels // groups) + c // groups  # new channel c <- src[c]
        return Value(x.buffer, x.channels, src if x.perm is None else x.perm[src])

    def shift_max(self, x: Value, m: DynamicShiftMax) -> Value:
        k, j, c = m.num_fusions, m.num_shifts, m.channels
        init = m.init.detach().reshape(k, j)
        if m.fc is None:
            params = [rescale(m.static_coef.detach().double(), m.act_max, init)]  # (K, J, C)
            squeeze = 0
        else:
            fc1, fc2 = m.fc[0], m.fc[2]
            squeeze = fc1.out_features
            params = shift_max_params(m.act_max, init, fc1.weight, fc1.bias, fc2.weight,
                                      fc2.bias)
        return self.b.emit('shift_max', x, c, channels=c, shifts=j, fusions=k, squeeze=squeeze,
                           index=self.b.table(m.index), params=self.b.weight(*params))

    def head(self, x: Value, m: HeadPart) -> Value:
        pool = m.pool
        if not isinstance(pool, nn.Identity):
            parts = list(pool) if isinstance(pool, nn.Sequential) else [pool]
            pre = bool(parts) and isinstance(parts[0], nn.ReLU6)
            parts = parts[1:] if pre else parts
            post = len(parts) == 2 and _act_code(parts[1]) == 2
            if (not parts or len(parts) != 1 + post
                    or not isinstance(parts[0], nn.AdaptiveAvgPool2d)
                    or parts[0].output_size not in (1, (1, 1))):
                raise Unsupported('pool: [ReLU6,] AdaptiveAvgPool2d(1)[, h-swish]')
            x = self.b.emit('pool', x, x.channels, channels=x.channels, relu6=int(pre),
                            hswish=int(post))
        for fc, act in zip(m.fcs, m.acts):
            bias = fc.bias if fc.bias is not None else torch.zeros(fc.out_features)
            x = self.b.emit('linear', x, fc.out_features, c_in=fc.in_features,
                            c_out=fc.out_features, act=_act_code(act),
                            params=self.b.weight(*blocked_outputs(fc.weight, bias)))
        return x

    def add(self, x: Value, y: Value) -> Value:
        return self.b.emit('add', x, x.channels, channels=x.channels, second=y.buffer,
                           second_perm=self.b.table(y.perm))

    def activation(self, x: Value, m: nn.Module) -> Value:
        if isinstance(m, nn.Identity):
            return x
        if isinstance(m, nn.ReLU6):
            return self.relu6(x)
        if isinstance(m, DynamicShiftMax):
            return self.shift_max(x, m)
        raise Unsupported(type(m).__name__)

    def permutation(self, x: Value, m: nn.Module) -> Value:
        if isinstance(m, nn.Identity):
            return x
        if isinstance(m, ChannelShuffle):
            return self.shuffle(x, m.groups)
        raise Unsupported(type(m).__name__)

    def conv_bn(self, x: Value, m: nn.Module) -> Value:
        """``GroupPointwise`` / ``Sequential(Conv2d, BatchNorm2d)``."""
        parts = list(m.children())
        if (len(parts) != 2 or not isinstance(parts[0], nn.Conv2d)
                or not isinstance(parts[1], nn.modules.batchnorm._BatchNorm)):
            raise Unsupported(type(m).__name__)
        return self.conv(x, *parts)

    def depthwise(self, x: Value, m: nn.Module) -> Value:
        if isinstance(m, MicroFactorizedDepthwise):
            return self.conv(self.conv(x, m.conv_k1, m.bn1), m.conv_1k, m.bn2)
        return self.conv_bn(x, m)

    def module(self, x: Value, m: nn.Module) -> Value:  # noqa: C901 (one case per block type)
        if isinstance(m, nn.Sequential) and all(
                isinstance(c, (MicroStem, MicroBlockA, MicroBlockC, ExpansionBlock))
                for c in m):
            for child in m:
                x = self.module(x, child)
            return x
        if isinstance(m, MicroStem):
            x = self.conv(self.conv(x, m.conv_k1, m.bn1), m.conv_1k, m.bn2)
            return self.permutation(self.relu6(x), m.shuffle)
        if isinstance(m, LiteCombination):
            x = self.activation(self.depthwise(x, m.depthwise), m.act)
            x = self.permutation(self.permutation(x, m.shuffle), m.shuffle2)
            return self.conv_bn(x, m.compress)
        if isinstance(m, MicroBlockA):
            identity = x
            x = self.activation(self.module(x, m.lite), m.act2)
            x = self.permutation(self.permutation(x, m.shuffle2), m.shuffle2b)
            return self.add(x, identity) if m.use_residual else x
        if isinstance(m, MicroBlockC):
            identity = x
            x = self.permutation(self.activation(self.conv_bn(x, m.expand), m.act1), m.shuffle1)
            x = self.activation(self.depthwise(x, m.depthwise), m.act2)
            x = self.permutation(x, m.shuffle2)
            x = self.activation(self.conv_bn(x, m.compress), m.act3)
            x = self.permutation(self.permutation(x, m.shuffle3), m.shuffle3b)
            return self.add(x, identity) if m.use_residual else x
        if isinstance(m, ExpansionBlock):
            y = self.activation(self.conv_bn(x, m.expand), m.act)
            return self.add(y, x) if m.use_residual else y
        if isinstance(m, HeadPart):
            return self.head(x, m)
        raise Unsupported(type(m).__name__)


def compile_program(module: nn.Module, in_channels: int, dtype: torch.dtype = torch.float32
                    ) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """The program of a trained (eval-mode) MicroNet module.

    Args:
        module: ``MicroStem``, ``MicroBlockA``/``B``/``C``, ``ExpansionBlock``, an
            ``nn.Sequential`` of them, or a :class:`HeadPart`.
        in_channels: channels of the module's input.
        dtype: dtype of the parameter array.

    Returns:
        ``(program, weights, tables)`` for ``micronet::program``.

    Raises:
        Unsupported: ``module`` has a part the program has no layer for.
    """
    compiler = _Compiler()
    out = compiler.module(Value(0, in_channels), module)
    if not compiler.b.records:
        raise Unsupported('empty program')
    return compiler.b.finish(out, dtype)


class _ProgramNode(torch.autograd.Function):
    """The ``micronet.Program`` ONNX node, for the exporter only: ``forward`` gives a placeholder
    of the output's (static) shape; the tracer records the node, not the values."""

    @staticmethod
    def forward(ctx, x, weights, tables, program, shape):  # noqa: D102
        return x.new_zeros(shape)

    @staticmethod
    def symbolic(g, x, weights, tables, program, shape):  # noqa: D102
        out = g.op('micronet::Program', x, weights, tables, program_i=list(program))
        # the batch stays unknown: a static one would let the exporter fold the Shape of
        # what follows (the pose head's reshapes) into constants of the traced batch
        out.setType(x.type().with_sizes([None, *shape[1:]]))
        return out


class NativeProgram(nn.Module):
    """A trained MicroNet module run as one ``micronet::program`` call (see the module doc);
    exports to ONNX as one ``micronet.Program`` node (``custom_opsets={'micronet': 1}``).

    Args:
        module: what :func:`compile_program` accepts (trained, eval mode).
        in_channels: channels of its input.
        dtype: dtype of the parameters (default: the module's; the op runs in the input's
            dtype and casts them).
    """

    def __init__(self, module: nn.Module, in_channels: int,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if dtype is None:
            dtype = next(module.parameters()).dtype
        program, weights, tables = compile_program(module, in_channels, dtype)
        self.program = program
        self.register_buffer('weights', weights, persistent=False)
        self.register_buffer('tables', tables, persistent=False)
        # the trained module, for PyTorch without the built op; kept out of the module tree so
        # that other rewrites and module walks never see (or rewrite) its parts
        self._reference = [module]

    @property
    def reference(self) -> nn.Module:
        return self._reference[0]

    def _apply(self, fn, recurse: bool = True):  # .to() / .double(): the reference follows
        super()._apply(fn, recurse)
        self.reference._apply(fn, recurse)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            with warnings.catch_warnings():  # static sizes: the node's type keeps N unknown
                warnings.simplefilter('ignore', torch.jit.TracerWarning)
                shape = output_shape(self.program, tuple(int(s) for s in x.shape))
            return _ProgramNode.apply(x, self.weights.to(x.dtype), self.tables, self.program,
                                      shape)
        from micronet_mm.ops import fused_shift_max
        if fused_shift_max.available() and x.device.type == 'cpu' and x.dtype in (
                torch.float32, torch.float64):
            return torch.ops.micronet.program(x, self.weights.to(x.dtype), self.tables,
                                              self.program)
        return self.reference(x)

    def extra_repr(self) -> str:
        return f'layers={self.program[1]}, weights={self.weights.numel()}'


BLOCKS = (MicroStem, MicroBlockA, MicroBlockC, ExpansionBlock)


def _in_channels(module: nn.Module) -> int:
    """Input channels of a block or stage: those of its first convolution."""
    return next(m for m in module.modules() if isinstance(m, nn.Conv2d)).in_channels


def _whole_backbone(backbone: nn.Module) -> bool:
    """A MicroNet backbone that returns its last stage only (a classifier's) becomes ONE
    program, stem and stages: ``stem`` runs it and every stage is ``nn.Identity``. One
    OpenVINO node instead of five saves the per-node call overhead (about 5% of M2).
    Backbones with other ``out_indices`` keep one program per stage (every stage output)."""
    from micronet_mm.models.backbones.micronet import MicroNet
    if (not isinstance(backbone, MicroNet) or backbone.out_indices != (len(backbone.stages) - 1,)
            or not isinstance(backbone.stem, MicroStem)):  # (converted before)
        return False
    blocks = nn.Sequential(backbone.stem, *[b for stage in backbone.stages for b in stage])
    try:
        program = NativeProgram(blocks, _in_channels(backbone.stem))
    except Unsupported:
        return False
    backbone.stem = program
    for i in range(len(backbone.stages)):
        backbone.stages[i] = nn.Identity()
    return True


def convert_programs(module: nn.Module) -> int:
    """Replace, recursively and in place, every stem, block and stage of blocks that
    :func:`compile_program` accepts by a :class:`NativeProgram` (a whole stage where it can,
    else its blocks one by one; a whole backbone that returns its last stage only, see
    :func:`_whole_backbone`); parts it does not accept stay as they are.

    Returns:
        The number of programs made.
    """
    if _whole_backbone(module):
        return 1
    made = 0
    for name, child in list(module.named_children()):
        if isinstance(child, BLOCKS) or (isinstance(child, nn.Sequential) and len(child) and
                                         all(isinstance(c, BLOCKS) for c in child)):
            try:
                setattr(module, name, NativeProgram(child, _in_channels(child)))
                made += 1
                continue
            except Unsupported:
                pass
        made += convert_programs(child)
    return made
