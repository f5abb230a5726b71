import Foundation
import NVFP4Kit
import Testing

/// One quantized layout of tiny-llama, and where it comes from: the `nvfp4 quantize` command line
/// where our writer makes it, else a committed reference output (llm-compressor, ModelOpt).
struct ReadLayoutCase: Sendable, CustomTestStringConvertible {
    var name: String
    var spelling: LayoutSpelling
    /// `quantize` arguments after the input folder, or `nil` for a committed fixture.
    var quantizeArguments: [String]?
    /// A committed folder under Fixtures/ (its original is Fixtures/tiny-llama).
    var fixture: String?
    var testDescription: String { name }

    static let all: [ReadLayoutCase] = [
        ReadLayoutCase(name: "torchao dynamic", spelling: .torchao, quantizeArguments: [], fixture: nil),
        ReadLayoutCase(name: "torchao weight-only", spelling: .torchao, quantizeArguments: ["--weight-only"], fixture: nil),
        ReadLayoutCase(name: "compressed-tensors W4A4 (llm-compressor)", spelling: .compressedTensors, quantizeArguments: nil, fixture: "llm-compressor/nvfp4"),
        ReadLayoutCase(name: "compressed-tensors W4A16", spelling: .compressedTensors, quantizeArguments: ["--format", "compressed-tensors"], fixture: nil),
        ReadLayoutCase(name: "compressed-tensors NVFP4A16 (llm-compressor)", spelling: .compressedTensors, quantizeArguments: nil, fixture: "llm-compressor/nvfp4a16"),
        ReadLayoutCase(name: "ModelOpt W4A4 (ModelOpt)", spelling: .modelopt, quantizeArguments: nil, fixture: "modelopt/nvfp4"),
        ReadLayoutCase(name: "ModelOpt W4A16_NVFP4", spelling: .modelopt, quantizeArguments: ["--format", "modelopt"], fixture: nil),
    ]

    /// The quantized folder: made under `dir`, or the fixture.
    func folder(in dir: ToolRunner.TemporaryDirectory) throws -> String {
        if let fixture { return ToolRunner.fixture(fixture) }
        let out = dir.file("quantized")
        let r = try ToolRunner.run(["quantize", ToolRunner.fixture("tiny-llama"), "-o", out, "-q"] + (quantizeArguments ?? []))
        guard r.status == 0 else { throw ToolRunnerError(message: "quantize failed: \(r)") }
        return out
    }
}

/// How the quantized checkpoint is handed to the command.
enum ReadInputKind: String, CaseIterable, Sendable {
    case file, folder, stdin, zst
}

/// The read commands.
enum ReadCommand: String, CaseIterable, Sendable {
    case dequantize, verify, inspect, check
}

/// Every read command on every layout, from a file, a folder, stdin and a .zst file, checked against
/// expectations that do not come from the code under test: tensors decoded by ``IndependentDecode``,
/// original bytes, and names spelled out in ``LayoutSpelling``. `docs/commands-by-layout.md` is this table.
@Suite("read commands × layouts × inputs")
struct ReadSideMatrixTests {
    static let original = ToolRunner.fixture("tiny-llama")
    static let cases: [(ReadLayoutCase, ReadCommand)] = ReadLayoutCase.all.flatMap { l in ReadCommand.allCases.map { (l, $0) } }

