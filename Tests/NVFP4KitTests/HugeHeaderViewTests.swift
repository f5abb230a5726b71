import Foundation
@testable import NVFP4Kit
import Testing

/// The views and streams that keep the read side of a huge checkpoint small, against plain
/// expectations built in the test: the shards' tensors concatenated, a JSON tree with members
/// removed, a table laid out here.
@Suite("huge headers, read side: tensor views, manifests without their per-tensor lists, streamed tables")
struct HugeHeaderViewTests {
    @Test("LocatedTensors maps every position to its shard, empty shards included, and subsets pick by position")
    func locatedTensors() {
        func info(_ name: String) -> TensorInfo { TensorInfo(name: name, dtype: .u8, shape: [1], dataOffsets: 0..<1) }
        let headers: [[TensorInfo]] = [[], [info("a"), info("b")], [], [info("c")], [], [], [info("d"), info("e"), info("f")], []]
        let expected = headers.enumerated().flatMap { s, tensors in tensors.map { (s, $0.name) } }
        let view = LocatedTensors(headers: headers)
        #expect(view.count == expected.count)
        for (position, (shard, name)) in expected.enumerated() {
            #expect(view[position].shard == shard && view[position].name == name, "\(position)")
        }
        let subset = view.subset([5, 0, 3])
        #expect(subset.map(\.name) == ["f", "a", "d"])
        #expect(LocatedTensors(headers: [[], []]).isEmpty)
    }

    @Test("verify results: an identical kept tensor is a position read back as its full result; a failure added to it stores it")
    func verifiedTensors() {
        func info(_ name: String, _ shape: [Int]) -> TensorInfo { TensorInfo(name: name, dtype: .bf16, shape: shape, dataOffsets: 0..<2) }
        let originals = LocatedTensors(headers: [[info("a", [1]), info("b", [2, 3])], [info("c", [])]]).subset([0, 1, 2])
        var results = VerifiedTensors(originals: originals)
        results.appendIdenticalKept(at: 0)
        results.append(VerifiedTensor(name: "b", kind: .quantized, shape: [2, 3], error: QuantizationError(), failures: []))
        results.appendIdenticalKept(at: 2)
        #expect(results.map(\.name) == ["a", "b", "c"])
        #expect(results.map(\.kind) == [.kept, .quantized, .kept])
        #expect(results.map(\.shape) == [[1], [2, 3], []])
        #expect(results[0].error == nil && results[0].failures.isEmpty && results[1].error != nil)
        results.appendFailure("x", at: 2)
        results.appendFailure("y", at: 1)
        #expect(results[2].failures == ["x"] && results[2].name == "c" && results[2].kind == .kept)
        #expect(results[1].failures == ["y"] && results[0].failures.isEmpty)
        #expect(VerifiedTensors([results[1]]).map(\.name) == ["b"])
    }

    @Test("a manifest parsed without its per-tensor lists equals the full parse minus those members; their JSON is still checked")
    func droppedMembers() throws {
        let document = #"""
        {"schema_version":1,"input":{"bytes":3,"sha256":null},"tensor_names":["a","b"],
         "tensors":[{"name":"a","outputs":["a"]},{"name":"b","error":{"sqnr":1.5}}],
         "shards":[{"name":"s.safetensors","tensor_names":["x"],"tensors":[[1,[2,{"k":null}]]],"output":{"bytes":9}}]}
        """#
        func removing(_ value: JSONValue) -> JSONValue {
            switch value {
            case .object(let members): return .object(members.filter { !["tensors", "tensor_names"].contains($0.key) }.map { ($0.key, removing($0.value)) })
            case .array(let items): return .array(items.map(removing))
            default: return value
            }
        }
        let full = try JSONParser.parse(Array(document.utf8))
        let dropped = try JSONParser.parse(Array(document.utf8), droppingMembers: VerifyManifest.unreadMembers)
        #expect(dropped.serialized(.pretty) == removing(full).serialized(.pretty))
        #expect(dropped["tensors"] == nil && dropped["shards"]?.arrayValue?[0]["tensors"] == nil)
        #expect(dropped["shards"]?.arrayValue?[0]["output"]?["bytes"]?.unsignedValue == 9)
        // Bad JSON inside a dropped member is bad JSON.
        for bad in [
            #"{"tensors":[1,2,]}"#, #"{"tensors":[{"a":1,"a":2}]}"#, #"{"tensors":["\ud800"]}"#, #"{"tensors":[[[1]]"#,
            #"{"tensors":[tru]}"#, #"{"tensors":[1 2]}"#,
        ] {
            #expect(throws: JSONSyntaxError.self, "\(bad)") { try JSONParser.parse(Array(bad.utf8), droppingMembers: ["tensors"]) }
        }
        // Arrays and objects share one walk; each still names its own closing bracket.
        for (text, offset, reason) in [("[1 2]", 3, "expected ',' or ']'"), (#"{"a":1 "b":2}"#, 7, "expected ',' or '}'")] {
            #expect(throws: JSONSyntaxError(offset: offset, reason: reason)) { try JSONParser.parse(Array(text.utf8)) }
        }
        // Nesting in a dropped member counts toward the depth limit.
        let deep = "{\"tensors\":" + String(repeating: "[", count: JSONParser.maxDepth + 1) + String(repeating: "]", count: JSONParser.maxDepth + 1) + "}"
        #expect(throws: JSONSyntaxError.self) { try JSONParser.parse(Array(deep.utf8), droppingMembers: ["tensors"]) }
    }

    @Test("inspect writes a table of more than a megabyte in pieces that join into the table laid out here")
    func streamedInspectTable() throws {
        let names = (0..<24_000).map { "model.layers.\($0 / 64).mlp.experts.\($0 % 64).down_proj.bias_of_a_long_name" }
        let planned = names.enumerated().map { i, name in PlannedTensor(name: name, dtype: i % 2 == 0 ? .bf16 : .f32, shape: i % 3 == 0 ? [] : [1 + i % 5]) }
        let layout = SafetensorsLayoutPlan(tensors: planned, metadata: [])
        let file = layout.headerBytes + [UInt8](repeating: 0, count: layout.dataByteCount)
        try ToolRunner.withTemporaryDirectory { dir in
            let path = try dir.write(file, to: "many.safetensors")
            let result = try ToolRunner.run(["inspect", path])
            #expect(result.status == 0, "\(result)")
            var rows = [["NAME", "DTYPE", "SHAPE", "BYTES"]]
            for (t, range) in zip(planned, layout.offsets) {
                rows.append([t.name, t.dtype.rawValue, "[" + t.shape.map(String.init).joined(separator: ", ") + "]", String(range.count)])
            }
            let widths = (0..<4).map { c in rows.map { $0[c].count }.max()! }
            let table = rows.map { row in
                (0..<3).map { row[$0] + String(repeating: " ", count: widths[$0] - row[$0].count + 2) }.joined() + row[3]
            }.joined(separator: "\n") + "\n"
            #expect(table.utf8.count > 1 << 20)
            let text = result.stdoutText
            let start = try #require(text.range(of: "\n\n")).upperBound
            #expect(text[start...].hasPrefix(table))
        }
    }
}
