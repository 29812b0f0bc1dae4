// A fused MicroNet block (or a chain of blocks) as one call: a tiny layer program run on
// planar (N, C, H, W) tensors, header-only, framework-free C++17. The OpenVINO operation
// micronet::Program and the torch.library op micronet::program both run it.
//
// Why: in a runtime each MicroNet layer is a node, and the runtime's blocked layouts meet
// MicroNet's channel shuffles and Shift-Max in planar layout, so half of OpenVINO's time went
// to layout reorders and per-node overheads (docs/deploy.md). Here a whole block runs in one
// call, in one layout, with its intermediate tensors in cache, and every channel shuffle is a
// table of plane pointers: no shuffle ever moves data.
//
// Program (int64 vector): [kVersion, L, record_0, ..., record_{L-1}], each record kFields
// int64. The fields are defined once, in micronet_mm/csrc/program_format.py (its docstring
// says what each one means); program_format.h, generated from it, names them: field f of a
// record r of operation X is r[kXF] (r[kConvGroups], r[kShiftMaxIndex], ...). The program's
// output is the last layer's buffer. Every buffer is planar and dense.
//
// run() fuses what the program allows (place_buffers): a depthwise kx1 + 1xk pair on a small
// plane runs in one pass over a channel-interleaved scratch, and a Shift-Max layer whose
// output only such a depthwise layer reads is applied as that layer interleaves its input
// (the Shift-Max output never goes to memory). plan() works this out once per program and
// input shape.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "program_format.h"

// Vectorised loops are compiled for the baseline ISA and for AVX2+FMA and AVX-512
// (x86-64-v3, -v4), and the CPU picks at load time (GCC function multi-versioning on
// Linux/x86-64): a library built on one machine runs, fast, on another. Elsewhere: baseline.
// A build for one ISA only defines it empty and passes -march (-DMICRONET_SIMD_CLONES=
// -march=x86-64-v3: the AVX2 code alone, e.g. to time it on an AVX-512 host).
#if defined(MICRONET_SIMD_CLONES)
#elif defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MICRONET_SIMD_CLONES \
  __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define MICRONET_SIMD_CLONES
#endif

#ifdef MICRONET_PROGRAM_PROFILE  // a benchmark harness defines it and the hook below
#include <chrono>
void micronet_program_profile(const int64_t* record, int64_t layer, double seconds);
#endif

namespace micronet {

// Dynamic Shift-Max's most shifts J and fusions K: a SHIFT_MAX record, the torch ops and the
// OpenVINO node check them (shift_max_kernels.h keeps K x J coefficients on the stack).
constexpr int64_t kMaxShifts = 8, kMaxFusions = 8;

// The parameters of Dynamic Shift-Max's hyper-function (shift_max_kernels.h, hyper()):
// act_max, init (K, J), fc1 w1 (S, C) and b1 (S), fc2 w2 and b2 with K * J * C outputs in rows
// [k][j][c] (the reference checkpoints' layout), either as they are (w2 (K*J*C, S), row-major:
// the torch op's and the OpenVINO node's inputs) or `blocked` as matvec_blocked reads them (a
// program's layout, program_format.py; b2 padded to whole blocks).
template <typename T>
struct ShiftMaxHyper {
  T act_max;
  const T *init, *w1, *b1, *w2, *b2;
  int64_t S;
  bool blocked;
};

namespace program {

struct Dims {
  int64_t C, H, W;
  int64_t planes() const { return H * W; }
  int64_t size() const { return C * H * W; }
};

inline const int64_t* record(const int64_t* prog, int64_t l) { return prog + 2 + l * kFields; }

// The most elements that the buffers of one sample (every layer's output, the program's output
// included) may hold together, and the most that one convolution's zero-padded input plane
// ((H + 2 ph) x (W + 2 pw)) or its row masks (kw x (W_out + 64)) may span: 2^28 (1 GiB of
// float32 per sample and thread). run() allocates nothing larger: its arena holds at most the
// buffers, and every kernel's scratch is bounded by a padded plane, a row mask or the span of
// the layer's parameters in `weights` (check()).
constexpr int64_t kMaxElements = int64_t(1) << 28;
// Every record field after the first four lies in [-1, kMaxField).
constexpr int64_t kMaxField = int64_t(1) << 31;

namespace detail {

[[noreturn]] inline void fail(const std::string& what, int64_t layer) {
  throw std::invalid_argument("micronet program: " + what + " (layer " +
                              std::to_string(layer) + ")");
}

// a * b, a + b with int64 overflow an error (std::invalid_argument naming the layer).
inline int64_t mul(int64_t a, int64_t b, int64_t layer) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) fail("size overflows int64", layer);
  return r;
}

inline int64_t add(int64_t a, int64_t b, int64_t layer) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) fail("size overflows int64", layer);
  return r;
}

