// Kernel-versus-reference test of the native engine: every fast path of program_kernels.h, at
// every vector width and dtype the engine runs (float32 at 32 and 64 bytes, float64 at 64),
// against the plain-loop references of micronet_mm/csrc/reference/, over seeded random layers
// (shapes, strides, dilations, groups, paddings, channel tables; tiny and odd ones included)
// and a fixed list of layers that reach each path at every width. Built and run by
// tests/test_native_kernels.py with g++ and clang++ on x86-64 and, cross-compiled, under
// qemu-aarch64; without PyTorch.
//
//   kernel_test [--small] [--cases N] [--seed S]
//
// Each case is a program of one layer (or of a depthwise kx1 + 1xk pair, which the engine
// fuses) run through program::check, plan and run, the width picked as the engine lets a test
// pick it (MICRONET_PROGRAM_VECTOR_BYTES, program.h). Its output must equal the reference's,
// computed in double from the same (float-exact) inputs, to a relative tolerance
// (Variant::tolerance: 2e-5 for float32, 1e-12 for float64) of the sum of the absolute values
// of the terms each output adds up (the scale of its rounding error: the reference run on |x|
// and |weights| with the activations off). Every output element is checked, NaN-filled before
// the run (an element not written fails), a guard zone after the output must stay as it was,
// and the input lies between guard zones of NaN (a read outside it shows in the output).
// MICRONET_KERNEL_PATH (program.h) counts the fast paths each variant reached: a path of
// expected_paths() that no case reached at some width, or a path not in that list, fails.
//
// Exit code 0: every variant passed; 1: a mismatch, an unwritten or overwritten element, or a
// path never reached; 77: this build is compiled for an ISA that the CPU lacks (skipped, not
// passed); 2: bad arguments.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace kernel_test {
void hit(int vector_bytes, int value_bytes, const char* name, int64_t a, int64_t b);
}  // namespace kernel_test
#define MICRONET_KERNEL_PATH(name, a, b) \
  ::kernel_test::hit(kVectorBytes, static_cast<int>(sizeof(T)), name, a, b)

#if defined(KERNEL_TEST_SINGLE_ISA)  // the kernels once, for the compiler's -march: no clones
#define MICRONET_SIMD_CLONES
#endif
#include "program.h"
#include "reference/add.h"
#include "reference/channel_table.h"
#include "reference/conv2d.h"
#include "reference/linear.h"
#include "reference/pool.h"

