// A fused MicroNet block (or a chain of blocks) as one call: a tiny layer program run on
// planar (N, C, H, W) tensors, header-only, framework-free C++17. The OpenVINO operation
// micronet::Program and the torch.library op micronet::program both run it.
//
// Why: in a runtime each MicroNet layer is a node, and the runtime's blocked layouts meet
// MicroNet's channel shuffles and Shift-Max in planar layout, so half of OpenVINO's time went
// to layout reorders and per-node overheads (README, Speed). Here a whole block runs in one
// call, in one layout, with its intermediate tensors in cache, and every channel shuffle is a
// table of plane pointers: no shuffle ever moves data.
//
// Program (int64 vector):
//   [kVersion, L, record_0, ..., record_{L-1}],  each record kFields int64:
//   0 op   1 src (buffer: 0 = the input, l + 1 = the output of layer l)
//   2 in_perm   offset in `tables` of C_in entries: logical input channel c is plane
//               in_perm[c] of src; -1: identity
//   3 out_perm  offset in `tables` of C_out entries: logical output channel o is written to
//               plane out_perm[o]; -1: identity
//   CONV (kConv): 4 C_in 5 C_out 6 groups 7 kh 8 kw 9 sh 10 sw 11 ph 12 pw 13 dh 14 dw
//       15 act (0 none, 1 ReLU6) 16 offset in `weights` of W (C_out, C_in/groups, kh, kw),
//       followed by the bias (C_out)
//   SHIFT_MAX (kShiftMax), Eq. 4 with its hyper-function, as micronet_mm/ops/shift_max.py:
//       4 C 5 J 6 K 7 S (squeeze width; 0: static Shift-Max) 8 offset in `tables` of the
//       shift index (J, C): the logical source channel of shift j for channel i
//       9 offset in `weights` of the parameters:
//         static:  coef (K, J, C), the final coefficients
//         dynamic: act_max (1), init (K*J), w1 (S, C), b1 (S), w2t (S, K*J*C) = fc2.weight
//                  transposed, b2 (K*J*C)
//   ADD (kAdd): 4 C 5 the second buffer 6 its in_perm (offset or -1); out = src + second
// The program's output is the last layer's buffer. Every buffer is planar and dense.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "shift_max.h"