// n, checked against kMaxElements (what: the quantity, for the message).
inline int64_t bounded(int64_t n, const char* what, int64_t layer) {
  if (n > kMaxElements)
    fail(std::string(what) + " of " + std::to_string(n) + " elements exceeds the limit of " +
             std::to_string(kMaxElements),
         layer);
  return n;
}

}  // namespace detail

// Shapes of every buffer (0: the input), checking every field that the shapes depend on and
// every size against kMaxElements with overflow-checked arithmetic, so that nothing here or in
// run() divides by zero, overflows or allocates without bound; throws std::invalid_argument
// naming the check and the layer. check() adds the offsets and table entries.
inline std::vector<Dims> infer(const int64_t* prog, int64_t len, Dims in) {
  using detail::fail;
  using detail::mul;
  if (prog == nullptr || len < 2 || prog[0] != kVersion || prog[1] < 1 || prog[1] > len ||
      len != 2 + prog[1] * kFields)
    throw std::invalid_argument("micronet program: bad header or length (expected [" +
                                std::to_string(kVersion) + ", L >= 1, L records of " +
                                std::to_string(kFields) + "])");
  if (in.C < 1 || in.H < 1 || in.W < 1)
    throw std::invalid_argument("micronet program: empty input (" + std::to_string(in.C) +
                                ", " + std::to_string(in.H) + ", " + std::to_string(in.W) + ")");
  mul(mul(in.C, in.H, -1), in.W, -1);
  const int64_t L = prog[1];
  std::vector<Dims> d{in};
  int64_t total = 0;  // elements of the buffers 1..L
  for (int64_t l = 0; l < L; ++l) {
    const int64_t* r = record(prog, l);
    for (int64_t f = kOutPerm + 1; f < kFields; ++f)
      if (r[f] < -1 || r[f] >= kMaxField)
        fail(std::string(field_name(r[kOp], f)) + " out of range [-1, 2^31)", l);
    if (r[kSrc] < 0 || r[kSrc] > l) fail("bad source", l);
    const Dims s = d[r[kSrc]];
    Dims o = s;
    if (r[kOp] == kConv) {
      for (int f : {kConvCOut, kConvGroups, kConvKh, kConvKw, kConvSh, kConvSw, kConvDh, kConvDw})
        if (r[f] < 1) fail(std::string(field_name(kConv, f)) + " must be >= 1", l);
      const int64_t ph = r[kConvPh], pw = r[kConvPw], groups = r[kConvGroups];
      if (ph < 0 || pw < 0) fail("conv padding must be >= 0", l);
      if (r[kConvAct] != 0 && r[kConvAct] != 1) fail("conv act must be 0 or 1", l);
      if (r[kConvCIn] != s.C || r[kConvCIn] % groups || r[kConvCOut] % groups)
        fail("conv channels " + std::to_string(l), l);
      // the zero-padded input plane, and the reach of the kernel inside it (fields < 2^31:
      // no sum below overflows before mul() checks the products)
      const int64_t Hp = s.H + 2 * ph, Wp = s.W + 2 * pw;
      detail::bounded(mul(Hp, Wp, l), "padded input plane", l);
      const int64_t reach_h = mul(r[kConvDh], r[kConvKh] - 1, l) + 1;
      const int64_t reach_w = mul(r[kConvDw], r[kConvKw] - 1, l) + 1;
      if (reach_h > Hp || reach_w > Wp) fail("empty conv output", l);
      o = {r[kConvCOut], (Hp - reach_h) / r[kConvSh] + 1, (Wp - reach_w) / r[kConvSw] + 1};
      detail::bounded(mul(r[kConvKw], o.W + 64, l), "row masks", l);
    } else if (r[kOp] == kShiftMax) {
      const int64_t J = r[kShiftMaxShifts], K = r[kShiftMaxFusions];
      if (r[kShiftMaxChannels] != s.C || J < 1 || J > kMaxShifts || K < 1 || K > kMaxFusions)
        fail("shift-max " + std::to_string(l) + ": C must be the input's, 1 <= J, K <= 8", l);
      if (r[kShiftMaxSqueeze] < 0) fail("shift-max squeeze width must be >= 0", l);
    } else if (r[kOp] == kAdd) {
      const int64_t second = r[kAddSecond];
      if (second < 0 || second > l || r[kAddChannels] != s.C) fail("add " + std::to_string(l), l);
      const Dims t = d[second];
      if (t.C != s.C || t.H != s.H || t.W != s.W) fail("add of different shapes", l);
    } else if (r[kOp] == kPool) {
      if (r[kPoolChannels] != s.C) fail("pool " + std::to_string(l), l);
      if (r[kPoolRelu6] < 0 || r[kPoolRelu6] > 1 || r[kPoolHswish] < 0 || r[kPoolHswish] > 1)
        fail("pool relu6 and hswish must be 0 or 1", l);
      o = {s.C, 1, 1};
    } else if (r[kOp] == kLinear) {
      if (r[kLinearCIn] != s.C || s.planes() != 1 || r[kLinearCOut] < 1)
        fail("linear of a (C_in, 1, 1) input " + std::to_string(l), l);
      if (r[kLinearAct] < 0 || r[kLinearAct] > 2) fail("linear act must be 0, 1 or 2", l);
      o = {r[kLinearCOut], 1, 1};
    } else {
      fail("unknown op " + std::to_string(r[kOp]), l);
    }
    total = detail::bounded(detail::add(total, mul(mul(o.C, o.H, l), o.W, l), l),
                            "the buffers", l);
    d.push_back(o);
  }
  return d;
}

