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

    @Test("folders honour --method mse (recorded, different bytes, still clean) and refuse --compress")
    func folderOptions() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let model = ToolRunner.fixture("models/llama")
            #expect(try ToolRunner.run(["quantize", model, "-o", dir.file("rtn"), "--format", "modelopt", "-q"]).status == 0)
            let mse = try ToolRunner.run(["quantize", model, "-o", dir.file("mse"), "--format", "modelopt", "--method", "mse", "-q"])
            #expect(mse.status == 0, "\(mse)")
            let manifest = String(decoding: try ToolRunner.readFile(dir.file("mse/nvfp4-manifest.json")), as: UTF8.self)
            #expect(manifest.contains("\"method\": \"mse\""), "the folder manifest records the method")
            let shard = "model-00001-of-00003.safetensors"
            #expect(try ToolRunner.readFile(dir.file("rtn/" + shard)) != (try ToolRunner.readFile(dir.file("mse/" + shard))))
            #expect(try ToolRunner.run(["check", dir.file("mse")]).status == 0)
            let compressed = try ToolRunner.run(["quantize", model, "-o", dir.file("z"), "--compress", "zstd"])
            #expect(compressed.status == 2 && compressed.stderrLines.count == 1 && compressed.stderr.contains("--compress"), "\(compressed)")
        }
    }
}
