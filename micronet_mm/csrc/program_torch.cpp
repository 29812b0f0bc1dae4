// torch.library binding of the fused block program (program.h):
//
//   micronet::program(Tensor x, Tensor weights, Tensor tables, int[] program) -> Tensor
//
// x: (N, C, H, W) float32 or float64; weights: 1-D, x's dtype; tables: 1-D int64; program: the
// layer records (see program.h). Inference only (no autograd formula). The fake kernel (output
// shape) is registered from Python (micronet_mm/deploy/rewrites/native_block.py).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <stdexcept>
#include <vector>

#include "program.h"

namespace {

at::Tensor program(const at::Tensor& x_in, const at::Tensor& weights_in,
                   const at::Tensor& tables_in, at::IntArrayRef prog) {
  TORCH_CHECK(x_in.dim() == 4, "micronet::program: x must be (N, C, H, W), got ", x_in.sizes());
  TORCH_CHECK(weights_in.scalar_type() == x_in.scalar_type(),
              "micronet::program: weights must have x's dtype");
  TORCH_CHECK(tables_in.scalar_type() == at::kLong, "micronet::program: tables must be int64");
  const at::Tensor x = x_in.contiguous(), weights = weights_in.contiguous();
  const at::Tensor tables = tables_in.contiguous();
  const micronet::program::Dims in{x.size(1), x.size(2), x.size(3)};
  const int64_t len = static_cast<int64_t>(prog.size());
  at::Tensor y;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "micronet::program", [&] {
    std::vector<micronet::program::Dims> dims;
    try {  // every offset and table entry, before anything runs
      dims = micronet::program::check<scalar_t>(prog.data(), len, in, weights.numel(),
                                                tables.numel(), tables.data_ptr<int64_t>());
    } catch (const std::invalid_argument& e) {
      TORCH_CHECK(false, e.what());
    }
    const auto& out = dims.back();
    y = at::empty({x.size(0), out.C, out.H, out.W}, x.options());
    const scalar_t *px = x.data_ptr<scalar_t>(), *pw = weights.data_ptr<scalar_t>();
    scalar_t* py = y.data_ptr<scalar_t>();
    const int64_t* pt = tables.data_ptr<int64_t>();
    at::parallel_for(0, x.size(0), 1, [&](int64_t begin, int64_t end) {
      micronet::program::run(prog.data(), len, pw, pt, px, py, begin, end, in);
    });
  });
  return y;
}

// The kernels' vector width in bytes that program() picks for x of this dtype (program.h,
// vector_bytes()), for tests and benchmarks.
int64_t program_vector_bytes(bool float64) {
  return float64 ? micronet::program::vector_bytes<double>()
                 : micronet::program::vector_bytes<float>();
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(micronet, m) {
  m.def("program(Tensor x, Tensor weights, Tensor tables, int[] program) -> Tensor");
  m.def("program_vector_bytes(bool float64) -> int", &program_vector_bytes);
}

TORCH_LIBRARY_IMPL(micronet, CPU, m) { m.impl("program", &program); }
