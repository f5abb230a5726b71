import Foundation
@testable import NVFP4Kit
import Testing

// End-to-end: `quantize --method mse --importance <llama.cpp imatrix>` for every input kind and
// model family. The independent expectation: the same means written by the generator as an
// nvfp4-importance JSON file give byte-identical outputs, and the manifest marks exactly the
// modules the generator gave statistics as weighted.

/// The generator's means for `name`/`format` as an nvfp4-importance JSON file in `dir`.
private func expectedJSON(_ name: String, _ format: String, in dir: ToolRunner.TemporaryDirectory) throws -> String {
    let modules = try ImatrixFixtures.expected(name, format).mapValues { $0.map(Double.init) }
    let data = try JSONSerialization.data(withJSONObject: ["format": "nvfp4-importance", "version": 1, "modules": modules] as [String: Any])
    return try dir.write(Array(data), to: "\(name).\(format).json")
}

/// The output's safetensors bytes (a file, or every file of a folder by name) and its manifest's tensors.
private func output(_ path: String) throws -> (bytes: [String: [UInt8]], tensors: [JSONValue]) {
    var isFolder: ObjCBool = false
    _ = FileManager.default.fileExists(atPath: path, isDirectory: &isFolder)
    if isFolder.boolValue {
        let names = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".safetensors") }
        let manifest = try ModelFixtures.json(path + "/" + FolderQuantizeJob.manifestFileName)
        return (Dictionary(uniqueKeysWithValues: try names.map { ($0, try ToolRunner.readFile(path + "/" + $0)) }),
                (manifest["shards"]?.arrayValue ?? []).flatMap { $0["tensors"]?.arrayValue ?? [] })
    }
    let manifest = try ModelFixtures.json(String(path.dropLast(".safetensors".count)) + ".manifest.json")
    return (["": try ToolRunner.readFile(path)], manifest["tensors"]?.arrayValue ?? [])
}

private func weighted(_ tensors: [JSONValue]) -> (weighted: Set<String>, plain: Set<String>) {
    let quantized = tensors.filter { $0["action"]?.stringValue == "quantized" }
    let names = { (list: [JSONValue]) in Set(list.compactMap { $0["name"]?.stringValue.map(ImportanceStatistics.moduleName) }) }
    return (names(quantized.filter { $0["importance_weighted"]?.boolValue == true }), names(quantized.filter { $0["importance_weighted"]?.boolValue != true }))
}

@Suite("nvfp4 --importance with llama.cpp imatrix files")
struct ImatrixCLITests {
    enum InputKind: String, CaseIterable { case file, stdin, zst, folder }
    static let inputCases = InputKind.allCases.flatMap { kind in ImatrixFixtures.formats.map { (kind, $0) } }

