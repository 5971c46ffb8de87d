// TAMAggregate as an OpenVINO C++ extension op: the measurement behind issue 15's "custom op" option,
// not part of tamdeploy (benchmarks/results/tam_openvino_formulations-2026-11-30-xeon-amx-cpu2.md, fourth pass).
//
// The library maps the ONNX node tamdeploy::TAMAggregate straight to this op, so OpenVINO reads the default
// export with it. The CPU plugin runs an extension op as a "Reference" node: planar f32 tensors, so it
// reorders X out of and back into the convolutions' blocked layout and converts around it in bf16/INT8.
// The kernel is the contract's sum, one pass over X (each output row reads its K source frames):
//   Y[n*T+t, c] = sum_j kernel[n, c, j] * local[n, c, t+j-P] * X[n*T+t+j-P, c]   (frames inside the clip)
#include <omp.h>

#include <openvino/core/extension.hpp>
#include <openvino/core/op_extension.hpp>
#include <openvino/frontend/onnx/extension/op.hpp>
#include <openvino/op/op.hpp>

namespace tamdeploy_bench {

class TAMAggregate : public ov::op::Op {
public:
    OPENVINO_OP("TAMAggregate", "tamdeploy_bench");

    TAMAggregate() = default;
    TAMAggregate(const ov::OutputVector& args, int64_t num_segments, int64_t kernel_size)
        : Op(args), m_num_segments(num_segments), m_kernel_size(kernel_size) {
        constructor_validate_and_infer_types();
    }

    void validate_and_infer_types() override {
        set_output_type(0, get_input_element_type(0), get_input_partial_shape(0));
    }

    std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& args) const override {
        return std::make_shared<TAMAggregate>(args, m_num_segments, m_kernel_size);
    }

    bool visit_attributes(ov::AttributeVisitor& visitor) override {
        visitor.on_attribute("num_segments", m_num_segments);
        visitor.on_attribute("kernel_size", m_kernel_size);
        return true;
    }

    bool has_evaluate() const override { return get_input_element_type(0) == ov::element::f32; }

    bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override {
        const ov::Shape& shape = inputs[0].get_shape();
        const int64_t frames = shape[0], channels = shape[1], plane = shape[2] * shape[3];
        const int64_t t = m_num_segments, k = m_kernel_size, p = (k - 1) / 2;
        outputs[0].set_shape(shape);
        const float* x = inputs[0].data<const float>();
        const float* kernel = inputs[1].data<const float>();
        const float* local = inputs[2].data<const float>();
        float* y = outputs[0].data<float>();
#pragma omp parallel for collapse(2) schedule(static)
        for (int64_t frame = 0; frame < frames; ++frame) {
            for (int64_t c = 0; c < channels; ++c) {
                const int64_t n = frame / t, ti = frame % t, row = n * channels + c;
                float* out = y + (frame * channels + c) * plane;
                for (int64_t i = 0; i < plane; ++i) out[i] = 0.f;
                for (int64_t j = 0; j < k; ++j) {
                    const int64_t source = ti + j - p;
                    if (source < 0 || source >= t) continue;  // zero padding at the clip's ends
                    const float w = kernel[row * k + j] * local[row * t + source];
                    const float* in = x + ((n * t + source) * channels + c) * plane;
#pragma omp simd
                    for (int64_t i = 0; i < plane; ++i) out[i] += w * in[i];
                }
            }
        }
        return true;
    }

private:
    int64_t m_num_segments = 8;
    int64_t m_kernel_size = 3;
};

}  // namespace tamdeploy_bench

OPENVINO_CREATE_EXTENSIONS(std::vector<ov::Extension::Ptr>({
    std::make_shared<ov::OpExtension<tamdeploy_bench::TAMAggregate>>(),
    std::make_shared<ov::frontend::onnx::OpExtension<tamdeploy_bench::TAMAggregate>>(
        "TAMAggregate", "tamdeploy",
        std::map<std::string, std::string>{{"num_segments", "num_segments"}, {"kernel_size", "kernel_size"}}),
}));
