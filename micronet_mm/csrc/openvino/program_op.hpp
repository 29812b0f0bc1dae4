// micronet::Program: a fused MicroNet block (or chain of blocks), a layer program of
// micronet_mm/csrc/program.h, as one OpenVINO operation.
//
// Inputs: x (N, C, H, W) float32, C/H/W static, N may be dynamic; weights (1-D float32) and
// tables (1-D int64), the program's parameter and table arrays. weights is read in place on
// every call (no copy); tables must be a Constant: validate_and_infer_types() copies it to
// int64 (OpenVINO's CPU plugin hands int64 constants over as int32, so int32 tables are
// accepted too), a copy that clones share.
// Attribute: program (int64 list), the layer records [kVersion, L, record_0, ...].
// Output: (N, C', H', W') from program::infer. evaluate() runs program::run<float> over the N
// samples.
//
// validate_and_infer_types() checks the program against the input shape (program::infer) and,
// in addition (check_extents in program_op.cpp), every field that indexes memory: offsets into
// weights / tables inside their lengths, table entries (channel tables, shift indices) inside
// the channels they address, conv geometry positive. A bad program is a node validation error
// with the message, never an out-of-bounds read.
#pragma once

#include <openvino/op/op.hpp>

#include <memory>
#include <vector>

namespace micronet {

namespace program {
struct Plan;  // program.h
}  // namespace program

class ProgramOp : public ov::op::Op {
public:
    OPENVINO_OP("Program", "micronet");

    ProgramOp() = default;
    /// tables: the int64 copy of the tables input, shared with the node this one clones (made
    /// anew when the input's entries differ)
    ProgramOp(const ov::OutputVector& args, std::vector<int64_t> program,
              std::shared_ptr<const std::vector<int64_t>> tables = nullptr);

    void validate_and_infer_types() override;
    std::shared_ptr<ov::Node> clone_with_new_inputs(
        const ov::OutputVector& new_args) const override;
    bool visit_attributes(ov::AttributeVisitor& visitor) override;
    bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override;
    bool has_evaluate() const override;

private:
    std::vector<int64_t> m_program;
    int64_t m_in[3] = {0, 0, 0}, m_out[3] = {0, 0, 0};  // (C, H, W) of x and of the output
    std::shared_ptr<const std::vector<int64_t>> m_tables;  // int64 copy of the tables input
    std::shared_ptr<const program::Plan> m_plan;  // program::plan of the validated shape
};

}  // namespace micronet