namespace kernel_test {
namespace {

namespace mp = micronet::program;
namespace ref = micronet::reference;

// (dtype, vector bytes) pairs that the engine runs: float32 at both widths, float64 at 64.
struct Variant {
  const char* dtype;
  int vector_bytes;
  double tolerance;  // of the error, relative to the sum of the absolute terms
};
constexpr Variant kVariants[] = {{"f32", 32, 2e-5}, {"f32", 64, 2e-5}, {"f64", 64, 1e-12}};

// Every fast path (MICRONET_KERNEL_PATH's name(a, b)) that each variant must reach. VB: the
// variant's vector bytes (conv_row's rows at least one vector long); 32: shorter rows.
std::vector<std::string> expected_paths(int vb) {
  std::vector<std::string> p;
  for (int r = 1; r <= 4; ++r)
    for (int tap = 0; tap <= 1; ++tap)
      p.push_back("pointwise_rows(" + std::to_string(r) + "," + std::to_string(tap) + ")");
  for (int sw = 1; sw <= 2; ++sw)
    for (int bytes : {32, 64})
      if (bytes <= vb)
        p.push_back("conv_row(" + std::to_string(sw) + "," + std::to_string(bytes) + ")");
  for (const char* s : {"small_plane(1,0)", "small_plane(1,1)", "small_plane(2,1)",
                        "vertical_flat(0,0)", "depthwise_interleaved(0,0)",
                        "depthwise_interleaved(1,0)", "interleaved_rows(0,0)"})
    p.push_back(s);
  for (int sw = 1; sw <= 2; ++sw)
    for (int no = 1; no <= 3; ++no)
      for (int k3 = 0; k3 < sw; ++k3)  // (the 1x3 special case only at stride 2)
        p.push_back("horizontal_flat(" + std::to_string(sw * 10 + no) + "," +
                    std::to_string(k3) + ")");
  const int unrolled[][3] = {{3, 1, 1}, {1, 3, 1}, {1, 3, 2}, {5, 1, 1}, {1, 5, 1},
                             {1, 5, 2}, {7, 1, 1}, {1, 7, 1}, {1, 7, 2}};
  for (const auto& k : unrolled)
    p.push_back("interleaved_rows(" + std::to_string(k[0] * 10 + k[1]) + "," +
                std::to_string(k[2]) + ")");
  return p;
}

std::map<std::string, std::map<std::string, int64_t>> g_paths;  // variant -> path -> hits

std::string variant_name(const char* dtype, int vector_bytes) {
  return std::string(dtype) + "@" + std::to_string(vector_bytes);
}

// A seeded generator whose sequence is the same on every platform and compiler (splitmix64).
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  int64_t range(int64_t lo, int64_t hi) {  // [lo, hi]
    return lo + static_cast<int64_t>(next() % static_cast<uint64_t>(hi - lo + 1));
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  bool chance(double p) { return uniform() < p; }
  template <typename V>
  typename V::value_type pick(const V& v) {
    return v[static_cast<size_t>(range(0, static_cast<int64_t>(v.size()) - 1))];
  }
};

// A value in [-1, 1) that float32 holds exactly (so both dtypes run the same inputs).
double value(Rng& rng) { return static_cast<double>(static_cast<float>(2 * rng.uniform() - 1)); }

struct Case {
  std::string what;  // the layers, for messages
  std::vector<int64_t> prog, tables;
  std::vector<double> weights, x;
  int64_t N = 1, C = 1, H = 1, W = 1;
};

// Builds a program record by record (fields by name, program_format.h).
struct Builder {
  Rng& rng;
  Case c;
  std::vector<mp::Dims> d;  // buffer shapes, 0 the input
  std::vector<std::vector<int64_t>> recs;

