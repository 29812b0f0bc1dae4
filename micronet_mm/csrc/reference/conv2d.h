// Reference 2-D convolution of the native engine: every CONV layer of a program (pointwise and
// grouped 1x1, depthwise kxk / kx1 / 1xk with channel multipliers, the dense stem, any stride,
// dilation and zero padding) is this one operation, which every convolution path of
// program_kernels.h (pointwise_rows, conv_row, small_plane, vertical_flat, horizontal_flat,
// depthwise_interleaved and its fused pairs) must equal. One sample, planar (C, H, W), double,
// one loop per index of the definition: no blocking, no vectors, no special case.
#pragma once

#include <cstdint>

#include "activation.h"

namespace micronet {
namespace reference {

struct Conv2d {
  int64_t c_in, c_out, groups;  // channels; groups divide both
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;  // kernel, stride, zero padding, dilation
  bool relu6;  // ReLU6 after the bias
};

// Output length of one spatial dimension: (in + 2 pad - dilation (k - 1) - 1) / stride + 1,
// or 0 where the kernel's reach exceeds the padded input.
inline int64_t conv_output(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dilation) {
  const int64_t room = in + 2 * pad - dilation * (k - 1) - 1;
  return room < 0 ? 0 : room / stride + 1;
}

// y[o, ho, wo] = act(bias[o] + sum over c < C_in / groups, th < kh, tw < kw of
//   w[o, c, th, tw] * x[g C_in / groups + c, ho sh - ph + th dh, wo sw - pw + tw dw])
// with g = o / (C_out / groups) and x zero outside its H x W plane. w: (C_out, C_in / groups,
// kh, kw); y: (C_out, Ho, Wo) of conv_output.
inline void conv2d(const double* x, int64_t H, int64_t W, const double* w, const double* bias,
                   const Conv2d& s, double* y) {
  const int64_t Ho = conv_output(H, s.kh, s.sh, s.ph, s.dh);
  const int64_t Wo = conv_output(W, s.kw, s.sw, s.pw, s.dw);
  const int64_t cg = s.c_in / s.groups, og = s.c_out / s.groups;
  for (int64_t o = 0; o < s.c_out; ++o) {
    const int64_t g = o / og;
    for (int64_t ho = 0; ho < Ho; ++ho) {
      for (int64_t wo = 0; wo < Wo; ++wo) {
        double sum = bias[o];
        for (int64_t c = 0; c < cg; ++c) {
          for (int64_t th = 0; th < s.kh; ++th) {
            for (int64_t tw = 0; tw < s.kw; ++tw) {
              const int64_t hi = ho * s.sh - s.ph + th * s.dh;
              const int64_t wi = wo * s.sw - s.pw + tw * s.dw;
              if (hi < 0 || hi >= H || wi < 0 || wi >= W) continue;  // zero padding
              const double weight = w[((o * cg + c) * s.kh + th) * s.kw + tw];
              sum += weight * x[((g * cg + c) * H + hi) * W + wi];
            }
          }
        }
        y[(o * Ho + ho) * Wo + wo] = s.relu6 ? relu6(sum) : sum;
      }
    }
  }
}

}  // namespace reference
}  // namespace micronet
