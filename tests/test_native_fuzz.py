"""A seeded fuzzer of the native engine's boundaries: random valid layer programs
(micronet_mm/csrc/program.h, fields from micronet_mm/csrc/program_format.py), the same programs
mutated (fields, table entries, array lengths, input shapes set to edge values), and random
arguments of the torch Shift-Max ops, each batch in a child process (conftest.run_child), so that
a crash fails the test instead of the run.

Every case must end in an output or a RuntimeError. A valid program must also run: its output
shape is the Python output_shape's (so the two shape inferences agree), and its values, in
float64 (64-byte kernels) and float32 (the CPU's vector width), equal :func:`reference`'s, the
program run layer by layer with torch ops, to 1e-9 and 1e-4 of the output's scale: the
engine's fast paths and fusions against the format's definition, on odd and tiny shapes.

BATCHES x CASES seeds run in CI (``SEEDS`` in the note of the test); a batch is reproduced with
``python tests/test_native_fuzz.py SEED COUNT``."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import run_child

from micronet_mm.csrc.program_format import (FIELDS, MATVEC_BLOCK, Record, output_shape,
                                             program_of, records)

BATCHES, CASES = 8, 400  # programs: valid and mutated; plus CASES Shift-Max calls a batch
SEEDS = BATCHES * CASES
#: what a mutation writes into a field, a table entry or a dimension
EDGES = (-2 ** 63, -2 ** 31, -2, -1, 0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1023, 1024,
         2 ** 16, 2 ** 28, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 62, 2 ** 63 - 1)


def _padded(n: int) -> int:
    return -(-n // MATVEC_BLOCK) * MATVEC_BLOCK


class Builder:
    """A random valid program, its weights length and tables."""

    def __init__(self, rng: np.random.Generator, chw: tuple[int, int, int]) -> None:
        self.rng, self.buffers = rng, [chw]
        self.records: list[Record] = []
        self.n_weights, self.tables = 0, []

    def table(self, entries) -> int:
        offset = len(self.tables)
        self.tables.extend(int(v) for v in entries)
        return offset

    def weights(self, n: int) -> int:
        offset, self.n_weights = self.n_weights, self.n_weights + n
        return offset

    def perm_or_none(self, c: int, p: float, permutation: bool) -> int:
        if self.rng.random() >= p:
            return -1
        return self.table(self.rng.permutation(c) if permutation
                          else self.rng.integers(0, c, c))

    def conv(self, src: int, depthwise_kernel: tuple[int, int] | None = None) -> Record | None:
        rng = self.rng
        c, h, w = self.buffers[src]
        if depthwise_kernel is not None or rng.random() < 0.5:  # depthwise, MicroNet's kx1 / 1xk
            groups = c
            c_out = c * int(rng.choice([1, 1, 2]))
            kh, kw = depthwise_kernel or [(3, 1), (1, 3), (5, 1), (1, 5), (7, 1), (1, 7),
                                          (3, 3), (2, 2)][rng.integers(8)]
        else:
            divisors = [g for g in range(1, c + 1) if c % g == 0]
            groups = int(rng.choice(divisors))
            c_out = groups * int(rng.integers(1, 5))
            kh, kw = (1, 1) if rng.random() < 0.5 else tuple(int(v) for v in
                                                            rng.integers(1, 5, 2))
        sh, sw = (int(v) for v in rng.choice([1, 1, 2, 3], 2))
        dh, dw = (int(v) for v in rng.choice([1, 1, 1, 2], 2))
        ph = int(rng.integers(0, (kh - 1) * dh + 2))
        pw = int(rng.integers(0, (kw - 1) * dw + 2))
        if rng.random() < 0.6:  # MicroNet's same padding
            ph, pw = (kh - 1) * dh // 2, (kw - 1) * dw // 2
        ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        if ho < 1 or wo < 1:
            return None
        offset = self.weights(c_out * (c // groups) * kh * kw + c_out)
        self.buffers.append((c_out, ho, wo))
        return Record.make('conv', src, c_in=c, c_out=c_out, groups=groups, kh=kh, kw=kw, sh=sh,
                           sw=sw, ph=ph, pw=pw, dh=dh, dw=dw, act=int(rng.integers(2)),
                           weights=offset)

    def shift_max(self, src: int) -> Record:
        rng = self.rng
        c = self.buffers[src][0]
        j, k = (int(v) for v in (rng.choice([1, 2, 2, 3, 8], 2)))
        squeeze = int(rng.choice([0, 0, 1, 3]))
        index = self.table(rng.integers(0, c, j * c))
        kjc = k * j * c
        n = kjc  # static: coef; dynamic: act_max, init, w1, b1, w2 and b2 blocked
        if squeeze:
            n = 1 + k * j + squeeze * c + squeeze + (squeeze + 1) * _padded(kjc)
        self.buffers.append(self.buffers[src])
        return Record.make('shift_max', src, channels=c, shifts=j, fusions=k, squeeze=squeeze,
                           index=index, params=self.weights(n))

    def build(self, layers: int) -> None:
        rng = self.rng
        while len(self.records) < layers:
            src = len(self.buffers) - 1 if rng.random() < 0.75 else int(
                rng.integers(len(self.buffers)))
            c, h, w = self.buffers[src]
            kind = rng.choice(['conv', 'conv', 'pair', 'shift_max', 'add', 'pool', 'linear'])
            in_perm = self.perm_or_none(c, 0.3, permutation=False)
            if kind == 'pair':  # a depthwise kx1 then 1xk, fused on small planes
                k = int(rng.choice([3, 5, 7]))
                first = self.conv(src, (k, 1))
                if first is None:
                    continue
                first.in_perm = in_perm
                self.records.append(first)
                r = self.conv(len(self.buffers) - 1, (1, k))
            elif kind == 'conv':
                r = self.conv(src)
            elif kind == 'shift_max':
                r = self.shift_max(src)
            elif kind == 'add':
                same = [b for b, d in enumerate(self.buffers) if d == (c, h, w)]
                second = int(rng.choice(same))
                r = Record.make('add', src, channels=c, second=second,
                                second_perm=self.perm_or_none(c, 0.5, permutation=False))
                self.buffers.append((c, h, w))
            elif kind == 'pool':
                r = Record.make('pool', src, channels=c, relu6=int(rng.integers(2)),
                                hswish=int(rng.integers(2)))
                self.buffers.append((c, 1, 1))
            else:
                if h * w != 1:
                    continue
                c_out = int(rng.integers(1, 80))
                r = Record.make('linear', src, c_in=c, c_out=c_out, act=int(rng.integers(3)),
                                params=self.weights((c + 1) * _padded(c_out)))
                self.buffers.append((c_out, 1, 1))
            if r is None:
                continue
            if kind != 'pair':
                r.in_perm = in_perm
            r.out_perm = self.perm_or_none(self.buffers[-1][0], 0.3, permutation=True)
            self.records.append(r)


def _unblocked(stored: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """A (rows, cols) matrix from program.h's blocked layout (R_pad / B, cols, B)."""
    r_pad = _padded(rows)
    w = stored[:r_pad * cols].view(r_pad // MATVEC_BLOCK, cols, MATVEC_BLOCK)
    return w.permute(0, 2, 1).reshape(r_pad, cols)[:rows]


def reference(prog: list[int], weights: torch.Tensor, tables: torch.Tensor,
              x: torch.Tensor) -> torch.Tensor:
    """The program run layer by layer with torch ops in float64, from the format's definition
    (program_format.py), independent of the engine's kernels and fusions."""
    w_all, t = weights.double(), tables
    buffers = [x.double()]

    def table(offset: int, n: int) -> torch.Tensor:
        return t[offset:offset + n]

    for r in records(prog):
        src = buffers[r.src]
        if r.in_perm >= 0:
            src = src[:, table(r.in_perm, src.shape[1])]  # logical channel c: plane in_perm[c]
        c = src.shape[1]
        if r.kind == 'conv':
            n = r.c_out * (r.c_in // r.groups) * r.kh * r.kw
            w = w_all[r.weights:r.weights + n].view(r.c_out, r.c_in // r.groups, r.kh, r.kw)
            b = w_all[r.weights + n:r.weights + n + r.c_out]
            y = F.conv2d(src, w, b, (r.sh, r.sw), (r.ph, r.pw), (r.dh, r.dw), r.groups)
            y = y.clamp(0, 6) if r.act else y
        elif r.kind == 'shift_max':
            j, k, s = r.shifts, r.fusions, r.squeeze
            kjc, p = k * j * c, r.params
            if s == 0:
                coef = w_all[p:p + kjc].view(1, k, j, c).expand(src.shape[0], -1, -1, -1)
            else:
                act_max, init = w_all[p], w_all[p + 1:p + 1 + k * j]
                w1 = w_all[p + 1 + k * j:p + 1 + k * j + s * c].view(s, c)
                b1_at = p + 1 + k * j + s * c
                b1, w2_at = w_all[b1_at:b1_at + s], b1_at + s
                w2 = _unblocked(w_all[w2_at:], kjc, s)
                b2 = w_all[w2_at + s * _padded(kjc):][:kjc]
                hidden = F.relu(F.linear(src.mean((2, 3)), w1, b1))
                h = F.hardsigmoid(F.linear(hidden, w2, b2))  # relu6(z + 3) / 6
                coef = ((h.view(-1, k * j, c) - 0.5) * 2 * act_max + init.view(1, -1, 1)).view(
                    -1, k, j, c)
            index = table(r.index, j * c).view(j, c)
            shifted = torch.stack([src[:, index[q]] for q in range(j)], 1)  # N, J, C, H, W
            y = (coef[..., None, None] * shifted[:, None]).sum(2).amax(1)
        elif r.kind == 'add':
            second = buffers[r.second]
            if r.second_perm >= 0:
                second = second[:, table(r.second_perm, c)]
            y = src + second
        elif r.kind == 'pool':
            y = (src.clamp(0, 6) if r.relu6 else src).mean((2, 3), keepdim=True)
            y = F.hardswish(y) if r.hswish else y
        else:
            w = _unblocked(w_all[r.params:], r.c_out, r.c_in)
            b = w_all[r.params + r.c_in * _padded(r.c_out):][:r.c_out]
            y = F.linear(src.flatten(1), w, b)
            y = (y, y.clamp(0, 6), F.hardswish(y))[r.act][:, :, None, None]
        if r.out_perm >= 0:  # logical channel o is written to plane out_perm[o]
            planar = torch.empty_like(y)
            planar[:, table(r.out_perm, y.shape[1])] = y
            y = planar
        buffers.append(y)
    return buffers[-1]


def valid_case(rng: np.random.Generator):
    """(program, x (float32), weights, tables) of a random valid program."""
    c = int(rng.choice([1, 2, 3, 4, 6, 8, 16, 32]))
    h, w = (int(v) for v in rng.choice([1, 2, 3, 5, 7, 8, 12, 14, 17, 28], 2))
    b = Builder(rng, (c, h, w))
    b.build(int(rng.integers(1, 7)))
    x = torch.from_numpy(rng.standard_normal((int(rng.integers(1, 3)), c, h, w))).float()
    weights = torch.from_numpy(rng.standard_normal(b.n_weights) * 0.3).float()
    return program_of(b.records), x, weights, torch.tensor(b.tables, dtype=torch.int64)


def mutate(rng: np.random.Generator, case):
    """The case with 1 to 3 of its parts set to edge or random values."""
    prog, x, weights, tables = case
    prog, tables = list(prog), tables.clone()
    for _ in range(int(rng.integers(1, 4))):
        what = rng.integers(6)
        value = int(rng.choice(EDGES)) if rng.random() < 0.7 else int(rng.integers(-3, 40))
        if what <= 1 and prog:  # a record field (the header included)
            prog[int(rng.integers(len(prog)))] = value
        elif what == 2 and len(tables):
            tables[int(rng.integers(len(tables)))] = value
        elif what == 3:
            weights = weights[:int(rng.integers(weights.numel() + 1))]
        elif what == 4:  # the input's C, H or W
            shape = list(x.shape)
            shape[int(rng.integers(1, 4))] = int(rng.integers(0, 40))
            x = torch.randn(shape)
        else:  # records dropped or repeated
            prog = prog[:int(rng.integers(len(prog) + 1))] if rng.random() < 0.5 else (
                prog + prog[2:2 + FIELDS * int(rng.integers(1, 3))])
    return prog, x, weights, tables


def shift_max_case(rng: np.random.Generator):
    """Arguments of torch.ops.micronet.shift_max (and _backward): mostly valid, some entries
    or dimensions set to edge values."""
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 9))
    j, k = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    hw = [int(v) for v in rng.integers(1, 9, 2)]
    dims = {'j': j, 'k': k, 'c_coef': c, 'c_index': c, 'n_coef': n}
    if rng.random() < 0.3:
        dims[str(rng.choice(list(dims)))] = int(rng.choice([0, 9, 100]))
    x = torch.randn(n, c, *hw)
    coef = torch.randn(dims['n_coef'], dims['k'], dims['j'], dims['c_coef'])
    index = torch.from_numpy(rng.integers(0, c, (dims['j'], dims['c_index'])))
    if rng.random() < 0.3 and index.numel():
        index.view(-1)[int(rng.integers(index.numel()))] = int(rng.choice(EDGES))
    return x, coef, index


def batch(seed: int, count: int) -> dict[str, int]:
    """In the child: ``count`` programs (a third valid, the rest mutated) and ``count``
    Shift-Max calls from seed ``seed``; raises AssertionError on a wrong valid result."""
    from micronet_mm.csrc.build import library_path
    torch.ops.load_library(str(library_path()))
    rng = np.random.default_rng(seed)
    reasons = set()  # the checks that refused a mutated program
    counts = {'valid': 0, 'ran': 0, 'refused': 0, 'shift_max_ran': 0, 'shift_max_refused': 0}
    for i in range(count):
        case = valid_case(rng)
        if i % 3:
            case = mutate(rng, case)
        prog, x, weights, tables = case
        try:
            y = torch.ops.micronet.program(x, weights, tables, prog)
        except RuntimeError as e:
            assert i % 3, f'seed {seed} case {i}: a valid program refused: {e}'
            counts['refused'] += 1
            reasons.add(str(e).split('(layer')[0].split('[')[0].split(' of ')[0][:40])
            continue
        counts['ran'] += 1
        if i % 3 == 0:
            counts['valid'] += 1
            expected = output_shape(prog, tuple(x.shape))
            assert tuple(y.shape) == expected, (seed, i, tuple(y.shape), expected, records(prog))
            y64 = torch.ops.micronet.program(x.double(), weights.double(), tables, prog)
            ref = reference(prog, weights, tables, x)
            assert torch.isfinite(y64).all(), (seed, i)
            scale = float(ref.abs().max()) + 1e-3
            for got, tol in ((y64, 1e-9), (y.double(), 1e-4)):
                err = float((got - ref).abs().max())
                assert err <= tol * scale, (seed, i, got.dtype, err, scale, records(prog))
    for i in range(count):
        x, coef, index = shift_max_case(rng)
        try:
            y = torch.ops.micronet.shift_max(x, coef, index)
            torch.ops.micronet.shift_max_backward(torch.ones_like(y), x, coef, index)
            counts['shift_max_ran'] += 1
        except RuntimeError:
            counts['shift_max_refused'] += 1
    counts['reasons'] = len(reasons)
    print('COUNTS', counts)
    return counts


@pytest.mark.parametrize('seed', range(BATCHES))
def test_fuzz_batch(seed):
    """One batch of CASES programs and CASES Shift-Max calls in a child process: no crash, valid
    programs right (module doc), and the batch exercises both outcomes."""
    proc = run_child(f'import test_native_fuzz as t; t.batch({seed * 7919}, {CASES})')
    line = next(line for line in proc.stdout.splitlines() if line.startswith('COUNTS'))
    counts = eval(line[len('COUNTS '):], {})  # noqa: S307 (the child's own dict literal)
    assert counts['valid'] == -(-CASES // 3), counts
    assert counts['refused'] > CASES // 10 and counts['ran'] > counts['valid'], counts
    assert counts['reasons'] >= 10, counts  # mutations reach many different checks
    assert counts['shift_max_ran'] > CASES // 10 and counts['shift_max_refused'] > CASES // 10, \
        counts


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('channels, multiplier', [(6, 1), (6, 3), (16, 1)])
def test_depthwise_1x1_stride_across(channels, multiplier, dtype):
    """A depthwise 1x1 convolution of stride (1, 2) on a small plane, which the fuzzer found
    computed as one of stride 1 (conv_spatial's small-plane path took it for a kx1 kernel),
    against F.conv2d."""
    from micronet_mm.csrc.build import library_path
    torch.ops.load_library(str(library_path()))
    c_out = channels * multiplier
    r = Record.make('conv', 0, c_in=channels, c_out=c_out, groups=channels, kh=1, kw=1, sh=1,
                    sw=2, ph=0, pw=0, dh=1, dw=1, act=0, weights=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, channels, 8, 8, generator=g, dtype=torch.float64)
    w = torch.randn(c_out, 1, 1, 1, generator=g, dtype=torch.float64)
    b = torch.randn(c_out, generator=g, dtype=torch.float64)
    y = torch.ops.micronet.program(x.to(dtype), torch.cat([w.view(-1), b]).to(dtype),
                                   torch.zeros(0, dtype=torch.int64), program_of([r]))
    torch.testing.assert_close(y, F.conv2d(x, w, b, stride=(1, 2), groups=channels).to(dtype))


if __name__ == '__main__':
    batch(int(sys.argv[1]), int(sys.argv[2]))
