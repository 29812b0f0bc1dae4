// Reference ADD layer of the native engine (program_kernels.h's add): the elementwise sum of
// two tensors of n values. Double, one loop.
#pragma once

#include <cstdint>

namespace micronet {
namespace reference {

inline void add(const double* a, const double* b, int64_t n, double* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

}  // namespace reference
}  // namespace micronet
