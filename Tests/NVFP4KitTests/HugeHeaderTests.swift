import Foundation
@testable import NVFP4Kit
import Testing

/// The compact structures that keep a million-tensor header within its memory bound
/// (scripts/bench/big-header.sh measures the process), each checked against a plain Swift
/// expectation: a `Set`, a `Dictionary`, the header built whole.
@Suite("huge headers: compact name index, shared names, streamed output header, derived reports")
struct HugeHeaderTests {
    @Test("NameIndex finds every name, misses absent ones and reports the first key of a repeated name, across growth")
    func nameIndex() {
        // Names that collide in their low hash bits often enough to probe, and a count that grows the table.
        let names = (0..<5000).map { "model.layers.\($0 % 97).e.\($0).w" }
        var index = NameIndex(capacity: 4)
        for (k, name) in names.enumerated() {
            #expect(index.insert(Int32(k), named: name) { names[Int($0)] } == nil)
        }
        #expect(index.count == names.count)
        for (k, name) in names.enumerated() { #expect(index.key(of: name) { names[Int($0)] } == Int32(k)) }
        #expect(index.key(of: "model.layers.0.e.5000.w") { names[Int($0)] } == nil)
        #expect(index.key(of: "") { names[Int($0)] } == nil)
        // A repeated name is not added: the earlier key comes back.
        var again = index
        #expect(again.insert(99_999, named: names[1234]) { $0 == 99_999 ? names[1234] : names[Int($0)] } == 1234)
        #expect(again.count == names.count)
    }

    @Test("the header parser still rejects a duplicate key among thousands, also spelled with an escape")
    func duplicateKeysAmongMany() throws {
        func header(_ extra: String) -> [UInt8] {
            var members = (0..<3000).map { "\"t\($0)\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[\($0),\($0 + 1)]}" }
            members.append(extra)
            return Array(("{" + members.joined(separator: ",") + "}").utf8)
        }
        let ok = try SafetensorsHeader(json: header("\"t3000\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[3000,3001]}"))
        #expect(ok.tensors.count == 3001)
        #expect(ok.tensor(named: "t1777")?.dataOffsets == 1777..<1778)
        #expect(ok.tensor(named: "t3001") == nil)
        for duplicate in ["\"t1777\"", "\"t\\u0031777\""] {
            #expect(throws: SafetensorsError.self) {
                try SafetensorsHeader(json: header("\(duplicate):{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[3000,3001]}"))
            }
        }
    }

    @Test("the entry bound counts each \"data_offsets\" key, overlapping quotes included, and never undercounts a real header")
    func entryBound() throws {
        func naive(_ text: String) -> Int {
            let bytes = Array(text.utf8), key = Array("\"data_offsets\"".utf8)
            guard bytes.count >= key.count else { return 0 }
            return (0...(bytes.count - key.count)).filter { Array(bytes[$0..<($0 + key.count)]) == key }.count
        }
        for text in ["", "\"data_offsets\"", "\"\"data_offsets\"\"data_offsets\"", "\"data_offset\"", "x\"data_offsets\"\"data_offsets\"y", "\"data_offsets"] {
            #expect(SafetensorsHeader.entryBound(Array(text.utf8)) == naive(text), "\(text)")
            #expect(SafetensorsHeader.entryBound(text.utf8) == naive(text), "\(text)")  // the non-contiguous path
        }
        let header = try SafetensorsReader(path: FixturePaths.tinyLlama).header
        let json = try { () throws -> [UInt8] in
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: FixturePaths.tinyLlama)))
            let length = Int(UInt64(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }))
            return Array(bytes[8..<(8 + length)])
        }()
        #expect(SafetensorsHeader.entryBound(json) == header.tensors.count)
    }

    @Test("a header's names read back exactly (escapes, non-ASCII) and compare by value, not by storage")
    func sharedNames() throws {
        let json = #"{"a\"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"é.weight":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#
        let header = try SafetensorsHeader(json: Array(json.utf8))
        #expect(header.tensors.map(\.name) == ["a\"b", "é.weight"])
        let own = TensorInfo(name: "é.weight", dtype: .u8, shape: [1], dataOffsets: 1..<2)
        #expect(header.tensors[1] == own)
        #expect(header.tensors[0] != own)
        var renamed = header.tensors[1]
        renamed.name = "x"
        #expect(renamed.name == "x" && header.tensors[1].name == "é.weight")
    }

    @Test("the streamed output header is the header built whole, byte for byte, in every layout")
    func streamedHeader() throws {
        for format in [CheckpointFormat.torchao, .compressedTensors, .modelopt] {
            let reader = try SafetensorsReader.randomAccess(path: FixturePaths.tinyLlama)
            var options = QuantizeOptions()
            options.format = format
            let plan = try QuantizePlan(file: reader, options: options)
            let sink = MemorySink()
            let dataBytes = try plan.writeOutputHeader(ofOutputShard: 0, to: sink)
            let whole = plan.layoutPlan(ofOutputShard: 0)
            #expect(sink.bytes == whole.headerBytes, "\(format)")
            #expect(dataBytes == whole.dataByteCount, "\(format)")
            #expect(UInt64(sink.bytes.count - 8) == plan.outputHeaderLength(ofOutputShard: 0), "\(format)")
        }
    }

    @Test("torchao's header bound, measured without its metadata, never exceeds the header's length")
    func torchaoBound() throws {
        for path in [FixturePaths.tinyLlama, ToolRunner.fixture("models/qwen-moe/model-00002-of-00003.safetensors")] {
            let reader = try SafetensorsReader.randomAccess(path: path)
            let plan = try QuantizePlan(file: reader, options: QuantizeOptions())
            let bound = plan.torchaoHeaderLowerBound(ofOutputShard: 0)
            let length = plan.outputHeaderLength(ofOutputShard: 0)
            #expect(bound <= length && bound > length / 4, "\(path): \(bound) vs \(length)")
            // The bound is what a refusal names; the header written has the exact length.
            let sink = MemorySink()
            _ = try plan.writeOutputHeader(ofOutputShard: 0, to: sink)
            #expect(UInt64(sink.bytes.count - 8) == length)
        }
    }

    @Test("reports of kept tensors are derived from the plan; measured ones are stored; positions match the shard's order")
    func derivedReports() throws {
        let reader = try SafetensorsReader(path: FixturePaths.tinyLlama)
        let plan = try QuantizePlan(file: reader, options: QuantizeOptions())
        var reports = TensorReports(plan: plan, outputShard: 0)
        let entries = Array(plan.tensors(ofOutputShard: 0))
        for entry in entries {
            if entry.isQuantized {
                var r = TensorReport(name: entry.tensor.name, dtype: entry.tensor.dtype, shape: entry.tensor.shape, decision: entry.decision)
                r.amax = 2
                reports.append(r)
            } else {
                reports.append(nil)
            }
        }
        #expect(reports.count == entries.count)
        for (report, entry) in zip(reports, entries) {
            #expect(report.name == entry.tensor.name && report.dtype == entry.tensor.dtype && report.shape == entry.tensor.shape)
            #expect(report.decision == entry.decision)
            #expect(report.amax == (entry.isQuantized ? 2 : nil))
            if !entry.isQuantized { #expect(report.outputs == [entry.tensor.name]) }
        }
        let kept = plan.keptByReason.flatMap { Array($0.names) }
        #expect(Set(kept) == Set(entries.filter { !$0.isQuantized }.map(\.tensor.name)))
    }
}
