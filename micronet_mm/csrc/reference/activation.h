// Reference activations of the native engine (program_kernels.h): ReLU6 and h-swish on one
// value, in double. Plain code that the kernels' clamps and h-swish are tested against
// (tests/native/kernel_test.cpp); nothing in the engine includes it.
#pragma once

namespace micronet {
namespace reference {

// min(max(v, 0), 6)
inline double relu6(double v) { return v < 0.0 ? 0.0 : (v > 6.0 ? 6.0 : v); }

// v * relu6(v + 3) / 6
inline double hswish(double v) { return v * relu6(v + 3.0) / 6.0; }

}  // namespace reference
}  // namespace micronet
