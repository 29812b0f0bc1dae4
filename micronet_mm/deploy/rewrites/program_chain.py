"""Chained ``micronet.Program`` nodes of an exported ONNX graph merged into one node.

The ``openvino`` deploy model of a classifier is three programs (:mod:`.native_block`: the
stem and stages; the head's pool + fc1, and fc2, kept apart so that ``pre_logits`` still
returns fc1's activations) with flattens and unsqueezes between them. In OpenVINO each custom
node costs a call of its own, so :func:`merge_program_nodes` rewrites the exported graph: a
``Program`` node whose input is the output of another ``Program`` node, and of nothing else,
becomes part of that node's program (:func:`concat_programs`). Between them there may be
shape-only nodes (``Flatten``, ``Unsqueeze``, ``Squeeze``, ``Reshape``) where the first
program ends in a ``(C, 1, 1)`` output (``POOL`` or ``LINEAR``) and everything the second
reads of it is a ``LINEAR`` layer of ``C`` inputs, which takes a ``(C, 1, 1)`` input only, so
the reshapes moved nothing. One node saves the per-node call overhead (a few percent of
M2's and M3's exports); the outputs are bit-for-bit those of the separate nodes (the same
kernels on the same data; tests).

Where a stage's output also feeds something else (a detector's neck, a pose head) its program
ends there, as before.
"""
from __future__ import annotations

import numpy as np

from micronet_mm.csrc.program_format import (BUFFERS, TABLE_OFFSETS, WEIGHT_OFFSETS,
                                             program_of, records)

DOMAIN = 'micronet'
#: nodes between two programs that only relabel the shape of a (N, C, 1, 1) tensor
RESHAPES = ('Flatten', 'Unsqueeze', 'Squeeze', 'Reshape')

Program = tuple[list[int], np.ndarray, np.ndarray]


def concat_programs(first: Program, second: Program) -> Program:
    """One program that runs ``second`` on the output of ``first``.

    Args:
        first, second: ``(program, weights, tables)``, as :func:`.native_block.compile_program`
            returns them (weights and tables as 1-D arrays).

    Returns:
        ``(program, weights, tables)``: ``second``'s buffers, weight and table offsets moved
        past ``first``'s, its input buffer ``first``'s output.
    """
    (pa, wa, ta), (pb, wb, tb) = first, second
    if pa[0] != pb[0] or wa.dtype != wb.dtype:
        raise ValueError(f'programs of versions {pa[0]} and {pb[0]}, weights {wa.dtype} and '
                         f'{wb.dtype}: only alike programs concatenate')
    layers, nw, nt = pa[1], len(wa), len(ta)
    moved = records(pb)
    for r in moved:  # (program_format.py defines the fields)
        r.src += layers
        for name in BUFFERS.get(r.kind, ()):
            setattr(r, name, getattr(r, name) + layers)
        for name in ('in_perm', 'out_perm') + TABLE_OFFSETS.get(r.kind, ()):
            if getattr(r, name) >= 0:  # (-1: none)
                setattr(r, name, getattr(r, name) + nt)
        for name in WEIGHT_OFFSETS.get(r.kind, ()):
            setattr(r, name, getattr(r, name) + nw)
    program = program_of(records(pa) + moved, version=pa[0])
    return program, np.concatenate([wa, wb]), np.concatenate([ta, tb])


def _reads_as_linear(program: list[int], channels: int) -> bool:
    """Whether every layer of ``program`` that reads its input is a ``LINEAR`` of ``channels``
    inputs (so its input can only be ``(channels, 1, 1)``)."""
    readers = [r for r in records(program)
               if r.src == 0 or any(getattr(r, b) == 0 for b in BUFFERS.get(r.kind, ()))]
    return bool(readers) and all(r.kind == 'linear' and r.src == 0 and r.c_in == channels
                                 for r in readers)


def merge_program_nodes(model) -> int:
    """Merge, in place, every chain of ``micronet.Program`` nodes of ``model`` (an
    ``onnx.ModelProto``) into one node (module doc).

    Returns:
        The number of ``Program`` nodes merged into the one before them.
    """
    from onnx import helper, numpy_helper
    graph = model.graph
    merged = 0
    while True:
        producer = {o: n for n in graph.node for o in n.output}
        readers: dict[str, int] = {}
        for n in graph.node:
            for i in n.input:
                readers[i] = readers.get(i, 0) + 1
        for o in graph.output:
            readers[o.name] = readers.get(o.name, 0) + 1
        # the tensors, converted to arrays only for the programs looked at
        constants = {i.name: i for i in graph.initializer}
        constants.update({n.output[0]: n.attribute[0].t for n in graph.node
                          if n.op_type == 'Constant' and n.attribute and
                          n.attribute[0].name == 'value'})

        def program_of(node):
            if node is None or node.op_type != 'Program' or node.domain != DOMAIN or any(
                    i not in constants for i in node.input[1:]):
                return None
            prog = list(next(a.ints for a in node.attribute if a.name == 'program'))
            weights, tables = (numpy_helper.to_array(constants[i]).reshape(-1)
                               for i in node.input[1:3])
            return prog, weights, tables

        pair = None
        for second in graph.node:
            b = program_of(second)
            if b is None:
                continue
            chain, name = [], second.input[0]
            while producer.get(name) is not None and producer[name].op_type in RESHAPES \
                    and readers.get(name) == 1:
                chain.append(producer[name])
                name = producer[name].input[0]
            first = producer.get(name)
            a = program_of(first)
            if a is None or readers.get(name) != 1 or a[1].dtype != b[1].dtype:
                continue
            if chain:
                last = records(a[0])[-1]
                if last.kind not in ('pool', 'linear'):
                    continue
                channels = last.channels if last.kind == 'pool' else last.c_out
                if not _reads_as_linear(b[0], channels):
                    continue
            pair = first, second, chain, concat_programs(a, b)
            break
        if pair is None:
            break
        first, second, chain, (prog, weights, tables) = pair
        w_name, t_name = (f'{second.output[0]}/{part}' for part in ('weights', 'tables'))
        graph.initializer.extend([numpy_helper.from_array(weights, w_name),
                                  numpy_helper.from_array(tables, t_name)])
        first.input[1], first.input[2] = w_name, t_name
        for a in first.attribute:
            if a.name == 'program':
                a.CopyFrom(helper.make_attribute('program', prog))
        first.output[0] = second.output[0]
        for n in [second] + chain:
            graph.node.remove(n)
        merged += 1
    _drop_unused(graph)
    return merged


def _drop_unused(graph) -> None:
    """Constants and initializers nothing reads, and the shapes (``value_info``) of tensors
    no node makes any longer."""
    read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for n in [n for n in graph.node if n.op_type == 'Constant' and n.output[0] not in read]:
        graph.node.remove(n)
    for i in [i for i in graph.initializer if i.name not in read]:
        graph.initializer.remove(i)
    made = {o for n in graph.node for o in n.output}
    for v in [v for v in graph.value_info if v.name not in made]:
        graph.value_info.remove(v)
