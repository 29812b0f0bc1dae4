"""The layer program format of ``micronet_mm/csrc/program.h``, defined once.

A program is one int64 list ``[VERSION, L, record_0, ..., record_{L-1}]``; every record has
``FIELDS`` entries: the four of :data:`HEAD`, then those of its operation (:data:`OPS`), then
zeros. This module is the one definition of the fields: the Python emitter
(:mod:`micronet_mm.deploy.rewrites.native_block`), the graph rewrite that concatenates programs
(:mod:`micronet_mm.deploy.rewrites.program_chain`) and the tests use :class:`Record`'s names,
and the C++ engine uses the named constants of ``program_format.h``, which
``python -m micronet_mm.csrc.program_format`` generates from this module (a test checks that the
header in the tree is the generated one).

Fields (``-1`` in an offset field: none / identity):

- head: ``op`` (a code of :data:`OPS`), ``src`` (buffer read: 0 the program's input, l + 1 the
  output of layer l), ``in_perm`` (offset in ``tables`` of C_in entries: logical input channel
  c is plane in_perm[c] of src), ``out_perm`` (offset in ``tables`` of C_out entries, a
  permutation: logical output channel o is written to plane out_perm[o]).
- ``conv``: weights (C_out, C_in / groups, kh, kw) at offset ``weights`` of the weights array,
  followed by the bias (C_out); ``act`` 0 none, 1 ReLU6.
- ``shift_max``: Eq. 4 with its hyper-function; ``index`` the offset in ``tables`` of the
  shift index (J, C); ``params`` the offset in ``weights`` of the coefficients (K, J, C)
  (``squeeze`` 0: static) or of act_max (1), init (K*J), w1 (S, C), b1 (S), w2 blocked
  ``(R_pad / B, S, B)`` and b2 (R_pad), R_pad = K*J*C rounded up to ``MATVEC_BLOCK``.
- ``add``: out = src + buffer ``second`` read through ``second_perm``.
- ``pool``: the mean over the plane, ``relu6`` before and ``hswish`` after it (0 or 1).
- ``linear``: of a (C_in, 1, 1) input; ``act`` 0 none, 1 ReLU6, 2 h-swish; W blocked as
  w2 of ``shift_max`` with C_out outputs, then the bias (R_pad).
"""
from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from pathlib import Path

from micronet_mm.errors import UserError

VERSION = 1
#: outputs of one block of the blocked matrix-vector layout, in every dtype
MATVEC_BLOCK = 64
HEAD = ('op', 'src', 'in_perm', 'out_perm')
#: operation name: (code, its fields after the head)
OPS: dict[str, tuple[int, tuple[str, ...]]] = {
    'conv': (1, ('c_in', 'c_out', 'groups', 'kh', 'kw', 'sh', 'sw', 'ph', 'pw', 'dh', 'dw',
                 'act', 'weights')),
    'shift_max': (2, ('channels', 'shifts', 'fusions', 'squeeze', 'index', 'params')),
    'add': (3, ('channels', 'second', 'second_perm')),
    'pool': (4, ('channels', 'relu6', 'hswish')),
    'linear': (5, ('c_in', 'c_out', 'act', 'params')),
}
FIELDS = len(HEAD) + max(len(f) for _, f in OPS.values())
CONV, SHIFT_MAX, ADD, POOL, LINEAR = (OPS[n][0] for n in ('conv', 'shift_max', 'add', 'pool',
                                                          'linear'))
NAME_OF = {code: name for name, (code, _) in OPS.items()}
#: per operation, the fields that are offsets into ``weights`` and into ``tables``
WEIGHT_OFFSETS = {'conv': ('weights',), 'shift_max': ('params',), 'linear': ('params',)}
TABLE_OFFSETS = {'shift_max': ('index',), 'add': ('second_perm',)}
#: per operation, the fields that are buffer numbers besides ``src``
BUFFERS = {'add': ('second',)}


def index_of(op: str | int, name: str) -> int:
    """Position of field ``name`` in a record of operation ``op`` (a name or a code)."""
    if name in HEAD:
        return HEAD.index(name)
    fields = OPS[NAME_OF[op] if isinstance(op, int) else op][1]
    if name not in fields:
        raise KeyError(f'{name!r} is no field of {op!r} (fields: {", ".join(fields)})')
    return len(HEAD) + fields.index(name)


class Record:
    """One layer record with its fields by name: ``r.c_in``, ``r.weights += n``.

    Args:
        values: the record's ``FIELDS`` integers (kept, not copied).
    """

    __slots__ = ('values',)

    def __init__(self, values: list[int]) -> None:
        if len(values) != FIELDS:
            raise ValueError(f'a record has {FIELDS} fields, got {len(values)}')
        object.__setattr__(self, 'values', values)

    @classmethod
    def make(cls, op: str, src: int, in_perm: int = -1, out_perm: int = -1,
             **fields: int) -> Record:
        """A record of operation ``op`` with every one of its fields given by name."""
        code, names = OPS[op]
        missing = set(names) - set(fields)
        if missing:
            raise KeyError(f'{op} record without {", ".join(sorted(missing))}')
        r = cls([code, src, in_perm, out_perm] + [0] * (FIELDS - len(HEAD)))
        for name, value in fields.items():
            setattr(r, name, value)
        return r

    @property
    def kind(self) -> str:
        """The operation's name (``'conv'``, ...)."""
        return NAME_OF[self.values[0]]

    def __getattr__(self, name: str) -> int:
        if name.startswith('_') or name == 'values':  # (not a field: copy, pickle, repr)
            raise AttributeError(name)
        return self.values[index_of(self.values[0], name)]

    def __setattr__(self, name: str, value: int) -> None:
        self.values[index_of(self.values[0], name)] = int(value)

    def __repr__(self) -> str:
        names = HEAD + OPS[self.kind][1]
        return f'Record({", ".join(f"{n}={getattr(self, n)}" for n in names)})'


