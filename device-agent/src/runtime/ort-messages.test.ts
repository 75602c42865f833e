import * as ort from 'onnxruntime-node'
import { describe, expect, it } from 'vitest'
import { MODEL_ERROR_MAX_CHARS } from '@depinfer/shared'
import { buildModel } from '../../../test/helpers/onnx-model.js'
import { plainOrtMessage, withoutSourceLocations } from './run-job.js'

describe("withoutSourceLocations (onnxruntime's messages as devices pass them on)", () => {
  it('drops the source location and the C++ function after it, keeping the reason (onnxruntime 1.30, opset 30)', () => {
    const message =
      '/onnxruntime_src/onnxruntime/core/graph/model_load_utils.h:46 void onnxruntime::model_load_utils::ValidateOpsetForDomain(const std::unordered_map<std::__cxx11::basic_string<char>, int>&, const onnxruntime::logging::Logger&, bool, const std::string&, int) ONNX Runtime only *guarantees* support for models stamped with official released onnx opset versions. Opset 30 is under development.'
    expect(withoutSourceLocations(message)).toBe('ONNX Runtime only *guarantees* support for models stamped with official released onnx opset versions. Opset 30 is under development.')
  })

  it('keeps what precedes a location, and a location without a function after it', () => {
    expect(withoutSourceLocations('Non-zero status code returned while running Conv node. /onnxruntime_src/onnxruntime/core/providers/cpu/nn/conv.cc:12 Invalid input shape: {0,0}'))
      .toBe('Non-zero status code returned while running Conv node. Invalid input shape: {0,0}')
    expect(withoutSourceLocations('Load model failed:/onnxruntime_src/a/b.h:3 onnxruntime::Model::Load(const std::string&) Bad IR version'))
      .toBe('Load model failed:Bad IR version')
  })

  it("drops a function's const and template arguments, and never words of the reason after a location", () => {
    expect(withoutSourceLocations('/onnxruntime_src/include/onnxruntime/core/framework/op_kernel_context.h:42 const T* onnxruntime::OpKernelContext::Input(int) const [with T = onnxruntime::Tensor] Missing Input: x'))
      .toBe('Missing Input: x')
    expect(withoutSourceLocations('/onnxruntime_src/onnxruntime/core/graph/graph.cc:1 Reason: see onnx::checker::check_model(model) for details'))
      .toBe('Reason: see onnx::checker::check_model(model) for details')
  })

  it('leaves messages without locations alone', () => {
    expect(withoutSourceLocations('input x: expected rank 4, got 3 (std::vector)')).toBe('input x: expected rank 4, got 3 (std::vector)')
  })
})

describe('plainOrtMessage', () => {
  it("keeps what onnxruntime says of an opset newer than it knows, without its boilerplate, within what a device advertises", async () => {
    const bytes = buildModel({
      opset: 99,
      inputs: [{ name: 'x', datatype: 'FP32', shape: ['N', 4] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: ['N', 4] }],
      nodes: [{ opType: 'Relu', inputs: ['x'], outputs: ['y'] }],
    })
    const message = await ort.InferenceSession.create(bytes).then(() => 'loaded', (error: Error) => error.message)
    const plain = plainOrtMessage(message)
    expect(plain).toMatch(/^Opset 99 is under development.*Current official support for domain ai\.onnx is till opset \d+\.$/)
    expect(plain).not.toContain('guarantees')
    expect(plain.length).toBeLessThanOrEqual(MODEL_ERROR_MAX_CHARS)
    // Before: the first 300 characters ended before the supported opset.
    expect(withoutSourceLocations(message).slice(0, MODEL_ERROR_MAX_CHARS)).not.toContain('official support for domain')
  })
})

