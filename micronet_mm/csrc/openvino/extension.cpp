// The OpenVINO extension library: the operations micronet::ShiftMax and micronet::Program (for
// IR files) and their conversions from the ONNX nodes ShiftMax and Program of domain "micronet"
// (for ONNX files), all loaded by ov.Core.add_extension(path) (micronet_mm/runtime/openvino.py).
#include <openvino/core/extension.hpp>
#include <openvino/core/op_extension.hpp>
#include <openvino/frontend/onnx/extension/conversion.hpp>

#include "program_op.hpp"
#include "shift_max_op.hpp"

namespace {

ov::OutputVector convert_onnx_shift_max(const ov::frontend::NodeContext& node) {
    ov::OutputVector inputs;
    for (size_t i = 0; i < node.get_input_size(); ++i)
        inputs.push_back(node.get_input(static_cast<int>(i)));
    auto op = std::make_shared<micronet::ShiftMaxOp>(
        inputs, node.get_attribute<int64_t>("groups"), node.get_attribute<int64_t>("num_shifts"),
        node.get_attribute<int64_t>("num_fusions"), node.get_attribute<int64_t>("inner_shift") != 0,
        node.get_attribute<float>("act_max"));
    return op->outputs();
}

// Program(x, weights, tables) with the int64 attribute `program` (the layer records).
ov::OutputVector convert_onnx_program(const ov::frontend::NodeContext& node) {
    ov::OutputVector inputs;  // ProgramOp checks that there are 3
    for (size_t i = 0; i < node.get_input_size(); ++i)
        inputs.push_back(node.get_input(static_cast<int>(i)));
    auto op = std::make_shared<micronet::ProgramOp>(
        inputs, node.get_attribute<std::vector<int64_t>>("program"));
    return op->outputs();
}

}  // namespace

OPENVINO_CREATE_EXTENSIONS(std::vector<ov::Extension::Ptr>({
    std::make_shared<ov::OpExtension<micronet::ShiftMaxOp>>(),
    std::make_shared<ov::frontend::onnx::ConversionExtension>("ShiftMax", "micronet",
                                                              convert_onnx_shift_max),
    std::make_shared<ov::OpExtension<micronet::ProgramOp>>(),
    std::make_shared<ov::frontend::onnx::ConversionExtension>("Program", "micronet",
                                                              convert_onnx_program),
}));
