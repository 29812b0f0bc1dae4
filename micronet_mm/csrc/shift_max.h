// Fused Dynamic Shift-Max (MicroNet, ICCV 2021, Eq. 4): header-only, framework-free C++17.
//
//   y[n, i, p] = max_k  sum_j  coef[n, k, j, i] * x[n, src_j(i), p]        (p = h * W + w)
//
// src_j(i) is the channel that the j-th shift brings to channel i. With i = g * (C/G) + c
// (group g of G, position c) it is ((g + j) mod G) * C/G + c, and with inner_shift (the reference
// code, every released checkpoint) ((g + j) mod G) * C/G + (c + j) mod C/G; see
// micronet_mm/ops/shift_max.py, the readable reference these functions must equal. An explicit
// table index[j * C + i] = src_j(i) may replace the arithmetic (a deploy rewrite permutes the
// channels around the activation; then the table is no longer a pure shift).
//
// x is read once and y written once: each output plane reads its J source planes and keeps the
// K fusions in registers; no shifted copy of x is made. Tensors are NCHW contiguous.
//
// Interface (agreed with the OpenVINO extension, which includes this file). Changes against the
// first agreed version: every function takes an optional trailing `const int64_t* index`
// (nullptr: the shift arithmetic from groups / inner_shift), and the *_range functions let a
// caller split the work over its own thread pool (this header starts no threads).
//
//   struct ShiftMaxShape { int64_t N, C, H, W, groups, J, K; bool inner_shift; };
//   coef: (N, K, J, C), the final coefficients a^k_{i,j} (after hard sigmoid, rescale, offset)
//   shift_max_fuse_forward(x, coef, y, s, index)          y: (N, C, H, W)
//   shift_max_fuse_backward(x, coef, gy, gx, gcoef, s, index)
//       gx: (N, C, H, W), gcoef: (N, K, J, C); where fusions tie for the maximum the gradient is
//       split evenly between them (as torch.amax's backward)
//   shift_max_coefficients(x, w1, b1, w2, b2, init, act_max, S, coef, s)
//       the hyper-function: mean over H*W -> fc1 (w1: S x C, b1: S) -> ReLU
//       -> fc2 (w2: K*J*C x S, b2: K*J*C) -> hard sigmoid relu6(z + 3) / 6
//       -> (h - 0.5) * 2 * act_max + init[k * J + j]; fc2's rows are laid out [k][j][c], as the
//       reference checkpoints
//   shift_max_fuse_forward_range(x, coef, y, s, begin, end, index)   output planes [begin, end)
//       of the N * C planes; shift_max_fuse_backward_range(..., n_begin, n_end, index) and
//       shift_max_coefficients_range(..., n_begin, n_end): samples [n_begin, n_end)
//   At most 8 shifts and 8 fusions (detail::kMaxJ, kMaxK); the caller checks.
#pragma once

#include <cstdint>
#include <vector>

// Vectorised loops are compiled for the baseline ISA and for AVX2+FMA and AVX-512
// (x86-64-v3, -v4), and the CPU picks at load time (GCC function multi-versioning on
// Linux/x86-64): a library built on one machine runs, fast, on another. Elsewhere: baseline.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MICRONET_SIMD_CLONES \
  __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define MICRONET_SIMD_CLONES
#endif

