// micronet::ShiftMax: Dynamic Shift-Max (micronet_mm/ops/shift_max.py) as one OpenVINO operation.
//
// Inputs (float32):
//   dynamic: x (N, C, H, W), w1 (S, C), b1 (S), w2 (K*J*C, S), b2 (K*J*C), init (K, J)
//            -- the hyper-function of the trained module, coefficients computed per sample;
//   static:  x (N, C, H, W), coef (K, J, C) -- the final coefficients, the same for every sample.
// Attributes: groups, num_shifts (J), num_fusions (K), inner_shift, act_max.
// Output: y (N, C, H, W). evaluate() runs the Shift-Max kernels that the programs run
// (micronet_mm/csrc/shift_max_kernels.h, through shift_max.h).
#pragma once

#include <openvino/op/op.hpp>

namespace micronet {

class ShiftMaxOp : public ov::op::Op {
public:
    OPENVINO_OP("ShiftMax", "micronet");

    ShiftMaxOp() = default;
    ShiftMaxOp(const ov::OutputVector& args, int64_t groups, int64_t num_shifts,
               int64_t num_fusions, bool inner_shift, float act_max);

    void validate_and_infer_types() override;
    std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& new_args) const override;
    bool visit_attributes(ov::AttributeVisitor& visitor) override;
    bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override;
    bool has_evaluate() const override;

private:
    int64_t m_groups = 1, m_num_shifts = 2, m_num_fusions = 2;
    bool m_inner_shift = true;
    float m_act_max = 2.0f;
};

}  // namespace micronet
