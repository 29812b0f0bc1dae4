// Reference LINEAR layer of the native engine (program_kernels.h's linear over matvec_blocked):
// a matrix-vector product with bias and activation, reading the weights where the program
// format puts them (micronet_mm/csrc/program_format.py): W(q, h) of output q and input h at
// params[((q / B) * C_in + h) * B + q % B] (B = kMatvecBlockOutputs outputs a block), then the
// bias, padded to whole blocks. Double, plain loops.
#pragma once

#include <cstdint>

#include "../program_format.h"
#include "activation.h"

namespace micronet {
namespace reference {

// Outputs of the blocked layout: C_out rounded up to whole blocks.
inline int64_t blocked_outputs(int64_t c_out) {
  const int64_t B = program::kMatvecBlockOutputs;
  return (c_out + B - 1) / B * B;
}

// y[q] = act(bias[q] + sum_h W(q, h) x[h]), q < C_out; act 0 none, 1 ReLU6, 2 h-swish.
inline void linear(const double* x, int64_t c_in, int64_t c_out, const double* params,
                   int64_t act, double* y) {
  const int64_t B = program::kMatvecBlockOutputs;
  const double* bias = params + c_in * blocked_outputs(c_out);
  for (int64_t q = 0; q < c_out; ++q) {
    double sum = bias[q];
    for (int64_t h = 0; h < c_in; ++h) sum += params[((q / B) * c_in + h) * B + q % B] * x[h];
    y[q] = act == 2 ? hswish(sum) : (act == 1 ? relu6(sum) : sum);
  }
}

}  // namespace reference
}  // namespace micronet