namespace micronet {

struct ShiftMaxShape {
  int64_t N, C, H, W, groups, J, K;
  bool inner_shift;
};

// The source channel of shift j for output channel i (see the top of this file).
inline int64_t shift_source(const ShiftMaxShape& s, const int64_t* index, int64_t j, int64_t i) {
  if (index != nullptr) return index[j * s.C + i];
  const int64_t per = s.C / s.groups, g = i / per, c = i % per;
  return ((g + j) % s.groups) * per + (s.inner_shift ? (c + j) % per : c);
}

namespace detail {

constexpr int64_t kMaxJ = 8, kMaxK = 8;
constexpr int64_t kChunk = 64;  // pixels per step of the generic paths: K partial rows in L1

template <typename T>
inline T max_of(T a, T b) { return a < b ? b : a; }

// One output plane, J <= 2 and K <= 2 known at compile time (every MicroNet layer): a plain
// loop over the pixels that compilers vectorise.
template <typename T, int J, int K>
__attribute__((always_inline)) inline void plane_small(const T* const* xs, const T (*a)[kMaxJ],
                                                       T* __restrict out, int64_t P) {
  const T* __restrict x0 = xs[0];
  const T* __restrict x1 = xs[J > 1 ? 1 : 0];
  const T a00 = a[0][0], a01 = J > 1 ? a[0][1] : T(0);
  const T a10 = K > 1 ? a[1][0] : T(0), a11 = J > 1 && K > 1 ? a[1][1] : T(0);
#pragma omp simd
  for (int64_t p = 0; p < P; ++p) {
    T f0 = a00 * x0[p];
    if constexpr (J > 1) f0 += a01 * x1[p];
    if constexpr (K > 1) {
      T f1 = a10 * x0[p];
      if constexpr (J > 1) f1 += a11 * x1[p];
      f0 = max_of(f0, f1);
    }
    out[p] = f0;
  }
}

// Sources and coefficients of output plane i of a program's layer (program_kernels.h): source
// planes x[index[j * C + i]], coefficients coef[(k * J + j) * C + i].
template <typename T>
__attribute__((always_inline)) inline void plane_sources(const T* const* x, const int64_t* index,
                                                         const T* coef, int64_t C, int64_t J,
                                                         int64_t K, int64_t i, const T** xs,
                                                         T (*a)[kMaxJ]) {
  for (int64_t j = 0; j < J; ++j) xs[j] = x[index[j * C + i]];
  for (int64_t k = 0; k < K; ++k)
    for (int64_t j = 0; j < J; ++j) a[k][j] = coef[(k * J + j) * C + i];
}

// Every output plane i < C of one sample (plane_sources), J <= 2 and K <= 2 known at compile
// time. One call for all planes: on 7x7 and 14x14 planes a call per plane cost as much as its
// pixels.
template <typename T, int J, int K>
MICRONET_SIMD_CLONES void forward_planes_small(const T* const* x, const int64_t* index,
                                               const T* coef, T* const* y, int64_t C,
                                               int64_t P) {
  for (int64_t i = 0; i < C; ++i) {
    const T* xs[kMaxJ];
    T a[kMaxK][kMaxJ];
    plane_sources(x, index, coef, C, J, K, i, xs, a);
    plane_small<T, J, K>(xs, a, y[i], P);
  }
}

// The K fusions of pixels [p0, p0 + L) into f[k][0..L), in the forward's order of operations.
template <typename T>
MICRONET_SIMD_CLONES void fusions(const T* const* xs, const T (*a)[kMaxJ], int64_t J,
                                  int64_t K, int64_t p0, int64_t L, T (*f)[kChunk]) {
  for (int64_t k = 0; k < K; ++k) {
    T* __restrict row = f[k];
    const T* __restrict x0 = xs[0] + p0;
    const T a0 = a[k][0];
#pragma omp simd
    for (int64_t q = 0; q < L; ++q) row[q] = a0 * x0[q];
    for (int64_t j = 1; j < J; ++j) {
      const T* __restrict xj = xs[j] + p0;
      const T aj = a[k][j];
#pragma omp simd
      for (int64_t q = 0; q < L; ++q) row[q] += aj * xj[q];
    }
  }
}

// Any J, K: chunks of pixels through fusions().
template <typename T>
MICRONET_SIMD_CLONES void forward_plane_generic(const T* const* xs, const T (*a)[kMaxJ],
                                                int64_t J, int64_t K, T* out, int64_t P) {
  T f[kMaxK][kChunk];
  for (int64_t p0 = 0; p0 < P; p0 += kChunk) {
    const int64_t L = P - p0 < kChunk ? P - p0 : kChunk;
    fusions(xs, a, J, K, p0, L, f);
    for (int64_t k = 1; k < K; ++k)
      for (int64_t q = 0; q < L; ++q) f[0][q] = max_of(f[0][q], f[k][q]);
    for (int64_t q = 0; q < L; ++q) out[p0 + q] = f[0][q];
  }
}

// Sources and coefficients of output plane `plane` = n * C + i (forward_range's layout).
template <typename T>
__attribute__((always_inline)) inline void plane_inputs(const T* x, const T* coef,
                                                        const ShiftMaxShape& s,
                                                        const int64_t* index, int64_t plane,
                                                        const T** xs, T (*a)[kMaxJ]) {
  const int64_t C = s.C, P = s.H * s.W, n = plane / C, i = plane % C;
  for (int64_t j = 0; j < s.J; ++j) xs[j] = x + (n * C + shift_source(s, index, j, i)) * P;
  for (int64_t k = 0; k < s.K; ++k)
    for (int64_t j = 0; j < s.J; ++j) a[k][j] = coef[((n * s.K + k) * s.J + j) * C + i];
}

// Output planes [begin, end) of x (N, C, H, W), plane = n * C + i, J <= 2 and K <= 2 known at
// compile time: the torch op's forward (coef (N, K, J, C); sources by shift_source). One call
// for the range, as forward_planes_small for a program's layers (a target_clones call is not
// inlined: one per plane cost about as much as a 7x7 or 14x14 plane's pixels).
template <typename T, int J, int K>
MICRONET_SIMD_CLONES void forward_range_small(const T* x, const T* coef, T* y,
                                              const ShiftMaxShape& s, const int64_t* index,
                                              int64_t begin, int64_t end) {
  const int64_t P = s.H * s.W;
  for (int64_t plane = begin; plane < end; ++plane) {
    const T* xs[kMaxJ];
    T a[kMaxK][kMaxJ];
    plane_inputs(x, coef, s, index, plane, xs, a);
    plane_small<T, J, K>(xs, a, y + plane * P, P);
  }
}

template <typename T>
void forward_range(const T* x, const T* coef, T* y, const ShiftMaxShape& s,
                   const int64_t* index, int64_t begin, int64_t end) {
  const int64_t J = s.J, K = s.K, P = s.H * s.W;
  if (J == 2 && K == 2) return forward_range_small<T, 2, 2>(x, coef, y, s, index, begin, end);
  if (J == 2 && K == 1) return forward_range_small<T, 2, 1>(x, coef, y, s, index, begin, end);
  if (J == 1 && K == 2) return forward_range_small<T, 1, 2>(x, coef, y, s, index, begin, end);
  if (J == 1 && K == 1) return forward_range_small<T, 1, 1>(x, coef, y, s, index, begin, end);
  for (int64_t plane = begin; plane < end; ++plane) {
    const T* xs[kMaxJ];
    T a[kMaxK][kMaxJ];
    plane_inputs(x, coef, s, index, plane, xs, a);
    forward_plane_generic(xs, a, J, K, y + plane * P, P);
  }
}

// One channel i of one sample: gcoef of the channel into ga, and the channel's share of the
// input gradient added to its J source planes gxs.
template <typename T>
MICRONET_SIMD_CLONES void backward_plane(const T* const* xs, T* const* gxs,
                                         const T (*a)[kMaxJ], int64_t J, int64_t K,
                                         const T* g, int64_t P, double (*ga)[kMaxJ]) {
  T f[kMaxK][kChunk], best[kChunk], count[kChunk];
  for (int64_t p0 = 0; p0 < P; p0 += kChunk) {
    const int64_t L = P - p0 < kChunk ? P - p0 : kChunk;
    fusions(xs, a, J, K, p0, L, f);
    for (int64_t q = 0; q < L; ++q) best[q] = f[0][q];
    for (int64_t k = 1; k < K; ++k)
      for (int64_t q = 0; q < L; ++q) best[q] = max_of(best[q], f[k][q]);
    for (int64_t q = 0; q < L; ++q) count[q] = T(0);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t q = 0; q < L; ++q) count[q] += f[k][q] == best[q] ? T(1) : T(0);
    for (int64_t k = 0; k < K; ++k)  // f becomes d loss / d fusion k (ties share evenly)
      for (int64_t q = 0; q < L; ++q) f[k][q] = f[k][q] == best[q] ? g[p0 + q] / count[q] : T(0);
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t j = 0; j < J; ++j) {
        const T* __restrict xj = xs[j] + p0;
        T part = T(0);
#pragma omp simd reduction(+ : part)
        for (int64_t q = 0; q < L; ++q) part += f[k][q] * xj[q];
        ga[k][j] += part;
      }
    }
    for (int64_t j = 0; j < J; ++j) {
      T* __restrict out = gxs[j] + p0;
      for (int64_t k = 0; k < K; ++k) {
        const T akj = a[k][j];
#pragma omp simd
        for (int64_t q = 0; q < L; ++q) out[q] += akj * f[k][q];
      }
    }
  }
}

