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
#pragma once

#include <cstdint>
#include <vector>

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

// Fast paths have J and K as compile-time constants (JC, KC > 0), so that the loop over the
// plane's pixels is a plain vectorisable loop; JC = KC = 0 reads them from the shape.
constexpr int64_t kMaxJ = 8, kMaxK = 8;
constexpr int64_t kChunk = 64;  // pixels per backward step: K partial planes stay in L1

template <typename T>
inline T max_of(T a, T b) { return a < b ? b : a; }

template <typename T, int JC, int KC>
void forward_range(const T* x, const T* coef, T* y, const ShiftMaxShape& s,
                   const int64_t* index, int64_t begin, int64_t end) {
  const int64_t J = JC > 0 ? JC : s.J, K = KC > 0 ? KC : s.K, C = s.C, P = s.H * s.W;
  for (int64_t plane = begin; plane < end; ++plane) {  // plane = n * C + i
    const int64_t n = plane / C, i = plane % C;
    const T* xs[kMaxJ];
    T a[kMaxK][kMaxJ];
    for (int64_t j = 0; j < J; ++j) xs[j] = x + (n * C + shift_source(s, index, j, i)) * P;
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < J; ++j) a[k][j] = coef[((n * K + k) * J + j) * C + i];
    T* out = y + plane * P;
#pragma omp simd
    for (int64_t p = 0; p < P; ++p) {
      T best = a[0][0] * xs[0][p];
      for (int64_t j = 1; j < J; ++j) best += a[0][j] * xs[j][p];
      for (int64_t k = 1; k < K; ++k) {
        T acc = a[k][0] * xs[0][p];
        for (int64_t j = 1; j < J; ++j) acc += a[k][j] * xs[j][p];
        best = max_of(best, acc);
      }
      out[p] = best;
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
  T f[kMaxK][kChunk], best[kChunk], count[kChunk];
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
      for (int64_t p0 = 0; p0 < P; p0 += kChunk) {
        const int64_t L = P - p0 < kChunk ? P - p0 : kChunk;
        for (int64_t k = 0; k < K; ++k) {  // the fusions, as the forward computes them
#pragma omp simd
          for (int64_t q = 0; q < L; ++q) {
            T acc = a[k][0] * xs[0][p0 + q];
            for (int64_t j = 1; j < J; ++j) acc += a[k][j] * xs[j][p0 + q];
            f[k][q] = acc;
          }
        }
        for (int64_t q = 0; q < L; ++q) best[q] = f[0][q];
        for (int64_t k = 1; k < K; ++k)
          for (int64_t q = 0; q < L; ++q) best[q] = max_of(best[q], f[k][q]);
        for (int64_t q = 0; q < L; ++q) count[q] = T(0);
        for (int64_t k = 0; k < K; ++k)
          for (int64_t q = 0; q < L; ++q) count[q] += f[k][q] == best[q] ? T(1) : T(0);
        for (int64_t k = 0; k < K; ++k)  // f becomes d loss / d fusion k
          for (int64_t q = 0; q < L; ++q)
            f[k][q] = f[k][q] == best[q] ? g[p0 + q] / count[q] : T(0);
        for (int64_t k = 0; k < K; ++k) {
          for (int64_t j = 0; j < J; ++j) {
            T part = T(0);
#pragma omp simd reduction(+ : part)
            for (int64_t q = 0; q < L; ++q) part += f[k][q] * xs[j][p0 + q];
            ga[k][j] += part;
          }
        }
        for (int64_t j = 0; j < J; ++j) {
          T* out = gxs[j] + p0;
          for (int64_t k = 0; k < K; ++k) {
            const T akj = a[k][j];
#pragma omp simd
            for (int64_t q = 0; q < L; ++q) out[q] += akj * f[k][q];
          }
        }
      }
      for (int64_t k = 0; k < K; ++k)
        for (int64_t j = 0; j < J; ++j) gcoef[((n * K + k) * J + j) * C + i] = T(ga[k][j]);
    }
  }
}

}  // namespace detail

// Output planes [begin, end) of the N * C planes (plane n * C + i); any split is race-free.
template <typename T>
void shift_max_fuse_forward_range(const T* x, const T* coef, T* y, const ShiftMaxShape& s,
                                  int64_t begin, int64_t end, const int64_t* index = nullptr) {
  if (s.J == 2 && s.K == 2) return detail::forward_range<T, 2, 2>(x, coef, y, s, index, begin, end);
  if (s.J == 2 && s.K == 1) return detail::forward_range<T, 2, 1>(x, coef, y, s, index, begin, end);
  if (s.J == 1 && s.K == 2) return detail::forward_range<T, 1, 2>(x, coef, y, s, index, begin, end);
  if (s.J == 1 && s.K == 1) return detail::forward_range<T, 1, 1>(x, coef, y, s, index, begin, end);
  detail::forward_range<T, 0, 0>(x, coef, y, s, index, begin, end);
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
  for (int64_t n = n_begin; n < n_end; ++n) {
    for (int64_t c = 0; c < C; ++c) {
      const T* plane = x + (n * C + c) * P;
      T sum = T(0);
#pragma omp simd reduction(+ : sum)
      for (int64_t p = 0; p < P; ++p) sum += plane[p];
      mean[c] = sum / T(P);
    }
    for (int64_t h = 0; h < S; ++h) {
      const T* row = w1 + h * C;
      T acc = T(0);
#pragma omp simd reduction(+ : acc)
      for (int64_t c = 0; c < C; ++c) acc += row[c] * mean[c];
      acc += b1[h];
      hidden[h] = acc > T(0) ? acc : T(0);
    }
    T* out = coef + n * R;
    for (int64_t r = 0; r < R; ++r) {
      const T* row = w2 + r * S;
      T z = T(0);
      for (int64_t h = 0; h < S; ++h) z += row[h] * hidden[h];
      z += b2[r] + T(3);
      const T hs = (z < T(0) ? T(0) : (z > T(6) ? T(6) : z)) / T(6);
      out[r] = (hs - T(0.5)) * (T(2) * act_max) + init[r / C];
    }
  }
}

template <typename T>
void shift_max_coefficients(const T* x, const T* w1, const T* b1, const T* w2, const T* b2,
                            const T* init, T act_max, int64_t S, T* coef,
                            const ShiftMaxShape& s) {
  shift_max_coefficients_range(x, w1, b1, w2, b2, init, act_max, S, coef, s, 0, s.N);
}

}  // namespace micronet