namespace detail {

// The kernels (MICRONET_SIMD_CLONES) are compiled once per ISA level and picked at
// load time. target_clones clones the function, not a lambda that GCC emits out of line: such a
// lambda runs baseline code (64-byte vectors emulated with SSE2) under every clone. In the
// -fPIC libraries GCC did so for the inner blocks of conv_row, horizontal_flat and the
// vertical rows; so every lambda inside a kernel is always_inline (check: nm -C on the
// library shows no kernel lambda).

// MICRONET_SHUFFLE(I, a, b, lanes...): the vector of lanes (constants) of a and b side by side
// (lane i of b is lane N + i), I the index vector type: clang's __builtin_shufflevector, GCC's
// __builtin_shuffle with an index vector (the form GCC's code was measured in; the kernels'
// few other GCC-only shuffles are under #if !defined(__clang__) for the same reason).
#if defined(__clang__)
#define MICRONET_SHUFFLE(I, a, b, ...) \
  (static_cast<void>(sizeof(I)), __builtin_shufflevector(a, b, __VA_ARGS__))
#else
#define MICRONET_SHUFFLE(I, a, b, ...) __builtin_shuffle(a, b, I{__VA_ARGS__})
#endif
#define MICRONET_ID(...) __VA_ARGS__

// GCC vector types of VB bytes (vector_size needs a literal size) and their shuffle index.
template <typename T, int VB> struct Vec;
template <> struct Vec<float, 64> {
  typedef float type __attribute__((vector_size(64)));
  typedef int32_t index __attribute__((vector_size(64)));
};
template <> struct Vec<float, 32> {
  typedef float type __attribute__((vector_size(32)));
  typedef int32_t index __attribute__((vector_size(32)));
};
template <> struct Vec<double, 64> {
  typedef double type __attribute__((vector_size(64)));
  typedef int64_t index __attribute__((vector_size(64)));
};
template <> struct Vec<double, 32> {
  typedef double type __attribute__((vector_size(32)));
  typedef int64_t index __attribute__((vector_size(32)));
};

// Outputs of a matvec_blocked block: 64 in every dtype (4 vectors of float, 8 of double), so
// that a program's layout does not depend on the dtype it runs in (a program compiled for
// float32 and run in float64 reads the same blocks).
constexpr int64_t kMatvecBlock = kMatvecBlockOutputs;

// fc2's outputs K*J*C (a LINEAR layer's C_out) rounded up to whole blocks of matvec_blocked.
constexpr int64_t padded_outputs(int64_t n) {
  return (n + kMatvecBlock - 1) / kMatvecBlock * kMatvecBlock;
}

}  // namespace detail