// backward_plane for J <= 2 and K <= 2 known at compile time: one pass over the pixels, in
// blocks whose partial sums of gcoef are added in double. gxs[0] and gxs[1] may be one plane
// (one group without inner shift: the shift is the identity), so they are not __restrict.
template <typename T, int J, int K>
MICRONET_SIMD_CLONES void backward_plane_small(const T* const* xs, T* const* gxs,
                                               const T (*a)[kMaxJ], const T* __restrict g,
                                               int64_t P, double (*ga)[kMaxJ]) {
  constexpr int64_t kBlock = 256;
  const T* __restrict x0 = xs[0];
  const T* __restrict x1 = xs[J > 1 ? 1 : 0];
  T* gx0 = gxs[0];
  T* gx1 = gxs[J > 1 ? 1 : 0];
  const T a00 = a[0][0], a01 = J > 1 ? a[0][1] : T(0);
  const T a10 = K > 1 ? a[1][0] : T(0), a11 = J > 1 && K > 1 ? a[1][1] : T(0);
  for (int64_t b0 = 0; b0 < P; b0 += kBlock) {
    const int64_t b1 = P - b0 < kBlock ? P : b0 + kBlock;
    T s00 = T(0), s01 = T(0), s10 = T(0), s11 = T(0);
#pragma omp simd reduction(+ : s00, s01, s10, s11)
    for (int64_t p = b0; p < b1; ++p) {
      T f0 = a00 * x0[p];
      if constexpr (J > 1) f0 += a01 * x1[p];
      T g0 = g[p], g1 = T(0);
      if constexpr (K > 1) {
        T f1 = a10 * x0[p];
        if constexpr (J > 1) f1 += a11 * x1[p];
        const T half = g[p] * T(0.5);  // a tie shares the gradient evenly, as torch.amax
        g0 = f0 > f1 ? g[p] : (f0 == f1 ? half : T(0));
        g1 = f1 > f0 ? g[p] : (f0 == f1 ? half : T(0));
        s10 += g1 * x0[p];
        if constexpr (J > 1) s11 += g1 * x1[p];
      }
      s00 += g0 * x0[p];
      if constexpr (J > 1) s01 += g0 * x1[p];
      gx0[p] += K > 1 ? a00 * g0 + a10 * g1 : a00 * g0;
      if constexpr (J > 1) gx1[p] += K > 1 ? a01 * g0 + a11 * g1 : a01 * g0;
    }
    ga[0][0] += s00;
    if constexpr (J > 1) ga[0][1] += s01;
    if constexpr (K > 1) {
      ga[1][0] += s10;
      if constexpr (J > 1) ga[1][1] += s11;
    }
  }
}

