import Foundation
import NVFP4Kit
import Testing

private let model = ToolRunner.fixture("tiny-llama/model.safetensors")
private let weight = "model.layers.0.mlp.down_proj"

/// Quantizes the fixture into `dir`; returns the output and manifest paths.
private func quantized(_ dir: ToolRunner.TemporaryDirectory) throws -> (output: String, manifest: String) {
    let output = dir.file("q.safetensors"), manifest = dir.file("q.json")
    let r = try ToolRunner.run(["quantize", model, "-o", output, "--manifest", manifest, "--hash", "all", "-q"])
    #expect(r.status == 0, "\(r)")
    return (output, manifest)
}

/// The byte at `index` of tensor `name` in the safetensors file at `path`.
private func byte(_ path: String, tensor name: String, at index: Int) throws -> UInt8 {
    let reader = try SafetensorsReader(path: path, hashing: false)
    let info = try #require(reader.header.tensor(named: name))
    return try ToolRunner.readFile(path)[reader.dataStart + Int(info.dataOffsets.lowerBound) + index]
}

/// Overwrites one byte of tensor `name` in the safetensors file at `path`, in place.
private func patch(_ path: String, tensor name: String, at index: Int, to value: UInt8) throws {
    let offset: Int
    do {
        let reader = try SafetensorsReader(path: path, hashing: false)
        let info = try #require(reader.header.tensor(named: name))
        offset = reader.dataStart + Int(info.dataOffsets.lowerBound) + index
    }
    let handle = try #require(FileHandle(forWritingAtPath: path))
    try handle.seek(toOffset: UInt64(offset))
    try handle.write(contentsOf: Data([value]))
    try handle.close()
}

@Suite("verify: integrity")
struct IntegrityTests {
    @Test("verify --manifest passes for the files the manifest describes, also through .zst and stdin")
    func manifestMatches() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let (output, manifest) = try quantized(dir)
            #expect(try ToolRunner.run(["verify", model, output, "--manifest", manifest, "-q"]).status == 0)
            try dir.write(try zstdCompress(try ToolRunner.readFile(output)), to: "q.safetensors.zst")
            let r = try ToolRunner.run(["verify", model, "-", "--manifest", manifest, "-q"], stdin: try ToolRunner.readFile(dir.file("q.safetensors.zst")))
            #expect(r.status == 0, "\(r)")
        }
    }

    @Test("a manifest SHA-256 mismatch fails verify even when every tensor is within tolerance")
    func manifestMismatch() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let (output, manifest) = try quantized(dir)
            // One packed nibble pair changed: far inside any tolerance, but not the file the manifest describes.
            try patch(output, tensor: weight + "._weight_qdata", at: 0, to: try byte(output, tensor: weight + "._weight_qdata", at: 0) ^ 0x01)
            let r = try ToolRunner.run(["verify", model, output, "--manifest", manifest, "--tolerance", "1000"])
            #expect(r.status == 1, "\(r)")
            #expect(r.stdoutText.contains("MANIFEST: \(manifest): \(output): SHA-256"), "\(r)")
            #expect(r.stdoutText.contains("FAILED") && r.stdoutText.contains("manifest SHA-256 mismatch"), "\(r)")
            // Without the manifest the same file passes: the check is the manifest's.
            #expect(try ToolRunner.run(["verify", model, output, "--tolerance", "1000", "-q"]).status == 0)
            // A manifest for another input fails on the original's side.
            let json = try JSONParser.parse(try ToolRunner.readFile(manifest))
            let text = String(decoding: try ToolRunner.readFile(manifest), as: UTF8.self)
                .replacingOccurrences(of: try #require(json["input"]?["sha256"]?.stringValue), with: String(repeating: "0", count: 64))
            try dir.write(Array(text.utf8), to: "other.json")
            let o = try ToolRunner.run(["verify", model, output, "--manifest", dir.file("other.json"), "--json"])
            #expect(o.status == 1, "\(o)")
            let report = try JSONParser.parse(o.stdout)
            let failures = report["manifest_failures"]?.arrayValue?.compactMap(\.stringValue) ?? []
            #expect(failures.contains { $0.contains("\(model): SHA-256") } && failures.contains { $0.contains("\(output): SHA-256") }, "\(failures)")
        }
    }

    @Test("a file that is not a manifest is an input error")
    func notAManifest() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let (output, _) = try quantized(dir)
            let bogus = try dir.write(Array("{\"schema_version\":1}".utf8), to: "bogus.json")
            let r = try ToolRunner.run(["verify", model, output, "--manifest", bogus])
            #expect(r.status == 2 && r.stderr.contains("not an nvfp4 manifest"), "\(r)")
        }
    }

    @Test("verify reports invalid block-scale codes even when the error tolerance would pass",
          arguments: [UInt8(0x7F), 0xFF, 0x81, 0xB8])
    func invalidScaleCode(code: UInt8) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let (output, _) = try quantized(dir)
            try patch(output, tensor: weight + "._weight_scale", at: 0, to: code)
            let r = try ToolRunner.run(["verify", model, output, "--tolerance", "1e30", "--json"])
            #expect(r.status == 1, "\(r)")
            let report = try JSONParser.parse(r.stdout)
            let entry = report["tensors"]?.arrayValue?.first { $0["name"]?.stringValue == weight + ".weight" }
            let failures = entry?["failures"]?.arrayValue?.compactMap(\.stringValue) ?? []
            #expect(failures.contains { $0.contains("invalid block-scale codes (NaN or negative)") }, "\(failures)")
            #expect(!failures.contains { $0.contains("exceeds tolerance") } || code == 0x7F || code == 0xFF, "\(failures)")
        }
    }
}
