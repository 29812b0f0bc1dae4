// Harness of tools/analysis/bench_program.py: runs a chain of layer programs
// (micronet_mm/csrc/program.h) with the per-layer profile hook, outside any framework.
//
//   bench_program IN.bin OUT.bin BLOCKS
//
// IN.bin (int64 unless said): P, then P times [program length, weights length, tables length,
// program, weights (float32), tables], then C H W of the chain's input and the input (float32).
// Runs the chain BLOCKS times and prints, as lines of text, the minimum over the runs of
//   chain US                       the whole chain
//   program K US                   program K
//   layer K FIRST LAST US          one run() step of program K: layer FIRST, or the fused pair
//                                  FIRST..LAST
//   into K L                       Shift-Max layer L of program K runs inside layer L + 1 (its
//                                  own step is the hyper-function alone)
// and writes every program's output (float32, in order) to OUT.bin, for the driver's parity
// check.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <utility>
#include <vector>

#include "program.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Program {
  std::vector<int64_t> prog, tables;
  std::vector<float> weights;
  micronet::program::Plan plan;  // made once, as the OpenVINO operation does
};

const int64_t* g_base = nullptr;  // the program being run (for the hook)
int64_t g_index = 0;
std::map<std::pair<int64_t, int64_t>, std::pair<int64_t, double>> g_layers;  // -> (last, min)

template <typename T>
bool read(FILE* f, T* p, size_t n) {
  return std::fread(p, sizeof(T), n, f) == n;
}

}  // namespace

void micronet_program_profile(const int64_t* record, int64_t layer, double seconds) {
  const int64_t first = (record - g_base - 2) / micronet::program::kFields;
  auto key = std::make_pair(g_index, first);
  auto it = g_layers.find(key);
  if (it == g_layers.end())
    g_layers[key] = {layer, seconds};
  else
    it->second.second = std::min(it->second.second, seconds);
}

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: bench_program IN.bin OUT.bin BLOCKS\n");
    return 2;
  }
  FILE* f = std::fopen(argv[1], "rb");
  if (f == nullptr) {
    std::fprintf(stderr, "bench_program: cannot open %s\n", argv[1]);
    return 2;
  }
  int64_t count = 0;
  bool ok = read(f, &count, 1) && count > 0 && count < 1000;
  std::vector<Program> ps(ok ? count : 0);
  for (auto& p : ps) {
    int64_t n[3];
    ok = ok && read(f, n, 3);
    if (!ok) break;
    p.prog.resize(n[0]);
    p.weights.resize(n[1]);
    p.tables.resize(n[2]);
    ok = read(f, p.prog.data(), n[0]) && read(f, p.weights.data(), n[1]) &&
         read(f, p.tables.data(), n[2]);
  }
  int64_t chw[3] = {0, 0, 0};
  ok = ok && read(f, chw, 3);
  micronet::program::Dims d{chw[0], chw[1], chw[2]};
  std::vector<float> x(ok ? d.size() : 0);
  ok = ok && read(f, x.data(), x.size());
  std::fclose(f);
  if (!ok) {
    std::fprintf(stderr, "bench_program: %s is truncated or malformed\n", argv[1]);
    return 2;
  }
  std::vector<std::vector<float>> outs(ps.size());
  try {
    for (auto& p : ps) {
      const int64_t len = static_cast<int64_t>(p.prog.size());
      const micronet::program::Dims in = d;
      d = micronet::program::check<float>(p.prog.data(), len, in,
                                          static_cast<int64_t>(p.weights.size()),
                                          static_cast<int64_t>(p.tables.size()),
                                          p.tables.data()).back();
      p.plan = micronet::program::plan<float>(p.prog.data(), len, in);
      outs[&p - ps.data()].resize(d.size());
    }
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "bench_program: %s\n", e.what());
    return 2;
  }
  const int blocks = std::max(1, std::atoi(argv[3]));
  std::vector<double> best(ps.size(), 1e30);
  double chain = 1e30;
  for (int b = 0; b < blocks; ++b) {
    const auto t0 = Clock::now();
    const float* cur = x.data();
    for (size_t k = 0; k < ps.size(); ++k) {
      const Program& p = ps[k];
      g_base = p.prog.data();
      g_index = static_cast<int64_t>(k);
      const auto a = Clock::now();
      micronet::program::run<float>(p.plan, p.prog.data(), p.weights.data(), p.tables.data(),
                                    cur, outs[k].data(), 0, 1);
      best[k] = std::min(best[k], std::chrono::duration<double>(Clock::now() - a).count());
      cur = outs[k].data();
    }
    chain = std::min(chain, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::printf("chain %.3f\n", 1e6 * chain);
  for (size_t k = 0; k < ps.size(); ++k) {
    std::printf("program %zu %.3f\n", k, 1e6 * best[k]);
    for (size_t l = 0; l < ps[k].plan.into.size(); ++l)
      if (ps[k].plan.into[l]) std::printf("into %zu %zu\n", k, l);
  }
  for (const auto& kv : g_layers)
    std::printf("layer %ld %ld %ld %.3f\n", static_cast<long>(kv.first.first),
                static_cast<long>(kv.first.second), static_cast<long>(kv.second.first),
                1e6 * kv.second.second);
  FILE* o = std::fopen(argv[2], "wb");
  bool written = o != nullptr;
  for (const auto& out : outs)
    written = written && std::fwrite(out.data(), sizeof(float), out.size(), o) == out.size();
  if (o != nullptr) std::fclose(o);
  if (!written) {
    std::fprintf(stderr, "bench_program: cannot write %s\n", argv[2]);
    return 2;
  }
  return 0;
}