// Samples [n_begin, n_end): gx of these samples is overwritten, gcoef too.
template <typename T>
void backward_range(const T* x, const T* coef, const T* gy, T* gx, T* gcoef,
                    const ShiftMaxShape& s, const int64_t* index, int64_t n_begin,
                    int64_t n_end) {
  const int64_t J = s.J, K = s.K, C = s.C, P = s.H * s.W;
  for (int64_t q = n_begin * C * P; q < n_end * C * P; ++q) gx[q] = T(0);
  for (int64_t n = n_begin; n < n_end; ++n) {
    for (int64_t i = 0; i < C; ++i) {  // gx of sample n gets J scattered adds per channel
      const T* xs[kMaxJ];
      T* gxs[kMaxJ];
      T a[kMaxK][kMaxJ];
      double ga[kMaxK][kMaxJ] = {};
      for (int64_t j = 0; j < J; ++j) {
        const int64_t src = n * C + shift_source(s, index, j, i);
        xs[j] = x + src * P;
        gxs[j] = gx + src * P;
      }
      for (int64_t k = 0; k < K; ++k)
        for (int64_t j = 0; j < J; ++j) a[k][j] = coef[((n * K + k) * J + j) * C + i];
      const T* g = gy + (n * C + i) * P;
      if (J == 2 && K == 2) backward_plane_small<T, 2, 2>(xs, gxs, a, g, P, ga);
      else if (J == 2 && K == 1) backward_plane_small<T, 2, 1>(xs, gxs, a, g, P, ga);
      else if (J == 1 && K == 2) backward_plane_small<T, 1, 2>(xs, gxs, a, g, P, ga);
      else if (J == 1 && K == 1) backward_plane_small<T, 1, 1>(xs, gxs, a, g, P, ga);
      else backward_plane(xs, gxs, a, J, K, g, P, ga);
      for (int64_t k = 0; k < K; ++k)
        for (int64_t j = 0; j < J; ++j) gcoef[((n * K + k) * J + j) * C + i] = T(ga[k][j]);
    }
  }
}