  Builder(Rng& r, int64_t C, int64_t H, int64_t W) : rng(r) {
    c.C = C;
    c.H = H;
    c.W = W;
    d.push_back({C, H, W});
  }
  int64_t table(const std::vector<int64_t>& entries) {
    const int64_t at = static_cast<int64_t>(c.tables.size());
    c.tables.insert(c.tables.end(), entries.begin(), entries.end());
    return at;
  }
  int64_t weights(int64_t n) {
    const int64_t at = static_cast<int64_t>(c.weights.size());
    for (int64_t i = 0; i < n; ++i) c.weights.push_back(value(rng));
    return at;
  }
  std::vector<int64_t>& record(int64_t op, int64_t src) {
    recs.emplace_back(mp::kFields, 0);
    auto& r = recs.back();
    r[mp::kOp] = op;
    r[mp::kSrc] = src;
    r[mp::kInPerm] = r[mp::kOutPerm] = -1;
    return r;
  }
  // any table of C entries (a plane read twice or never), or a permutation
  int64_t random_table(int64_t C, bool permutation) {
    std::vector<int64_t> t(C);
    for (int64_t i = 0; i < C; ++i) t[i] = permutation ? i : rng.range(0, C - 1);
    if (permutation)
      for (int64_t i = C - 1; i > 0; --i) std::swap(t[i], t[rng.range(0, i)]);
    return table(t);
  }
  // in_perm and out_perm of the last record, each with probability p
  void tables(double p) {
    auto& r = recs.back();
    const int64_t c_in = d[r[mp::kSrc]].C, c_out = d.back().C;
    if (rng.chance(p)) r[mp::kInPerm] = random_table(c_in, false);
    if (rng.chance(p)) recs.back()[mp::kOutPerm] = random_table(c_out, true);
  }
  void conv(int64_t src, const ref::Conv2d& s) {
    const mp::Dims in = d[src];
    auto& r = record(mp::kConv, src);
    const int64_t fields[][2] = {
        {mp::kConvCIn, s.c_in}, {mp::kConvCOut, s.c_out}, {mp::kConvGroups, s.groups},
        {mp::kConvKh, s.kh},    {mp::kConvKw, s.kw},      {mp::kConvSh, s.sh},
        {mp::kConvSw, s.sw},    {mp::kConvPh, s.ph},      {mp::kConvPw, s.pw},
        {mp::kConvDh, s.dh},    {mp::kConvDw, s.dw},      {mp::kConvAct, s.relu6 ? 1 : 0}};
    for (const auto& f : fields) r[f[0]] = f[1];
    recs.back()[mp::kConvWeights] = weights(s.c_out * (s.c_in / s.groups) * s.kh * s.kw + s.c_out);
    d.push_back({s.c_out, ref::conv_output(in.H, s.kh, s.sh, s.ph, s.dh),
                 ref::conv_output(in.W, s.kw, s.sw, s.pw, s.dw)});
    c.what += "conv(c_in " + std::to_string(s.c_in) + ", c_out " + std::to_string(s.c_out) +
              ", groups " + std::to_string(s.groups) + ", k " + std::to_string(s.kh) + "x" +
              std::to_string(s.kw) + ", s " + std::to_string(s.sh) + "x" + std::to_string(s.sw) +
              ", p " + std::to_string(s.ph) + "x" + std::to_string(s.pw) + ", d " +
              std::to_string(s.dh) + "x" + std::to_string(s.dw) + ", relu6 " +
              std::to_string(s.relu6) + ") ";
  }
  void pool(int64_t src, bool relu6, bool hswish) {
    auto& r = record(mp::kPool, src);
    r[mp::kPoolChannels] = d[src].C;
    r[mp::kPoolRelu6] = relu6;
    r[mp::kPoolHswish] = hswish;
    d.push_back({d[src].C, 1, 1});
    c.what += "pool(relu6 " + std::to_string(relu6) + ", hswish " + std::to_string(hswish) + ") ";
  }
  void linear(int64_t src, int64_t c_out, int64_t act) {
    const int64_t c_in = d[src].C;
    auto& r = record(mp::kLinear, src);
    r[mp::kLinearCIn] = c_in;
    r[mp::kLinearCOut] = c_out;
    r[mp::kLinearAct] = act;
    recs.back()[mp::kLinearParams] = weights((c_in + 1) * ref::blocked_outputs(c_out));
    d.push_back({c_out, 1, 1});
    c.what += "linear(c_out " + std::to_string(c_out) + ", act " + std::to_string(act) + ") ";
  }
  void add(int64_t src, int64_t second, bool second_perm) {
    auto& r = record(mp::kAdd, src);
    r[mp::kAddChannels] = d[src].C;
    r[mp::kAddSecond] = second;
    r[mp::kAddSecondPerm] = -1;
    if (second_perm) recs.back()[mp::kAddSecondPerm] = random_table(d[second].C, false);
    d.push_back(d[src]);
    c.what += "add ";
  }
  Case finish(int64_t N) {
    c.N = N;
    c.prog = {mp::kVersion, static_cast<int64_t>(recs.size())};
    for (const auto& r : recs) c.prog.insert(c.prog.end(), r.begin(), r.end());
    for (int64_t i = 0; i < N * c.C * c.H * c.W; ++i) c.x.push_back(value(rng));
    c.what += "on (" + std::to_string(N) + ", " + std::to_string(c.C) + ", " +
              std::to_string(c.H) + ", " + std::to_string(c.W) + ")";
    return c;
  }
};

// The program run layer by layer by the references, in double (magnitude: on |x| and
// |weights| with every activation off, the sum of the absolute terms of each output).
std::vector<double> reference_run(const Case& c, bool magnitude) {
  const int64_t L = c.prog[1];
  std::vector<double> weights = c.weights, y;
  if (magnitude)
    for (double& v : weights) v = std::fabs(v);
  for (int64_t n = 0; n < c.N; ++n) {
    std::vector<std::vector<double>> buf(1);
    std::vector<mp::Dims> d{{c.C, c.H, c.W}};
    const int64_t size = c.C * c.H * c.W;
    buf[0].assign(c.x.begin() + n * size, c.x.begin() + (n + 1) * size);
    if (magnitude)
      for (double& v : buf[0]) v = std::fabs(v);
    for (int64_t l = 0; l < L; ++l) {
      const int64_t* r = mp::record(c.prog.data(), l);
      const mp::Dims s = d[r[mp::kSrc]];
      const int64_t* in_perm = r[mp::kInPerm] < 0 ? nullptr : c.tables.data() + r[mp::kInPerm];
      std::vector<double> in(s.size()), out;
      ref::gather_planes(buf[r[mp::kSrc]].data(), in_perm, s.C, s.planes(), in.data());
      mp::Dims o = s;
      if (r[mp::kOp] == mp::kConv) {
        const ref::Conv2d cs{r[mp::kConvCIn], r[mp::kConvCOut], r[mp::kConvGroups],
                             r[mp::kConvKh],  r[mp::kConvKw],   r[mp::kConvSh],
                             r[mp::kConvSw],  r[mp::kConvPh],   r[mp::kConvPw],
                             r[mp::kConvDh],  r[mp::kConvDw],   !magnitude && r[mp::kConvAct] == 1};
        o = {cs.c_out, ref::conv_output(s.H, cs.kh, cs.sh, cs.ph, cs.dh),
             ref::conv_output(s.W, cs.kw, cs.sw, cs.pw, cs.dw)};
        out.resize(o.size());
        const double* w = weights.data() + r[mp::kConvWeights];
        const double* b = w + cs.c_out * (cs.c_in / cs.groups) * cs.kh * cs.kw;
        ref::conv2d(in.data(), s.H, s.W, w, b, cs, out.data());
      } else if (r[mp::kOp] == mp::kPool) {
        o = {s.C, 1, 1};
        out.resize(o.size());
        ref::global_pool(in.data(), s.C, s.planes(), !magnitude && r[mp::kPoolRelu6] == 1,
                         !magnitude && r[mp::kPoolHswish] == 1, out.data());
      } else if (r[mp::kOp] == mp::kLinear) {
        o = {r[mp::kLinearCOut], 1, 1};
        out.resize(o.size());
        ref::linear(in.data(), s.C, o.C, weights.data() + r[mp::kLinearParams],
                    magnitude ? 0 : r[mp::kLinearAct], out.data());
      } else if (r[mp::kOp] == mp::kAdd) {
        const int64_t* perm2 =
            r[mp::kAddSecondPerm] < 0 ? nullptr : c.tables.data() + r[mp::kAddSecondPerm];
        std::vector<double> second(s.size());
        ref::gather_planes(buf[r[mp::kAddSecond]].data(), perm2, s.C, s.planes(), second.data());
        out.resize(o.size());
        ref::add(in.data(), second.data(), o.size(), out.data());
      } else {
        throw std::logic_error("the kernel test makes no such layer");
      }
      const int64_t* out_perm = r[mp::kOutPerm] < 0 ? nullptr : c.tables.data() + r[mp::kOutPerm];
      buf.emplace_back(o.size());
      ref::scatter_planes(out.data(), out_perm, o.C, o.planes(), buf.back().data());
      d.push_back(o);
    }
    y.insert(y.end(), buf.back().begin(), buf.back().end());
  }
  return y;
}

constexpr int64_t kGuard = 256;  // elements around the input and after the output
constexpr double kGuardValue = 1234.5;

// The engine's output of case c in dtype T at vector_bytes, as double (NaN where unwritten);
// false (and why) where check() refuses the case or the guard zone was written.
template <typename T>
bool engine_run(const Case& c, int vector_bytes, std::vector<double>& y, std::string& why) {
  setenv("MICRONET_PROGRAM_VECTOR_BYTES", vector_bytes == 32 ? "32" : "64", 1);
  const std::vector<T> w(c.weights.begin(), c.weights.end());
  // the input between two guard zones of NaN: a read outside it (even one masked to zero, as
  // 0 * NaN is NaN) shows in the output
  std::vector<T> x_guarded(c.x.size() + 2 * kGuard, std::numeric_limits<T>::quiet_NaN());
  std::copy(c.x.begin(), c.x.end(), x_guarded.begin() + kGuard);
  const T* x = x_guarded.data() + kGuard;
  const int64_t len = static_cast<int64_t>(c.prog.size());
  const mp::Dims in{c.C, c.H, c.W};
  std::vector<mp::Dims> d;
  try {
    d = mp::check<T>(c.prog.data(), len, in, static_cast<int64_t>(w.size()),
                     static_cast<int64_t>(c.tables.size()), c.tables.data());
  } catch (const std::invalid_argument& e) {
    why = std::string("check() refused it: ") + e.what();
    return false;
  }
  const mp::Plan plan = mp::plan<T>(c.prog.data(), len, in);
  if (plan.vector_bytes != vector_bytes) {
    why = "plan() picked " + std::to_string(plan.vector_bytes) + " vector bytes";
    return false;
  }
  const int64_t n_out = c.N * d.back().size();
  std::vector<T> out(static_cast<size_t>(n_out + kGuard), std::numeric_limits<T>::quiet_NaN());
  for (int64_t i = n_out; i < n_out + kGuard; ++i) out[i] = T(kGuardValue);
  mp::run<T>(plan, c.prog.data(), w.data(), c.tables.data(), x, out.data(), 0, c.N);
  for (int64_t i = n_out; i < n_out + kGuard; ++i)
    if (out[i] != T(kGuardValue)) {
      why = "wrote past its output (element " + std::to_string(i - n_out) + " after it)";
      return false;
    }
  y.assign(out.begin(), out.begin() + n_out);
  return true;
}

// --- the layers -----------------------------------------------------------------------------

// A plane side: tiny, odd, around a vector's lanes and the engine's size limits (kSmallPlane
// is 1024 pixels: 32 x 32).
int64_t side(Rng& rng, bool small) {
  static const std::vector<int64_t> all{1,  1,  2,  3,  4,  5,  6,  7,  8,  9,  12, 13,
                                        14, 15, 16, 17, 20, 24, 28, 31, 32, 33, 40, 57};
  static const std::vector<int64_t> few{1, 1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 20, 33};
  return rng.pick(small ? few : all);
}

int64_t channels(Rng& rng) {
  static const std::vector<int64_t> c{1, 1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 16, 17, 24, 32, 48};
  return rng.pick(c);
}

// Whether the reference's work for a layer stays small (outputs x terms).
bool affordable(const ref::Conv2d& s, int64_t H, int64_t W, bool small) {
  const int64_t Ho = ref::conv_output(H, s.kh, s.sh, s.ph, s.dh);
  const int64_t Wo = ref::conv_output(W, s.kw, s.sw, s.pw, s.dw);
  const int64_t terms = s.c_in / s.groups * s.kh * s.kw;
  return Ho >= 1 && Wo >= 1 && terms <= 128 &&
         s.c_out * Ho * Wo * terms <= (small ? 200000 : 2000000);
}

// stride or dilation: mostly 1, at times 2 or 3, rarely past the plane
int64_t step(Rng& rng, int64_t plane) {
  const double u = rng.uniform();
  return u < 0.55 ? 1 : (u < 0.8 ? 2 : (u < 0.95 ? 3 : plane + rng.range(0, 2)));
}

// padding: MicroNet's same padding mostly, else anything up to one past the kernel's reach
int64_t padding(Rng& rng, int64_t k, int64_t dilation) {
  return rng.chance(0.6) ? (k - 1) * dilation / 2 : rng.range(0, (k - 1) * dilation + 1);
}

ref::Conv2d depthwise(Rng& rng, int64_t C, int64_t H, int64_t W) {
  static const std::vector<int64_t> ks{1, 2, 3, 3, 5, 7};
  const int64_t k = rng.pick(ks), shape = rng.range(0, 2);  // kx1, 1xk, kxk
  const int64_t kh = shape == 1 ? 1 : k, kw = shape == 0 ? 1 : k;
  const int64_t dh = rng.chance(0.05) ? rng.range(4, 80) : step(rng, H);
  const int64_t dw = rng.chance(0.05) ? rng.range(4, 80) : step(rng, W);
  static const std::vector<int64_t> mult{1, 1, 1, 2, 3};
  return {C, C * rng.pick(mult), C, kh, kw, step(rng, H), step(rng, W),
          padding(rng, kh, dh), padding(rng, kw, dw), dh, dw, rng.chance(0.5)};
}

// one of the divisors of C, as a number of groups
int64_t groups_of(Rng& rng, int64_t C) {
  std::vector<int64_t> divisors;
  for (int64_t g = 1; g <= C; ++g)
    if (C % g == 0) divisors.push_back(g);
  return rng.pick(divisors);
}

ref::Conv2d grouped(Rng& rng, int64_t C, int64_t H, int64_t W) {
  const int64_t groups = groups_of(rng, C);
  const int64_t kh = rng.range(1, 5), kw = rng.range(1, 5);
  const int64_t dh = step(rng, H), dw = step(rng, W);
  return {C, groups * rng.range(1, 6), groups, kh, kw, step(rng, H), step(rng, W),
          padding(rng, kh, dh), padding(rng, kw, dw), dh, dw, rng.chance(0.5)};
}

ref::Conv2d pointwise(Rng& rng, int64_t C) {
  const int64_t groups = groups_of(rng, C);
  return {C, groups * rng.range(1, 7), groups, 1, 1, 1, 1, 0, 0, 1, 1, rng.chance(0.5)};
}

// One random case of the families: pointwise, depthwise, grouped / dense, a fused pair, pool,
// linear, add; each layer with channel tables at times.
Case random_case(Rng& rng, int64_t id, bool small) {
  const int64_t N = rng.chance(0.2) ? 2 : 1;
  for (;;) {
    const int64_t family = id % 7;
    const int64_t C = channels(rng), H = side(rng, small), W = side(rng, small);
    if (family <= 2) {
      const ref::Conv2d s = family == 0   ? pointwise(rng, C)
                            : family == 1 ? depthwise(rng, C, H, W)
                                          : grouped(rng, C, H, W);
      if (!affordable(s, H, W, small)) continue;
      Builder b(rng, C, H, W);
      b.conv(0, s);
      b.tables(0.3);
      return b.finish(N);
    }
    if (family == 3) {  // depthwise kx1 then 1xk on a small plane: the fused pair
      static const std::vector<int64_t> ks{3, 5, 7}, cs{8, 16, 16, 32, 48, 3};
      const int64_t k = rng.pick(ks), c = rng.pick(cs), sh = rng.range(1, 2);
      const int64_t sw = rng.range(1, 2);
      const ref::Conv2d first{c, c, c, k, 1, sh, 1, (k - 1) / 2, 0, 1, 1, rng.chance(0.5)};
      const ref::Conv2d second{c, c, c, 1, k, 1, sw, 0, (k - 1) / 2, 1, 1, rng.chance(0.5)};
      Builder b(rng, c, H, W);
      b.conv(0, first);
      if (rng.chance(0.2)) b.tables(0.5);  // (an out_perm keeps the two layers apart)
      b.conv(1, second);
      return b.finish(N);
    }
    if (family == 5) {  // of a (C_in, 1, 1) input
      Builder b(rng, rng.range(1, small ? 70 : 130), 1, 1);
      b.linear(0, rng.range(1, small ? 70 : 140), rng.range(0, 2));
      b.tables(0.3);
      return b.finish(N);
    }
    Builder b(rng, C, H, W);
    if (family == 4) b.pool(0, rng.chance(0.5), rng.chance(0.5));
    else b.add(0, 0, rng.chance(0.7));
    b.tables(0.3);
    return b.finish(N);
  }
}

// Layers that reach each path of expected_paths at every width (the random cases may miss
// one): on 40 x 40 planes (past kSmallPlane: the planar paths), 20 x 20 (small_plane), 7 x 7
// to 14 x 14 with 16 or 48 channels (depthwise_interleaved), rows of 7 and 12 pixels (conv_row
// on rows shorter than 64 bytes).
std::vector<Case> fixed_cases(Rng& rng) {
  std::vector<Case> out;
  auto one = [&](int64_t H, int64_t W, const ref::Conv2d& s) {
    Builder b(rng, s.c_in, H, W);
    b.conv(0, s);
    out.push_back(b.finish(1));
  };
  for (int64_t o : {5, 6, 7}) {
    one(5, 7, {8, o, 1, 1, 1, 1, 1, 0, 0, 1, 1, false});  // pointwise_rows R = 4, then 1-3
    one(20, 20, {3, o, 1, 3, 1, 1, 1, 1, 0, 1, 1, true});  // vertical taps: pointwise_rows + tap
  }
  for (int64_t W : {7, 12, 13, 40, 41})  // conv_row (stride 2 reads up to 2 hi + 1)
    for (int64_t s : {1, 2}) one(6, W, {3, 4, 1, 3, 3, s, s, 1, s == 2 && W % 2 == 0 ? 0 : 1, 1,
                                        1, true});
  one(20, 20, {3, 3, 3, 3, 1, 1, 1, 1, 0, 1, 1, false});  // small_plane: kx1
  one(20, 20, {3, 3, 3, 5, 1, 2, 1, 2, 0, 1, 1, false});  // kx1, stride 2
  one(20, 20, {3, 3, 3, 1, 3, 1, 1, 0, 1, 1, 1, true});   // 1xk
  one(20, 20, {3, 3, 3, 1, 5, 1, 2, 0, 2, 1, 1, true});   // 1xk, stride 2
  one(40, 40, {3, 3, 3, 3, 1, 1, 1, 1, 0, 1, 1, false});  // vertical_flat
  one(60, 20, {3, 3, 3, 3, 1, 2, 1, 1, 0, 1, 1, true});   // vertical_flat, stride 2
  for (int64_t mult : {1, 2, 3})
    for (int64_t sw : {1, 2})
      for (int64_t k : {3, 5})  // horizontal_flat (1x3 at stride 2: its special case)
        one(40, 40, {3, 3 * mult, 3, 1, k, 1, sw, 0, (k - 1) / 2, 1, 1, mult == 2});
  for (int64_t k : {3, 5, 7})
    for (int64_t s : {1, 2}) {  // depthwise_interleaved, unrolled kernels and pairs
      one(14, 14, {16, 16, 16, k, 1, s, 1, (k - 1) / 2, 0, 1, 1, true});
      one(14, 14, {16, 48, 16, 1, k, 1, s, 0, (k - 1) / 2, 1, 1, false});
      Builder b(rng, 16, 7, 9);
      b.conv(0, {16, 16, 16, k, 1, s, 1, (k - 1) / 2, 0, 1, 1, true});
      b.conv(1, {16, 16, 16, 1, k, 1, s, 0, (k - 1) / 2, 1, 1, false});
      out.push_back(b.finish(2));
    }
  one(9, 9, {16, 16, 16, 3, 3, 1, 1, 2, 2, 2, 2, true});  // interleaved, generic kernel
  return out;
}

// --- the run --------------------------------------------------------------------------------

struct Totals {
  int64_t cases = 0, failures = 0;
  double worst = 0;  // the largest error, as a fraction of the tolerance
};

void check_case(const Case& c, const Variant& v, Totals& t, const std::vector<double>& want,
                const std::vector<double>& scale) {
  std::vector<double> got;
  std::string why;
  const bool ran = std::strcmp(v.dtype, "f32") == 0
                       ? engine_run<float>(c, v.vector_bytes, got, why)
                       : engine_run<double>(c, v.vector_bytes, got, why);
  ++t.cases;
  if (ran && got.size() != want.size())
    why = "output of " + std::to_string(got.size()) + " elements, the reference's " +
          std::to_string(want.size());
  int64_t bad = -1;
  if (ran && why.empty())
    for (size_t i = 0; i < got.size(); ++i) {
      const double err = std::fabs(got[i] - want[i]), tol = v.tolerance * scale[i];
      if (!(err <= tol)) {  // (NaN: an element never written)
        bad = static_cast<int64_t>(i);
        break;
      }
      if (tol > 0) t.worst = std::max(t.worst, err / tol);
    }
  if (why.empty() && bad < 0) return;
  if (++t.failures <= 10) {
    std::printf("FAIL %s width %d: %s\n", v.dtype, v.vector_bytes, c.what.c_str());
    if (bad >= 0)
      std::printf("  element %lld: engine %.17g, reference %.17g, tolerance %.3g\n",
                  static_cast<long long>(bad), got[bad], want[bad], v.tolerance * scale[bad]);
    else
      std::printf("  %s\n", why.c_str());
  }
}

// The ISA that runs the kernels of this build on this CPU, and whether the CPU has the one
// this build was compiled for.
std::string isa(bool& supported) {
  supported = true;
#if defined(__x86_64__)
#if defined(KERNEL_TEST_SINGLE_ISA) || defined(__clang__) || !defined(__linux__)
#if defined(__AVX512F__)
  supported = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
              __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  return "x86-64 AVX-512 (compiled for it, one ISA)";
#elif defined(__AVX2__)
  supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return "x86-64 AVX2 (compiled for it, one ISA)";
#else
  return "x86-64 baseline SSE2 (one ISA)";
#endif
#else
  if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4 clones (AVX-512; target_clones)";
  if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3 clones (AVX2; target_clones)";
  return "default clones (SSE2; target_clones)";
#endif
#elif defined(__aarch64__)
  return "aarch64 NEON (each vector of the kernels in 16-byte registers)";
#else
  return "this target's baseline";
#endif
}

}  // namespace

void hit(int vector_bytes, int value_bytes, const char* name, int64_t a, int64_t b) {
  ++g_paths[variant_name(value_bytes == 4 ? "f32" : "f64", vector_bytes)]
            [std::string(name) + "(" + std::to_string(a) + "," + std::to_string(b) + ")"];
}

}  // namespace kernel_test