// What run() works out from the program and the input shape alone, once (an operation that
// runs the same program on every call keeps it): the buffers' shapes and arena offsets, and
// which layers run fused.
struct Plan {
  Dims in;
  std::vector<Dims> d;           // infer()
  std::vector<int64_t> offset;   // arena offset of buffers 1..L-1
  int64_t total = 0;             // arena size
  std::vector<bool> pair, into;  // layer l runs with l + 1; Shift-Max l runs inside l + 1
  int vector_bytes = 64;         // the kernels' vector width (vector_bytes())
};

// The kernels' vector width for dtype T on this CPU: 64 bytes (16 floats) where the CPU has
// AVX-512, else 32 (8 floats: on AVX2 the 64-byte kernels' register blocks spill out of the
// 16 ymm registers and M2's chain in tools/analysis/bench_program.py runs about 10x slower
// than with 32 bytes); float64 always 64 (8 lanes). AVX-512 code exists only in GCC's x86-64
// Linux builds (the x86-64-v4 clones, MICRONET_SIMD_CLONES above) or in a build for
// AVX-512 (-march); any other build (clang without -march, aarch64, other targets) runs its
// kernels at the baseline ISA, where float32 takes 32 bytes. For tests,
// MICRONET_PROGRAM_VECTOR_BYTES=32 or 64 picks the float32 width (read by each plan()).
template <typename T>
int vector_bytes() {
  if (sizeof(T) == 8) return 64;
  if (const char* e = std::getenv("MICRONET_PROGRAM_VECTOR_BYTES")) {
    if (std::strcmp(e, "32") == 0) return 32;
    if (std::strcmp(e, "64") == 0) return 64;
  }
#if defined(__x86_64__) && \
    ((defined(__GNUC__) && !defined(__clang__) && defined(__linux__)) || defined(__AVX512F__))
  return __builtin_cpu_supports("avx512f") ? 64 : 32;
#else
  return 32;
#endif
}

// MICRONET_KERNEL_PATH(name, a, b): a statement at the entry of each fast path of
// program_kernels.h (name and two integers that tell its variants apart). Nothing here; the
// kernel test (tests/native/kernel_test.cpp) defines it to count the paths its shapes reach.
#ifndef MICRONET_KERNEL_PATH
#define MICRONET_KERNEL_PATH(name, a, b) static_cast<void>(0)
#endif

namespace detail {
namespace v32 {
constexpr int kVectorBytes = 32;
#include "program_kernels.h"
}  // namespace v32
namespace v64 {
constexpr int kVectorBytes = 64;
#include "program_kernels.h"
}  // namespace v64
}  // namespace detail