def records(program: Sequence[int]) -> list[Record]:
    """The records of ``program`` (copies: editing them leaves ``program`` as it is)."""
    return [Record(list(program[2 + i * FIELDS: 2 + (i + 1) * FIELDS]))
            for i in range(program[1])]


def program_of(rs: Iterable[Record], version: int = VERSION) -> list[int]:
    """The program list of records ``rs``."""
    rs = list(rs)
    return [version, len(rs)] + [v for r in rs for v in r.values]


def output_shape(program: Sequence[int], shape: Sequence[int]) -> tuple[int, int, int, int]:
    """(N, C, H, W) of a valid program's output for an input ``shape`` (as program.h's infer,
    which also validates; the fuzzer of tests/test_native_fuzz.py checks that the two agree)."""
    n, c, h, w = shape  # (ints, or a fake tensor's symbolic sizes)
    dims = [(c, h, w)]
    for r in records(program):
        c, h, w = dims[r.src]
        if r.kind == 'conv':
            h = (h + 2 * r.ph - r.dh * (r.kh - 1) - 1) // r.sh + 1
            w = (w + 2 * r.pw - r.dw * (r.kw - 1) - 1) // r.sw + 1
            c = r.c_out
        elif r.kind == 'pool':
            h = w = 1
        elif r.kind == 'linear':
            c, h, w = r.c_out, 1, 1
        dims.append((c, h, w))
    return (n,) + dims[-1]


def _camel(name: str) -> str:
    return ''.join(part.capitalize() for part in name.split('_'))


def header() -> str:
    """The C++ header ``program_format.h``: the format's constants and every field's index."""
    lines = [
        '// The layer program format of program.h: generated by',
        '//   python -m micronet_mm.csrc.program_format',
        '// from micronet_mm/csrc/program_format.py, the one definition of the fields (see its',
        '// docstring); do not edit. A record r of operation X has field f at r[kXF].',
        '#pragma once',
        '',
        '#include <cstdint>',
        '',
        'namespace micronet {',
        'namespace program {',
        '',
        f'constexpr int64_t kVersion = {VERSION}, kFields = {FIELDS};',
        f'constexpr int64_t kMatvecBlockOutputs = {MATVEC_BLOCK};',
        'enum Op : int64_t { ' + ', '.join(f'k{_camel(n)} = {c}' for n, (c, _) in OPS.items())
        + ' };',
        '',
        '// every record',
        'constexpr int ' + ', '.join(f'k{_camel(n)} = {i}' for i, n in enumerate(HEAD)) + ';',
    ]
    for name, (_, fields) in OPS.items():
        lines.append(f'// {name}')
        decl = [f'k{_camel(name)}{_camel(f)} = {index_of(name, f)}' for f in fields]
        lines.append('constexpr int ' + ', '.join(decl) + ';')
    lines += ['', '// "op.field" of field f of a record of operation op, for messages',
              'inline const char* field_name(int64_t op, int64_t f) {',
              '  static const char* const kHead[] = {'
              + ', '.join(f'"{n}"' for n in HEAD) + '};',
              f'  if (f >= 0 && f < {len(HEAD)}) return kHead[f];',
              '  switch (op) {']
    for name, (code, fields) in OPS.items():
        names = ', '.join(f'"{name}.{f}"' for f in fields)
        lines += [f'    case k{_camel(name)}: {{',
                  f'      static const char* const kNames[] = {{{names}}};',
                  f'      if (f >= {len(HEAD)} && f < {len(HEAD) + len(fields)}) '
                  f'return kNames[f - {len(HEAD)}];',
                  '      return "unused field";',
                  '    }']
    lines += ['    default:', '      return "field";', '  }', '}']
    wrapped = []
    for line in lines:  # wrap at 100 columns after a comma
        while len(line) > 100:
            cut = line.rindex(', ', 0, 100)
            wrapped.append(line[:cut + 1])
            line = '    ' + line[cut + 2:]
        wrapped.append(line)
    lines = wrapped + ['', '}  // namespace program', '}  // namespace micronet', '']
    return '\n'.join(lines)


HEADER = Path(__file__).resolve().parent / 'program_format.h'


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description='write program_format.h from this module')
    parser.add_argument('--check', action='store_true',
                        help='only check that the header in the tree is the generated one')
    args = parser.parse_args(argv)
    text = header()
    if args.check:
        if HEADER.read_text() != text:
            raise UserError(f'{HEADER} differs from program_format.py: run python -m '
                            'micronet_mm.csrc.program_format')
        return
    HEADER.write_text(text)
    print(f'wrote {HEADER}')


if __name__ == '__main__':
    from micronet_mm.errors import run_cli
    run_cli(main)