int main(int argc, char** argv) {
  using namespace kernel_test;
  bool small = false;
  int64_t cases = 3000, seed = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--small") {
      small = true;
      cases = 600;
    } else if (a == "--cases" && i + 1 < argc) {
      cases = std::atoll(argv[++i]);
    } else if (a == "--seed" && i + 1 < argc) {
      seed = std::atoll(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: kernel_test [--small] [--cases N] [--seed S]\n");
      return 2;
    }
  }
  bool supported = true;
  const std::string where = isa(supported);
  if (!supported) {
    std::printf("SKIP this build runs %s, which the CPU lacks\n", where.c_str());
    return 77;
  }
  std::printf("kernels: %s; %lld random cases (seed %lld%s) and the fixed ones\n", where.c_str(),
              static_cast<long long>(cases), static_cast<long long>(seed),
              small ? ", small shapes" : "");
  Rng rng{static_cast<uint64_t>(seed)};
  std::vector<Case> all = fixed_cases(rng);
  for (int64_t i = 0; i < cases; ++i) all.push_back(random_case(rng, i, small));
  Totals totals[3];
  for (const Case& c : all) {
    const std::vector<double> want = reference_run(c, false), scale = reference_run(c, true);
    for (int v = 0; v < 3; ++v) check_case(c, kVariants[v], totals[v], want, scale);
  }
  int failed = 0;
  for (int v = 0; v < 3; ++v) {
    const Variant& var = kVariants[v];
    const auto& reached = g_paths[variant_name(var.dtype, var.vector_bytes)];
    std::vector<std::string> missing;
    const std::vector<std::string> paths = expected_paths(var.vector_bytes);
    for (const std::string& p : paths)
      if (!reached.count(p)) missing.push_back(p);
    std::printf("%s width %d: %lld cases, %lld failed, worst error %.3f of the tolerance "
                "(%.0e), %zu of %zu fast paths reached\n",
                var.dtype, var.vector_bytes, static_cast<long long>(totals[v].cases),
                static_cast<long long>(totals[v].failures), totals[v].worst, var.tolerance,
                paths.size() - missing.size(), paths.size());
    for (const std::string& p : missing)
      std::printf("FAIL %s width %d: no case reached %s\n", var.dtype, var.vector_bytes,
                  p.c_str());
    int64_t unlisted = 0;
    for (const auto& p : reached)
      if (std::find(paths.begin(), paths.end(), p.first) == paths.end() && ++unlisted)
        std::printf("FAIL %s width %d: %s is no path of the list (expected_paths)\n", var.dtype,
                    var.vector_bytes, p.first.c_str());
    failed += totals[v].failures > 0 || !missing.empty() || unlisted > 0;
  }
  std::printf(failed ? "FAILED\n" : "PASSED\n");
  return failed ? 1 : 0;
}
