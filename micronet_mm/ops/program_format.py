"""The record format of a ``micronet::program`` (``micronet_mm/csrc/program.h``).

A program is a flat list of integers: ``[VERSION, layers, record 0, record 1, ...]``, each
record ``FIELDS`` integers whose first is the layer type (``CONV``, ``SHIFT_MAX``, ``ADD``,
``POOL``, ``LINEAR``) and whose second is the buffer it reads. The operator's fake kernel
(:mod:`micronet_mm.ops.fused_shift_max`) needs the output shape of a program; the deploy
rewrites (:mod:`micronet_mm.deploy.rewrites.native_block`) write programs in this format.
"""
from __future__ import annotations

VERSION, FIELDS = 1, 17  # program.h: kVersion, kFields
CONV, SHIFT_MAX, ADD, POOL, LINEAR = 1, 2, 3, 4, 5
MATVEC_BLOCK = 64  # program.h: kMatvecBlock


def output_shape(program: list[int], shape: tuple[int, int, int, int]
                 ) -> tuple[int, int, int, int]:
    """(N, C, H, W) of the program's output for an input ``shape`` (as program.h's infer)."""
    n, c, h, w = shape
    dims = [(c, h, w)]
    for layer in range(program[1]):
        r = program[2 + layer * FIELDS: 2 + (layer + 1) * FIELDS]
        c, h, w = dims[r[1]]
        if r[0] == CONV:
            h = (h + 2 * r[11] - r[13] * (r[7] - 1) - 1) // r[9] + 1
            w = (w + 2 * r[12] - r[14] * (r[8] - 1) - 1) // r[10] + 1
            c = r[5]
        elif r[0] in (POOL, LINEAR):
            c, h, w = (c if r[0] == POOL else r[5]), 1, 1
        dims.append((c, h, w))
    return (n,) + dims[-1]
