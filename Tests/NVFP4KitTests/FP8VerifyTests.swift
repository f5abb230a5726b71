import Foundation
import NVFP4Kit
import Testing

/// `verify ORIGINAL_FP8 NVFP4_OUTPUT`: the FP8 original is compared through its dequantization.
/// The independent expectation is the reference bf16 checkpoint made by the reference code
/// (`scripts/fixtures/make_fp8.py`): verify against the FP8 original must report, tensor for
/// tensor, exactly what verify against that reference reports (the same error sums, the same
/// kept tensors), and pass the exact block check, from every input kind verify takes.
@Suite("verify: FP8 originals")
struct FP8VerifyTests {
    enum Kind: String, CaseIterable, CustomStringConvertible {
        case file, stdin, zst, zstStdin = "zst on stdin"
        var description: String { rawValue }
    }

    static let layouts = FP8InputTests.layouts.map(\.rawValue)
    static func fixture(_ name: String) -> String { FP8InputTests.fixture(name) }

    /// Quantizes single file `input` to `out.safetensors` in `dir` (its manifest beside it).
    static func quantize(_ input: String, format: String, into dir: ToolRunner.TemporaryDirectory) throws -> String {
        let output = dir.file("out.safetensors")
        let q = try ToolRunner.run(["quantize", input, "-o", output, "--format", format, "--fp8-block-size", "128x128", "-q"])
        try #require(q.status == 0, "\(q)")
        return output
    }

    /// Runs verify and returns its status, JSON report and tensors by name.
    static func verify(_ arguments: [String], stdin: [UInt8]? = nil) throws -> (status: Int32, report: JSONValue, tensors: [String: JSONValue]) {
        let r = try ToolRunner.run(["verify"] + arguments + ["--json"], stdin: stdin)
        let report = try JSONParser.parse(r.stdout)
        var tensors: [String: JSONValue] = [:]
        for t in report["tensors"]?.arrayValue ?? [] { tensors[t["name"]!.stringValue!] = t }
        return (r.status, report, tensors)
    }

    /// Verify against the FP8 original from `kind` (a file's manifest found beside the output)
    /// equals verify against the reference bf16 file, and every block is re-quantized exactly.
    @Test("file, stdin, .zst and .zst-on-stdin FP8 originals verify as their reference dequantization", arguments: FP8InputTests.fileCases, layouts)
    func files(name: String, format: String) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = Self.fixture("\(name).safetensors")
            let output = try Self.quantize(input, format: format, into: dir)
            let expected = try Self.verify([Self.fixture("\(name).reference.safetensors"), output])
            #expect(expected.tensors.values.contains { $0["kind"]?.stringValue == "quantized" })
            let compressed = try zstdCompress(try ToolRunner.readFile(input))
            let zst = try dir.write(compressed, to: "in.safetensors.zst")
            for kind in Kind.allCases {
                let (path, stdin): (String, [UInt8]?) = switch kind {
                case .file: (input, nil)
                case .stdin: ("-", try ToolRunner.readFile(input))
                case .zst: (zst, nil)
                case .zstStdin: ("-", compressed)
                }
                let got = try Self.verify([path, output], stdin: stdin)
                #expect(got.status == 0, "\(name) \(format) \(kind): \(got.report)")
                #expect(got.report["manifest"]?["block_check"]?.stringValue == "rtn", "\(kind)")
                #expect(got.tensors == expected.tensors, "\(name) \(format) \(kind)")
            }
        }
    }

    @Test("folders (a scale in another shard, an MTP layer; two config groups) verify as their reference folder", arguments: ["deepseek", "ct"], layouts)
    func folders(name: String, format: String) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let output = dir.file("out")
            let q = try ToolRunner.run(["quantize", Self.fixture(name), "-o", output, "--format", format, "-q"])
            try #require(q.status == 0, "\(q)")
            let expected = try Self.verify([Self.fixture("\(name).reference"), output])
            let got = try Self.verify([Self.fixture(name), output])
            #expect(got.status == 0, "\(got.report)")
            #expect(got.report["manifest"]?["block_check"]?.stringValue == "rtn")
            #expect(got.tensors == expected.tensors)
            let kinds = got.tensors.values.map { $0["kind"]?.stringValue }
            #expect(kinds.contains("quantized") && kinds.contains("kept"))
            #expect(!got.tensors.keys.contains { $0.hasSuffix("_scale_inv") || $0.hasSuffix("weight_scale") || $0.hasSuffix("input_scale") })
        }
    }

    /// One byte changed in a quantized FP8-derived weight or in a kept FP8 weight's dequantization.
    @Test("one damaged byte of an FP8-derived output fails verify (exit 1), named by its tensor", arguments: layouts, ["quantized", "kept"])
    func damage(format: String, target: String) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = Self.fixture("block-f32.safetensors")
            let output = try Self.quantize(input, format: format, into: dir)
            let reader = try SafetensorsReader(path: output, hashing: false)
            // The packed data of gate_proj (NVFP4), or the bf16 bytes of kv_b_proj (kept by rule).
            let tensor = try #require(reader.header.tensors.first {
                target == "kept" ? $0.name == "model.layers.0.self_attn.kv_b_proj.weight" : $0.name.contains("gate_proj") && $0.dtype == .u8
            })
            let offset = reader.dataStart + Int(tensor.dataOffsets.lowerBound) + 3
            var bytes = try ToolRunner.readFile(output)
            bytes[offset] ^= target == "kept" ? 0x01 : 0x10
            try writeWholeFile(output, bytes)
            let got = try Self.verify([input, output])
            #expect(got.status == 1, "\(got.report)")
            let failures = got.tensors.values.flatMap { $0["failures"]?.arrayValue?.compactMap(\.stringValue) ?? [] }
            if target == "kept" {
                #expect(failures == ["kept tensor's bytes differ from the original's FP8 dequantization"], "\(failures)")
            } else {
                #expect(failures.contains { $0.contains("1 block differs from re-quantizing the original (rtn") }, "\(failures)")
            }
        }
    }

    @Test("without a manifest: --fp8-block-size names a bare file's block; without it, exit 2 naming the file and scale")
    func blockSizeWithoutManifest() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = Self.fixture("block-f32.safetensors")
            // Renamed: no manifest lies beside it.
            let output = try dir.write(try ToolRunner.readFile(try Self.quantize(input, format: "torchao", into: dir)), to: "renamed.safetensors")
            let given = try Self.verify([input, output, "--fp8-block-size", "128x128"])
            #expect(given.status == 0, "\(given.report)")
            #expect(given.tensors == (try Self.verify([Self.fixture("block-f32.reference.safetensors"), output])).tensors)
            let missing = try ToolRunner.run(["verify", input, output])
            #expect(missing.status == 2, "\(missing)")
            #expect(missing.stderr.contains(input) && missing.stderr.contains("weight_scale_inv\"") && missing.stderr.contains("--fp8-block-size"), "\(missing.stderr)")
            #expect(missing.stderr.split(separator: "\n").count == 1)
        }
    }
}
