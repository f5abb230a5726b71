import Foundation
import NVFP4Kit
import Testing

/// The quantize-side failures of issue 12, each through the command line, for every input kind
/// that can carry it: what a single file, stdin, a `.zst` and a folder give must agree.
@Suite("one plan: files and folders agree")
struct PlanRegressionTests {
    enum InputKind: String, CaseIterable {
        case file, stdin, zstd, folder
    }

    /// Quantizes tiny-llama (`Fixtures/tiny-llama`, a one-shard folder) from `kind` and returns the
    /// output's tensors, the manifest and the run's result.
    static func quantize(
        _ kind: InputKind, format: CheckpointFormat, extra: [String] = [], in directory: ScratchFolder
    ) throws -> (tensors: [String: ModelFixtures.Stored], manifest: JSONValue, run: ToolRunner.Result) {
        let model = FixturePaths.tinyLlama
        let out = directory.file("\(kind.rawValue)-\(format.rawValue)")
        var arguments = ["quantize", "--format", format.rawValue] + extra
        var stdin: [UInt8]?
        switch kind {
        case .file: arguments += [model, "-o", out + ".safetensors"]
        case .stdin:
            arguments += ["-", "-o", out + ".safetensors", "--manifest", out + ".manifest.json"]
            stdin = try ModelFixtures.read(model)
        case .zstd:
            let compressed = directory.file("model.safetensors.zst")
            if !FileManager.default.fileExists(atPath: compressed) {
                #expect(try ShellRunner.run("zstd -q -o '\(compressed)' '\(model)'").status == 0)
            }
            arguments += [compressed, "-o", out + ".safetensors"]
        case .folder: arguments += [FixturePaths.root + "/Fixtures/tiny-llama", "-o", out]
        }
        let run = try ToolRunner.run(arguments, stdin: stdin)
        try #require(run.status == 0, "\(run)")
        if kind == .folder {
            return (try ModelFixtures.tensors(in: out), try ModelFixtures.json(out + "/" + FolderQuantizeJob.manifestFileName), run)
        }
        var tensors: [String: ModelFixtures.Stored] = [:]
        let reader = try SafetensorsReader(path: out + ".safetensors")
        for t in reader.header.tensors {
            tensors[t.name] = ModelFixtures.Stored(dtype: t.dtype, shape: t.shape, bytes: try reader.withBytes(of: t) { Array($0) }, shard: "")
        }
        return (tensors, try ModelFixtures.json(out + ".manifest.json"), run)
    }

    static let qkv = ["q_proj", "k_proj", "v_proj"].map { "model.layers.0.self_attn.\($0)" }

