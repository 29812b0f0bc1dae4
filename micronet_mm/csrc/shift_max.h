// Dynamic Shift-Max (MicroNet, ICCV 2021, Eq. 4) on NCHW tensors: the entry points of the torch
// ops (shift_max_torch.cpp) and the OpenVINO node (openvino/shift_max_op.cpp). Header-only,
// framework-free C++17. They run the kernels of shift_max_kernels.h, the ones the programs'
// SHIFT_MAX layer runs (program.h), at the vector width program.h picks for the CPU
// (vector_bytes(): MICRONET_PROGRAM_VECTOR_BYTES=32 or 64 picks it in tests, on every call).
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
//   index: the (J, C) table, or nullptr for the shift arithmetic from groups / inner_shift.
//   At most kMaxShifts shifts and kMaxFusions fusions (program.h), every index entry in
//   [0, C): the caller checks. The *_range functions let a caller split the work over its own
//   thread pool (nothing here starts a thread).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "program.h"

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

// index, or the table of the shift arithmetic in `table` when index is nullptr.
inline const int64_t* shift_table(const ShiftMaxShape& s, const int64_t* index,
                                  std::vector<int64_t>& table) {
  if (index != nullptr) return index;
  table.resize(static_cast<size_t>(s.J * s.C));
  for (int64_t j = 0; j < s.J; ++j)
    for (int64_t i = 0; i < s.C; ++i) table[j * s.C + i] = shift_source(s, nullptr, j, i);
  return table.data();
}

// The planes of one sample of a dense (N, C, P) tensor, as the kernels read them: [c] is
// plane c's pointer.
template <typename T>
struct PlaneStride {
  T* base;
  int64_t P;
  T* operator[](int64_t c) const { return base + c * P; }
};

// The kernels of one vector width (shift_max_kernels.h, instantiated by program.h).
template <typename T, int VB>
struct ShiftMaxKernels;
#define MICRONET_SHIFT_MAX_KERNELS(VB)                                                  \
  template <typename T>                                                                 \
  struct ShiftMaxKernels<T, VB> {                                                       \
    typedef PlaneStride<const T> In;                                                    \
    typedef PlaneStride<T> Out;                                                         \
    static constexpr auto planes = &program::detail::v##VB::shift_max_planes<T, In, Out>; \
    static constexpr auto backward =                                                    \
        &program::detail::v##VB::shift_max_backward<T, In, Out>;                        \
    static constexpr auto hyper = &program::detail::v##VB::hyper<T, In>;                \
  };
MICRONET_SHIFT_MAX_KERNELS(32)
MICRONET_SHIFT_MAX_KERNELS(64)
#undef MICRONET_SHIFT_MAX_KERNELS

// f(ShiftMaxKernels) at the vector width program.h picks for T (float64: 64 bytes only).
template <typename T, typename F>
void at_vector_width(F&& f) {
  if constexpr (sizeof(T) == 4) {
    if (program::vector_bytes<T>() == 32) return f(ShiftMaxKernels<T, 32>{});
  }
  f(ShiftMaxKernels<T, 64>{});
}

}  // namespace detail

// Output planes [begin, end) of the N * C planes (plane n * C + i); any split is race-free.
template <typename T>
void shift_max_fuse_forward_range(const T* x, const T* coef, T* y, const ShiftMaxShape& s,
                                  int64_t begin, int64_t end, const int64_t* index = nullptr) {
  std::vector<int64_t> table;
  index = detail::shift_table(s, index, table);
  const int64_t C = s.C, P = s.H * s.W;
  detail::at_vector_width<T>([&](auto kernels) {
    for (int64_t n = begin / C; n * C < end; ++n) {
      const int64_t i0 = std::max(begin - n * C, int64_t(0));
      const int64_t i1 = std::min(end - n * C, C);
      decltype(kernels)::planes({x + n * C * P, P}, index, coef + n * s.K * s.J * C,
                                {y + n * C * P, P}, C, P, s.J, s.K, i0, i1);
    }
  });
}

template <typename T>
void shift_max_fuse_forward(const T* x, const T* coef, T* y, const ShiftMaxShape& s,
                            const int64_t* index = nullptr) {
  shift_max_fuse_forward_range(x, coef, y, s, 0, s.N * s.C, index);
}

// Samples [n_begin, n_end): gx of these samples is overwritten, gcoef too (a shift moves
// across channels, so one sample is the unit of work).
template <typename T>
void shift_max_fuse_backward_range(const T* x, const T* coef, const T* gy, T* gx, T* gcoef,
                                   const ShiftMaxShape& s, int64_t n_begin, int64_t n_end,
                                   const int64_t* index = nullptr) {
  std::vector<int64_t> table;
  index = detail::shift_table(s, index, table);
  const int64_t C = s.C, P = s.H * s.W, R = s.K * s.J * C;
  std::fill(gx + n_begin * C * P, gx + n_end * C * P, T(0));  // (the kernel adds into gx)
  detail::at_vector_width<T>([&](auto kernels) {
    for (int64_t n = n_begin; n < n_end; ++n)
      decltype(kernels)::backward({x + n * C * P, P}, index, coef + n * R, {gy + n * C * P, P},
                                  {gx + n * C * P, P}, gcoef + n * R, C, P, s.J, s.K);
  });
}

template <typename T>
void shift_max_fuse_backward(const T* x, const T* coef, const T* gy, T* gx, T* gcoef,
                             const ShiftMaxShape& s, const int64_t* index = nullptr) {
  shift_max_fuse_backward_range(x, coef, gy, gx, gcoef, s, 0, s.N, index);
}

// The hyper-function of samples [n_begin, n_end): coef (N, K, J, C) from x (see the top).
template <typename T>
void shift_max_coefficients_range(const T* x, const T* w1, const T* b1, const T* w2,
                                  const T* b2, const T* init, T act_max, int64_t S, T* coef,
                                  const ShiftMaxShape& s, int64_t n_begin, int64_t n_end) {
  const int64_t C = s.C, P = s.H * s.W, R = s.K * s.J * C;
  const ShiftMaxHyper<T> h{act_max, init, w1, b1, w2, b2, S, false};
  std::vector<T> scratch(static_cast<size_t>(C + S));
  detail::at_vector_width<T>([&](auto kernels) {
    for (int64_t n = n_begin; n < n_end; ++n)
      decltype(kernels)::hyper({x + n * C * P, P}, h, C, s.J, s.K, P, coef + n * R,
                               scratch.data());
  });
}

template <typename T>
void shift_max_coefficients(const T* x, const T* w1, const T* b1, const T* w2, const T* b2,
                            const T* init, T act_max, int64_t S, T* coef,
                            const ShiftMaxShape& s) {
  shift_max_coefficients_range(x, w1, b1, w2, b2, init, act_max, S, coef, s, 0, s.N);
}

}  // namespace micronet
