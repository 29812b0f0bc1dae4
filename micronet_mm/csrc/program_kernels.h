// The kernels of program.h, compiled once per vector width: program.h includes this file
// inside namespace micronet::program::detail::v32 and ::v64, each with its own
// kVectorBytes (the bytes of one GCC vector: 32, AVX2; 64, AVX-512), so no include guard.
// Every kernel is written for N = kVectorBytes / sizeof(T) lanes.

// Plane pointers of a buffer read through a channel table.
template <typename T>
void planes(std::vector<const T*>& out, const T* base, const int64_t* perm, int64_t C,
            int64_t P) {
  out.resize(C);
  for (int64_t c = 0; c < C; ++c) out[c] = base + (perm ? perm[c] : c) * P;
}

template <typename T>
inline T relu6(T v) { return v < T(0) ? T(0) : (v > T(6) ? T(6) : v); }

// U vectors of pixels from p0 of R output planes (see pointwise_rows).
template <typename T, int R, int U>
__attribute__((always_inline)) inline void pointwise_block(const T* const* x, T* const* y,
                                                           const T* w, const T* b, int64_t Cg,
                                                           int64_t p0, bool relu,
                                                           const int64_t* tap, int64_t stride) {
  typedef typename Vec<T, kVectorBytes>::type V;
  constexpr int64_t N = kVectorBytes / sizeof(T);
  V acc[R][U];
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < U; ++u) acc[r][u] = V{} + b[r];
  for (int64_t c = 0; c < Cg; ++c) {
    V xv[U];
    for (int u = 0; u < U; ++u) std::memcpy(&xv[u], x[c] + p0 + u * N, sizeof(V));
    const int64_t k = tap ? tap[c] : c;
    for (int r = 0; r < R; ++r) {
      const T v = w[r * stride + k];
      for (int u = 0; u < U; ++u) acc[r][u] += v * xv[u];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < U; ++u) {
      V a = acc[r][u];
      if (relu) {
        a = a < V{} ? V{} : a;
        a = a > V{} + T(6) ? V{} + T(6) : a;
      }
      std::memcpy(y[r] + p0 + u * N, &a, sizeof(V));
    }
}

// 1x1 convolution, stride 1: y[o] = b[o] + sum_c w[o, c] x[g * Cg + c] for R (<= 4) output
// planes of one group at a time; R x U vectors of 64 bytes accumulate in registers while the
// loop runs over the group's input channels. A ragged end is one more vector that overlaps
// the previous one (recomputing a few pixels), so no pixel takes a scalar path unless the
// plane is shorter than one vector. With `tap`, input c takes the weights w[r * stride +
// tap[c]] (the vertical convolutions: x are the input rows of an output row's taps).
template <typename T, int R>
MICRONET_SIMD_CLONES void pointwise_rows(const T* const* x, T* const* y, const T* w,
                                         const T* b, int64_t Cg, int64_t P, bool relu,
                                         const int64_t* tap = nullptr, int64_t stride = 0) {
  constexpr int64_t N = kVectorBytes / sizeof(T);
  MICRONET_KERNEL_PATH("pointwise_rows", R, tap != nullptr);
  if (tap == nullptr) stride = Cg;
  int64_t p0 = 0;
  for (; p0 + 2 * N <= P; p0 += 2 * N)
    pointwise_block<T, R, 2>(x, y, w, b, Cg, p0, relu, tap, stride);
  for (; p0 + N <= P; p0 += N) pointwise_block<T, R, 1>(x, y, w, b, Cg, p0, relu, tap, stride);
  if (p0 < P && P >= N) {
    pointwise_block<T, R, 1>(x, y, w, b, Cg, P - N, relu, tap, stride);
    return;
  }
  for (; p0 < P; ++p0) {  // a plane shorter than one vector
    for (int r = 0; r < R; ++r) {
      T a = b[r];
      for (int64_t c = 0; c < Cg; ++c) a += w[r * stride + (tap ? tap[c] : c)] * x[c][p0];
      y[r][p0] = relu ? relu6(a) : a;
    }
  }
}

// pointwise_rows for R = rows (1 to 4) known at run time.
template <typename T>
void pointwise_rows_n(int64_t rows, const T* const* x, T* const* y, const T* w, const T* b,
                      int64_t Cg, int64_t P, bool relu, const int64_t* tap = nullptr,
                      int64_t stride = 0) {
  if (rows == 4) pointwise_rows<T, 4>(x, y, w, b, Cg, P, relu, tap, stride);
  else if (rows == 3) pointwise_rows<T, 3>(x, y, w, b, Cg, P, relu, tap, stride);
  else if (rows == 2) pointwise_rows<T, 2>(x, y, w, b, Cg, P, relu, tap, stride);
  else pointwise_rows<T, 1>(x, y, w, b, Cg, P, relu, tap, stride);
}

template <typename T>
void pointwise(const T* const* x, T* const* y, const T* w, const T* b, int64_t Cin,
               int64_t Cout, int64_t groups, int64_t P, bool relu) {
  const int64_t Cg = Cin / groups, Og = Cout / groups;
  for (int64_t o0 = 0, rows = 0; o0 < Cout; o0 += rows) {
    const int64_t g = o0 / Og;
    rows = std::min<int64_t>(4, (g + 1) * Og - o0);  // never cross a group
    const T* const* xg = x + g * Cg;
    pointwise_rows_n(rows, xg, y + o0, w + o0 * Cg, b + o0, Cg, P, relu);
  }
}

struct ConvGeom {
  int64_t Cg, Og, kh, kw, sh, sw, ph, pw, dh, dw;
  bool relu;
};

inline ConvGeom geometry(const int64_t* r) {
  return {r[kConvCIn] / r[kConvGroups], r[kConvCOut] / r[kConvGroups], r[kConvKh], r[kConvKw],
          r[kConvSh], r[kConvSw], r[kConvPh], r[kConvPw], r[kConvDh], r[kConvDw],
          r[kConvAct] == 1};
}

// Output columns [lo, hi) whose taps all read inside a row of width Wi.
inline void interior(const ConvGeom& g, int64_t Wi, int64_t Wo, int64_t& lo, int64_t& hi) {
  lo = std::min(Wo, (g.pw + g.sw - 1) / g.sw);
  const int64_t last = Wi - 1 - (g.kw - 1) * g.dw + g.pw;  // wo * sw <= last
  hi = last < 0 ? lo : std::max(lo, std::min(Wo, last / g.sw + 1));
}

