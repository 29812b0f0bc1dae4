// A command-line driver of the native engine (micronet_mm/csrc/program.h) without PyTorch, for
// tests that build the engine with another compiler (tests/test_native_portable.py):
//
//   program_driver f32|f64 < case.txt
//
// reads, whitespace-separated: the program (its length, then its int64 entries), the weights
// (count, values), the tables (count, entries) and the input (N C H W, then N*C*H*W values);
// prints the output as "N C H W" and its values, or one line "ERROR <message>" when check()
// refuses the program (exit code 0 either way; anything else is a failure of the engine).
#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <vector>

#include "program.h"

namespace {

template <typename T>
std::vector<T> read_values(std::istream& in) {
  int64_t n = 0;
  in >> n;
  if (!in || n < 0) throw std::runtime_error("bad count");
  std::vector<T> v(static_cast<size_t>(n));
  for (auto& x : v) in >> x;
  if (!in) throw std::runtime_error("short input");
  return v;
}

template <typename T>
int run(std::istream& in) {
  namespace mp = micronet::program;
  const std::vector<int64_t> prog = read_values<int64_t>(in);
  const std::vector<double> w64 = read_values<double>(in);
  const std::vector<int64_t> tables = read_values<int64_t>(in);
  int64_t N = 0, C = 0, H = 0, W = 0;
  in >> N >> C >> H >> W;
  if (!in || N < 0 || C < 0 || H < 0 || W < 0 || N * C * H * W > (int64_t(1) << 26))
    throw std::runtime_error("bad input shape");
  std::vector<T> x(static_cast<size_t>(N * C * H * W));
  for (auto& v : x) in >> v;
  if (!in) throw std::runtime_error("short input");
  const std::vector<T> w(w64.begin(), w64.end());
  std::vector<mp::Dims> d;
  try {
    d = mp::check<T>(prog.data(), static_cast<int64_t>(prog.size()), {C, H, W},
                     static_cast<int64_t>(w.size()), static_cast<int64_t>(tables.size()),
                     tables.data());
  } catch (const std::invalid_argument& e) {
    std::printf("ERROR %s\n", e.what());
    return 0;
  }
  const mp::Dims o = d.back();
  std::vector<T> y(static_cast<size_t>(N * o.size()));
  mp::run<T>(prog.data(), static_cast<int64_t>(prog.size()), w.data(), tables.data(), x.data(),
             y.data(), 0, N, {C, H, W});
  std::printf("%lld %lld %lld %lld\n", static_cast<long long>(N), static_cast<long long>(o.C),
              static_cast<long long>(o.H), static_cast<long long>(o.W));
  for (T v : y) std::printf("%.17g\n", static_cast<double>(v));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dtype = argc > 1 ? argv[1] : "";
  if (dtype != "f32" && dtype != "f64") {
    std::fprintf(stderr, "usage: program_driver f32|f64 < case.txt\n");
    return 2;
  }
  try {
    return dtype == "f32" ? run<float>(std::cin) : run<double>(std::cin);
  } catch (const std::runtime_error& e) {
    std::fprintf(stderr, "program_driver: %s\n", e.what());
    return 2;
  }
}
