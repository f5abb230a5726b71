import Foundation
import NVFP4Kit
import Testing

/// A safetensors file holding zero-filled tensors of the given dtypes and shapes.
private func craft(_ tensors: [(String, String, [Int])], metadata: [String: String] = [:]) -> [UInt8] {
    let width = ["U8": 1, "I8": 1, "F8_E4M3": 1, "F16": 2, "F32": 4]
    var entries: [String] = []
    if !metadata.isEmpty {
        entries.append("\"__metadata__\":{" + metadata.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\"\($0.value.replacingOccurrences(of: "\"", with: "\\\""))\"" }.joined(separator: ",") + "}")
    }
    var offset = 0
    for (name, dtype, shape) in tensors {
        let size = shape.reduce(1, *) * width[dtype]!
        entries.append("\"\(name)\":{\"dtype\":\"\(dtype)\",\"shape\":[\(shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + size)]}")
        offset += size
    }
    let json = Array(("{" + entries.joined(separator: ",") + "}").utf8)
    return withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) } + json + [UInt8](repeating: 0, count: offset)
}

/// One NVFP4 grouping rule broken.
private struct LayoutCase: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: [UInt8]
    /// The tensor the error must name, and what it must say.
    var tensor: String
    var mentions: String
    var testDescription: String { name }
}

private let layoutCases: [LayoutCase] = [
    LayoutCase(name: "packed data without block scales", bytes: craft([("w._weight_qdata", "U8", [16, 8])]),
               tensor: "w._weight_qdata", mentions: "without its block scales"),
    LayoutCase(name: "packed data not U8", bytes: craft([("w._weight_qdata", "I8", [16, 8]), ("w._weight_scale", "F8_E4M3", [16, 1])]),
               tensor: "w._weight_qdata", mentions: "must be a 2-D U8 tensor"),
    LayoutCase(name: "packed data 1-D", bytes: craft([("w._weight_qdata", "U8", [128]), ("w._weight_scale", "F8_E4M3", [16, 1])]),
               tensor: "w._weight_qdata", mentions: "must be a 2-D U8 tensor"),
    LayoutCase(name: "block scales not F8_E4M3", bytes: craft([("w._weight_qdata", "U8", [16, 8]), ("w._weight_scale", "U8", [16, 1])]),
               tensor: "w._weight_scale", mentions: "must be F8_E4M3"),
    LayoutCase(name: "K not a multiple of 16", bytes: craft([("w._weight_qdata", "U8", [16, 4]), ("w._weight_scale", "F8_E4M3", [16, 1])]),
               tensor: "w._weight_qdata", mentions: "K = 8 is not a multiple of 16"),
    LayoutCase(name: "block scales of the wrong shape", bytes: craft([("w._weight_qdata", "U8", [16, 8]), ("w._weight_scale", "F8_E4M3", [16, 2])]),
               tensor: "w._weight_scale", mentions: "block scales have shape [16, 2]"),
    LayoutCase(name: "metadata says swizzled, shape is row-major",
               bytes: craft([("w._weight_qdata", "U8", [16, 8]), ("w._weight_scale", "F8_E4M3", [16, 1])],
                            metadata: ["w.weight": "{\"_type\":\"NVFP4Tensor\",\"_data\":{\"is_swizzled_scales\":true}}"]),
               tensor: "w._weight_scale", mentions: "expected [32, 16] (swizzled-128x4)"),
    LayoutCase(name: "per-tensor scale not F32",
               bytes: craft([("w._weight_qdata", "U8", [16, 8]), ("w._weight_scale", "F8_E4M3", [16, 1]), ("w._weight_per_tensor_scale", "F16", [])]),
               tensor: "w._weight_per_tensor_scale", mentions: "must be one F32 value"),
    LayoutCase(name: "activation scale with two values",
               bytes: craft([("w._weight_qdata", "U8", [16, 8]), ("w._weight_scale", "F8_E4M3", [16, 1]), ("w._weight_act_per_tensor_scale", "F32", [2])]),
               tensor: "w._weight_act_per_tensor_scale", mentions: "must be one F32 value"),
]

@Suite("Hostile NVFP4 layouts")
struct NVFP4LayoutHostileTests {
    @Test("each broken NVFP4 grouping rule is one error line naming the tensor", arguments: layoutCases)
    fileprivate func rejected(_ c: LayoutCase) throws {
        let source = try CheckpointSource(singleFile: try SafetensorsReader(stream: MemoryStream(c.bytes), displayPath: "<case>"), path: "<case>")
        let error = try #require(throws: FileError.self) { try CheckpointModel(source: source).requireDecodable(in: source) }
        let problem = try #require(error.cause as? LayoutProblem)
        #expect(problem.tensor == c.tensor && problem.reason.contains(c.mentions), "\(problem)")
        try ToolRunner.withTemporaryDirectory { dir in
            let path = try dir.write(c.bytes, to: "bad.safetensors")
            for command in [["inspect", path], ["verify", path, path], ["dequantize", path, "-o", dir.file("out.safetensors")]] {
                let r = try ToolRunner.run(command)
                #expect(r.status == 2, "\(command[0]): \(r)")
                #expect(r.stderr.split(separator: "\n").count == 1 && r.stderr.hasPrefix("error: \(path): "), "\(command[0]): \(r)")
                #expect(r.stderr.contains("\"\(c.tensor)\"") && r.stderr.contains(c.mentions), "\(command[0]): \(r)")
            }
            #expect(try dir.contents() == ["bad.safetensors"])
        }
    }

    @Test("a well-formed layout of the same shapes is accepted (the cases above differ by one rule)")
    func wellFormed() throws {
        let bytes = craft([("w._weight_qdata", "U8", [16, 8]), ("w._weight_scale", "F8_E4M3", [16, 1]), ("w._weight_per_tensor_scale", "F32", [])])
        let source = try CheckpointSource(singleFile: try SafetensorsReader(stream: MemoryStream(bytes), displayPath: "<ok>"), path: "<ok>")
        let model = CheckpointModel(source: source)
        try model.requireDecodable(in: source)
        #expect(model.modules.map(\.originalName) == ["w.weight"] && model.modules[0].scaleLayout == .rowMajor)
    }
}