// infer() and everything run() reads through an offset checked against the lengths of
// `weights` and `tables`, every table entry against the channels it addresses (an output table
// must be a permutation: every output plane written once): a program from a file never makes
// run() read outside its arrays or read memory it did not write. Throws std::invalid_argument
// naming the check and the layer.
template <typename T>
std::vector<Dims> check(const int64_t* p, int64_t len, Dims in, int64_t weights_len,
                        int64_t tables_len, const int64_t* tables) {
  using detail::fail;
  using detail::mul;
  if (weights_len < 0 || tables_len < 0 || (tables_len > 0 && tables == nullptr))
    throw std::invalid_argument("micronet program: bad weights or tables");
  const std::vector<Dims> d = infer(p, len, in);
  const int64_t L = p[1];
  std::vector<char> seen;  // output planes an output table writes
  auto span = [&](int64_t off, int64_t n, int64_t total, const char* what, int64_t l) {
    if (off < 0 || off > total || n > total - off)
      fail(std::string(what) + " [" + std::to_string(off) + ", +" + std::to_string(n) +
               ") outside its array of " + std::to_string(total), l);
  };
  auto table = [&](int64_t off, int64_t n, int64_t bound, const char* what, int64_t l) {
    span(off, n, tables_len, what, l);
    for (int64_t i = 0; i < n; ++i)
      if (tables[off + i] < 0 || tables[off + i] >= bound)
        fail(std::string(what) + " entry " + std::to_string(tables[off + i]) + " outside [0, " +
                 std::to_string(bound) + ")", l);
  };
  for (int64_t l = 0; l < L; ++l) {
    const int64_t* r = record(p, l);
    const Dims s = d[r[kSrc]], o = d[l + 1];
    if (r[kInPerm] >= 0) table(r[kInPerm], s.C, s.C, "in_perm", l);
    if (r[kOutPerm] >= 0) {
      table(r[kOutPerm], o.C, o.C, "out_perm", l);
      seen.assign(o.C, 0);
      for (int64_t c = 0; c < o.C; ++c)
        if (seen[tables[r[kOutPerm] + c]]++) fail("out_perm is not a permutation", l);
    }
    if (r[kOp] == kConv) {
      const int64_t c_out = r[kConvCOut], per_output = r[kConvCIn] / r[kConvGroups];
      const int64_t w = mul(mul(mul(c_out, per_output, l), r[kConvKh], l), r[kConvKw], l);
      span(r[kConvWeights], detail::add(w, c_out, l), weights_len, "conv weights", l);
    } else if (r[kOp] == kShiftMax) {
      const int64_t C = r[kShiftMaxChannels], J = r[kShiftMaxShifts], S = r[kShiftMaxSqueeze];
      const int64_t KJ = J * r[kShiftMaxFusions], KJC = mul(KJ, C, l);
      table(r[kShiftMaxIndex], mul(J, C, l), C, "shift index", l);
      const int64_t R = detail::padded_outputs(KJC);
      int64_t n = KJC;  // static: coef (K, J, C); dynamic: act_max, init, w1, b1, w2, b2
      if (S > 0) {
        n = 1 + KJ + S + R;
        for (int64_t part : {mul(S, C, l), mul(S, R, l)}) n = detail::add(n, part, l);
      }
      span(r[kShiftMaxParams], n, weights_len, "shift-max parameters", l);
    } else if (r[kOp] == kLinear) {
      const int64_t R = detail::padded_outputs(r[kLinearCOut]);
      span(r[kLinearParams], mul(r[kLinearCIn] + 1, R, l), weights_len, "linear parameters", l);
    } else if (r[kOp] == kAdd) {
      if (r[kAddSecondPerm] >= 0) table(r[kAddSecondPerm], s.C, s.C, "add in_perm", l);
    }
  }
  return d;
}
template <typename T>
Plan plan(const int64_t* prog, int64_t len, Dims in) {
  Plan p;
  p.in = in;
  p.d = infer(prog, len, in);
  p.vector_bytes = vector_bytes<T>();
  if constexpr (sizeof(T) == 4) {  // (float64 is never instantiated at 32 bytes)
    if (p.vector_bytes == 32) {
      p.offset = detail::v32::place_buffers<T>(prog, p.d, p.total, p.pair, p.into);
      return p;
    }
  }
  p.offset = detail::v64::place_buffers<T>(prog, p.d, p.total, p.pair, p.into);
  return p;
}

// Run the program on samples [n_begin, n_end) of x (N, C, H, W; C, H, W those of the plan)
// into y (its output shape, from infer()). weights and tables are the program's parameter and
// table arrays.
template <typename T>
void run(const Plan& plan, const int64_t* prog, const T* weights, const int64_t* tables,
         const T* x, T* y, int64_t n_begin, int64_t n_end) {
  if constexpr (sizeof(T) == 4) {
    if (plan.vector_bytes == 32) {
      detail::v32::run_layers(plan, prog, weights, tables, x, y, n_begin, n_end);
      return;
    }
  }
  detail::v64::run_layers(plan, prog, weights, tables, x, y, n_begin, n_end);
}

// run() of a program whose plan is made for this call.
template <typename T>
void run(const int64_t* prog, int64_t len, const T* weights, const int64_t* tables, const T* x,
         T* y, int64_t n_begin, int64_t n_end, Dims in) {
  run(plan<T>(prog, len, in), prog, weights, tables, x, y, n_begin, n_end);
}

}  // namespace program
}  // namespace micronet
