#include "shift_max_op.hpp"

#include <string>
#include <vector>

#include "shift_max.h"

namespace micronet {

ShiftMaxOp::ShiftMaxOp(const ov::OutputVector& args, int64_t groups, int64_t num_shifts,
                       int64_t num_fusions, bool inner_shift, float act_max)
    : Op(args), m_groups(groups), m_num_shifts(num_shifts), m_num_fusions(num_fusions),
      m_inner_shift(inner_shift), m_act_max(act_max) {
    constructor_validate_and_infer_types();
}

namespace {

// Why inputs of these shapes (x (N, C, H, W); the others as the header lists) cannot run with
// these attributes, or "" when they can. Every dimension the kernels index by is checked, so
// that evaluate() never reads outside an input: validate_and_infer_types() with the static
// shapes when the model is read, evaluate() with the actual ones on every call.
std::string shift_max_error(const std::vector<ov::Shape>& in, int64_t groups, int64_t J,
                            int64_t K) {
    if (groups < 1) return "groups must be >= 1, got " + std::to_string(groups);
    if (J < 1 || J > kMaxShifts || K < 1 || K > kMaxFusions)
        return "num_shifts and num_fusions must lie in [1, 8], got " + std::to_string(J) +
               " and " + std::to_string(K);
    if (in[0].size() != 4) return "x must be (N, C, H, W)";
    const int64_t C = static_cast<int64_t>(in[0][1]);
    if (C < 1 || C % groups) return "channels must be a positive multiple of groups";
    const int64_t KJC = K * J * C;  // (C: a tensor's dimension, K * J <= 64)
    auto is = [](const ov::Shape& s, std::vector<size_t> want) { return s == ov::Shape(want); };
    const size_t k = static_cast<size_t>(K), j = static_cast<size_t>(J), c = in[0][1];
    if (in.size() == 2) {
        if (!is(in[1], {k, j, c}))
            return "coef must be (num_fusions, num_shifts, C) = (" + std::to_string(K) + ", " +
                   std::to_string(J) + ", " + std::to_string(C) + ")";
        return "";
    }
    if (in[1].size() != 2 || in[1][1] != c) return "w1 must be (S, C)";
    const size_t S = in[1][0];
    if (S < 1 || !is(in[2], {S}) || !is(in[3], {static_cast<size_t>(KJC), S}) ||
        !is(in[4], {static_cast<size_t>(KJC)}) || ov::shape_size(in[5]) != k * j)
        return "the hyper-function must be w1 (S, C), b1 (S), w2 (K*J*C, S), b2 (K*J*C), "
               "init (K, J)";
    return "";
}

}  // namespace

void ShiftMaxOp::validate_and_infer_types() {
    const size_t n_in = get_input_size();
    NODE_VALIDATION_CHECK(this, n_in == 2 || n_in == 6,
                          "micronet::ShiftMax takes 2 inputs (static) or 6 (dynamic), got ", n_in);
    for (size_t i = 0; i < n_in; ++i)
        NODE_VALIDATION_CHECK(this, get_input_element_type(i) == ov::element::f32,
                              "micronet::ShiftMax runs in float32 only");
    const auto& shape = get_input_partial_shape(0);
    NODE_VALIDATION_CHECK(this, shape.rank().is_dynamic() || shape.rank().get_length() == 4,
                          "micronet::ShiftMax input must be (N, C, H, W)");
    NODE_VALIDATION_CHECK(this, m_groups >= 1, "micronet::ShiftMax: groups must be >= 1, got ",
                          m_groups);
    NODE_VALIDATION_CHECK(this,
                          m_num_shifts >= 1 && m_num_shifts <= kMaxShifts &&
                              m_num_fusions >= 1 && m_num_fusions <= kMaxFusions,
                          "micronet::ShiftMax: num_shifts and num_fusions must lie in [1, 8]");
    // every input but x's N, H and W must be known here: OpenVINO's CPU plugin turns an
    // exception of evaluate() (a batch fed at run time) into an empty output, so that the
    // checks of evaluate() only back these up
    if (shape.rank().is_static()) {
        NODE_VALIDATION_CHECK(this, shape[1].is_static(),
                              "micronet::ShiftMax needs the channels of x static");
        const size_t channels = static_cast<size_t>(shape[1].get_length());
        std::vector<ov::Shape> shapes{ov::Shape{1, channels, 1, 1}};
        for (size_t i = 1; i < n_in; ++i) {
            NODE_VALIDATION_CHECK(this, get_input_partial_shape(i).is_static(),
                                  "micronet::ShiftMax needs its coefficient inputs of static "
                                  "shapes");
            shapes.push_back(get_input_partial_shape(i).to_shape());
        }
        const std::string error = shift_max_error(shapes, m_groups, m_num_shifts, m_num_fusions);
        NODE_VALIDATION_CHECK(this, error.empty(), "micronet::ShiftMax: ", error);
    }
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
    std::vector<ov::Shape> shapes;
    for (const auto& t : inputs) shapes.push_back(t.get_shape());
    const std::string error = shift_max_error(shapes, m_groups, m_num_shifts, m_num_fusions);
    OPENVINO_ASSERT(error.empty(), "micronet::ShiftMax: ", error);
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