// Of a and b side by side (N lanes each): lanes 0, 2, ..., 2N - 2 (even_lanes), lanes 1, 3,
// ..., 2N - 1 (odd_lanes), and lane N - 1 then lanes N..2N - 2 (back_lane: a's last lane, then
// b's first N - 1). I is V's index vector type.
template <int N, typename V, typename I>
__attribute__((always_inline)) inline V even_lanes(V a, V b) {
  if constexpr (N == 16)
    return MICRONET_SHUFFLE(I, a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  else if constexpr (N == 8)
    return MICRONET_SHUFFLE(I, a, b, 0, 2, 4, 6, 8, 10, 12, 14);
  else
    return MICRONET_SHUFFLE(I, a, b, 0, 2, 4, 6);
}

template <int N, typename V, typename I>
__attribute__((always_inline)) inline V odd_lanes(V a, V b) {
  if constexpr (N == 16)
    return MICRONET_SHUFFLE(I, a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  else
    return MICRONET_SHUFFLE(I, a, b, 1, 3, 5, 7, 9, 11, 13, 15);
}

template <int N, typename V, typename I>
__attribute__((always_inline)) inline V back_lane(V a, V b) {
  if constexpr (N == 16)
    return MICRONET_SHUFFLE(I, a, b, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
                            30);
  else
    return MICRONET_SHUFFLE(I, a, b, 7, 8, 9, 10, 11, 12, 13, 14);
}

// N consecutive elements p[0], p[SW], ..., p[(N - 1) * SW] as one vector of VB bytes (SW 1 or
// 2; SW = 2 reads 2N elements and keeps the even ones).
template <typename T, int SW, int VB = kVectorBytes>
__attribute__((always_inline)) inline typename Vec<T, VB>::type strided_load(const T* p) {
  typedef typename Vec<T, VB>::type V;
  V a;
  std::memcpy(&a, p, sizeof(V));
  if constexpr (SW == 1) {
    return a;
  } else {
    constexpr int N = VB / sizeof(T);
    V b;
    std::memcpy(&b, p + N, sizeof(V));
#if defined(__clang__)
    return even_lanes<N, V, typename Vec<T, VB>::index>(a, b);
#else  // (GCC: the same permutation; this form keeps GCC's code as it was measured)
    typename Vec<T, VB>::index even;
    for (int i = 0; i < N; ++i) even[i] = 2 * i;
    return __builtin_shuffle(a, b, even);
#endif
  }
}

template <typename T>
__attribute__((always_inline)) inline T border_sum(const T* const* rows, const T* const* wt,
                                                   int64_t taps, const ConvGeom& g, int64_t Wi,
                                                   int64_t wo, T acc) {
  for (int64_t t = 0; t < taps; ++t)
    for (int64_t tw = 0; tw < g.kw; ++tw) {
      const int64_t wi = wo * g.sw - g.pw + tw * g.dw;
      if (wi >= 0 && wi < Wi) acc += wt[t][tw] * rows[t][wi];
    }
  return acc;
}

// One output row of any grouped convolution: `rows[t]` are the input rows of the valid
// (channel, vertical tap) pairs and `wt[t]` their kw weights. Interior columns [lo, hi) (all
// taps inside the row) run as vectors that keep the sum over every tap in a register (a ragged
// end overlaps the previous vector; VB: vector bytes, 32 for rows shorter than 64 bytes);
// border columns check their taps.
template <typename T, int SW, int VB>
MICRONET_SIMD_CLONES void conv_row(const T* const* rows, const T* const* wt, int64_t taps,
                                   const ConvGeom& g, int64_t Wi, int64_t Wo, int64_t lo,
                                   int64_t hi, T bias, T* __restrict out) {
  typedef typename Vec<T, VB>::type V;
  constexpr int64_t N = VB / sizeof(T);
  // SW = 2 reads 2N elements per vector: the last, of the vector at hi - N, must be inside
  const bool vec = SW != 0 && hi - lo >= N &&
                   (SW == 1 || 2 * hi + (g.kw - 1) * g.dw - g.pw <= Wi);
  for (int64_t wo = 0; wo < Wo; ++wo) {
    if (vec && wo == lo) wo = hi;
    if (wo >= Wo) break;
    const T acc = border_sum(rows, wt, taps, g, Wi, wo, bias);
    out[wo] = g.relu ? relu6(acc) : acc;
  }
  if (!vec) return;
  MICRONET_KERNEL_PATH("conv_row", SW, VB);
  auto block = [&](auto u, int64_t w0) __attribute__((always_inline)) {  // u vectors from w0
    constexpr int U = decltype(u)::value;
    V acc[U];
    for (int i = 0; i < U; ++i) acc[i] = V{} + bias;
    for (int64_t t = 0; t < taps; ++t) {
      const T* xr = rows[t] - g.pw + w0 * SW;
      for (int64_t tw = 0; tw < g.kw; ++tw) {
        const T v = wt[t][tw];
        for (int i = 0; i < U; ++i)
          acc[i] += v * strided_load<T, SW, VB>(xr + tw * g.dw + i * N * SW);
      }
    }
    for (int i = 0; i < U; ++i) {
      if (g.relu) {
        acc[i] = acc[i] < V{} ? V{} : acc[i];
        acc[i] = acc[i] > V{} + T(6) ? V{} + T(6) : acc[i];
      }
      std::memcpy(out + w0 + i * N, &acc[i], sizeof(V));
    }
  };
  int64_t w0 = lo;
  for (; w0 + 4 * N <= hi; w0 += 4 * N) block(std::integral_constant<int, 4>{}, w0);
  for (; w0 + N <= hi; w0 += N) block(std::integral_constant<int, 1>{}, w0);
  if (w0 < hi) block(std::integral_constant<int, 1>{}, hi - N);  // overlaps the last vector
}

// Depthwise 1xk with stride SW over a whole plane whose rows are SW * Wo wide: output pixel q
// (row h, column wo) reads x[SW * q + off_t], so the plane runs as one vector loop in which
// mask[t][q] (1 inside the row, 0 where the tap falls into the neighbouring row) zeroes what a
// padded row would (mask holds one row of it and one vector more, for a vector starting
// anywhere in a row); the first and last few pixels, where a vector would leave the plane,
// check their taps.
template <typename T, int SW, int NO>
MICRONET_SIMD_CLONES void horizontal_flat(const T* __restrict x, const T* w, const T* bias,
                                          const ConvGeom& g, Dims in, Dims out,
                                          const T* mask, T* const* y) {
  // NO (1 or 2) output planes of one input plane (a channel multiplier): output i has the kw
  // weights w[i * kw ..] and bias[i]; each input vector and mask is loaded once for all NO
  typedef typename Vec<T, kVectorBytes>::type V;
  constexpr int64_t N = kVectorBytes / sizeof(T);
  const int64_t Wo = out.W, Po = out.H * Wo, Pi = in.H * in.W;
  const int64_t reach = (g.kw - 1) * g.dw - g.pw;  // furthest tap to the right
  const int64_t q0 = (g.pw + SW - 1) / SW;  // first pixel whose taps start inside the plane
  // last vector start: its last read SW * (q + N - 1) + reach (+ 1 for SW = 2) inside
  const int64_t q_last = (Pi - 1 - reach - (SW - 1) - SW * (N - 1)) / SW;
  const bool k3 = g.kw == 3 && g.dw == 1 && g.pw == 1;  // the stride-2 stems' 1x3
  const bool relu = g.relu;  // (locals: the stores through y could alias g and w for GCC)
  T wk[NO][3];
  if (SW == 2 && k3)
    for (int o = 0; o < NO; ++o)
      for (int t = 0; t < 3; ++t) wk[o][t] = w[o * 3 + t];
  auto block = [&](auto u, int64_t q) __attribute__((always_inline)) {  // u x NO sums
    constexpr int U = decltype(u)::value;
    V acc[NO][U];
    int64_t column[U];
    for (int i = 0; i < U; ++i) {
      for (int o = 0; o < NO; ++o) acc[o][i] = V{} + bias[o];
      column[i] = (q + i * N) % Wo;
    }
    if (SW == 2 && k3) {
      // 1x3, stride 2, padding 1: output q's taps x[2q - 1], x[2q], x[2q + 1] are the odd
      // lanes one pixel back, the even lanes and the odd lanes of the pair at 2q; the first
      // (masked at each row's column 0) is the previous vector's odd lanes shifted in, so each
      // input element is loaded once (the first vector of a block loads its own)
      typedef typename Vec<T, kVectorBytes>::index I;
      // even and odd lanes of a pair; lane N - 1 of the previous vector, then lanes 0..N-2
#if !defined(__clang__)  // (GCC: the form its code was measured in; clang: constant lanes)
      I even, odd, back;
      if constexpr (N == 16) {
        even = I{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
        odd = I{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
        back = I{15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30};
      } else {
        even = I{0, 2, 4, 6, 8, 10, 12, 14};
        odd = I{1, 3, 5, 7, 9, 11, 13, 15};
        back = I{7, 8, 9, 10, 11, 12, 13, 14};
      }
#endif
      V prev = V{};
      for (int i = 0; i < U; ++i) {
        const int64_t qi = q + i * N;
        V a, b;
        std::memcpy(&a, x + 2 * qi, sizeof(V));
        std::memcpy(&b, x + 2 * qi + N, sizeof(V));
#if defined(__clang__)
        const V e = even_lanes<N, V, I>(a, b), od = odd_lanes<N, V, I>(a, b);
        const V left = i == 0 ? strided_load<T, 2>(x + 2 * qi - 1) : back_lane<N, V, I>(prev, od);
#else
        const V e = __builtin_shuffle(a, b, even), od = __builtin_shuffle(a, b, odd);
        const V left = i == 0 ? strided_load<T, 2>(x + 2 * qi - 1)
                              : __builtin_shuffle(prev, od, back);
#endif
        V m;
        std::memcpy(&m, mask + column[i], sizeof(V));
        const V lm = m * left;  // (w * m) * left, exactly: m is 0 or 1
        for (int o = 0; o < NO; ++o) {
          acc[o][i] += wk[o][0] * lm;
          acc[o][i] += wk[o][1] * e;
          acc[o][i] += wk[o][2] * od;
        }
        prev = od;
      }
    } else {
      for (int64_t tw = 0; tw < g.kw; ++tw) {
        const T* mt = mask + tw * (Wo + N);
        const T* xt = x + tw * g.dw - g.pw;
        for (int i = 0; i < U; ++i) {
          const int64_t qi = q + i * N;
          V m;
          std::memcpy(&m, mt + column[i], sizeof(V));
          const V xm = m * strided_load<T, SW>(xt + SW * qi);  // as (w * m) * x: m is 0 or 1
          for (int o = 0; o < NO; ++o) acc[o][i] += w[o * g.kw + tw] * xm;
        }
      }
    }
    for (int o = 0; o < NO; ++o)
      for (int i = 0; i < U; ++i) {
        V a = acc[o][i];
        if (relu) {
          a = a < V{} ? V{} : a;
          a = a > V{} + T(6) ? V{} + T(6) : a;
        }
        std::memcpy(y[o] + q + i * N, &a, sizeof(V));
      }
  };
  int64_t done_lo = q0, done_hi = q0;
  if (q_last >= q0) {
    MICRONET_KERNEL_PATH("horizontal_flat", SW * 10 + NO, SW == 2 && k3);
    int64_t q = q0;
    for (; q + 3 * N <= q_last; q += 4 * N) block(std::integral_constant<int, 4>{}, q);
    for (; q <= q_last; q += N) block(std::integral_constant<int, 1>{}, q);
    if (q < q_last + N) block(std::integral_constant<int, 1>{}, q_last);  // overlaps
    done_hi = q_last + N;
  }
  for (int64_t q = 0; q < Po; ++q) {
    if (q == done_lo) q = done_hi;
    if (q >= Po) break;
    const int64_t h = q / Wo, wo = q % Wo;
    for (int o = 0; o < NO; ++o) {
      T acc = bias[o];
      for (int64_t tw = 0; tw < g.kw; ++tw) {
        const int64_t wi = wo * SW - g.pw + tw * g.dw;
        if (wi >= 0 && wi < in.W) acc += w[o * g.kw + tw] * x[h * in.W + wi];
      }
      y[o][q] = g.relu ? relu6(acc) : acc;
    }
  }
}

// Depthwise kx1, stride 1: each tap is one flat loop over the output rows it reaches.
template <typename T>
MICRONET_SIMD_CLONES void vertical_flat(const T* __restrict x, const T* w, T bias,
                                        const ConvGeom& g, Dims in, Dims out,
                                        T* __restrict y) {
  const int64_t W = in.W, P = out.H * W;
  MICRONET_KERNEL_PATH("vertical_flat", 0, 0);
#pragma omp simd
  for (int64_t q = 0; q < P; ++q) y[q] = bias;
  for (int64_t th = 0; th < g.kh; ++th) {
    const int64_t shift = th * g.dh - g.ph;  // input row = output row + shift
    const int64_t h0 = std::max<int64_t>(0, -shift), h1 = std::min(out.H, in.H - shift);
    if (h1 <= h0) continue;
    const T v = w[th];
    const T* __restrict xs = x + shift * W;
#pragma omp simd
    for (int64_t q = h0 * W; q < h1 * W; ++q) y[q] += v * xs[q];
  }
  if (g.relu) {
#pragma omp simd
    for (int64_t q = 0; q < P; ++q) y[q] = relu6(y[q]);
  }
}

// Depthwise kx1 or 1xk on a small plane (P_in <= kSmallPlane) copied into `pad`, a buffer with
// zero margins of kMargin elements on both sides: output pixel q (of Pf, row width Wq) reads
// pad[SW * q + off_t] for its taps t, all in bounds, so the plane is one vector loop (the last
// vector overlaps the one before). Vertical taps reach the zero margins exactly where the
// convolution pads; horizontal taps that fall into the neighbouring row are zeroed by
// mask[t][q % Wq] (masks: NULL for vertical).
constexpr int64_t kSmallPlane = 1024, kMargin = 160;

template <typename T, int SW>
MICRONET_SIMD_CLONES void small_plane(const T* pad, const int64_t* off, const T* w,
                                      int64_t taps, const T* mask, int64_t Wq, T bias,
                                      int64_t Pf, bool relu, T* __restrict y) {
  typedef typename Vec<T, kVectorBytes>::type V;
  constexpr int64_t N = kVectorBytes / sizeof(T);
  MICRONET_KERNEL_PATH("small_plane", SW, mask != nullptr);
  // four vectors at a time (four independent sums); starts past the end are clamped to the
  // last vector, which is then computed more than once
  for (int64_t q = 0; q < Pf; q += 4 * N) {
    int64_t start[4], column[4];
    V acc[4];
    for (int i = 0; i < 4; ++i) {
      start[i] = std::min(q + i * N, Pf - N);
      column[i] = mask != nullptr ? start[i] % Wq : 0;
      acc[i] = V{} + bias;
    }
    for (int64_t t = 0; t < taps; ++t) {
      const T v = w[t];
      for (int i = 0; i < 4; ++i) {
        V x = strided_load<T, SW>(pad + SW * start[i] + off[t]);
        if (mask != nullptr) {
          V m;
          std::memcpy(&m, mask + t * (Wq + N) + column[i], sizeof(V));
          x *= m;
        }
        acc[i] += v * x;
      }
    }
    for (int i = 0; i < 4; ++i) {
      if (relu) {
        acc[i] = acc[i] < V{} ? V{} : acc[i];
        acc[i] = acc[i] > V{} + T(6) ? V{} + T(6) : acc[i];
      }
      std::memcpy(y + start[i], &acc[i], sizeof(V));
    }
  }
}

// Rows r[0..N) of an N x N block (N lanes) become its columns: four (16 lanes) or three
// (8 lanes) stages of block swaps, each one shuffle of two rows per output row.
template <typename T>
__attribute__((always_inline)) inline void transpose_block(typename Vec<T, kVectorBytes>::type* r) {
  typedef typename Vec<T, kVectorBytes>::index I;
  constexpr int N = kVectorBytes / sizeof(T);
  // (a macro, not a lambda: the shuffle's lane indices must be constants)
#define MICRONET_STAGE(s, LO, HI)                  \
  for (int i = 0; i < N; ++i) {                    \
    if (i & s) continue;                           \
    const auto a = r[i], b = r[i + s];             \
    r[i] = MICRONET_SHUFFLE(I, a, b, MICRONET_ID LO); \
    r[i + s] = MICRONET_SHUFFLE(I, a, b, MICRONET_ID HI); \
  }
  if constexpr (N == 16) {
    MICRONET_STAGE(8, (0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23),
                   (8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31))
    MICRONET_STAGE(4, (0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27),
                   (4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31))
    MICRONET_STAGE(2, (0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29),
                   (2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31))
    MICRONET_STAGE(1, (0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30),
                   (1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31))
  } else {
    MICRONET_STAGE(4, (0, 1, 2, 3, 8, 9, 10, 11), (4, 5, 6, 7, 12, 13, 14, 15))
    MICRONET_STAGE(2, (0, 1, 8, 9, 4, 5, 12, 13), (2, 3, 10, 11, 6, 7, 14, 15))
    MICRONET_STAGE(1, (0, 8, 2, 10, 4, 12, 6, 14), (1, 9, 3, 11, 5, 13, 7, 15))
  }
#undef MICRONET_STAGE
}

// A value of type U (a vector, or one element) read from p.
template <typename U, typename T>
__attribute__((always_inline)) inline U load(const T* p) {
  U v;
  std::memcpy(&v, p, sizeof(U));
  return v;
}

// N channels of P pixels -> one channel-interleaved array: pixel p of channel i at at[p] + i
// (at: each pixel's vector in a zero-padded plane, padded()). channel(i, p, zero) gives channel
// i's pixels from p as a value of zero's type: a vector of N pixels, or one pixel at the end.
template <typename T, typename F>
__attribute__((always_inline)) inline void interleave_with(int64_t P, const int64_t* at,
                                                           T* __restrict out, F&& channel) {
  typedef typename Vec<T, kVectorBytes>::type V;
  constexpr int64_t N = kVectorBytes / sizeof(T);
  int64_t p0 = 0;
  for (; p0 + N <= P; p0 += N) {
    V r[N];
#pragma GCC unroll 16
    for (int64_t i = 0; i < N; ++i) r[i] = channel(i, p0, V{});
    transpose_block<T>(r);
    // unrolled, so that r stays in registers (a rolled loop stores r to the stack and copies
    // it out 16 bytes at a time)
#pragma GCC unroll 16
    for (int64_t j = 0; j < N; ++j) std::memcpy(out + at[p0 + j], &r[j], sizeof(V));
  }
  for (; p0 < P; ++p0)
    for (int64_t i = 0; i < N; ++i) out[at[p0] + i] = channel(i, p0, T(0));
}

// N planes of P pixels, interleaved (interleave_with).
template <typename T>
MICRONET_SIMD_CLONES void interleave(const T* const* planes, int64_t P, const int64_t* at,
                                     T* __restrict out) {
  interleave_with<T>(P, at, out, [&](int64_t i, int64_t p, auto zero)
                                     __attribute__((always_inline)) {
    return load<decltype(zero)>(planes[i] + p);
  });
}

// One channel-interleaved array (pixel p of plane i at p * N + i) -> N planes of P pixels.
template <typename T>
MICRONET_SIMD_CLONES void deinterleave(const T* __restrict in, int64_t P, T* const* planes) {
  typedef typename Vec<T, kVectorBytes>::type V;
  constexpr int64_t N = kVectorBytes / sizeof(T);
  int64_t p0 = 0;
  for (; p0 + N <= P; p0 += N) {
    V r[N];
#pragma GCC unroll 16
    for (int64_t j = 0; j < N; ++j) std::memcpy(&r[j], in + (p0 + j) * N, sizeof(V));
    transpose_block<T>(r);
#pragma GCC unroll 16
    for (int64_t i = 0; i < N; ++i) std::memcpy(planes[i] + p0, &r[i], sizeof(V));
  }
  for (; p0 < P; ++p0)
    for (int64_t i = 0; i < N; ++i) planes[i][p0] = in[p0 * N + i];
}

// A Shift-Max layer applied where its output is read (depthwise_interleaved): its output plane
// q is max_k sum_j coef[(k J + j) C + q] x[index[j C + q]] (J, K <= 2), and the convolution's
// input channel c reads plane plane[c] (nullptr: plane c).
template <typename T>
struct ShiftMaxIn {
  const T* const* x;
  const int64_t* index;
  const T* coef;
  const int64_t* plane;
  int64_t C, J, K;
};

// Output channels [o0, o0 + N) of a depthwise convolution whose input is Shift-Max sm's output:
// their input planes, computed and interleaved into out (shift_max_kernels.h).
template <typename T>
void interleave_shift_max(const ShiftMaxIn<T>& sm, int64_t o0, int64_t Og, int64_t P,
                          const int64_t* at, T* out);

// Depthwise convolution (any kernel, stride, dilation) of small planes, N output channels at a
// time: their input planes interleaved (pixel-major, one vector of N channels per pixel) into
// a zero-padded plane, so that every output pixel is the sum of all its taps as whole vectors
// with no border case; U pixels of a row at a time (U independent sums: 8 keep both FMA
// pipes busy), a row's last block overlapping the one before. On 7x7 and 14x14 planes this
// replaces hundreds of short per-plane loops by one loop over the pixels.
constexpr int64_t kMaxBlockedTaps = 49;

// A plane zero-padded so that every tap of every output pixel reads inside it: input pixel
// (h, w) at (h + top, w + left) of `rows` rows `pitch` pixels wide.
struct Padded {
  int64_t top, left, rows, pitch;
  int64_t size(int64_t N) const { return rows * pitch * N; }
};

inline Padded padded(const ConvGeom& g, Dims in, Dims out) {
  return {g.ph, g.pw, std::max(g.ph + in.H, (out.H - 1) * g.sh + (g.kh - 1) * g.dh + 1),
          std::max(g.pw + in.W, (out.W - 1) * g.sw + (g.kw - 1) * g.dw + 1)};
}

// buf resized to p (N values a pixel), zero around its H x W plane (which every block of
// channels overwrites).
template <typename T>
T* aligned64(std::vector<T>& buf, int64_t n) {
  buf.resize(n + 64 / sizeof(T));
  const uintptr_t a = reinterpret_cast<uintptr_t>(buf.data());
  return reinterpret_cast<T*>((a + 63) & ~uintptr_t(63));
}

template <typename T>
T* zero_margins(std::vector<T>& buf, const Padded& p, int64_t H, int64_t W, int64_t N) {
  T* b = aligned64(buf, p.size(N));
  const int64_t row = p.pitch * N, bottom = p.top + H;
  std::fill(b, b + p.top * row, T(0));
  std::fill(b + bottom * row, b + p.rows * row, T(0));
  for (int64_t h = p.top; h < bottom; ++h) {
    std::fill(b + h * row, b + h * row + p.left * N, T(0));
    std::fill(b + h * row + (p.left + W) * N, b + (h + 1) * row, T(0));
  }
  return b;
}

// U output pixels from x (the first one's first tap): taps th * row_step + tw * tap_step,
// pixels px_step apart; KH x KW taps and SW (the horizontal stride; taps one pixel apart) known
// at compile time, or (KH = 0) kh x kw, px_step and tap_step at run time. lo, hi: the clamp
// (ReLU6, or none: -inf, +inf).
template <typename T, int U, int KH, int KW, int SW>
__attribute__((always_inline)) inline void interleaved_pixels(
    const T* __restrict x, int64_t row_step, int64_t tap_step, int64_t px_step,
    const typename Vec<T, kVectorBytes>::type* wv, typename Vec<T, kVectorBytes>::type bias,
    int64_t kh, int64_t kw, typename Vec<T, kVectorBytes>::type lo,
    typename Vec<T, kVectorBytes>::type hi, T* __restrict y) {
  typedef typename Vec<T, kVectorBytes>::type V;
  constexpr int64_t N = kVectorBytes / sizeof(T);
  const int64_t nh = KH ? KH : kh, nw = KH ? KW : kw;
  const int64_t px = KH ? SW * N : px_step, tap = KH ? N : tap_step;
  V acc[U];
  for (int u = 0; u < U; ++u) acc[u] = bias;
  for (int64_t th = 0; th < nh; ++th) {
    const T* row = x + th * row_step;
    for (int64_t tw = 0; tw < nw; ++tw) {
      const V wt = wv[th * nw + tw];
      for (int u = 0; u < U; ++u) acc[u] += wt * load<V>(row + tw * tap + u * px);
    }
  }
  for (int u = 0; u < U; ++u) {
    V a = acc[u] < lo ? lo : acc[u];
    a = a > hi ? hi : a;
    std::memcpy(y + u * N, &a, sizeof(V));
  }
}

template <typename T, int KH, int KW, int SW>
__attribute__((always_inline)) inline void interleaved_rows(
    const T* xin, const Padded& pin, const typename Vec<T, kVectorBytes>::type* wv,
    typename Vec<T, kVectorBytes>::type bias, const ConvGeom& g, Dims out, T* yout, const Padded& pout) {
  typedef typename Vec<T, kVectorBytes>::type V;
  constexpr int64_t N = kVectorBytes / sizeof(T);
  // locals, not g's fields: the stores through yout could alias g for the compiler
  const int64_t kh = g.kh, kw = g.kw, Wo = out.W, row_step = g.dh * pin.pitch * N;
  const int64_t tap_step = g.dw * N, px_step = g.sw * N, in_row = g.sh * pin.pitch * N;
  const T inf = std::numeric_limits<T>::infinity();
  const V lo = V{} + (g.relu ? T(0) : -inf), hi = V{} + (g.relu ? T(6) : inf);
  MICRONET_KERNEL_PATH("interleaved_rows", KH * 10 + KW, SW);
  for (int64_t ho = 0; ho < out.H; ++ho) {
    const T* x = xin + ho * in_row;
    T* y = yout + ((ho + pout.top) * pout.pitch + pout.left) * N;
    if (Wo >= 8) {
      for (int64_t w0 = 0; w0 < Wo; w0 += 8) {
        const int64_t wo = std::min(w0, Wo - 8);
        interleaved_pixels<T, 8, KH, KW, SW>(x + wo * px_step, row_step, tap_step, px_step,
                                             wv, bias, kh, kw, lo, hi, y + wo * N);
      }
    } else if (Wo >= 4) {
      for (int64_t w0 = 0; w0 < Wo; w0 += 4) {
        const int64_t wo = std::min(w0, Wo - 4);
        interleaved_pixels<T, 4, KH, KW, SW>(x + wo * px_step, row_step, tap_step, px_step,
                                             wv, bias, kh, kw, lo, hi, y + wo * N);
      }
    } else {
      for (int64_t wo = 0; wo < Wo; ++wo)
        interleaved_pixels<T, 1, KH, KW, SW>(x + wo * px_step, row_step, tap_step, px_step,
                                             wv, bias, kh, kw, lo, hi, y + wo * N);
    }
  }
}

// Output channels [o0, o0 + N): input xin padded as pin, output pixel (ho, wo) to the vector at
// (ho + pout.top, wo + pout.left) of rows pout.pitch pixels wide.
template <typename T>
MICRONET_SIMD_CLONES void conv_interleaved(const T* xin, const Padded& pin, const T* w,
                                           const T* b, const ConvGeom& g, Dims out, int64_t o0,
                                           T* yout, const Padded& pout) {
  typedef typename Vec<T, kVectorBytes>::type V;
  constexpr int64_t N = kVectorBytes / sizeof(T);
  const int64_t taps = g.kh * g.kw;
  V wv[kMaxBlockedTaps], bias;
  for (int64_t t = 0; t < taps; ++t)
    for (int64_t i = 0; i < N; ++i) wv[t][i] = w[(o0 + i) * taps + t];
  for (int64_t i = 0; i < N; ++i) bias[i] = b[o0 + i];
  // MicroNet's kx1 and 1xk kernels at horizontal stride 1 or 2, unrolled; the rest generic
  const int64_t k = g.dw == 1 && (g.sw == 1 || g.sw == 2) ? (g.kh * 8 + g.kw) * 4 + g.sw : 0;
  switch (k) {
#define MICRONET_INTERLEAVED(KH, KW, SW) \
  case (KH * 8 + KW) * 4 + SW:           \
    return interleaved_rows<T, KH, KW, SW>(xin, pin, wv, bias, g, out, yout, pout);
    MICRONET_INTERLEAVED(3, 1, 1) MICRONET_INTERLEAVED(1, 3, 1) MICRONET_INTERLEAVED(1, 3, 2)
    MICRONET_INTERLEAVED(5, 1, 1) MICRONET_INTERLEAVED(1, 5, 1) MICRONET_INTERLEAVED(1, 5, 2)
    MICRONET_INTERLEAVED(7, 1, 1) MICRONET_INTERLEAVED(1, 7, 1) MICRONET_INTERLEAVED(1, 7, 2)
#undef MICRONET_INTERLEAVED
    default: return interleaved_rows<T, 0, 0, 0>(xin, pin, wv, bias, g, out, yout, pout);
  }
}

// Layer r (and, with r2, the depthwise layer after it, fused: its input never leaves the
// interleaved scratch) on small planes, N output channels at a time. With sm, r's input is
// Shift-Max sm's output, computed as it is interleaved (x is not read).
template <typename T>
void depthwise_interleaved(const T* const* x, T* const* y, const T* weights, const int64_t* r,
                           const int64_t* r2, Dims in, Dims mid, Dims out,
                           const ShiftMaxIn<T>* sm) {
  constexpr int64_t N = kVectorBytes / sizeof(T);
  MICRONET_KERNEL_PATH("depthwise_interleaved", r2 != nullptr, sm != nullptr);
  thread_local std::vector<T> xin, ymid, yout;
  thread_local std::vector<int64_t> at;
  const ConvGeom g = geometry(r), g2 = r2 ? geometry(r2) : g;
  const Padded pin = padded(g, in, mid), pmid = r2 ? padded(g2, mid, out) : Padded{},
               pout{0, 0, out.H, out.W};
  T* xin_p = zero_margins(xin, pin, in.H, in.W, N);
  T* ymid_p = r2 ? zero_margins(ymid, pmid, mid.H, mid.W, N) : nullptr;
  T* yout_p = aligned64(yout, out.planes() * N);
  at.resize(in.planes());
  for (int64_t h = 0; h < in.H; ++h)
    for (int64_t w = 0; w < in.W; ++w)
      at[h * in.W + w] = ((h + pin.top) * pin.pitch + w + pin.left) * N;
  const T* w = weights + r[kConvWeights];
  const T* b = w + r[kConvCOut] * g.Cg * g.kh * g.kw;
  for (int64_t o0 = 0; o0 < r[kConvCOut]; o0 += N) {
    if (sm) {
      interleave_shift_max(*sm, o0, g.Og, in.planes(), at.data(), xin_p);
    } else {
      const T* planes[N];
      for (int64_t i = 0; i < N; ++i) planes[i] = x[(o0 + i) / g.Og];
      interleave(planes, in.planes(), at.data(), xin_p);
    }
    if (r2) {
      conv_interleaved(xin_p, pin, w, b, g, mid, o0, ymid_p, pmid);
      const T* w2 = weights + r2[kConvWeights];
      conv_interleaved(ymid_p, pmid, w2, w2 + r2[kConvCOut] * g2.kh * g2.kw, g2, out, o0,
                       yout_p, pout);
    } else {
      conv_interleaved(xin_p, pin, w, b, g, out, o0, yout_p, pout);
    }
    deinterleave(yout_p, out.planes(), y + o0);
  }
}

// The largest zero-padded input plane of depthwise_interleaved, whose scratch holds it N times
// (1 MiB of float32 at 16 lanes; MicroNet's layers pad a plane of at most kSmallPlane pixels by
// at most 3 pixels, in one direction, so that none comes near it).
constexpr int64_t kMaxInterleavedPlane = 16 * kSmallPlane;

// Whether layer r runs through depthwise_interleaved (alone, or as the first of a fused pair
// with `second`, which reads only r's output, in order, and is depthwise itself): planes of
// up to kSmallPlane pixels (7x7 to 28x28, any stride). With the interleaved loops' stores
// unrolled, 28x28 planes of stride 1 run faster interleaved than planar, and 56x56 planes
// faster planar (`tools/analysis/bench_program.py --against` compares two builds).
template <typename T>
bool interleavable(const int64_t* r, Dims in) {
  constexpr int64_t N = kVectorBytes / sizeof(T);
  return r[kOp] == kConv && r[kConvCIn] == r[kConvGroups] && r[kConvCOut] % N == 0 &&
         in.planes() <= kSmallPlane &&
         r[kConvKh] * r[kConvKw] <= kMaxBlockedTaps &&
         (in.H + 2 * r[kConvPh]) * (in.W + 2 * r[kConvPw]) <= kMaxInterleavedPlane;
}

// The input rows of output row ho's valid (channel, vertical tap) pairs in group grp, and each
// pair's index c * kh + th among an output channel's kernel rows; returns their count.
template <typename T>
int64_t tap_rows(const T* const* x, const ConvGeom& g, Dims in, int64_t ho, int64_t grp,
                 const T** rows, int64_t* tap) {
  int64_t taps = 0;
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t th = 0; th < g.kh; ++th) {
      const int64_t hi_row = ho * g.sh - g.ph + th * g.dh;
      if (hi_row < 0 || hi_row >= in.H) continue;
      rows[taps] = x[grp * g.Cg + c] + hi_row * in.W;
      tap[taps++] = c * g.kh + th;
    }
  return taps;
}

// Any grouped spatial convolution (depthwise kx1 / 1xk / kxk with channel multipliers, the
// dense stem).
template <typename T>
void conv_spatial(const T* const* x, T* const* y, const T* w, const T* b, const int64_t* r,
                  Dims in, Dims out, std::vector<T>& scratch) {
  const ConvGeom g = geometry(r);
  const int64_t N = kVectorBytes / sizeof(T);
  int64_t lo, hi;
  interior(g, in.W, out.W, lo, hi);
  // depthwise kx1, any vertical stride: vertical_flat at stride 1 (rows 0 .. (H_out - 1) * sh
  // of the stride-1 output), then every sh-th row; strided only on rows under 32 elements:
  // longer ones run faster row by row, computing only the rows kept (M2's stage-1 3x1 of
  // stride 2 on 56x56 planes runs about twice as fast that way, bit-for-bit equal)
  const bool vertical = g.Cg == 1 && g.kw == 1 && g.sw == 1 && out.W == in.W &&
                        (g.sh == 1 || in.W < 32);
  const Dims full{1, (out.H - 1) * g.sh + 1, out.W};
  thread_local std::vector<T> rows_s1;
  if (vertical && g.sh > 1) rows_s1.resize(full.planes());
  const bool horizontal = g.Cg == 1 && g.kh == 1 && g.sh == 1 && (g.sw == 1 || g.sw == 2) &&
                          out.H == in.H && in.W == g.sw * out.W && out.planes() >= N;
  if (horizontal) {  // the masks of horizontal_flat (one row + one vector), for every plane
    const int64_t period = out.W + N;
    scratch.resize(g.kw * period);
    for (int64_t tw = 0; tw < g.kw; ++tw)
      for (int64_t q = 0; q < period; ++q) {
        const int64_t wi = (q % out.W) * g.sw - g.pw + tw * g.dw;
        scratch[tw * period + q] = wi >= 0 && wi < in.W ? T(1) : T(0);
      }
  }
  // small planes: depthwise kx1 (any vertical stride) or 1xk (stride 1 or 2) through
  // small_plane, from a zero-margined copy of the input plane
  const int64_t reach_v = std::max(g.ph, (g.kh - 1) * g.dh - g.ph) * in.W;
  const int64_t reach_h = std::max(g.pw, (g.kw - 1) * g.dw - g.pw) + 2 * N;
  const bool small = g.Cg == 1 && in.planes() <= kSmallPlane && full.planes() >= N &&
                     out.planes() >= N &&
                     ((g.kw == 1 && g.sw == 1 && out.W == in.W && reach_v + N <= kMargin) ||
                      (horizontal && reach_h <= kMargin));
  thread_local std::vector<T> pad;
  std::vector<int64_t> off;
  // small through the vertical condition (kx1, stride 1 across; a 1x1 kernel of stride 1
  // too), else through the horizontal one (1xk, a 1x1 kernel of stride 2 across included)
  const bool column = g.kw == 1 && g.sw == 1;
  if (small) {
    pad.assign(in.planes() + 2 * kMargin, T(0));
    for (int64_t t = 0; t < std::max(g.kh, g.kw); ++t)
      off.push_back(kMargin + (column ? (t * g.dh - g.ph) * in.W : t * g.dw - g.pw));
  }
  std::vector<const T*> rows(g.Cg * g.kh), wt(g.Cg * g.kh);
  std::vector<int64_t> tap(g.Cg * g.kh);
  if (!small && !vertical && !horizontal && g.kw == 1 && g.sw == 1 && g.pw == 0 &&
      out.W == in.W && in.W >= N) {
    // vertical taps only (the stem's dense 3x1, stage 1's strided kx1): up to four output
    // channels of a group per pass over its input rows (pointwise_rows over the taps' rows),
    // which each vector then feeds to all
    for (int64_t ho = 0; ho < out.H; ++ho)
      for (int64_t grp = 0; grp < r[kConvGroups]; ++grp) {
        const int64_t taps = tap_rows(x, g, in, ho, grp, rows.data(), tap.data());
        for (int64_t o = grp * g.Og; o < (grp + 1) * g.Og;) {
          const int64_t n = std::min<int64_t>(4, (grp + 1) * g.Og - o);
          T* yr[4];
          for (int64_t i = 0; i < n; ++i) yr[i] = y[o + i] + ho * out.W;
          const int64_t k = g.Cg * g.kh;  // weights per output channel
          pointwise_rows_n(n, rows.data(), yr, w + o * k, b + o, taps, in.W, g.relu, tap.data(),
                           k);
          o += n;
        }
      }
    return;
  }
  if (!small && !vertical && !horizontal) {
    // row by row, every output channel of a row in turn: the input rows of a group stay in L1
    // (output channel by channel, the dense stem streamed its input from L2 once per channel)
    for (int64_t ho = 0; ho < out.H; ++ho) {
      for (int64_t o = 0; o < r[kConvCOut]; ++o) {
        const int64_t grp = o / g.Og;
        const T* wo = w + o * g.Cg * g.kh * g.kw;
        const int64_t taps = tap_rows(x, g, in, ho, grp, rows.data(), tap.data());
        for (int64_t t = 0; t < taps; ++t) wt[t] = wo + tap[t] * g.kw;
        T* yr = y[o] + ho * out.W;
        const bool wide = hi - lo >= N;
        if (g.sw == 1 && wide)
          conv_row<T, 1, kVectorBytes>(rows.data(), wt.data(), taps, g, in.W, out.W, lo, hi, b[o], yr);
        else if (g.sw == 1)
          conv_row<T, 1, 32>(rows.data(), wt.data(), taps, g, in.W, out.W, lo, hi, b[o], yr);
        else if (g.sw == 2 && wide)
          conv_row<T, 2, kVectorBytes>(rows.data(), wt.data(), taps, g, in.W, out.W, lo, hi, b[o], yr);
        else if (g.sw == 2)
          conv_row<T, 2, 32>(rows.data(), wt.data(), taps, g, in.W, out.W, lo, hi, b[o], yr);
        else
          conv_row<T, 0, kVectorBytes>(rows.data(), wt.data(), taps, g, in.W, out.W, lo, lo, b[o], yr);
      }
    }
    return;
  }
  const T* copied = nullptr;
  for (int64_t o = 0; o < r[kConvCOut]; ++o) {
    const int64_t grp = o / g.Og;
    const T* wo = w + o * g.Cg * g.kh * g.kw;
    if (small) {
      if (copied != x[grp]) {  // a channel multiplier reuses the copy
        std::memcpy(pad.data() + kMargin, x[grp], in.planes() * sizeof(T));
        copied = x[grp];
      }
      const int64_t taps = std::max(g.kh, g.kw);
      if (column && g.sh == 1) {
        small_plane<T, 1>(pad.data(), off.data(), wo, taps, nullptr, out.W, b[o],
                          out.planes(), g.relu, y[o]);
      } else if (column) {
        rows_s1.resize(full.planes());
        small_plane<T, 1>(pad.data(), off.data(), wo, taps, nullptr, out.W, b[o],
                          full.planes(), g.relu, rows_s1.data());
        for (int64_t ho = 0; ho < out.H; ++ho)
          std::memcpy(y[o] + ho * out.W, rows_s1.data() + ho * g.sh * out.W,
                      out.W * sizeof(T));
      } else if (g.sw == 1) {
        small_plane<T, 1>(pad.data(), off.data(), wo, taps, scratch.data(), out.W, b[o],
                          out.planes(), g.relu, y[o]);
      } else {
        small_plane<T, 2>(pad.data(), off.data(), wo, taps, scratch.data(), out.W, b[o],
                          out.planes(), g.relu, y[o]);
      }
      continue;
    }
    if (vertical && g.sh == 1) {
      vertical_flat(x[grp], wo, b[o], g, in, out, y[o]);
      continue;
    }
    if (vertical) {
      vertical_flat(x[grp], wo, b[o], g, in, full, rows_s1.data());
      for (int64_t ho = 0; ho < out.H; ++ho)
        std::memcpy(y[o] + ho * out.W, rows_s1.data() + ho * g.sh * out.W, out.W * sizeof(T));
      continue;
    }
    if (horizontal) {  // three or two outputs of one input plane at a time where there are
      T* const* yo = y + o;
      const T* mask = scratch.data();
      if (g.Og % 3 == 0) {
        if (g.sw == 1) horizontal_flat<T, 1, 3>(x[grp], wo, b + o, g, in, out, mask, yo);
        else horizontal_flat<T, 2, 3>(x[grp], wo, b + o, g, in, out, mask, yo);
        o += 2;
      } else if (g.Og % 2 == 0) {
        if (g.sw == 1) horizontal_flat<T, 1, 2>(x[grp], wo, b + o, g, in, out, mask, yo);
        else horizontal_flat<T, 2, 2>(x[grp], wo, b + o, g, in, out, mask, yo);
        ++o;
      } else if (g.sw == 1) {
        horizontal_flat<T, 1, 1>(x[grp], wo, b + o, g, in, out, mask, yo);
      } else {
        horizontal_flat<T, 2, 1>(x[grp], wo, b + o, g, in, out, mask, yo);
      }
      continue;
    }
  }
}


// Horizontal sum of a vector: a shuffle tree (compilers reduce a `simd reduction` lane by lane,
// which dominates on 7x7 planes and short rows).
template <typename T>
__attribute__((always_inline)) inline T lanes_sum(typename Vec<T, kVectorBytes>::type a) {
  typedef typename Vec<T, kVectorBytes>::index I;
  if constexpr (kVectorBytes / sizeof(T) == 16) {
    a += MICRONET_SHUFFLE(I, a, a, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
    a += MICRONET_SHUFFLE(I, a, a, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
    a += MICRONET_SHUFFLE(I, a, a, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    a += MICRONET_SHUFFLE(I, a, a, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
  } else {
    a += MICRONET_SHUFFLE(I, a, a, 4, 5, 6, 7, 0, 1, 2, 3);
    a += MICRONET_SHUFFLE(I, a, a, 2, 3, 0, 1, 6, 7, 4, 5);
    a += MICRONET_SHUFFLE(I, a, a, 1, 0, 3, 2, 5, 4, 7, 6);
  }
  return a[0];
}

// sum_q term(q, zero) for q < n, where term(q, zero) gives the terms from q as a value of
// zero's type (a vector of N terms, or one term at the end): two vector sums, then one more
// vector, the shuffle-tree sum, then the rest one at a time.
template <typename T, typename F>
__attribute__((always_inline)) inline T sum_of(int64_t n, F&& term) {
  typedef typename Vec<T, kVectorBytes>::type V;
  constexpr int64_t N = kVectorBytes / sizeof(T);
  V s0 = V{}, s1 = V{};
  int64_t q = 0;
  for (; q + 2 * N <= n; q += 2 * N) {
    s0 += term(q, V{});
    s1 += term(q + N, V{});
  }
  if (q + N <= n) {
    s0 += term(q, V{});
    q += N;
  }
  T sum = lanes_sum<T>(s0 + s1);
  for (; q < n; ++q) sum += term(q, T(0));
  return sum;
}

// sum_q a[q] (b == nullptr) or sum_q a[q] * b[q], q < n.
template <typename T>
__attribute__((always_inline)) inline T dot(const T* a, const T* b, int64_t n) {
  return sum_of<T>(n, [&](int64_t q, auto zero) __attribute__((always_inline)) {
    typedef decltype(zero) U;
    U x = load<U>(a + q);
    if (b != nullptr) x *= load<U>(b + q);
    return x;
  });
}

// out[q] = bias[q] + add + sum_h v[h] * W[q, h] for q < n_pad (a multiple of kMatvecBlock)
// with W stored in blocks of kMatvecBlock outputs, each block holding its `rows` rows in turn
// (blocked[(block * rows + h) * B + i] = W[block * B + i, h]): the outputs of a block stay in
// registers while the weights stream contiguously, two rows at a time into two sets of sums
// (the weights come from L2 or L3: two independent FMA chains per output vector keep more
// loads in flight, about 10% faster than one on the classifier head's 768 -> 1024 -> 1000).
template <typename T>
__attribute__((always_inline)) inline void matvec_blocked(const T* blocked, const T* v,
                                                          const T* bias, T add, int64_t rows,
                                                          int64_t n_pad, T* out) {
  typedef typename Vec<T, kVectorBytes>::type V;
  constexpr int64_t N = kVectorBytes / sizeof(T), B = kMatvecBlock, NV = B / N;
  for (int64_t q0 = 0; q0 < n_pad; q0 += B) {
    V acc[2][NV];
    for (int i = 0; i < NV; ++i) {
      // a value, not a memcpy into acc (which GCC copies through the stack in 16-byte
      // halves, then reads back whole: a store-forwarding stall per vector)
      acc[0][i] = load<V>(bias + q0 + i * N) + add;
      acc[1][i] = V{};
    }
    const T* wb = blocked + q0 * rows;
    auto row = [&](int s, int64_t h) __attribute__((always_inline)) {
      const T vh = v[h];
      for (int i = 0; i < NV; ++i) {
        V w;
        std::memcpy(&w, wb + h * B + i * N, sizeof(V));
        acc[s][i] += vh * w;
      }
    };
    int64_t h = 0;
    for (; h + 2 <= rows; h += 2) {
      row(0, h);
      row(1, h + 1);
    }
    if (h < rows) row(0, h);
    for (int i = 0; i < NV; ++i) {
      const V a = acc[0][i] + acc[1][i];
      std::memcpy(out + q0 + i * N, &a, sizeof(V));
    }
  }
}

// Dynamic Shift-Max: the SHIFT_MAX layer, its hyper-function and interleave_shift_max, the
// kernels that the torch ops and the OpenVINO node run too (shift_max.h).
#include "shift_max_kernels.h"

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

template <typename T>
inline T hswish(T v) { return v * (relu6(v + T(3)) / T(6)); }

// POOL: y[c] = hswish?(mean_p relu6?(x[c][p])), one value per output plane.
template <typename T>
MICRONET_SIMD_CLONES void pool(const T* const* x, T* const* y, int64_t C, int64_t P,
                               bool relu6_in, bool hswish_out) {
  for (int64_t c = 0; c < C; ++c) {
    const T* p = x[c];
    const T sum = sum_of<T>(P, [&](int64_t q, auto zero) __attribute__((always_inline)) {
      typedef decltype(zero) U;
      U v = load<U>(p + q);
      if (relu6_in) {
        const U six = U{} + T(6);
        v = v < U{} ? U{} : v;
        v = v > six ? six : v;
      }
      return v;
    });
    const T m = sum / T(P);
    y[c][0] = hswish_out ? hswish(m) : m;
  }
}

// LINEAR: y[q] = act(b[q] + sum_c W[q, c] x[c]) for a (C_in, 1, 1) input (act: 0 none, 1
// ReLU6, 2 h-swish); W blocked as matvec_blocked reads it.
template <typename T>
MICRONET_SIMD_CLONES void linear(const T* const* x, T* const* y, const T* params, int64_t Cin,
                                 int64_t Cout, int64_t act, std::vector<T>& scratch) {
  const int64_t R_pad = padded_outputs(Cout);
  scratch.resize(Cin + R_pad);
  T* v = scratch.data();
  T* z = v + Cin;
  for (int64_t c = 0; c < Cin; ++c) v[c] = x[c][0];
  matvec_blocked(params, v, params + Cin * R_pad, T(0), Cin, R_pad, z);
  for (int64_t q = 0; q < Cout; ++q)
    y[q][0] = act == 2 ? hswish(z[q]) : (act == 1 ? relu6(z[q]) : z[q]);
}


// Arena offsets of buffers 1..L-1 (buffer L is the output): a buffer's space is reused once
// the last layer reading it has run, first fit, so that a stage's layers keep writing into
// memory that is still in cache (one program over a whole backbone without reuse ran 25%
// slower than one per stage). `total` gets the arena size.
template <typename T>
std::vector<int64_t> place_buffers(const int64_t* prog, const std::vector<Dims>& d,
                                   int64_t& total, std::vector<bool>& pair,
                                   std::vector<bool>& into) {
  const int64_t L = prog[1];
  std::vector<int64_t> offset(L + 1, 0), last(L + 1, -1);  // the last layer reading a buffer
  for (int64_t l = 0; l < L; ++l) {
    const int64_t* r = record(prog, l);
    last[r[kSrc]] = l;
    if (r[kOp] == kAdd) last[r[kAddSecond]] = l;
  }
  // Shift-Max layers (J, K <= 2, no output table) whose output only the next layer reads, a
  // depthwise layer on the interleaved path: that layer computes it as it interleaves its
  // input (the Shift-Max's input lives until then; the output buffer is never written)
  into.assign(L, false);
  for (int64_t l = 0; l + 1 < L; ++l) {
    const int64_t *r = record(prog, l), *r2 = record(prog, l + 1);
    into[l] = r[kOp] == kShiftMax && r[kOutPerm] < 0 && r[kShiftMaxShifts] <= 2 &&
              r[kShiftMaxFusions] <= 2 && r2[kSrc] == l + 1 &&
              last[l + 1] == l + 1 && interleavable<T>(r2, d[l + 1]);
  }
  // depthwise pairs (kx1 then 1xk) that run fused: nothing else reads the first's output and
  // no shuffle sits between them; the pair reads the first's input while it writes the
  // second's output, so that input lives one layer longer
  pair.assign(L, false);
  for (int64_t l = 0; l + 1 < L; ++l) {
    const int64_t *r = record(prog, l), *r2 = record(prog, l + 1);
    pair[l] = interleavable<T>(r, d[r[kSrc]]) && r[kOutPerm] < 0 && r2[kSrc] == l + 1 &&
              r2[kInPerm] < 0 && last[l + 1] == l + 1 && interleavable<T>(r2, d[l + 1]) &&
              r2[kConvCOut] == r2[kConvCIn];
    if (pair[l] && r[kSrc] > 0) last[r[kSrc]] = std::max(last[r[kSrc]], l + 1);
    if (pair[l]) ++l;
  }
  for (int64_t l = 0; l + 1 < L; ++l) {
    const int64_t src = record(prog, l)[kSrc];
    if (into[l] && src > 0) last[src] = std::max(last[src], pair[l + 1] ? l + 2 : l + 1);
  }
  struct Block { int64_t begin, end, buffer; };  // live buffers, by offset
  std::vector<Block> live;
  total = 0;
  for (int64_t l = 0; l + 1 < L; ++l) {  // layer l writes buffer l + 1
    live.erase(std::remove_if(live.begin(), live.end(),
                              [&](const Block& b) { return last[b.buffer] < l; }),
               live.end());
    std::sort(live.begin(), live.end(),
              [](const Block& a, const Block& b) { return a.begin < b.begin; });
    const int64_t size = d[l + 1].size();
    int64_t at = 0;  // the first gap that fits
    for (const Block& b : live) {
      if (b.begin - at >= size) break;
      at = std::max(at, b.end);
    }
    offset[l + 1] = at;
    live.push_back({at, at + size, l + 1});
    total = std::max(total, at + size);
  }
  return offset;
}

// run() for this vector width (program.h).
template <typename T>
void run_layers(const Plan& plan, const int64_t* prog, const T* weights, const int64_t* tables,
         const T* x, T* y, int64_t n_begin, int64_t n_end) {
  const std::vector<Dims>& d = plan.d;
  const Dims in = plan.in;
  const int64_t L = prog[1], total = plan.total;
  const std::vector<bool>& pair = plan.pair;
  const std::vector<bool>& into = plan.into;
  const std::vector<int64_t>& offset = plan.offset;
  // scratch of this thread, kept between calls (never read before written)
  thread_local std::vector<T> arena, scratch, coef;
  thread_local std::vector<const T*> src, second, sm_src;
  thread_local std::vector<T*> dst;
  if (arena.size() < static_cast<size_t>(total)) arena.resize(static_cast<size_t>(total));
  ShiftMaxIn<T> sm{};  // the Shift-Max layer that the next layer applies (into)
  for (int64_t n = n_begin; n < n_end; ++n) {
    auto buffer = [&](int64_t id) -> T* {
      if (id == 0) return const_cast<T*>(x + n * in.size());
      if (id == L) return y + n * d[L].size();
      return arena.data() + offset[id];
    };
    for (int64_t l = 0; l < L; ++l) {
      const int64_t* r = record(prog, l);
      const Dims s = d[r[kSrc]], o = d[l + 1];
#ifdef MICRONET_PROGRAM_PROFILE
      const auto start = std::chrono::steady_clock::now();
#endif
      planes(src, buffer(r[kSrc]), r[kInPerm] < 0 ? nullptr : tables + r[kInPerm], s.C,
             s.planes());
      T* out = buffer(l + 1);
      dst.resize(o.C);
      for (int64_t c = 0; c < o.C; ++c)
        dst[c] = out + (r[kOutPerm] < 0 ? c : tables[r[kOutPerm] + c]) * o.planes();
      if (r[kOp] == kShiftMax && into[l]) {  // the coefficients now, the rest in layer l + 1
        sm_src = src;
        const int64_t* r2 = record(prog, l + 1);
        sm = {sm_src.data(), tables + r[kShiftMaxIndex],
              shift_max_coefficients(sm_src.data(), weights + r[kShiftMaxParams], r, s, coef),
              r2[kInPerm] < 0 ? nullptr : tables + r2[kInPerm], r[kShiftMaxChannels],
              r[kShiftMaxShifts], r[kShiftMaxFusions]};
      } else if (r[kOp] == kConv && interleavable<T>(r, s)) {
        const ShiftMaxIn<T>* in_sm = l > 0 && into[l - 1] ? &sm : nullptr;
        if (pair[l]) {  // with layer l + 1 (place_buffers)
          const int64_t* r2 = record(prog, l + 1);
          T* out2 = buffer(l + 2);
          const Dims o2 = d[l + 2];
          dst.resize(o2.C);
          for (int64_t c = 0; c < o2.C; ++c)
            dst[c] = out2 + (r2[kOutPerm] < 0 ? c : tables[r2[kOutPerm] + c]) * o2.planes();
          depthwise_interleaved(src.data(), dst.data(), weights, r, r2, s, o, o2, in_sm);
          ++l;  // layer l + 1 done too
        } else {
          depthwise_interleaved<T>(src.data(), dst.data(), weights, r, nullptr, s, o, o,
                                           in_sm);
        }
      } else if (r[kOp] == kConv) {
        const T* w = weights + r[kConvWeights];
        const T* b = w + r[kConvCOut] * (r[kConvCIn] / r[kConvGroups]) * r[kConvKh] * r[kConvKw];
        if (r[kConvKh] == 1 && r[kConvKw] == 1 && r[kConvSh] == 1 && r[kConvSw] == 1 &&
            r[kConvPh] == 0 && r[kConvPw] == 0)
          pointwise(src.data(), dst.data(), w, b, r[kConvCIn], r[kConvCOut], r[kConvGroups],
                    o.planes(), r[kConvAct] == 1);
        else
          conv_spatial(src.data(), dst.data(), w, b, r, s, o, scratch);
      } else if (r[kOp] == kShiftMax) {
        shift_max(src.data(), dst.data(), weights + r[kShiftMaxParams],
                  tables + r[kShiftMaxIndex], r, s, scratch);
      } else if (r[kOp] == kPool) {
        pool(src.data(), dst.data(), s.C, s.planes(), r[kPoolRelu6] == 1, r[kPoolHswish] == 1);
      } else if (r[kOp] == kLinear) {
        linear(src.data(), dst.data(), weights + r[kLinearParams], r[kLinearCIn],
               r[kLinearCOut], r[kLinearAct], scratch);
      } else {
        const Dims t = d[r[kAddSecond]];
        planes(second, buffer(r[kAddSecond]),
               r[kAddSecondPerm] < 0 ? nullptr : tables + r[kAddSecondPerm], t.C,
                       t.planes());
        add(src.data(), second.data(), dst.data(), o.C, o.planes());
      }
#ifdef MICRONET_PROGRAM_PROFILE
      micronet_program_profile(
          r, l, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
#endif
    }
  }
}
