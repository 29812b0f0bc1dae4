// Dynamic Shift-Max's kernels (MicroNet, ICCV 2021, Eq. 4), the ONE native implementation:
// the programs' SHIFT_MAX layer (program_kernels.h), the torch ops (shift_max_torch.cpp) and the
// OpenVINO node (openvino/shift_max_op.cpp) all run these, the last two through shift_max.h.
// program_kernels.h includes this file inside namespace micronet::program::detail::v32 and
// ::v64, each with its own kVectorBytes, so there is no include guard. The readable reference
// that they must equal is micronet_mm/ops/shift_max.py.
//
//   y[i, p] = max_k  sum_j  coef[(k * J + j) * C + i] * x[index[j * C + i], p]
//
// for the C planes of one sample (x, y: anything whose [c] is plane c's pointer: the plane
// pointers through which a program reads and writes its buffers (channel tables), or a
// PlaneStride of a dense NCHW sample (shift_max.h); index: the (J, C) shift table, every entry
// < C, checked by the callers). The coefficients come from the hyper-function (hyper(): mean
// over the plane -> fc1 -> ReLU -> fc2 -> hard sigmoid -> rescale to init +- act_max), or are
// constant (static Shift-Max).
//
// The arithmetic of one pixel is written once (fusion(), fuse()): the plane loops apply it to
// one pixel at a time in loops that the compiler vectorises for each target clone, the
// interleaving pass of a depthwise layer (interleave_shift_max) to whole vectors of
// kVectorBytes, the backward pass to recompute the fusions. At most kMaxShifts shifts and
// kMaxFusions fusions (program.h); the callers check.

constexpr int64_t kShiftMaxChunk = 64;  // pixels per step of the generic paths (K rows in L1)

// Fusion k of one pixel or vector: sum_j a[j] * x_j, for J <= 2 known at compile time (a: the
// coefficients a[k] of the fusion).
template <int J, typename U, typename A>
__attribute__((always_inline)) inline U fusion(U x0, U x1, const A& a) {
  U f = a[0] * x0;
  if constexpr (J > 1) f += a[1] * x1;
  return f;
}

// Eq. 4 of one pixel or vector for J, K <= 2: the larger of the K fusions of x0 (shift 0) and
// x1 (shift 1); a[k][j] the coefficients. (a < b ? b : a, as torch.amax on equal values.)
template <int J, int K, typename U, typename A>
__attribute__((always_inline)) inline U fuse(U x0, U x1, const A& a) {
  U f0 = fusion<J>(x0, x1, a[0]);
  if constexpr (K > 1) {
    const U f1 = fusion<J>(x0, x1, a[1]);
    f0 = f0 < f1 ? f1 : f0;
  }
  return f0;
}

// The source planes xs[j] and coefficients a[k][j] of output plane i.
template <typename T, typename X, typename A>
__attribute__((always_inline)) inline void shift_max_sources(X x,
                                                             const int64_t* index,
                                                             const T* coef, int64_t C,
                                                             int64_t J, int64_t K, int64_t i,
                                                             const T** xs, A a) {
  for (int64_t j = 0; j < J; ++j) xs[j] = x[index[j * C + i]];
  for (int64_t k = 0; k < K; ++k)
    for (int64_t j = 0; j < J; ++j) a[k][j] = coef[(k * J + j) * C + i];
}

// Output planes [i0, i1), J <= 2 and K <= 2 known at compile time (every MicroNet layer). One
// call for all planes: on 7x7 and 14x14 planes a (not inlined) call per plane cost as much as
// its pixels.
template <typename T, int J, int K, typename X, typename Y>
MICRONET_SIMD_CLONES void shift_max_planes_small(X x, const int64_t* index, const T* coef, Y y,
                                                 int64_t C,
                                                 int64_t P, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) {
    const T* xs[kMaxShifts];
    T a[kMaxFusions][kMaxShifts];
    shift_max_sources(x, index, coef, C, J, K, i, xs, a);
    const T* __restrict x0 = xs[0];
    const T* __restrict x1 = xs[J > 1 ? 1 : 0];
    T* __restrict out = y[i];
    const T c[2][2] = {{a[0][0], J > 1 ? a[0][1] : T(0)},  // (in registers through the loop)
                       {K > 1 ? a[1][0] : T(0), J > 1 && K > 1 ? a[1][1] : T(0)}};
#pragma omp simd
    for (int64_t p = 0; p < P; ++p) out[p] = fuse<J, K>(x0[p], x1[p], c);
  }
}

