import Foundation
import NVFP4Kit
import Testing

/// Rewrites the `__metadata__` of the safetensors file at `path` into `target`, tensors unchanged.
func rewritingMetadata(_ path: String, to target: String, _ change: ([(key: String, value: String)]) -> [(key: String, value: String)]) throws {
    let reader = try SafetensorsReader(path: path, hashing: false)
    let tensors = reader.header.tensors.map { PlannedTensor(name: $0.name, dtype: $0.dtype, shape: $0.shape) }
    let plan = SafetensorsLayoutPlan(tensors: tensors, metadata: change(reader.header.metadata))
    let bytes = try ToolRunner.readFile(path)
    try Data(plan.headerBytes + bytes[reader.dataStart...]).write(to: URL(fileURLWithPath: target))
}

@Suite("check: torchao metadata")
struct CheckTorchAOMetadataTests {
    static let weight = "model.layers.0.mlp.down_proj.weight"

    /// Broken descriptors of one weight, and what the finding must say.
    static let cases: [(name: String, value: @Sendable (String) -> String?, expected: String)] = [
        ("block size 0", { $0.replacingOccurrences(of: "\"block_size\": 16", with: "\"block_size\": 0") }, "block_size is 0, not 16"),
        ("deep nesting", { _ in String(repeating: "{\"a\": ", count: 40) + "1" + String(repeating: "}", count: 40) }, "nesting deeper than 8"),
        ("nesting past the parser's limit", { _ in String(repeating: "[", count: 100_000) }, "nesting deeper than 8"),
        ("int8 orig_dtype", { $0.replacingOccurrences(of: "\"bfloat16\"", with: "\"int8\"") }, "orig_dtype"),
        ("not JSON", { _ in "{\"_type\": " }, "not a torchao descriptor"),
        ("another type", { $0.replacingOccurrences(of: "\"NVFP4Tensor\"", with: "\"MXTensor\"") }, "not an NVFP4Tensor descriptor"),
        ("data names of another tensor", { $0.replacingOccurrences(of: "\"per_tensor_scale\"", with: "\"zero_point\"") }, "_tensor_data_names"),
        ("activation block size", { $0.replacingOccurrences(of: "\"_data\": {\"block_size\": 16", with: "\"_data\": {\"block_size\": 32") }, "act_quant_kwargs has block_size 32"),
        ("missing", { _ in nil }, "no __metadata__ entry"),
    ]

    @Test("check flags a broken descriptor (exit 1, one finding naming file and module) and changes nothing",
          arguments: cases.indices)
    func broken(index: Int) throws {
        let (label, value, expected) = CheckTorchAOMetadataTests.cases[index]
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.copyFixture("tiny-llama/model.safetensors", as: "m.safetensors")
            try #require(try ToolRunner.run(["quantize", input, "-q"]).status == 0)
            let good = dir.file("m.nvfp4.safetensors")
            #expect(try ToolRunner.run(["check", good]).status == 0)
            let bad = dir.file("bad.safetensors")
            try rewritingMetadata(good, to: bad) { metadata in
                metadata.compactMap { entry in
                    guard entry.key == CheckTorchAOMetadataTests.weight else { return entry }
                    return value(entry.value).map { (entry.key, $0) }
                }
            }
            let before = try folderSnapshot(dir.path)
            let r = try ToolRunner.run(["check", bad, "--json"])
            #expect(r.status == 1, "\(label): \(r)")
            let findings = try JSONParser.parse(r.stdout)["findings"]?.arrayValue ?? []
            let ours = findings.filter { $0["code"]?.stringValue == CheckRule.torchaoMetadataInvalid.rawValue }
            #expect(ours.count == 1, "\(label): \(r)")
            #expect(ours.first?["path"]?.stringValue == bad && ours.first?["module"]?.stringValue == "model.layers.0.mlp.down_proj", "\(label): \(r)")
            #expect(ours.first?["message"]?.stringValue?.contains(expected) == true, "\(label): \(r)")
            #expect(try folderSnapshot(dir.path) == before)
        }
    }

    @Test("torchao's own files and every nvfp4 torchao output pass the metadata rule",
          arguments: ["two-level", "single-level", "weight-only"])
    func clean(variant: String) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.copyFixture("tiny-llama/model.safetensors", as: "m.safetensors")
            let extra = variant == "single-level" ? ["--no-global-scale"] : variant == "weight-only" ? ["--weight-only"] : []
            try #require(try ToolRunner.run(["quantize", input, "-q"] + extra).status == 0)
            let audit = try CheckpointAudit(source: CheckpointSource(path: dir.file("m.nvfp4.safetensors")))
            #expect(!audit.findings.contains { $0.rule == .torchaoMetadataInvalid }, "\(audit.findings)")
        }
        for name in try listFolder(ToolRunner.fixture("torchao/expected")) where name.hasSuffix(".safetensors") {
            let audit = try CheckpointAudit(source: CheckpointSource(path: ToolRunner.fixture("torchao/expected/" + name)))
            #expect(!audit.findings.contains { $0.rule == .torchaoMetadataInvalid }, "\(name): \(audit.findings)")
        }
    }
}