// The hyper-function of one sample (see the top of the file); mean and hidden are scratch.
template <typename T>
MICRONET_SIMD_CLONES void coefficients_sample(const T* x, const T* w1, const T* b1,
                                              const T* w2, const T* b2, const T* init,
                                              T act_max, int64_t S, int64_t C, int64_t P,
                                              int64_t R, T* mean, T* hidden, T* out) {
  for (int64_t c = 0; c < C; ++c) {
    const T* __restrict plane = x + c * P;
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
  for (int64_t r = 0; r < R; ++r) {
    const T* __restrict row = w2 + r * S;
    T z = T(0);
#pragma omp simd reduction(+ : z)
    for (int64_t h = 0; h < S; ++h) z += row[h] * hidden[h];
    z += b2[r] + T(3);
    const T hs = (z < T(0) ? T(0) : (z > T(6) ? T(6) : z)) / T(6);
    out[r] = (hs - T(0.5)) * (T(2) * act_max) + init[r / C];
  }
}

}  // namespace detail

// Output planes [begin, end) of the N * C planes (plane n * C + i); any split is race-free.
template <typename T>
void shift_max_fuse_forward_range(const T* x, const T* coef, T* y, const ShiftMaxShape& s,
                                  int64_t begin, int64_t end, const int64_t* index = nullptr) {
  detail::forward_range(x, coef, y, s, index, begin, end);
}

template <typename T>
void shift_max_fuse_forward(const T* x, const T* coef, T* y, const ShiftMaxShape& s,
                            const int64_t* index = nullptr) {
  shift_max_fuse_forward_range(x, coef, y, s, 0, s.N * s.C, index);
}

// Samples [n_begin, n_end) (a shift moves across channels, so one sample is the unit of work).
template <typename T>
void shift_max_fuse_backward_range(const T* x, const T* coef, const T* gy, T* gx, T* gcoef,
                                   const ShiftMaxShape& s, int64_t n_begin, int64_t n_end,
                                   const int64_t* index = nullptr) {
  detail::backward_range(x, coef, gy, gx, gcoef, s, index, n_begin, n_end);
}

template <typename T>
void shift_max_fuse_backward(const T* x, const T* coef, const T* gy, T* gx, T* gcoef,
                             const ShiftMaxShape& s, const int64_t* index = nullptr) {
  detail::backward_range(x, coef, gy, gx, gcoef, s, index, 0, s.N);
}

// The hyper-function of samples [n_begin, n_end): coef (N, K, J, C) from x (see the top).
template <typename T>
void shift_max_coefficients_range(const T* x, const T* w1, const T* b1, const T* w2,
                                  const T* b2, const T* init, T act_max, int64_t S, T* coef,
                                  const ShiftMaxShape& s, int64_t n_begin, int64_t n_end) {
  const int64_t C = s.C, P = s.H * s.W, R = s.K * s.J * C;
  std::vector<T> mean(C), hidden(S);
  for (int64_t n = n_begin; n < n_end; ++n)
    detail::coefficients_sample(x + n * C * P, w1, b1, w2, b2, init, act_max, S, C, P, R,
                                mean.data(), hidden.data(), coef + n * R);
}

template <typename T>
void shift_max_coefficients(const T* x, const T* w1, const T* b1, const T* w2, const T* b2,
                            const T* init, T act_max, int64_t S, T* coef,
                            const ShiftMaxShape& s) {
  shift_max_coefficients_range(x, w1, b1, w2, b2, init, act_max, S, coef, s, 0, s.N);
}

}  // namespace micronet
