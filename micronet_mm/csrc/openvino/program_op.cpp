#include "program_op.hpp"

#include <openvino/op/constant.hpp>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "program.h"

namespace micronet {
namespace {

namespace prog = ::micronet::program;

[[noreturn]] void fail(const std::string& what, int64_t layer) {
    throw std::invalid_argument("micronet program: " + what + " (layer " +
                                std::to_string(layer) + ")");
}

int64_t mul(int64_t a, int64_t b, int64_t layer) {
    int64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r)) fail("size overflows int64", layer);
    return r;
}

// Everything program.h reads through an offset, checked against the lengths of weights and
// tables, and the entries of every table against the channels it addresses, after
// program::infer. The fields infer() divides or multiplies by are checked
// before it runs. Returns infer()'s buffer shapes. Throws std::invalid_argument.
//
// TODO(lead): this belongs next to program::infer in program.h, where the torch op could use
// it too; it is kept here while program.h is being optimised.
std::vector<prog::Dims> check_extents(const std::vector<int64_t>& p, prog::Dims in,
                                      int64_t weights_len, int64_t tables_len,
                                      const int64_t* tables) {
    constexpr int64_t kLimit = int64_t(1) << 31;
    const int64_t len = static_cast<int64_t>(p.size());
    if (len < 2 || p[0] != prog::kVersion || p[1] < 1 || p[1] > len ||
        len != 2 + p[1] * prog::kFields)
        throw std::invalid_argument("micronet program: bad header or length (expected [" +
                                    std::to_string(prog::kVersion) + ", L >= 1, L records of " +
                                    std::to_string(prog::kFields) + "])");
    const int64_t L = p[1];
    for (int64_t l = 0; l < L; ++l) {
        const int64_t* r = prog::record(p.data(), l);
        for (int64_t f = 4; f < prog::kFields; ++f)
            if (r[f] < -1 || r[f] >= kLimit)
                fail("field " + std::to_string(f) + " out of range", l);
        if (r[0] == prog::kConv) {
            for (int64_t f : {5, 6, 7, 8, 9, 10, 13, 14})
                if (r[f] < 1) fail("conv field " + std::to_string(f) + " must be >= 1", l);
            if (r[11] < 0 || r[12] < 0) fail("conv padding must be >= 0", l);
            if (r[15] != 0 && r[15] != 1) fail("conv act must be 0 or 1", l);
        } else if (r[0] == prog::kShiftMax && r[7] < 0) {
            fail("shift-max squeeze width must be >= 0", l);
        }
    }
    const std::vector<prog::Dims> d = prog::infer(p.data(), len, in);
    auto span = [&](int64_t off, int64_t n, int64_t total, const char* what, int64_t l) {
        if (off < 0 || n > total - off)
            fail(std::string(what) + " [" + std::to_string(off) + ", +" + std::to_string(n) +
                     ") outside its array of " + std::to_string(total),
                 l);
    };
    auto table = [&](int64_t off, int64_t n, int64_t bound, const char* what, int64_t l) {
        span(off, n, tables_len, what, l);
        for (int64_t i = 0; i < n; ++i)
            if (tables[off + i] < 0 || tables[off + i] >= bound)
                fail(std::string(what) + " entry " + std::to_string(tables[off + i]) +
                         " outside [0, " + std::to_string(bound) + ")",
                     l);
    };
    for (int64_t l = 0; l < L; ++l) {
        const int64_t* r = prog::record(p.data(), l);
        const prog::Dims s = d[r[1]], o = d[l + 1];
        if (r[2] >= 0) table(r[2], s.C, s.C, "in_perm", l);
        if (r[3] >= 0) table(r[3], o.C, o.C, "out_perm", l);
        if (r[0] == prog::kConv) {
            const int64_t w = mul(mul(mul(r[5], r[4] / r[6], l), r[7], l), r[8], l);
            span(r[16], w + r[5], weights_len, "conv weights", l);
        } else if (r[0] == prog::kShiftMax) {
            const int64_t C = r[4], KJ = r[5] * r[6], S = r[7], KJC = mul(KJ, C, l);
            table(r[8], mul(r[5], C, l), C, "shift index", l);
            const int64_t n = S == 0 ? KJC : 1 + KJ + mul(S, C, l) + S + mul(S, KJC, l) + KJC;
            span(r[9], n, weights_len, "shift-max parameters", l);
        } else {
            const prog::Dims t = d[r[5]];
            if (t.C != s.C || t.H != s.H || t.W != s.W) fail("add of different shapes", l);
            if (r[6] >= 0) table(r[6], t.C, t.C, "add in_perm", l);
        }
    }
    return d;
}

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
        d = check_extents(m_program, in, static_cast<int64_t>(ov::shape_size(ws.to_shape())),
                          static_cast<int64_t>(ov::shape_size(ts.to_shape())),
                          m_tables->data());
    } catch (const std::invalid_argument& e) {
        NODE_VALIDATION_CHECK(this, false, e.what());
    }
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
    prog::run<float>(m_program.data(), static_cast<int64_t>(m_program.size()),
                     inputs[1].data<const float>(), m_tables->data(),
                     inputs[0].data<const float>(), outputs[0].data<float>(), 0, n,
                     {m_in[0], m_in[1], m_in[2]});
    return true;
}

}  // namespace micronet
