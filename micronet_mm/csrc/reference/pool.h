// Reference POOL layer of the native engine (program_kernels.h's pool, with its vector sums and
// tails): the mean of each plane, ReLU6 before it and h-swish after it on request. Double,
// plain loops.
#pragma once

#include <cstdint>

#include "activation.h"

namespace micronet {
namespace reference {

// y[c] = hswish?(sum_p relu6?(x[c, p]) / P) for C planes of P values.
inline void global_pool(const double* x, int64_t C, int64_t P, bool relu6_in, bool hswish_out,
                        double* y) {
  for (int64_t c = 0; c < C; ++c) {
    double sum = 0.0;
    for (int64_t p = 0; p < P; ++p) {
      const double v = x[c * P + p];
      sum += relu6_in ? relu6(v) : v;
    }
    const double mean = sum / static_cast<double>(P);
    y[c] = hswish_out ? hswish(mean) : mean;
  }
}

}  // namespace reference
}  // namespace micronet