// The K fusions of pixels [p0, p0 + L) into f[k][0..L), any J (the generic paths).
template <typename T>
__attribute__((always_inline)) inline void shift_max_fusions(const T* const* xs,
                                                             const T (*a)[kMaxShifts],
                                                             int64_t J, int64_t K, int64_t p0,
                                                             int64_t L,
                                                             T (*f)[kShiftMaxChunk]) {
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

// Output planes [i0, i1), any J, K: chunks of pixels through shift_max_fusions().
template <typename T, typename X, typename Y>
MICRONET_SIMD_CLONES void shift_max_planes_generic(X x, const int64_t* index, const T* coef,
                                                   Y y, int64_t C,
                                                   int64_t P, int64_t J, int64_t K, int64_t i0,
                                                   int64_t i1) {
  T f[kMaxFusions][kShiftMaxChunk];
  for (int64_t i = i0; i < i1; ++i) {
    const T* xs[kMaxShifts];
    T a[kMaxFusions][kMaxShifts];
    shift_max_sources(x, index, coef, C, J, K, i, xs, a);
    for (int64_t p0 = 0; p0 < P; p0 += kShiftMaxChunk) {
      const int64_t L = P - p0 < kShiftMaxChunk ? P - p0 : kShiftMaxChunk;
      shift_max_fusions(xs, a, J, K, p0, L, f);
      for (int64_t k = 1; k < K; ++k)
        for (int64_t q = 0; q < L; ++q) f[0][q] = f[0][q] < f[k][q] ? f[k][q] : f[0][q];
      for (int64_t q = 0; q < L; ++q) y[i][p0 + q] = f[0][q];
    }
  }
}

// Eq. 4 for output planes [i0, i1) of one sample (see the top of the file).
template <typename T, typename X, typename Y>
void shift_max_planes(X x, const int64_t* index, const T* coef, Y y,
                      int64_t C, int64_t P, int64_t J, int64_t K, int64_t i0, int64_t i1) {
  if (J == 2 && K == 2) return shift_max_planes_small<T, 2, 2>(x, index, coef, y, C, P, i0, i1);
  if (J == 2 && K == 1) return shift_max_planes_small<T, 2, 1>(x, index, coef, y, C, P, i0, i1);
  if (J == 1 && K == 2) return shift_max_planes_small<T, 1, 2>(x, index, coef, y, C, P, i0, i1);
  if (J == 1 && K == 1) return shift_max_planes_small<T, 1, 1>(x, index, coef, y, C, P, i0, i1);
  shift_max_planes_generic(x, index, coef, y, C, P, J, K, i0, i1);
}

// One output plane's backward, any J, K: ga[k][j] += d loss / d coef, and the plane's share of
// the input gradient added to its J source planes gxs. Where fusions tie for the maximum the
// gradient is split evenly between them (as torch.amax's backward).
template <typename T>
MICRONET_SIMD_CLONES void shift_max_backward_generic(const T* const* xs, T* const* gxs,
                                                     const T (*a)[kMaxShifts], int64_t J,
                                                     int64_t K, const T* g, int64_t P,
                                                     double (*ga)[kMaxShifts]) {
  T f[kMaxFusions][kShiftMaxChunk], best[kShiftMaxChunk], count[kShiftMaxChunk];
  for (int64_t p0 = 0; p0 < P; p0 += kShiftMaxChunk) {
    const int64_t L = P - p0 < kShiftMaxChunk ? P - p0 : kShiftMaxChunk;
    shift_max_fusions(xs, a, J, K, p0, L, f);
    for (int64_t q = 0; q < L; ++q) best[q] = f[0][q];
    for (int64_t k = 1; k < K; ++k)
      for (int64_t q = 0; q < L; ++q) best[q] = best[q] < f[k][q] ? f[k][q] : best[q];
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

// shift_max_backward_generic for J <= 2 and K <= 2 known at compile time: one pass over the
// pixels, in blocks whose partial sums of the coefficients' gradient are added in double.
// gxs[0] and gxs[1] may be one plane (one group without inner shift: the shift is the
// identity), so they are not __restrict.
template <typename T, int J, int K>
MICRONET_SIMD_CLONES void shift_max_backward_small(const T* const* xs, T* const* gxs,
                                                   const T (*a)[kMaxShifts],
                                                   const T* __restrict g, int64_t P,
                                                   double (*ga)[kMaxShifts]) {
  constexpr int64_t kBlock = 256;
  const T* __restrict x0 = xs[0];
  const T* __restrict x1 = xs[J > 1 ? 1 : 0];
  T* gx0 = gxs[0];
  T* gx1 = gxs[J > 1 ? 1 : 0];
  const T a00 = a[0][0], a01 = J > 1 ? a[0][1] : T(0);
  const T a10 = K > 1 ? a[1][0] : T(0), a11 = J > 1 && K > 1 ? a[1][1] : T(0);
  const T c[2][2] = {{a00, a01}, {a10, a11}};
  for (int64_t b0 = 0; b0 < P; b0 += kBlock) {
    const int64_t b1 = P - b0 < kBlock ? P : b0 + kBlock;
    T s00 = T(0), s01 = T(0), s10 = T(0), s11 = T(0);
#pragma omp simd reduction(+ : s00, s01, s10, s11)
    for (int64_t p = b0; p < b1; ++p) {
      const T f0 = fusion<J>(x0[p], x1[p], c[0]);
      T g0 = g[p], g1 = T(0);
      if constexpr (K > 1) {
        const T f1 = fusion<J>(x0[p], x1[p], c[1]);
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

// The backward pass of one sample: the input gradient added into gx (its C planes; the caller
// zeroes them) and gcoef ((K, J, C), overwritten) from gy, for x, index and coef as the
// forward's.
template <typename T, typename X, typename GX>
void shift_max_backward(X x, const int64_t* index, const T* coef, X gy, GX gx, T* gcoef,
                        int64_t C, int64_t P, int64_t J, int64_t K) {
  for (int64_t i = 0; i < C; ++i) {  // J scattered adds into gx per channel
    const T* xs[kMaxShifts];
    T* gxs[kMaxShifts];
    T a[kMaxFusions][kMaxShifts];
    double ga[kMaxFusions][kMaxShifts] = {};
    shift_max_sources(x, index, coef, C, J, K, i, xs, a);
    for (int64_t j = 0; j < J; ++j) gxs[j] = gx[index[j * C + i]];
    if (J == 2 && K == 2) shift_max_backward_small<T, 2, 2>(xs, gxs, a, gy[i], P, ga);
    else if (J == 2 && K == 1) shift_max_backward_small<T, 2, 1>(xs, gxs, a, gy[i], P, ga);
    else if (J == 1 && K == 2) shift_max_backward_small<T, 1, 2>(xs, gxs, a, gy[i], P, ga);
    else if (J == 1 && K == 1) shift_max_backward_small<T, 1, 1>(xs, gxs, a, gy[i], P, ga);
    else shift_max_backward_generic(xs, gxs, a, J, K, gy[i], P, ga);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < J; ++j) gcoef[(k * J + j) * C + i] = T(ga[k][j]);
  }
}

// The hyper-function of one sample: coef[(k * J + j) * C + c] from its C input planes x.
// coef must hold padded_outputs(K * J * C) values when h.blocked, else K * J * C; scratch
// C + S. hard sigmoid and rescale: (clamp(z + 3, 0, 6) / 6 - 0.5) * 2 act_max + init
// = clamp(z + 3, 0, 6) * (2 act_max / 6) + (init - act_max).
template <typename T, typename X>
MICRONET_SIMD_CLONES void hyper(X x, const ShiftMaxHyper<T>& h, int64_t C,
                                int64_t J, int64_t K, int64_t P, T* coef, T* scratch) {
  const int64_t S = h.S, R = K * J * C;
  T* mean = scratch;
  T* hidden = scratch + C;
  for (int64_t c = 0; c < C; ++c) mean[c] = dot<T>(x[c], nullptr, P) / T(P);
  for (int64_t s = 0; s < S; ++s) {
    const T z = dot(h.w1 + s * C, mean, C) + h.b1[s];
    hidden[s] = z > T(0) ? z : T(0);
  }
  if (h.blocked) {
    matvec_blocked(h.w2, hidden, h.b2, T(3), S, padded_outputs(R), coef);
  } else {
    for (int64_t r = 0; r < R; ++r) coef[r] = dot(h.w2 + r * S, hidden, S) + h.b2[r] + T(3);
  }
  const T scale = T(2) * h.act_max / T(6);
  for (int64_t kj = 0; kj < K * J; ++kj) {
    const T off = h.init[kj] - h.act_max;
    T* __restrict zr = coef + kj * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const T v = zr[c];
      zr[c] = (v < T(0) ? T(0) : (v > T(6) ? T(6) : v)) * scale + off;
    }
  }
}

// The (K, J, C) coefficients of SHIFT_MAX layer r on input planes x: its parameters (static,
// squeeze 0), or the hyper-function's output in scratch (program_format.py's layout).
template <typename T>
const T* shift_max_coefficients(const T* const* x, const T* params, const int64_t* r, Dims d,
                                std::vector<T>& scratch) {
  const int64_t C = r[kShiftMaxChannels], J = r[kShiftMaxShifts], K = r[kShiftMaxFusions],
                S = r[kShiftMaxSqueeze];
  if (S == 0) return params;
  const int64_t R_pad = padded_outputs(K * J * C);
  const T* init = params + 1;
  const T* w1 = init + K * J;
  const T* b1 = w1 + S * C;
  const T* w2 = b1 + S;
  const ShiftMaxHyper<T> h{params[0], init, w1, b1, w2, w2 + S * R_pad, S, true};
  scratch.resize(R_pad + C + S);
  hyper(x, h, C, J, K, d.planes(), scratch.data(), scratch.data() + R_pad);
  return scratch.data();
}

// SHIFT_MAX layer r: input planes x, output planes y.
template <typename T>
void shift_max(const T* const* x, T* const* y, const T* params, const int64_t* index,
               const int64_t* r, Dims d, std::vector<T>& scratch) {
  const int64_t C = r[kShiftMaxChannels];
  const T* coef = shift_max_coefficients(x, params, r, d, scratch);
  shift_max_planes(x, index, coef, y, C, d.planes(), r[kShiftMaxShifts], r[kShiftMaxFusions],
                   int64_t(0), C);
}

// interleave() of N Shift-Max output planes computed on the fly from their sources xs[i][j]
// and coefficients a[i] (fuse() on whole vectors: the output never goes to memory).
template <typename T, int J, int K>
MICRONET_SIMD_CLONES void interleave_shift_max(const T* const (*xs)[2], const T (*a)[2][2],
                                               int64_t P, const int64_t* at,
                                               T* __restrict out) {
  interleave_with<T>(P, at, out, [&](int64_t i, int64_t p, auto zero)
                                     __attribute__((always_inline)) {
    typedef decltype(zero) U;
    return fuse<J, K>(load<U>(xs[i][0] + p), load<U>(xs[i][1] + p), a[i]);
  });
}

template <typename T>
void interleave_shift_max(const ShiftMaxIn<T>& sm, int64_t o0, int64_t Og, int64_t P,
                          const int64_t* at, T* out) {
  constexpr int64_t N = kVectorBytes / sizeof(T);
  const T* xs[N][2];
  T a[N][2][2] = {};
  for (int64_t i = 0; i < N; ++i) {
    const int64_t c = (o0 + i) / Og, q = sm.plane ? sm.plane[c] : c;
    shift_max_sources(sm.x, sm.index, sm.coef, sm.C, sm.J, sm.K, q, xs[i], a[i]);
    if (sm.J == 1) xs[i][1] = xs[i][0];
  }
  if (sm.J == 2 && sm.K == 2) interleave_shift_max<T, 2, 2>(xs, a, P, at, out);
  else if (sm.J == 2) interleave_shift_max<T, 2, 1>(xs, a, P, at, out);
  else if (sm.K == 2) interleave_shift_max<T, 1, 2>(xs, a, P, at, out);
  else interleave_shift_max<T, 1, 1>(xs, a, P, at, out);
}