    @Test("every input kind × both formats: same bytes as the generator's JSON, every module weighted, no warning", arguments: inputCases)
    func inputKinds(kind: InputKind, format: String) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let name = kind == .folder ? "llama" : "tiny-llama"
            let imatrix = ImatrixFixtures.path(name, format)
            let tiny = ToolRunner.fixture("tiny-llama/model.safetensors")
            let (input, stdin): (String, [UInt8]?) = switch kind {
            case .file: (tiny, nil)
            case .stdin: ("-", try ToolRunner.readFile(tiny))
            case .zst: (try dir.write(try zstdCompress(try ToolRunner.readFile(tiny)), to: "model.safetensors.zst"), nil)
            case .folder: (ModelFixtures.llama, nil)
            }
            let suffix = kind == .folder ? "" : ".safetensors"
            let run = try ToolRunner.run(["quantize", input, "-o", dir.file("imx" + suffix), "--method", "mse", "--importance", imatrix], stdin: stdin)
            try #require(run.status == 0, "\(run)")
            #expect(!run.stderr.contains("warning"), "\(run.stderr)")
            let reference = try ToolRunner.run(["quantize", kind == .folder ? input : tiny, "-o", dir.file("json" + suffix), "--method", "mse",
                                                "--importance", try expectedJSON(name, format, in: dir)])
            try #require(reference.status == 0, "\(reference)")
            let (got, tensors) = try output(dir.file("imx" + suffix))
            #expect(got == (try output(dir.file("json" + suffix))).bytes)
            let (weightedModules, plain) = weighted(tensors)
            #expect(plain.isEmpty, "\(plain)")
            #expect(weightedModules.isSubset(of: Set(try ImatrixFixtures.expected(name, format).keys)) && !weightedModules.isEmpty)
        }
    }

    static let familyCases = ["qwen-moe", "mixtral"].flatMap { name in ImatrixFixtures.formats.map { (name, $0) } }

    @Test("MoE families (per-expert names): same bytes as the JSON; only experts without tokens go unweighted, with the warning", arguments: familyCases)
    func moeFamilies(name: String, format: String) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let folder = ModelFixtures.folder(name)
            let run = try ToolRunner.run(["quantize", folder, "-o", dir.file("imx"), "--method", "mse", "--importance", ImatrixFixtures.path(name, format)])
            try #require(run.status == 0, "\(run)")
            let reference = try ToolRunner.run(["quantize", folder, "-o", dir.file("json"), "--method", "mse", "--importance", try expectedJSON(name, format, in: dir)])
            try #require(reference.status == 0, "\(reference)")
            let (got, tensors) = try output(dir.file("imx"))
            #expect(got == (try output(dir.file("json"))).bytes)
            let expected = Set(try ImatrixFixtures.expected(name, format).keys)
            let (weightedModules, plain) = weighted(tensors)
            #expect(weightedModules.isSubset(of: expected) && plain.isDisjoint(with: expected))
            // The generator gave expert 3 of qwen-moe no tokens; GGUF keeps that, legacy stores ones.
            let missing = name == "qwen-moe" && format == "gguf" ? Set(["gate_proj", "up_proj", "down_proj"].map { "model.layers.0.mlp.experts.3.\($0)" }) : []
            #expect(plain == missing, "\(plain)")
            #expect(run.stderr.contains("warning") == !missing.isEmpty, "\(run.stderr)")
        }
    }

    @Test("stacked experts [E, N, K]: each expert weighted by its own imatrix row; the engine layouts equal the per-expert checkpoint's",
          arguments: ImatrixFixtures.formats)
    func stackedExperts(format: String) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let (stacked, perExpert) = try StackedExpertNamingTests.folders(scratch)
        let imatrix = ImatrixFixtures.path("stacked", format)
        for layout in ["compressed-tensors", "torchao"] {
            var outputs: [[String: ModelFixtures.Stored]] = []
            for folder in [stacked, perExpert] {
                let out = scratch.file("\(layout).\(folder.split(separator: "/").last!)")
                let run = try ToolRunner.run(["quantize", folder, "-o", out, "--format", layout, "--method", "mse", "--importance", imatrix])
                try #require(run.status == 0, "\(run)")
                #expect(!run.stderr.contains("warning"), "\(run.stderr)")
                let tensors = try output(out).tensors
                #expect(weighted(tensors).plain.isEmpty && !weighted(tensors).weighted.isEmpty)
                outputs.append(try ModelFixtures.tensors(in: out))
            }
            guard layout == "compressed-tensors" else { continue }
            #expect(Set(outputs[0].keys) == Set(outputs[1].keys))
            for (name, tensor) in outputs[1] { #expect(outputs[0][name]?.bytes == tensor.bytes, "\(name)") }
        }
    }

    @Test("bad use: a width that differs names module and file; a missing module warns; a truncated file is one line, exit 2, nothing written")
    func errors() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let tiny = ToolRunner.fixture("tiny-llama/model.safetensors")
            let narrow = ImatrixFixtures.path("llama", "gguf")
            let k = try ToolRunner.run(["quantize", tiny, "-o", dir.file("k.safetensors"), "--method", "mse", "--importance", narrow])
            #expect(k.status == 2 && k.stderr.hasPrefix("error: \(narrow): module \"model.layers.") && k.stderr.contains("has 64 channels but tensor"), "\(k.stderr)")
            #expect(!ToolRunner.exists(dir.file("k.safetensors")))

            let partial = ImatrixFixtures.path("llama-partial", "gguf")
            let p = try ToolRunner.run(["quantize", ModelFixtures.llama, "-o", dir.file("p"), "--method", "mse", "--importance", partial])
            #expect(p.status == 0)
            #expect(p.stderr.contains("warning: \(partial) has no statistics for 1 quantized modules (model.layers.0.self_attn.o_proj)"), "\(p.stderr)")

            let whole = try ToolRunner.readFile(ImatrixFixtures.path("tiny-llama", "gguf"))
            let cut = try dir.write(Array(whole[0..<(whole.count / 2)]), to: "cut.gguf")
            let t = try ToolRunner.run(["quantize", tiny, "-o", dir.file("t.safetensors"), "--method", "mse", "--importance", cut])
            #expect(t.status == 2 && t.stderrLines.count == 1 && t.stderr.hasPrefix("error: \(cut): "), "\(t.stderr)")
            #expect(t.stderr.contains("lies outside the file") || t.stderr.contains("truncated"), "\(t.stderr)")
            #expect(!ToolRunner.exists(dir.file("t.safetensors")))
        }
    }
}
