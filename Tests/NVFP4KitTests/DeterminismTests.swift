import Foundation
import NVFP4Kit
import Testing

private let model = ToolRunner.fixture("tiny-llama/model.safetensors")

/// The manifest without what legitimately differs between runs: the invocation and the paths.
private func comparableManifest(_ bytes: [UInt8]) throws -> JSONValue {
    func strip(_ value: JSONValue) -> JSONValue {
        guard let members = value.objectValue else { return value }
        return .object(members.filter { $0.key != "invocation" && $0.key != "path" }.map { ($0.key, strip($0.value)) })
    }
    return strip(try JSONParser.parse(bytes))
}

@Suite("Determinism")
struct DeterminismTests {
    /// One way of handing the same checkpoint to `nvfp4 quantize`.
    enum InputForm: String, CaseIterable, Sendable {
        case file, stdin, zstFile = "zst file", zstStdin = "zst on stdin", zstFileNamedPlain = "zst content in a .safetensors name"
    }

    @Test("output bytes are identical across runs, thread counts and input forms; manifests differ only in invocation and paths")
    func sameBytesEverywhere() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let plain = try ToolRunner.readFile(model)
            let compressed = try zstdCompress(plain, level: 7)
            try dir.write(compressed, to: "m.safetensors.zst")
            try dir.write(compressed, to: "disguised.safetensors")
            var outputs: [String: [UInt8]] = [:]
            var manifests: [String: JSONValue] = [:]
            for form in InputForm.allCases {
                for threads in [1, 3] {
                    for run in 0..<(form == .file && threads == 1 ? 2 : 1) {
                        let label = "\(form.rawValue), -j \(threads), run \(run)"
                        let out = dir.file("out-\(outputs.count).safetensors")
                        let manifest = dir.file("out-\(outputs.count).json")
                        let input: String, stdin: [UInt8]?
                        switch form {
                        case .file: (input, stdin) = (model, nil)
                        case .stdin: (input, stdin) = ("-", plain)
                        case .zstFile: (input, stdin) = (dir.file("m.safetensors.zst"), nil)
                        case .zstStdin: (input, stdin) = ("-", compressed)
                        case .zstFileNamedPlain: (input, stdin) = (dir.file("disguised.safetensors"), nil)
                        }
                        let r = try ToolRunner.run(["quantize", input, "-o", out, "--manifest", manifest, "-j", "\(threads)", "--hash", "all", "-q"], stdin: stdin)
                        #expect(r.status == 0, "\(label): \(r)")
                        outputs[label] = try ToolRunner.readFile(out)
                        manifests[label] = try comparableManifest(try ToolRunner.readFile(manifest))
                    }
                }
            }
            #expect(outputs.count == 11)
            let reference = try #require(outputs["file, -j 1, run 0"])
            for (label, bytes) in outputs { #expect(bytes == reference, "\(label) differs") }
            let referenceManifest = try #require(manifests["file, -j 1, run 0"])
            for (label, manifest) in manifests { #expect(manifest == referenceManifest, "manifest of \(label) differs") }
            // The stripped manifest still pins the content.
            #expect(referenceManifest["output"]?["sha256"]?.stringValue == sha256Hex(reference))
            #expect(referenceManifest["input"]?["sha256"]?.stringValue == sha256Hex(plain))
        }
    }

    @Test("zstd output is identical for any thread count and decompresses to the plain output")
    func compressedOutputIsDeterministic() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            var outputs: [[UInt8]] = []
            for (i, threads) in [1, 2, 4].enumerated() {
                let out = dir.file("q\(i).safetensors.zst")
                let r = try ToolRunner.run(["quantize", model, "-o", out, "-j", "\(threads)", "--hash", "all", "-q"])
                #expect(r.status == 0, "\(r)")
                outputs.append(try ToolRunner.readFile(out))
            }
            #expect(outputs[1] == outputs[0] && outputs[2] == outputs[0])
            let plain = dir.file("plain.safetensors")
            #expect(try ToolRunner.run(["quantize", model, "-o", plain, "-q"]).status == 0)
            #expect(try drain(try ZstdDecompressingStream(source: MemoryStream(outputs[0]))) == ToolRunner.readFile(plain))
            // The manifest of a .zst output describes the safetensors bytes inside it.
            let manifest = try JSONParser.parse(try ToolRunner.readFile(dir.file("q0.manifest.json")))
            #expect(manifest["output"]?["sha256"]?.stringValue == sha256Hex(try ToolRunner.readFile(plain)))
        }
    }
}
