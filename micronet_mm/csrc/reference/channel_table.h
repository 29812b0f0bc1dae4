// Reference channel tables of the native engine (program.h's in_perm, out_perm and an ADD's
// second_perm; program_kernels.h's planes() and run_layers): a layer reads its logical input
// channel c from plane table[c] of its source (any entries: a plane may be read twice or not
// at all) and writes its logical output channel o to plane table[o] of its buffer (a
// permutation). No table: the identity. Double, plain copies of whole planes.
#pragma once

#include <cstdint>

namespace micronet {
namespace reference {

// out[c] = in[table[c]] for C planes of P values.
inline void gather_planes(const double* in, const int64_t* table, int64_t C, int64_t P,
                          double* out) {
  for (int64_t c = 0; c < C; ++c)
    for (int64_t p = 0; p < P; ++p) out[c * P + p] = in[(table ? table[c] : c) * P + p];
}

// out[table[o]] = in[o] for C planes of P values.
inline void scatter_planes(const double* in, const int64_t* table, int64_t C, int64_t P,
                           double* out) {
  for (int64_t o = 0; o < C; ++o)
    for (int64_t p = 0; p < P; ++p) out[(table ? table[o] : o) * P + p] = in[o * P + p];
}

}  // namespace reference
}  // namespace micronet
