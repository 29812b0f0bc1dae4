#include "shift_max_op.hpp"

#include <vector>

#include "shift_max.h"

namespace micronet {

ShiftMaxOp::ShiftMaxOp(const ov::OutputVector& args, int64_t groups, int64_t num_shifts,
                       int64_t num_fusions, bool inner_shift, float act_max)
    : Op(args), m_groups(groups), m_num_shifts(num_shifts), m_num_fusions(num_fusions),
      m_inner_shift(inner_shift), m_act_max(act_max) {
    constructor_validate_and_infer_types();
}

void ShiftMaxOp::validate_and_infer_types() {
    const size_t n_in = get_input_size();
    NODE_VALIDATION_CHECK(this, n_in == 2 || n_in == 6,
                          "micronet::ShiftMax takes 2 inputs (static) or 6 (dynamic), got ", n_in);
    NODE_VALIDATION_CHECK(this, get_input_element_type(0) == ov::element::f32,
                          "micronet::ShiftMax runs in float32 only");
    const auto& shape = get_input_partial_shape(0);
    NODE_VALIDATION_CHECK(this, shape.rank().is_dynamic() || shape.rank().get_length() == 4,
                          "micronet::ShiftMax input must be (N, C, H, W)");
    if (shape.rank().is_static() && shape[1].is_static())
        NODE_VALIDATION_CHECK(this, shape[1].get_length() % m_groups == 0,
                              "channels not divisible by groups");
    set_output_type(0, get_input_element_type(0), shape);
}

std::shared_ptr<ov::Node> ShiftMaxOp::clone_with_new_inputs(const ov::OutputVector& new_args) const {
    return std::make_shared<ShiftMaxOp>(new_args, m_groups, m_num_shifts, m_num_fusions,
                                        m_inner_shift, m_act_max);
}

bool ShiftMaxOp::visit_attributes(ov::AttributeVisitor& visitor) {
    visitor.on_attribute("groups", m_groups);
    visitor.on_attribute("num_shifts", m_num_shifts);
    visitor.on_attribute("num_fusions", m_num_fusions);
    visitor.on_attribute("inner_shift", m_inner_shift);
    visitor.on_attribute("act_max", m_act_max);
    return true;
}

bool ShiftMaxOp::has_evaluate() const {
    return get_input_element_type(0) == ov::element::f32;
}

bool ShiftMaxOp::evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const {
    const auto& x = inputs[0];
    const ov::Shape& xs = x.get_shape();
    outputs[0].set_shape(xs);
    const ShiftMaxShape s{static_cast<int64_t>(xs[0]), static_cast<int64_t>(xs[1]),
                          static_cast<int64_t>(xs[2]), static_cast<int64_t>(xs[3]),
                          m_groups, m_num_shifts, m_num_fusions, m_inner_shift};
    const int64_t per_sample = s.K * s.J * s.C;
    std::vector<float> coef(static_cast<size_t>(s.N * per_sample));
    if (inputs.size() == 6) {
        const int64_t squeeze = static_cast<int64_t>(inputs[1].get_shape()[0]);
        shift_max_coefficients<float>(x.data<const float>(), inputs[1].data<const float>(),
                                      inputs[2].data<const float>(), inputs[3].data<const float>(),
                                      inputs[4].data<const float>(), inputs[5].data<const float>(),
                                      m_act_max, squeeze, coef.data(), s);
    } else {
        const float* c = inputs[1].data<const float>();
        for (int64_t n = 0; n < s.N; ++n)
            std::copy(c, c + per_sample, coef.begin() + n * per_sample);
    }
    shift_max_fuse_forward<float>(x.data<const float>(), coef.data(), outputs[0].data<float>(), s);
    return true;
}

}  // namespace micronet