namespace micronet {
namespace program {

constexpr int64_t kVersion = 1, kFields = 17;
enum Op : int64_t { kConv = 1, kShiftMax = 2, kAdd = 3 };

struct Dims {
  int64_t C, H, W;
  int64_t planes() const { return H * W; }
  int64_t size() const { return C * H * W; }
};

inline const int64_t* record(const int64_t* prog, int64_t l) { return prog + 2 + l * kFields; }

// Shapes of every buffer (0: the input), checking the program; throws std::invalid_argument.
inline std::vector<Dims> infer(const int64_t* prog, int64_t len, Dims in) {
  if (len < 2 || prog[0] != kVersion || len != 2 + prog[1] * kFields)
    throw std::invalid_argument("micronet program: bad header or length");
  std::vector<Dims> d{in};
  for (int64_t l = 0; l < prog[1]; ++l) {
    const int64_t* r = record(prog, l);
    if (r[1] < 0 || r[1] > l) throw std::invalid_argument("micronet program: bad source");
    const Dims s = d[r[1]];
    if (r[0] == kConv) {
      if (r[4] != s.C || r[6] < 1 || r[4] % r[6] || r[5] % r[6])
        throw std::invalid_argument("micronet program: conv channels " + std::to_string(l));
      const int64_t H = (s.H + 2 * r[11] - r[13] * (r[7] - 1) - 1) / r[9] + 1;
      const int64_t W = (s.W + 2 * r[12] - r[14] * (r[8] - 1) - 1) / r[10] + 1;
      if (H < 1 || W < 1) throw std::invalid_argument("micronet program: empty conv output");
      d.push_back({r[5], H, W});
    } else if (r[0] == kShiftMax) {
      if (r[4] != s.C || r[5] < 1 || r[5] > detail::kMaxJ || r[6] < 1 || r[6] > detail::kMaxK)
        throw std::invalid_argument("micronet program: shift-max " + std::to_string(l));
      d.push_back(s);
    } else if (r[0] == kAdd) {
      if (r[5] < 0 || r[5] > l || d[r[5]].size() != s.size() || r[4] != s.C)
        throw std::invalid_argument("micronet program: add " + std::to_string(l));
      d.push_back(s);
    } else {
      throw std::invalid_argument("micronet program: unknown op " + std::to_string(r[0]));
    }
  }
  return d;
}

namespace detail {

// Plane pointers of a buffer read through a channel table.
template <typename T>
void planes(std::vector<const T*>& out, const T* base, const int64_t* perm, int64_t C,
            int64_t P) {
  out.resize(C);
  for (int64_t c = 0; c < C; ++c) out[c] = base + (perm ? perm[c] : c) * P;
}

template <typename T>
inline T relu6(T v) { return v < T(0) ? T(0) : (v > T(6) ? T(6) : v); }

// 1x1 convolution, stride 1: y[o] = b[o] + sum_c w[o, c] x[g * Cg + c], four output planes at
// a time over chunks of kTile pixels, the partial rows kept in L1.
template <typename T>
MICRONET_SIMD_CLONES void pointwise(const T* const* x, T* const* y, const T* w, const T* b,
                                    int64_t Cin, int64_t Cout, int64_t groups, int64_t P,
                                    bool relu) {
  constexpr int64_t kTile = 128, kRows = 4;
  const int64_t Cg = Cin / groups, Og = Cout / groups;
  T acc[kRows][kTile];
  for (int64_t o0 = 0, rows = 0; o0 < Cout; o0 += rows) {
    const int64_t g = o0 / Og;
    rows = std::min(kRows, (g + 1) * Og - o0);  // never cross a group
    for (int64_t p0 = 0; p0 < P; p0 += kTile) {
      const int64_t L = std::min(kTile, P - p0);
      if (rows == kRows) {
        const T *w0 = w + o0 * Cg, *w1 = w0 + Cg, *w2 = w1 + Cg, *w3 = w2 + Cg;
        T *__restrict a0 = acc[0], *__restrict a1 = acc[1], *__restrict a2 = acc[2],
          *__restrict a3 = acc[3];
        const T b0 = b[o0], b1 = b[o0 + 1], b2 = b[o0 + 2], b3 = b[o0 + 3];
#pragma omp simd
        for (int64_t q = 0; q < L; ++q) {
          a0[q] = b0;
          a1[q] = b1;
          a2[q] = b2;
          a3[q] = b3;
        }
        for (int64_t c = 0; c < Cg; ++c) {
          const T* __restrict xr = x[g * Cg + c] + p0;
          const T v0 = w0[c], v1 = w1[c], v2 = w2[c], v3 = w3[c];
#pragma omp simd
          for (int64_t q = 0; q < L; ++q) {
            const T xv = xr[q];
            a0[q] += v0 * xv;
            a1[q] += v1 * xv;
            a2[q] += v2 * xv;
            a3[q] += v3 * xv;
          }
        }
        for (int64_t r = 0; r < kRows; ++r) {
          T* __restrict out = y[o0 + r] + p0;
          const T* __restrict a = acc[r];
          if (relu) {
#pragma omp simd
            for (int64_t q = 0; q < L; ++q) out[q] = relu6(a[q]);
          } else {
#pragma omp simd
            for (int64_t q = 0; q < L; ++q) out[q] = a[q];
          }
        }
      } else {
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t o = o0 + r, go = g;
          const T* wr = w + o * Cg;
          T* __restrict a = acc[0];
          for (int64_t q = 0; q < L; ++q) a[q] = b[o];
          for (int64_t c = 0; c < Cg; ++c) {
            const T* __restrict xr = x[go * Cg + c] + p0;
            const T v = wr[c];
#pragma omp simd
            for (int64_t q = 0; q < L; ++q) a[q] += v * xr[q];
          }
          T* __restrict out = y[o] + p0;
          for (int64_t q = 0; q < L; ++q) out[q] = relu ? relu6(a[q]) : a[q];
        }
      }
    }
  }
}

// Any grouped convolution (depthwise kx1 / 1xk / kxk with channel multipliers, the dense
// stem): each output plane accumulates rows, one (input channel, tap) at a time, over the
// range of output columns whose input column is inside the image (no padded copies).
template <typename T>
MICRONET_SIMD_CLONES void conv_rows(const T* const* x, T* const* y, const T* w, const T* b,
                                    const int64_t* r, Dims in, Dims out) {
  const int64_t Cin = r[4], Cout = r[5], groups = r[6], kh = r[7], kw = r[8], sh = r[9],
                sw = r[10], ph = r[11], pw = r[12], dh = r[13], dw = r[14];
  const bool relu = r[15] == 1;
  const int64_t Cg = Cin / groups, Og = Cout / groups, Wi = in.W, Wo = out.W;
  for (int64_t o = 0; o < Cout; ++o) {
    const int64_t g = o / Og;
    T* __restrict yo = y[o];
    const T bias = b[o];
    for (int64_t q = 0; q < out.H * Wo; ++q) yo[q] = bias;
    for (int64_t c = 0; c < Cg; ++c) {
      const T* xc = x[g * Cg + c];
      const T* wk = w + (o * Cg + c) * kh * kw;
      for (int64_t th = 0; th < kh; ++th) {
        for (int64_t ho = 0; ho < out.H; ++ho) {
          const int64_t hi = ho * sh - ph + th * dh;
          if (hi < 0 || hi >= in.H) continue;
          const T* __restrict xrow = xc + hi * Wi;
          T* __restrict yrow = yo + ho * Wo;
          for (int64_t tw = 0; tw < kw; ++tw) {
            const T v = wk[th * kw + tw];
            const int64_t off = tw * dw - pw;  // input column = wo * sw + off
            const int64_t lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
            const int64_t hi_w = std::min(Wo, (Wi - off + sw - 1) / sw);
            if (sw == 1) {
              const T* __restrict xs = xrow + off;
#pragma omp simd
              for (int64_t wo = lo; wo < hi_w; ++wo) yrow[wo] += v * xs[wo];
            } else {
#pragma omp simd
              for (int64_t wo = lo; wo < hi_w; ++wo) yrow[wo] += v * xrow[wo * sw + off];
            }
          }
        }
      }
    }
    if (relu)
      for (int64_t q = 0; q < out.H * Wo; ++q) yo[q] = relu6(yo[q]);
  }
}

// The hyper-function: mean over the plane -> fc1 -> ReLU -> fc2 (transposed weights, so the
// K*J*C outputs are one vector loop per hidden unit) -> hard sigmoid -> coefficients.
template <typename T>
MICRONET_SIMD_CLONES void hyper(const T* const* x, const T* params, int64_t C, int64_t J,
                                int64_t K, int64_t S, int64_t P, T* coef, T* scratch) {
  const T act_max = params[0];
  const T* init = params + 1;
  const T* w1 = init + K * J;
  const T* b1 = w1 + S * C;
  const T* w2t = b1 + S;
  const int64_t R = K * J * C;
  const T* b2 = w2t + S * R;
  T* mean = scratch;
  T* hidden = scratch + C;
  for (int64_t c = 0; c < C; ++c) {
    const T* __restrict plane = x[c];
    T sum = T(0);
#pragma omp simd reduction(+ : sum)
    for (int64_t p = 0; p < P; ++p) sum += plane[p];
    mean[c] = sum / T(P);
  }
  for (int64_t h = 0; h < S; ++h) {
    const T* __restrict row = w1 + h * C;
    T acc = T(0);
#pragma omp simd reduction(+ : acc)
    for (int64_t c = 0; c < C; ++c) acc += row[c] * mean[c];
    acc += b1[h];
    hidden[h] = acc > T(0) ? acc : T(0);
  }
  T* __restrict z = coef;
#pragma omp simd
  for (int64_t q = 0; q < R; ++q) z[q] = b2[q] + T(3);
  for (int64_t h = 0; h < S; ++h) {
    const T* __restrict row = w2t + h * R;
    const T v = hidden[h];
#pragma omp simd
    for (int64_t q = 0; q < R; ++q) z[q] += v * row[q];
  }
  const T scale = T(2) * act_max / T(6);
  for (int64_t kj = 0; kj < K * J; ++kj) {
    const T off = init[kj] - act_max;
    T* __restrict zr = z + kj * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const T v = zr[c];
      zr[c] = (v < T(0) ? T(0) : (v > T(6) ? T(6) : v)) * scale + off;
    }
  }
}

template <typename T>
void shift_max(const T* const* x, T* const* y, const T* params, const int64_t* index,
               const int64_t* r, Dims d, std::vector<T>& scratch) {
  const int64_t C = r[4], J = r[5], K = r[6], S = r[7], P = d.planes();
  const T* coef = params;
  if (S > 0) {
    scratch.resize(K * J * C + C + S);
    hyper(x, params, C, J, K, S, P, scratch.data(), scratch.data() + K * J * C);
    coef = scratch.data();
  }
  for (int64_t i = 0; i < C; ++i) {
    const T* xs[::micronet::detail::kMaxJ];
    T a[::micronet::detail::kMaxK][::micronet::detail::kMaxJ];
    for (int64_t j = 0; j < J; ++j) xs[j] = x[index[j * C + i]];
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < J; ++j) a[k][j] = coef[(k * J + j) * C + i];
    T* out = y[i];
    using ::micronet::detail::forward_plane_small;
    if (J == 2 && K == 2) forward_plane_small<T, 2, 2>(xs, a, out, P);
    else if (J == 2 && K == 1) forward_plane_small<T, 2, 1>(xs, a, out, P);
    else if (J == 1 && K == 2) forward_plane_small<T, 1, 2>(xs, a, out, P);
    else if (J == 1 && K == 1) forward_plane_small<T, 1, 1>(xs, a, out, P);
    else ::micronet::detail::forward_plane_generic(xs, a, J, K, out, P);
  }
}

