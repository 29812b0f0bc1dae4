#include "program_op.hpp"

#include <openvino/op/constant.hpp>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "program.h"

namespace micronet {
namespace {

namespace prog = ::micronet::program;


// Whether the Constant holds exactly `values` (int64 or int32 entries).
bool same_tables(const ov::op::v0::Constant& c, const std::vector<int64_t>& values) {
    if (ov::shape_size(c.get_shape()) != values.size()) return false;
    if (c.get_element_type() == ov::element::i64)
        return std::equal(values.begin(), values.end(), c.get_data_ptr<int64_t>());
    return std::equal(values.begin(), values.end(), c.get_data_ptr<int32_t>());
}

}  // namespace

ProgramOp::ProgramOp(const ov::OutputVector& args, std::vector<int64_t> program,
                     std::shared_ptr<const std::vector<int64_t>> tables)
    : Op(args), m_program(std::move(program)), m_tables(std::move(tables)) {
    constructor_validate_and_infer_types();
}

void ProgramOp::validate_and_infer_types() {
    NODE_VALIDATION_CHECK(this, get_input_size() == 3,
                          "micronet::Program takes 3 inputs (x, weights, tables), got ",
                          get_input_size());
    const auto tables_type = get_input_element_type(2);
    NODE_VALIDATION_CHECK(this,
                          get_input_element_type(0) == ov::element::f32 &&
                              get_input_element_type(1) == ov::element::f32 &&
                              (tables_type == ov::element::i64 || tables_type == ov::element::i32),
                          "micronet::Program takes x and weights in float32, tables in int64 "
                          "(or int32)");
    const auto& shape = get_input_partial_shape(0);
    NODE_VALIDATION_CHECK(this,
                          shape.rank().is_static() && shape.rank().get_length() == 4 &&
                              shape[1].is_static() && shape[2].is_static() && shape[3].is_static(),
                          "micronet::Program input must be (N, C, H, W) with static C, H, W, got ",
                          shape);
    const auto &ws = get_input_partial_shape(1), &ts = get_input_partial_shape(2);
    // rank 0 too: OpenVINO's ONNX frontend reads an empty initializer as a scalar
    NODE_VALIDATION_CHECK(this,
                          ws.is_static() && ws.size() <= 1 && ts.is_static() && ts.size() <= 1,
                          "micronet::Program weights and tables must be 1-D of static length");
    // a Constant, whose int64 copy evaluate() reads: the CPU plugin's shape inference of a
    // dynamic batch re-validates a clone of the node, with its inputs as Constants, on every
    // call (and skips the node, silently, when that fails: entries fed at run time could not
    // be refused). A clone shares the copy while the entries stay the same.
    const auto constant =
        ov::as_type_ptr<ov::op::v0::Constant>(input_value(2).get_node_shared_ptr());
    NODE_VALIDATION_CHECK(this, constant != nullptr,
                          "micronet::Program tables must be a Constant (an initializer of the "
                          "ONNX model), got ",
                          input_value(2).get_node_shared_ptr()->get_type_name());
    if (!m_tables || !same_tables(*constant, *m_tables))
        m_tables = std::make_shared<const std::vector<int64_t>>(constant->cast_vector<int64_t>());
    const prog::Dims in{shape[1].get_length(), shape[2].get_length(), shape[3].get_length()};
    std::vector<prog::Dims> d;
    try {
        d = prog::check<float>(m_program.data(), static_cast<int64_t>(m_program.size()), in,
                               static_cast<int64_t>(ov::shape_size(ws.to_shape())),
                               static_cast<int64_t>(ov::shape_size(ts.to_shape())),
                               m_tables->data());
    } catch (const std::invalid_argument& e) {
        NODE_VALIDATION_CHECK(this, false, e.what());
    }
    m_plan = std::make_shared<const prog::Plan>(
        prog::plan<float>(m_program.data(), static_cast<int64_t>(m_program.size()), in));
    const prog::Dims out = d.back();
    m_in[0] = in.C, m_in[1] = in.H, m_in[2] = in.W;
    m_out[0] = out.C, m_out[1] = out.H, m_out[2] = out.W;
    set_output_type(0, ov::element::f32, ov::PartialShape{shape[0], out.C, out.H, out.W});
}

std::shared_ptr<ov::Node> ProgramOp::clone_with_new_inputs(
    const ov::OutputVector& new_args) const {
    return std::make_shared<ProgramOp>(new_args, m_program, m_tables);
}

bool ProgramOp::visit_attributes(ov::AttributeVisitor& visitor) {
    visitor.on_attribute("program", m_program);
    return true;
}

bool ProgramOp::has_evaluate() const {
    return get_input_element_type(0) == ov::element::f32;
}

bool ProgramOp::evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const {
    const ov::Shape& xs = inputs[0].get_shape();
    OPENVINO_ASSERT(xs.size() == 4 && static_cast<int64_t>(xs[1]) == m_in[0] &&
                        static_cast<int64_t>(xs[2]) == m_in[1] &&
                        static_cast<int64_t>(xs[3]) == m_in[2],
                    "micronet::Program: input shape ", xs, " differs from the validated one");
    const int64_t n = static_cast<int64_t>(xs[0]);
    outputs[0].set_shape({xs[0], static_cast<size_t>(m_out[0]), static_cast<size_t>(m_out[1]),
                          static_cast<size_t>(m_out[2])});
    prog::run<float>(*m_plan, m_program.data(), inputs[1].data<const float>(), m_tables->data(),
                     inputs[0].data<const float>(), outputs[0].data<float>(), 0, n);
    return true;
}

}  // namespace micronet