    @Test("every layout, every input kind", arguments: cases)
    func command(_ layout: ReadLayoutCase, _ command: ReadCommand) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let folder = try layout.folder(in: dir)
            let file = folder + "/model.safetensors"
            let zst = dir.file("q.safetensors.zst")
            try compress(file, to: zst)
            let stored = try storedTensors(file)
            let originals = try storedTensors(Self.original + "/model.safetensors")
            let quantizedModules = stored.compactMap { layout.spelling.module(ofPacked: $0.key, dtype: $0.value.dtype) }
            #expect(quantizedModules.count == 14, "\(layout.name): the input holds tiny-llama's 14 quantized Linear weights")
            for kind in ReadInputKind.allCases {
                let input: String, stdin: [UInt8]?
                switch kind {
                case .file: (input, stdin) = (file, nil)
                case .folder: (input, stdin) = (folder, nil)
                case .stdin: (input, stdin) = ("-", try ToolRunner.readFile(file))
                case .zst: (input, stdin) = (zst, nil)
                }
                let label = "\(layout.name), \(kind.rawValue), \(command.rawValue)"
                switch command {
                case .dequantize:
                    let out = kind == .folder ? dir.file("dense-\(kind)") : kind == .stdin ? "-" : dir.file("dense-\(kind).safetensors")
                    let r = try ToolRunner.run(["dequantize", input, "-o", out, "-q"], stdin: stdin)
                    #expect(r.status == 0, "\(label): \(r)")
                    guard r.status == 0 else { continue }
                    let denseFile = out == "-" ? try dir.write(r.stdout, to: "dense-stdout.safetensors") : out
                    let dense = try storedTensors(denseFile)
                    #expect(Set(dense.keys) == Set(originals.keys), "\(label): the original names, nothing else")
                    for (name, t) in originals {
                        guard let d = dense[name] else { continue }
                        let module = String(name.dropLast(".weight".count))
                        if quantizedModules.contains(module) {
                            let expected = try #require(layout.spelling.decode(module, in: stored))
                            #expect(d.dtype == .bf16 && d.shape == t.shape && d.bytes == expected.bytes, "\(label): \(name) is not the NVFP4 decode")
                        } else {
                            #expect(d.dtype == t.dtype && d.shape == t.shape && d.bytes == t.bytes, "\(label): kept \(name) changed")
                        }
                    }
                    if kind == .folder { try expectDenseFolderFiles(out, label: label) }
                case .verify:
                    let original = kind == .folder ? Self.original : Self.original + "/model.safetensors"
                    let r = try ToolRunner.run(["verify", original, input, "--json"], stdin: stdin)
                    #expect(r.status == 0, "\(label): \(r)")
                    let report = try JSONParser.parse(r.stdout)
                    let tensors = report["tensors"]?.arrayValue ?? []
                    #expect(tensors.filter { $0["kind"]?.stringValue == "quantized" }.count == 14, "\(label)")
                    #expect(tensors.filter { $0["kind"]?.stringValue == "kept" }.count == originals.count - 14, "\(label)")
                case .inspect:
                    let r = try ToolRunner.run(["inspect", input, "--json"], stdin: stdin)
                    #expect(r.status == 0, "\(label): \(r)")
                    let json = try JSONParser.parse(r.stdout)
                    #expect(json["layout"]?.stringValue == layout.spelling.layoutName, "\(label)")
                    let names = Set((json["nvfp4_weights"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue })
                    #expect(names == Set(quantizedModules.map { $0 + ".weight" }), "\(label)")
                    if kind == .folder { try expectIgnoreListHonoured(json, folder: folder, key: layout.spelling.ignoreKey, label: label) }
                case .check:
                    let r = try ToolRunner.run(["check", input], stdin: stdin)
                    #expect(r.status == 0 && r.stdoutText.contains("ok: 14 NVFP4 modules (\(layout.spelling.layoutName))"), "\(label): \(r)")
                }
            }
        }
    }

    /// config.json without quantization_config, no hf_quant_config.json or manifest, other files copied.
    func expectDenseFolderFiles(_ out: String, label: String) throws {
        let names = try listFolder(out)
        #expect(names == ["config.json", "generation_config.json", "model.safetensors"], "\(label): \(names)")
        let config = try ModelFixtures.json(out + "/config.json")
        #expect(config["quantization_config"] == nil && config["hidden_size"] != nil, "\(label)")
        #expect(try ModelFixtures.read(out + "/generation_config.json") == ModelFixtures.read(Self.original + "/generation_config.json"))
    }

    /// Every kept module the config's own ignore list names is reported as listed there.
    func expectIgnoreListHonoured(_ json: JSONValue, folder: String, key: String, label: String) throws {
        let listed = Set((try ModelFixtures.json(folder + "/config.json")["quantization_config"]?[key]?.arrayValue ?? []).compactMap(\.stringValue))
        let kept = json["kept"]?.arrayValue ?? []
        #expect(!kept.isEmpty, "\(label)")
        for k in kept {
            guard let module = k["module"]?.stringValue, listed.contains(module) else { continue }
            #expect(k["reason"]?.stringValue == "listed in ignore (\"\(module)\")", "\(label): \(module) is in \(key)")
        }
        #expect(kept.contains { listed.contains($0["module"]?.stringValue ?? "") }, "\(label): \(key) names a kept module")
    }

    func compress(_ file: String, to path: String) throws {
        let sink = try ZstdCompressingSink(wrapping: try AtomicFileSink(path: path, replace: false), level: 3, threads: 1, hashing: false)
        try sink.write(try ToolRunner.readFile(file))
        _ = try sink.commit()
    }
}