template <typename T>
MICRONET_SIMD_CLONES void add(const T* const* a, const T* const* b, T* const* y, int64_t C,
                              int64_t P) {
  for (int64_t c = 0; c < C; ++c) {
    const T *__restrict pa = a[c], *__restrict pb = b[c];
    T* __restrict out = y[c];
#pragma omp simd
    for (int64_t p = 0; p < P; ++p) out[p] = pa[p] + pb[p];
  }
}

}  // namespace detail

// Run the program on samples [n_begin, n_end) of x (N, C, H, W) into y (its output shape, from
// infer()). weights and tables are the program's parameter and table arrays.
template <typename T>
void run(const int64_t* prog, int64_t len, const T* weights, const int64_t* tables, const T* x,
         T* y, int64_t n_begin, int64_t n_end, Dims in) {
  const std::vector<Dims> d = infer(prog, len, in);
  const int64_t L = prog[1];
  std::vector<int64_t> offset(L + 1, 0);  // scratch offsets of buffers 1..L-1
  int64_t total = 0;
  for (int64_t l = 1; l < L; ++l) {
    offset[l] = total;
    total += d[l].size();
  }
  std::vector<T> arena(static_cast<size_t>(total)), scratch;
  std::vector<const T*> src, second;
  std::vector<T*> dst;
  for (int64_t n = n_begin; n < n_end; ++n) {
    auto buffer = [&](int64_t id) -> T* {
      if (id == 0) return const_cast<T*>(x + n * in.size());
      if (id == L) return y + n * d[L].size();
      return arena.data() + offset[id];
    };
    for (int64_t l = 0; l < L; ++l) {
      const int64_t* r = record(prog, l);
      const Dims s = d[r[1]], o = d[l + 1];
      detail::planes(src, buffer(r[1]), r[2] < 0 ? nullptr : tables + r[2], s.C, s.planes());
      T* out = buffer(l + 1);
      dst.resize(o.C);
      for (int64_t c = 0; c < o.C; ++c) dst[c] = out + (r[3] < 0 ? c : tables[r[3] + c]) * o.planes();
      if (r[0] == kConv) {
        const T* w = weights + r[16];
        const T* b = w + r[5] * (r[4] / r[6]) * r[7] * r[8];
        if (r[7] == 1 && r[8] == 1 && r[9] == 1 && r[10] == 1 && r[11] == 0 && r[12] == 0)
          detail::pointwise(src.data(), dst.data(), w, b, r[4], r[5], r[6], o.planes(),
                            r[15] == 1);
        else
          detail::conv_rows(src.data(), dst.data(), w, b, r, s, o);
      } else if (r[0] == kShiftMax) {
        detail::shift_max(src.data(), dst.data(), weights + r[9], tables + r[8], r, s, scratch);
      } else {
        const Dims t = d[r[5]];
        detail::planes(second, buffer(r[5]), r[6] < 0 ? nullptr : tables + r[6], t.C,
                       t.planes());
        detail::add(src.data(), second.data(), dst.data(), o.C, o.planes());
      }
    }
  }
}

}  // namespace program
}  // namespace micronet