    @Test("fused layers share one global scale in the engine layouts, from every input kind, and 'check' finds nothing in our own output",
          arguments: [CheckpointFormat.compressedTensors, .modelopt], InputKind.allCases)
    func sharedScales(format: CheckpointFormat, kind: InputKind) throws {
        let directory = ScratchFolder()
        defer { directory.remove() }
        let (tensors, manifest, run) = try Self.quantize(kind, format: format, in: directory)
        #expect(run.stderr.contains("note: transformers cannot load ModelOpt") == (format == .modelopt), "\(run.stderr)")
        let global = format.names.globalScale
        let scales = try Self.qkv.map { try #require(tensors["\($0).\(global)"]).bytes }
        #expect(Set(scales).count == 1, "q/k/v must share one global scale")
        let groups = manifest["fusion"]?["groups"]?.arrayValue ?? []
        #expect(!groups.isEmpty && groups.allSatisfy { $0["shares_global_scale"]?.boolValue == true && $0["shared_amax"] != nil })
        if kind != .folder {
            let check = try ToolRunner.run(["check", directory.file("\(kind.rawValue)-\(format.rawValue).safetensors")])
            #expect(!check.stdoutText.contains("fused-global-scale-mismatch"), "\(check)")
            let verify = try ToolRunner.run(["verify", FixturePaths.tinyLlama, directory.file("\(kind.rawValue)-\(format.rawValue).safetensors")])
            #expect(verify.status == 0, "\(verify)")
        }
        // The file and the folder give the same tensors.
        let reference = kind == .file ? tensors : try Self.quantize(.file, format: format, in: directory).tensors
        #expect(tensors.mapValues(\.bytes) == reference.mapValues(\.bytes))
    }

    @Test("torchao keeps per-weight scales, and its manifest says so (no shared amax)", arguments: [InputKind.file, .folder])
    func torchaoGroupsDoNotShare(kind: InputKind) throws {
        let directory = ScratchFolder()
        defer { directory.remove() }
        let (tensors, manifest, run) = try Self.quantize(kind, format: .torchao, in: directory)
        let scales = try Self.qkv.map { try #require(tensors["\($0)._weight_per_tensor_scale"]).bytes }
        #expect(Set(scales).count == 3, "the fixture's q/k/v have different amax; torchao keeps each")
        let groups = manifest["fusion"]?["groups"]?.arrayValue ?? []
        #expect(!groups.isEmpty && groups.allSatisfy { $0["shares_global_scale"]?.boolValue == false && $0["shared_amax"] == nil })
        #expect(!run.stderr.contains("share a global scale"), "\(run.stderr)")
    }

    @Test("--exclude of one fused member keeps its partners, in files and folders, and says why", arguments: CheckpointFormat.allCases, [InputKind.file, .stdin, .folder])
    func excludedPartner(format: CheckpointFormat, kind: InputKind) throws {
        let directory = ScratchFolder()
        defer { directory.remove() }
        let (tensors, manifest, run) = try Self.quantize(kind, format: format, extra: ["--exclude", "*.q_proj"], in: directory)
        for module in Self.qkv {
            #expect(tensors["\(module).weight"]?.dtype == .bf16, "\(module) must stay bf16")
        }
        let partners = manifest["fusion"]?["kept_for_partner"]?.arrayValue ?? []
        #expect(partners.contains { $0["module"]?.stringValue == Self.qkv[1] && $0["kept_partners"]?.arrayValue?.first?.stringValue == Self.qkv[0] })
        #expect(run.stderr.contains("kept \(Self.qkv[1]).weight: its fused partner \(Self.qkv[0]) is kept"), "\(run.stderr)")
        let entries = manifest["tensors"]?.arrayValue ?? manifest["shards"]?.arrayValue?.flatMap { $0["tensors"]?.arrayValue ?? [] } ?? []
        let k = entries.first { $0["name"]?.stringValue == "\(Self.qkv[1]).weight" }
        #expect(k?["reason"]?.stringValue == KeepReason.fusedPartnerKept.rawValue)
    }

    @Test("--importance statistics go to the tensor they name when shards are split and weights kept", arguments: CheckpointFormat.allCases)
    func importanceByName(format: CheckpointFormat) throws {
        let directory = ScratchFolder()
        defer { directory.remove() }
        // Statistics for two modules only, one of which is kept; the other must be the one weighted.
        let stats: JSONValue = .object([
            ("format", "nvfp4-importance"), ("version", 1),
            ("modules", .object([
                ("model.layers.0.self_attn.o_proj", .array((0..<32).map { .number(Double($0 % 7 + 1)) })),
                ("model.embed_tokens", .array([1, 2, 3])),
            ])),
        ])
        let path = directory.file("stats.json")
        try Data(stats.serialized(.pretty).utf8).write(to: URL(fileURLWithPath: path))
        let folder = ModelFixtures.llama
        let out = directory.file("out")
        let run = try ToolRunner.run(["quantize", folder, "-o", out, "--format", format.rawValue, "--method", "mse", "--importance", path, "--max-shard-size", "3000"])
        try #require(run.status == 0, "\(run)")
        let manifest = try ModelFixtures.json(out + "/" + FolderQuantizeJob.manifestFileName)
        let shards = manifest["shards"]?.arrayValue ?? []
        #expect(shards.count > 3, "the limit splits the input's three shards")
        let weighted = shards.flatMap { $0["tensors"]?.arrayValue ?? [] }.filter { $0["importance_weighted"]?.boolValue == true }.compactMap { $0["name"]?.stringValue }
        #expect(weighted == ["model.layers.0.self_attn.o_proj.weight"])
        #expect(run.stderr.contains("wrote \(shards.count) files, "), "the summary counts the files written: \(run.stderr)")
    }
}
