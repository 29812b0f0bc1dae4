// torch.library binding of the fused Dynamic Shift-Max (shift_max.h, which runs the kernels of
// shift_max_kernels.h that the programs run): CPU kernels of
//
//   micronet::shift_max(Tensor x, Tensor coef, Tensor index) -> Tensor
//   micronet::shift_max_backward(Tensor grad, Tensor x, Tensor coef, Tensor index)
//       -> (Tensor, Tensor)
//   micronet::shift_max_dynamic(Tensor x, Tensor w1, Tensor b1, Tensor w2, Tensor b2,
//       Tensor init, float act_max, Tensor index) -> Tensor
//
// x: (N, C, H, W); coef: (N, K, J, C); index: (J, C) int64, index[j, i] = the source channel of
// shift j for channel i (DynamicShiftMax.index); w1: (S, C), b1: (S,), w2: (K*J*C, S),
// b2: (K*J*C,), init: (K, J). shift_max_dynamic is the deploy form: hyper-function and fusion in
// one call. The autograd formula and the fake (meta) kernels are registered from Python
// (micronet_mm/ops/fused_shift_max.py), where torch.compile and torch.export look for them.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "shift_max.h"

namespace {

micronet::ShiftMaxShape shape_of(const at::Tensor& x, const at::Tensor& coef,
                                 const at::Tensor& index) {
  TORCH_CHECK(x.dim() == 4, "micronet::shift_max: x must be (N, C, H, W), got ", x.sizes());
  TORCH_CHECK(coef.dim() == 4 && coef.size(0) == x.size(0) && coef.size(3) == x.size(1),
              "micronet::shift_max: coef must be (N, K, J, C) for x ", x.sizes(), ", got ",
              coef.sizes());
  TORCH_CHECK(index.dim() == 2 && index.size(0) == coef.size(2) && index.size(1) == x.size(1) &&
                  index.scalar_type() == at::kLong,
              "micronet::shift_max: index must be int64 (J, C), got ", index.sizes());
  TORCH_CHECK(coef.size(1) >= 1 && coef.size(1) <= micronet::kMaxFusions &&
                  coef.size(2) >= 1 && coef.size(2) <= micronet::kMaxShifts,
              "micronet::shift_max: 1 to 8 fusions and 1 to 8 shifts, got coef ", coef.sizes());
  TORCH_CHECK(x.scalar_type() == coef.scalar_type(), "micronet::shift_max: x and coef dtypes");
  TORCH_CHECK(x.device().is_cpu() && coef.device().is_cpu() && index.device().is_cpu(),
              "micronet::shift_max: CPU tensors only");
  // every source channel inside x (index is contiguous here): J * C entries, once per call
  const int64_t* pi = index.data_ptr<int64_t>();
  for (int64_t q = 0, n = index.numel(), c = x.size(1); q < n; ++q)
    TORCH_CHECK(pi[q] >= 0 && pi[q] < c, "micronet::shift_max: index entry ", pi[q],
                " outside [0, ", c, ")");
  // groups and inner_shift are unused: the index table gives the shift
  return {x.size(0), x.size(1), x.size(2), x.size(3), 1, coef.size(2), coef.size(1), false};
}

at::Tensor shift_max(const at::Tensor& x_in, const at::Tensor& coef_in,
                     const at::Tensor& index_in) {
  const at::Tensor x = x_in.contiguous(), coef = coef_in.contiguous();
  const at::Tensor index = index_in.contiguous();
  const micronet::ShiftMaxShape s = shape_of(x, coef, index);
  at::Tensor y = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "micronet::shift_max", [&] {
    const scalar_t *px = x.data_ptr<scalar_t>(), *pc = coef.data_ptr<scalar_t>();
    scalar_t* py = y.data_ptr<scalar_t>();
    const int64_t* pi = index.data_ptr<int64_t>();
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, s.H * s.W));
    at::parallel_for(0, s.N * s.C, grain, [&](int64_t begin, int64_t end) {
      micronet::shift_max_fuse_forward_range(px, pc, py, s, begin, end, pi);
    });
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor> shift_max_backward(const at::Tensor& grad_in,
                                                      const at::Tensor& x_in,
                                                      const at::Tensor& coef_in,
                                                      const at::Tensor& index_in) {
  const at::Tensor x = x_in.contiguous(), coef = coef_in.contiguous();
  const at::Tensor grad = grad_in.contiguous(), index = index_in.contiguous();
  const micronet::ShiftMaxShape s = shape_of(x, coef, index);
  TORCH_CHECK(grad.sizes() == x.sizes(), "micronet::shift_max_backward: grad must match x");
  at::Tensor gx = at::empty_like(x), gcoef = at::empty_like(coef);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "micronet::shift_max_backward", [&] {
    const scalar_t *px = x.data_ptr<scalar_t>(), *pc = coef.data_ptr<scalar_t>();
    const scalar_t* pg = grad.data_ptr<scalar_t>();
    scalar_t *pgx = gx.data_ptr<scalar_t>(), *pgc = gcoef.data_ptr<scalar_t>();
    const int64_t* pi = index.data_ptr<int64_t>();
    at::parallel_for(0, s.N, 1, [&](int64_t begin, int64_t end) {
      micronet::shift_max_fuse_backward_range(px, pc, pg, pgx, pgc, s, begin, end, pi);
    });
  });
  return {gx, gcoef};
}

