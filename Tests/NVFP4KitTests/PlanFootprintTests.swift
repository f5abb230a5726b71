@testable import NVFP4Kit
import Testing

/// A million-tensor header costs what its per-tensor records cost: these pin the records' size
/// and that the common case (a kept tensor) carries no list of its own, so the memory of a huge
/// header cannot grow back silently (scripts/bench/big-header.sh measures the whole process).
@Suite("plan footprint: per-tensor records of a huge header stay small")
struct PlanFootprintTests {
    @Test("plan entries and reports are small fixed-size records; rare payloads live out of line")
    func recordSizes() {
        // TensorInfo (48) plus indices, decision and kind; FP8 sources and expert namings are boxed.
        #expect(MemoryLayout<TensorPlan>.stride <= 128, "\(MemoryLayout<TensorPlan>.stride)")
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
}
