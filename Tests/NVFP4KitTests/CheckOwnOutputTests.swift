import Foundation
import Testing

/// `nvfp4 check` finds nothing wrong in what `nvfp4 quantize` writes, in every format, for a
/// single file and for the Llama, Qwen-MoE and Mixtral folders (fused groups split across shards).
@Suite("check passes our own output")
struct CheckOwnOutputTests {
    static let formats = ["torchao", "compressed-tensors", "modelopt"]

    @Test("model folders, every format", arguments: ["llama", "qwen-moe", "mixtral"])
    func folders(_ model: String) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            for format in Self.formats {
                let out = dir.file("\(model)-\(format)")
                let q = try ToolRunner.run(["quantize", ToolRunner.fixture("models/\(model)"), "-o", out, "--format", format, "-q"])
                #expect(q.status == 0, "\(q)")
                let check = try ToolRunner.run(["check", out])
                #expect(check.status == 0, "\(model) \(format): \(check)")
                #expect(check.stdoutText.contains("no findings"), "\(check)")
            }
        }
    }

    @Test("a single torchao file (no fusion in torchao, so per-tensor scales are not findings)")
    func singleFile() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let out = dir.file("t.safetensors")
            #expect(try ToolRunner.run(["quantize", ToolRunner.fixture("tiny-llama/model.safetensors"), "-o", out, "-q"]).status == 0)
            let check = try ToolRunner.run(["check", out])
            #expect(check.status == 0, "\(check)")
        }
    }
}
