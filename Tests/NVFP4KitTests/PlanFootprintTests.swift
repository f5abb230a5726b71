import Foundation
@testable import NVFP4Kit
import Testing

/// A million-tensor header costs what its per-tensor records cost: these pin the records' size
/// and that the common case (a kept tensor) carries no list of its own, so the memory of a huge
/// header cannot grow back silently (scripts/bench/big-header.sh measures the whole process).
@Suite("plan footprint: per-tensor records of a huge header stay small")
struct PlanFootprintTests {
    @Test("plan entries and reports are small fixed-size records; rare payloads live out of line")
    func recordSizes() {
        // TensorInfo (41 used) plus packed indices, decision and kind; FP8 sources and expert namings are boxed.
        // TensorInfo's name is a span of the header's shared buffer (16 bytes, no string of its own).
        #expect(MemoryLayout<TensorInfo>.stride == 48, "\(MemoryLayout<TensorInfo>.stride)")
        #expect(MemoryLayout<TensorPlan>.stride <= 80, "\(MemoryLayout<TensorPlan>.stride)")
        #expect(MemoryLayout<TensorWriteKind>.size <= 9, "\(MemoryLayout<TensorWriteKind>.size)")
        #expect(MemoryLayout<TensorReport>.stride <= 160, "\(MemoryLayout<TensorReport>.stride)")
    }

    @Test("a kept tensor's one output is implied, not stored; quantized outputs are stored and read back")
    func keptOutputsImplied() throws {
        let reader = try SafetensorsReader(path: FixturePaths.tinyLlama)
        let plan = try QuantizePlan(file: reader, options: QuantizeOptions())
        let kept = plan.tensors.filter { !$0.isQuantized }
        let quantized = plan.tensors.filter(\.isQuantized)
        #expect(!kept.isEmpty && !quantized.isEmpty)
        for t in kept {
            #expect(t.outputStorage == nil, "\(t.tensor.name)")
            #expect(t.outputs == [PlannedTensor(name: t.tensor.name, dtype: t.tensor.dtype, shape: t.tensor.shape)])
            #expect(t.outputByteCount == t.tensor.byteCount)
        }
        let layout = QuantizeOptions().layout
        for t in quantized {
            let expected = layout.storedParts(ofWeight: t.tensor.name, rows: t.tensor.shape[0], columns: t.tensor.shape[1], calibrated: false).map(\.tensor)
            #expect(t.outputStorage == expected, "\(t.tensor.name)")
            #expect(t.outputByteCount == expected.reduce(0) { $0 + $1.byteCount })
        }
    }

    @Test("a report names a kept tensor's output without a list, and stores any other")
    func reportOutputs() {
        var report = TensorReport(name: "model.norm.weight", dtype: .bf16, shape: [16], decision: .keep(.norm))
        #expect(report.outputs == ["model.norm.weight"] && report.outputStorage == nil)
        report.outputs = ["a.weight", "a.weight_scale"]
        #expect(report.outputs == ["a.weight", "a.weight_scale"] && report.outputStorage != nil)
    }

    @Test("the manifest streamed to its file is the document's pretty text, byte for byte")
    func streamedManifest() throws {
        let reader = try SafetensorsReader(path: FixturePaths.tinyLlama)
        let plan = try QuantizePlan(file: reader, options: QuantizeOptions())
        let reports = plan.tensors.map { t in
            var r = TensorReport(name: t.tensor.name, dtype: t.tensor.dtype, shape: t.tensor.shape, decision: t.decision)
            r.outputs = t.outputs.map(\.name)
            if t.isQuantized {
                r.amax = 1.5
                r.perTensorScale = 0.25
                var error = QuantizationError()
                (error.signalSquareSum, error.errorSquareSum, error.maxAbsoluteError, error.count) = (4, 0.01, 0.1, 64)
                r.error = error
            }
            return r
        }
        let result = QuantizeResult(
            tensors: TensorReports(reports), input: FileSummary(path: "in \"x\".safetensors", byteCount: 10, sha256: nil),
            output: FileSummary(path: "out.safetensors", byteCount: 20, sha256: "ab"))
        try ToolRunner.withTemporaryDirectory { dir in
            let path = dir.file("m.json")
            let sink = try Manifest.write(result: result, plan: plan, arguments: ["nvfp4", "quantize", "x"], to: path, replace: false)
            try sink.publish()
            let written = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            #expect(written == Manifest.document(result: result, plan: plan, arguments: ["nvfp4", "quantize", "x"]).serializedBytes(.pretty))
        }
    }
}