at::Tensor shift_max_dynamic(const at::Tensor& x_in, const at::Tensor& w1_in,
                             const at::Tensor& b1_in, const at::Tensor& w2_in,
                             const at::Tensor& b2_in, const at::Tensor& init_in, double act_max,
                             const at::Tensor& index_in) {
  const at::Tensor x = x_in.contiguous(), w1 = w1_in.contiguous(), b1 = b1_in.contiguous();
  const at::Tensor w2 = w2_in.contiguous(), b2 = b2_in.contiguous();
  const at::Tensor init = init_in.contiguous(), index = index_in.contiguous();
  TORCH_CHECK(x.dim() == 4, "micronet::shift_max_dynamic: x must be (N, C, H, W), got ",
              x.sizes());
  TORCH_CHECK(init.dim() == 2 && init.size(0) >= 1 && init.size(0) <= micronet::kMaxFusions &&
                  init.size(1) >= 1 && init.size(1) <= micronet::kMaxShifts,
              "micronet::shift_max_dynamic: init must be (K, J), 1 <= K, J <= 8, got ",
              init.sizes());
  TORCH_CHECK(w1.dim() == 2 && w2.dim() == 2,
              "micronet::shift_max_dynamic: fc1 must be (S, C) and fc2 (K*J*C, S)");
  const int64_t n = x.size(0), c = x.size(1), k = init.size(0), j = init.size(1);
  const int64_t squeeze = w1.size(0);
  TORCH_CHECK(w1.size(1) == c && b1.numel() == squeeze && w2.size(0) == k * j * c &&
                  w2.size(1) == squeeze && b2.numel() == k * j * c,
              "micronet::shift_max_dynamic: fc1 must be (S, C) and fc2 (K*J*C, S)");
  for (const at::Tensor* t : {&w1, &b1, &w2, &b2, &init})
    TORCH_CHECK(t->scalar_type() == x.scalar_type() && t->device().is_cpu(),
                "micronet::shift_max_dynamic: parameters must be CPU tensors of x's dtype");
  at::Tensor coef = at::empty({n, k, j, c}, x.options());
  const micronet::ShiftMaxShape s = shape_of(x, coef, index);
  at::Tensor y = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "micronet::shift_max_dynamic", [&] {
    const scalar_t* px = x.data_ptr<scalar_t>();
    scalar_t *pc = coef.data_ptr<scalar_t>(), *py = y.data_ptr<scalar_t>();
    const int64_t* pi = index.data_ptr<int64_t>();
    at::parallel_for(0, s.N, 1, [&](int64_t begin, int64_t end) {
      micronet::shift_max_coefficients_range(
          px, w1.data_ptr<scalar_t>(), b1.data_ptr<scalar_t>(), w2.data_ptr<scalar_t>(),
          b2.data_ptr<scalar_t>(), init.data_ptr<scalar_t>(), static_cast<scalar_t>(act_max),
          squeeze, pc, s, begin, end);
    });
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, s.H * s.W));
    at::parallel_for(0, s.N * s.C, grain, [&](int64_t begin, int64_t end) {
      micronet::shift_max_fuse_forward_range(px, static_cast<const scalar_t*>(pc), py, s, begin,
                                             end, pi);
    });
  });
  return y;
}

}  // namespace

TORCH_LIBRARY(micronet, m) {
  m.def("shift_max(Tensor x, Tensor coef, Tensor index) -> Tensor");
  m.def("shift_max_backward(Tensor grad, Tensor x, Tensor coef, Tensor index) -> (Tensor, Tensor)");
  m.def("shift_max_dynamic(Tensor x, Tensor w1, Tensor b1, Tensor w2, Tensor b2, Tensor init, "
        "float act_max, Tensor index) -> Tensor");
}

TORCH_LIBRARY_IMPL(micronet, CPU, m) {
  m.impl("shift_max", &shift_max);
  m.impl("shift_max_backward", &shift_max_backward);
  m.impl("shift_max_dynamic", &shift_max_dynamic);
}
