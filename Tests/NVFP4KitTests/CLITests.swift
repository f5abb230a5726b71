import Foundation
import Glibc
import NVFP4Kit
import Testing

// End-to-end tests of the `nvfp4` executable, run as a subprocess (see Support/ToolRunner.swift).

/// Helpers private to these tests.
private enum CLIScaffold {
    static let casesBF16 = "torchao/cases.bf16.safetensors"
    static let tinyLlama = "tiny-llama/model.safetensors"
    static let expectedTwoLevelCUDA = "torchao/expected/cases.bf16.two-level.cuda.safetensors"
    static let expectedDequantBF16 = "torchao/expected/cases.bf16.two-level.cuda.dequant-bf16.safetensors"

    /// One stored tensor: its header entry and bytes.
    struct Stored: Equatable {
        var dtype: DType
        var shape: [Int]
        var bytes: [UInt8]
    }

    /// Every tensor of a safetensors file by name, read with the library's reader.
    static func tensors(_ path: String) throws -> [String: Stored] {
        let reader = try SafetensorsReader(path: path)
        var result: [String: Stored] = [:]
        for t in reader.header.tensors {
            result[t.name] = Stored(dtype: t.dtype, shape: t.shape, bytes: try reader.withBytes(of: t) { Array($0) })
        }
        return result
    }

    /// Writes a safetensors file with the library's layout planner.
    static func safetensors(_ tensors: [(name: String, stored: Stored)], metadata: [(key: String, value: String)] = []) -> [UInt8] {
        let plan = SafetensorsLayoutPlan(
            tensors: tensors.map { PlannedTensor(name: $0.name, dtype: $0.stored.dtype, shape: $0.stored.shape) }, metadata: metadata)
        return plan.headerBytes + tensors.flatMap(\.stored.bytes)
    }

    /// A small valid checkpoint: a quantizable bf16 `layer.weight` [16, 32] and an f32 bias.
    static func smallCheckpoint() -> [UInt8] {
        let weight = (0..<(16 * 32)).flatMap { i -> [UInt8] in
            let v = Float((i * 5) % 11 - 5) * 0.25 + 0.125
            return withUnsafeBytes(of: UInt16(v.bitPattern >> 16).littleEndian) { Array($0) }
        }
        let bias = (0..<16).flatMap { i in withUnsafeBytes(of: Float(i).bitPattern.littleEndian) { Array($0) } }
        return safetensors([
            ("layer.weight", Stored(dtype: .bf16, shape: [16, 32], bytes: weight)),
            ("layer.bias", Stored(dtype: .f32, shape: [16], bytes: bias)),
        ])
    }

    /// Lowercase hex SHA-256 of a file, computed by coreutils (independently of the tool).
    static func sha256(_ path: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["sha256sum", path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0, let text = String(data: data, encoding: .utf8) else {
            throw ToolRunnerError(message: "sha256sum failed for \(path)")
        }
        return String(text.prefix(while: { $0 != " " }))
    }

    /// Parses JSON text with Foundation (an independent parser) into a dictionary.
    static func jsonObject(_ bytes: [UInt8]) throws -> [String: Any] {
        let value = try JSONSerialization.jsonObject(with: Data(bytes), options: [])
        guard let object = value as? [String: Any] else { throw ToolRunnerError(message: "the JSON is not an object") }
        return object
    }

    static func int(_ value: Any?) -> Int? { (value as? NSNumber)?.intValue }
    static func double(_ value: Any?) -> Double? { (value as? NSNumber)?.doubleValue }
    static func strings(_ value: Any?) -> [String]? { (value as? [Any])?.compactMap { $0 as? String } }
    static func ints(_ value: Any?) -> [Int]? {
        guard let array = value as? [Any] else { return nil }
        let ints = array.compactMap { int($0) }
        return ints.count == array.count ? ints : nil
    }

    /// Checks the shape of a usage or input error: exit 2, nothing on stdout, one `error: ` line.
    static func expectOneErrorLine(
        _ result: ToolRunner.Result, status: Int32 = 2, stdoutEmpty: Bool = true, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(result.status == status, "\(result)", sourceLocation: sourceLocation)
        if stdoutEmpty { #expect(result.stdout.isEmpty, "\(result)", sourceLocation: sourceLocation) }
        #expect(result.stderrLines.count == 1, "stderr must be one line: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.hasPrefix("error: ") && result.stderr.hasSuffix("\n"), "\(result.stderr)", sourceLocation: sourceLocation)
    }
}

@Suite("nvfp4 command line")
struct CLITests {
    // MARK: Help and usage errors

    @Test("the executable is found beside the test binary")
    func executableIsFound() throws {
        let executable = try #require(ToolRunner.executable, "nvfp4 is not built")
        // Under `swift test` it sits in the test runner's folder; the repository fallback is for other runners.
        #expect(executable.source == .besideTestBinary || executable.source == .repositoryBuildFolder || executable.source == .besideTestBundle)
        if let runner = CommandLine.arguments.first, runner.hasSuffix(".xctest") {
            #expect(executable.source == .besideTestBinary, "swift test's runner is \(runner); nvfp4 was found at \(executable.path)")
        }
        let result = try ToolRunner.run(["--version"])
        #expect(result.stdoutText == nvfp4Version + "\n", "the executable must be the one built from these sources")
    }

    @Test("help goes to stdout with exit 0", arguments: [
        ["--help"], ["-h"], ["help"], [], ["help", "quantize"], ["quantize", "--help"], ["quantize", "-h"],
        ["help", "inspect"], ["inspect", "--help"], ["verify", "--help"], ["dequantize", "--help"],
    ])
    func helpGoesToStdout(_ arguments: [String]) throws {
        let result = try ToolRunner.run(arguments)
        #expect(result.status == 0, "\(result)")
        #expect(result.stderr.isEmpty, "\(result)")
        #expect(result.stdoutText.hasPrefix("OVERVIEW: "), "\(result)")
        #expect(result.stdoutText.contains("USAGE: nvfp4"), "\(result)")
        if let command = arguments.first(where: { !$0.hasPrefix("-") && $0 != "help" }) {
            #expect(result.stdoutText.contains("USAGE: nvfp4 \(command) "), "\(result)")
        } else {
            for command in ["quantize", "inspect", "verify", "dequantize"] {
                #expect(result.stdoutText.contains("\n  \(command) "), "the main help lists \(command)")
            }
        }
    }

    @Test("help texts agree: no arguments = --help, help quantize = quantize --help")
    func helpTextsAgree() throws {
        let bare = try ToolRunner.run([])
        let long = try ToolRunner.run(["--help"])
        #expect(bare.stdout == long.stdout && !bare.stdout.isEmpty)
        let topic = try ToolRunner.run(["help", "quantize"])
        let flag = try ToolRunner.run(["quantize", "--help"])
        #expect(topic.stdout == flag.stdout && !topic.stdout.isEmpty)
        for option in ["--output", "--no-global-scale", "--numerics", "--force", "--include", "--exclude"] {
            #expect(flag.stdoutText.contains(option), "quantize --help documents \(option)")
        }
    }

    @Test("--version prints the version")
    func version() throws {
        let result = try ToolRunner.run(["--version"])
        #expect(result.status == 0)
        #expect(result.stdoutText == nvfp4Version + "\n")
        #expect(result.stderr.isEmpty)
    }

    /// A usage error and a text its message must contain. `$IN` is replaced by a valid input file.
    struct UsageCase: Sendable, CustomTestStringConvertible {
        var arguments: [String]
        var mentions: String
        var testDescription: String { arguments.joined(separator: " ") }
    }

    static let usageCases: [UsageCase] = [
        UsageCase(arguments: ["frobnicate"], mentions: "unknown command 'frobnicate'"),
        UsageCase(arguments: ["--frobnicate"], mentions: "unknown option '--frobnicate'"),
        UsageCase(arguments: ["help", "frobnicate"], mentions: "unknown command 'frobnicate'"),
        UsageCase(arguments: ["quantize", "$IN", "--bogus"], mentions: "unknown option '--bogus'"),
        UsageCase(arguments: ["quantize", "$IN", "--bogus=1"], mentions: "unknown option '--bogus'"),
        UsageCase(arguments: ["quantize"], mentions: "missing argument <input>"),
        UsageCase(arguments: ["quantize", "$IN", "$IN"], mentions: "unexpected argument"),
        UsageCase(arguments: ["quantize", "$IN", "-o"], mentions: "needs a value"),
        UsageCase(arguments: ["quantize", "$IN", "--numerics", "gpu"], mentions: "invalid value 'gpu' for --numerics"),
        UsageCase(arguments: ["quantize", "$IN", "--numerics="], mentions: "--numerics"),
        UsageCase(arguments: ["quantize", "$IN", "--io", "fast"], mentions: "invalid value 'fast' for --io"),
        UsageCase(arguments: ["quantize", "$IN", "-j0"], mentions: "invalid value '0' for --threads"),
        UsageCase(arguments: ["quantize", "$IN", "-qj2"], mentions: "unknown option '-qj2'"),
        UsageCase(arguments: ["quantize", "$IN", "--force=yes"], mentions: "takes no value"),
        UsageCase(arguments: ["quantize", "$IN", "-o", "a.safetensors", "-o", "b.safetensors"], mentions: "more than once"),
        UsageCase(arguments: ["quantize", "-"], mentions: "-o"),
        UsageCase(arguments: ["quantize", "$IN", "-o", "-", "--json"], mentions: "--json"),
        UsageCase(arguments: ["inspect"], mentions: "missing argument <file>"),
        UsageCase(arguments: ["verify", "$IN"], mentions: "missing argument <quantized>"),
        UsageCase(arguments: ["verify", "$IN", "$IN", "--tolerance", "abc"], mentions: "invalid value 'abc' for --tolerance"),
        UsageCase(arguments: ["verify", "$IN", "$IN", "--tolerance", "-1"], mentions: "--tolerance"),
        UsageCase(arguments: ["verify", "$IN", "$IN", "--tolerance", "nan"], mentions: "--tolerance"),
        UsageCase(arguments: ["verify", "$IN", "$IN", "--tolerance", "inf"], mentions: "--tolerance"),
        UsageCase(arguments: ["verify", "-", "-"], mentions: "'-'"),
        UsageCase(arguments: ["dequantize", "$IN"], mentions: "-o"),
        UsageCase(arguments: ["dequantize", "$IN", "-o", "x.safetensors", "--dtype", "f16"], mentions: "--dtype"),
        UsageCase(arguments: ["quantize", "does-not-exist.safetensors"], mentions: "does-not-exist.safetensors"),
    ]

    @Test("usage errors exit 2 with one error line and write nothing", arguments: usageCases)
    func usageErrors(_ c: UsageCase) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.write(CLIScaffold.smallCheckpoint(), to: "in.safetensors")
            let before = try dir.contents()
            let result = try ToolRunner.run(c.arguments.map { $0 == "$IN" ? input : $0 }, in: dir.path)
            CLIScaffold.expectOneErrorLine(result)
            #expect(result.stderr.contains(c.mentions), "expected \"\(c.mentions)\" in: \(result.stderr)")
            #expect(try dir.contents() == before, "a usage error must write nothing")
        }
    }

    // MARK: quantize: outputs

    @Test("a short option's value may be attached (-j1, -oFILE), as make and xz take it")
    func attachedShortValues() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let model = ToolRunner.fixture(CLIScaffold.tinyLlama)
            let attached = try ToolRunner.run(["quantize", model, "-j1", "-o\(dir.file("a.safetensors"))", "-q"])
            #expect(attached.status == 0, "\(attached)")
            let separate = try ToolRunner.run(["quantize", model, "-j", "2", "-o", dir.file("b.safetensors"), "-q"])
            #expect(separate.status == 0, "\(separate)")
            let a = try ToolRunner.readFile(dir.file("a.safetensors"))
            let b = try ToolRunner.readFile(dir.file("b.safetensors"))
            #expect(!a.isEmpty && a == b)
        }
    }

    @Test("dequantize writes the same bytes for any thread count and either --io")
    func dequantizeThreadsAndIO() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let quantized = dir.file("q.safetensors")
            let q = try ToolRunner.run(["quantize", ToolRunner.fixture(CLIScaffold.tinyLlama), "-o", quantized, "-q"])
            #expect(q.status == 0, "\(q)")
            var outputs: [[UInt8]] = []
            for (i, extra) in [["-j1"], ["-j", "3"], ["--io", "buffered"]].enumerated() {
                let r = try ToolRunner.run(["dequantize", quantized, "-o", dir.file("d\(i).safetensors"), "-q"] + extra)
                #expect(r.status == 0, "\(r)")
                outputs.append(try ToolRunner.readFile(dir.file("d\(i).safetensors")))
            }
            #expect(!outputs[0].isEmpty && outputs[0] == outputs[1] && outputs[0] == outputs[2])
        }
    }

    @Test("--io direct (the default) and --io buffered write the same file and manifest sums")
    func outputIOModes() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let model = ToolRunner.fixture(CLIScaffold.tinyLlama)
            for mode in ["direct", "buffered"] {
                let r = try ToolRunner.run(["quantize", model, "-o", dir.file("\(mode).safetensors"), "--io", mode, "-q"])
                #expect(r.status == 0, "\(r)")
            }
            let direct = try ToolRunner.readFile(dir.file("direct.safetensors"))
            #expect(!direct.isEmpty)
            #expect(direct == (try ToolRunner.readFile(dir.file("buffered.safetensors"))))
            let sums = try ["direct", "buffered"].map { mode in
                (try CLIScaffold.jsonObject(try ToolRunner.readFile(dir.file("\(mode).manifest.json")))["output"] as? [String: Any])?["sha256"] as? String
            }
            #expect(sums[0] != nil && sums[0] == sums[1])
            #expect(sums[0] == (try CLIScaffold.sha256(dir.file("direct.safetensors"))))
        }
    }

    @Test("quantize writes <stem>.nvfp4.safetensors and <stem>.nvfp4.manifest.json beside the input")
    func defaultOutputs() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.copyFixture(CLIScaffold.casesBF16, as: "cases.bf16.safetensors")
            let result = try ToolRunner.run(["quantize", input])
            #expect(result.status == 0, "\(result)")
            #expect(result.stdout.isEmpty, "without --json nothing goes to stdout")
            #expect(result.stderr.contains("quantized 20 of 20 tensors"), "\(result.stderr)")
            #expect(try dir.contents() == ["cases.bf16.nvfp4.manifest.json", "cases.bf16.nvfp4.safetensors", "cases.bf16.safetensors"])
            // The default (two-level, CUDA numerics) reproduces torchao on an H100, tensor for tensor.
            let ours = try CLIScaffold.tensors(dir.file("cases.bf16.nvfp4.safetensors"))
            let torchao = try CLIScaffold.tensors(ToolRunner.fixture(CLIScaffold.expectedTwoLevelCUDA))
            #expect(Set(ours.keys) == Set(torchao.keys))
            for (name, expected) in torchao { #expect(ours[name] == expected, "tensor \(name) differs from torchao's") }
            let manifest = try CLIScaffold.jsonObject(try ToolRunner.readFile(dir.file("cases.bf16.nvfp4.manifest.json")))
            #expect((manifest["output"] as? [String: Any])?["path"] as? String == dir.file("cases.bf16.nvfp4.safetensors"))
        }
    }

    @Test("quantize refuses to overwrite without --force and replaces with it")
    func overwriteNeedsForce() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.write(CLIScaffold.smallCheckpoint(), to: "in.safetensors")
            let output = dir.file("out.safetensors")
            let sentinel = Array("precious bytes".utf8)
            try dir.write(sentinel, to: "out.safetensors")

            let refused = try ToolRunner.run(["quantize", input, "-o", output])
            CLIScaffold.expectOneErrorLine(refused)
            #expect(refused.stderr.contains(output) && refused.stderr.contains("--force"), "\(refused.stderr)")
            #expect(try ToolRunner.readFile(output) == sentinel, "the existing file must be untouched")
            #expect(try dir.contents() == ["in.safetensors", "out.safetensors"], "no manifest, no temporary file")

            // An existing manifest alone also blocks.
            try FileManager.default.removeItem(atPath: output)
            try dir.write(sentinel, to: "out.manifest.json")
            let manifestRefused = try ToolRunner.run(["quantize", input, "-o", output])
            CLIScaffold.expectOneErrorLine(manifestRefused)
            #expect(try ToolRunner.readFile(dir.file("out.manifest.json")) == sentinel)
            #expect(try dir.contents() == ["in.safetensors", "out.manifest.json"])
            try dir.write(sentinel, to: "out.safetensors")

            let forced = try ToolRunner.run(["quantize", input, "-o", output, "--force", "--quiet"])
            #expect(forced.status == 0, "\(forced)")
            #expect(forced.stderr.isEmpty, "--quiet prints nothing but errors: \(forced.stderr)")
            let fresh = dir.file("fresh.safetensors")
            #expect(try ToolRunner.run(["quantize", input, "-o", fresh, "--quiet"]).status == 0)
            #expect(try ToolRunner.readFile(output) == ToolRunner.readFile(fresh), "--force replaces the file with the real output")
            #expect(try ToolRunner.readFile(dir.file("out.manifest.json")) != sentinel, "--force replaces the manifest too")
            #expect(try dir.contents() == ["fresh.manifest.json", "fresh.safetensors", "in.safetensors", "out.manifest.json", "out.safetensors"])
        }
    }

    enum InputAlias: String, CaseIterable, Sendable {
        case samePath = "same path"
        case relativePath = "same file, another spelling"
        case symbolicLink = "symbolic link"
        case hardLink = "hard link"
        case manifest = "--manifest names the input"
    }

    @Test("quantize refuses to write over its input, even with --force", arguments: InputAlias.allCases, [false, true])
    func outputIsInput(_ alias: InputAlias, force: Bool) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let original = CLIScaffold.smallCheckpoint()
            let input = try dir.write(original, to: "in.safetensors")
            var arguments = ["quantize", input]
            switch alias {
            case .samePath: arguments += ["-o", input]
            case .relativePath: arguments += ["-o", dir.path + "/./in.safetensors"]
            case .symbolicLink:
                try FileManager.default.createSymbolicLink(atPath: dir.file("link.safetensors"), withDestinationPath: "in.safetensors")
                arguments += ["-o", dir.file("link.safetensors")]
            case .hardLink:
                try FileManager.default.linkItem(atPath: input, toPath: dir.file("hard.safetensors"))
                arguments += ["-o", dir.file("hard.safetensors")]
            case .manifest: arguments += ["-o", dir.file("out.safetensors"), "--manifest", input]
            }
            if force { arguments.append("--force") }
            let before = try dir.contents()
            let result = try ToolRunner.run(arguments)
            CLIScaffold.expectOneErrorLine(result)
            #expect(result.stderr.contains("input"), "\(result.stderr)")
            #expect(try ToolRunner.readFile(input) == original, "the input must be untouched")
            #expect(try dir.contents() == before, "nothing may be written")
        }
    }

    // MARK: quantize: conflicting destinations

    @Test("quantize refuses a manifest path equal to the output path", arguments: [false, true])
    func manifestIsOutput(force: Bool) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.write(CLIScaffold.smallCheckpoint(), to: "in.safetensors")
            let output = dir.file("out.safetensors")
            let result = try ToolRunner.run(["quantize", input, "-o", output, "--manifest", output, "--quiet"] + (force ? ["--force"] : []))
            #expect(result.stderrLines.count <= 1, "\(result)")
            let left = try dir.contents()
            #expect(result.status == 2, "\(result)")
            #expect(result.stderr.hasPrefix("error: "), "\(result)")
            #expect(left == ["in.safetensors"], "a refused run writes nothing")
        }
    }

    @Test("quantize refuses -o - with --manifest -: both would go to stdout")
    func manifestAndOutputOnStdout() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.write(CLIScaffold.smallCheckpoint(), to: "in.safetensors")
            let result = try ToolRunner.run(["quantize", input, "-o", "-", "--manifest", "-", "--quiet"])
            let plain = try ToolRunner.run(["quantize", input, "-o", "-", "--quiet"])
            #expect(plain.status == 0 && !plain.stdout.isEmpty)
            #expect(result.status == 2, "\(result)")
            #expect(result.stdout.isEmpty || result.stdout == plain.stdout, "stdout must hold a valid checkpoint or nothing")
        }
    }

    @Test("a manifest that cannot be written leaves no checkpoint behind")
    func manifestFailureLeavesNothing() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.write(CLIScaffold.smallCheckpoint(), to: "in.safetensors")
            let output = dir.file("out.safetensors")
            let result = try ToolRunner.run(["quantize", input, "-o", output, "--manifest", dir.file("missing/m.json"), "--quiet"])
            CLIScaffold.expectOneErrorLine(result)
            #expect(result.stderr.contains("m.json"), "\(result.stderr)")
            let left = try dir.contents()
            #expect(left == ["in.safetensors"], "a failed run leaves no output")
        }
    }

    @Test("an output folder that does not exist is named in the error")
    func missingOutputFolder() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.write(CLIScaffold.smallCheckpoint(), to: "in.safetensors")
            let output = dir.file("missing/out.safetensors")
            let result = try ToolRunner.run(["quantize", input, "-o", output])
            CLIScaffold.expectOneErrorLine(result)
            #expect(try dir.contents() == ["in.safetensors"])
            #expect(result.stderr.contains(output + ":"), "\(result.stderr)")
        }
    }

    // MARK: quantize: streams

    @Test("-o - writes the same bytes as a file, and stdin gives the same output as the file",
          arguments: [CLIScaffold.casesBF16, CLIScaffold.tinyLlama])
    func standardStreams(_ fixture: String) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.copyFixture(fixture, as: "in.safetensors")
            let inputBytes = try ToolRunner.readFile(input)
            let fileRun = try ToolRunner.run(["quantize", input, "-o", dir.file("file.safetensors"), "--quiet"])
            #expect(fileRun.status == 0, "\(fileRun)")
            let fileOutput = try ToolRunner.readFile(dir.file("file.safetensors"))
            #expect(!fileOutput.isEmpty)

            let toStdout = try ToolRunner.run(["quantize", input, "-o", "-", "--quiet"])
            #expect(toStdout.status == 0, "\(toStdout)")
            #expect(toStdout.stderr.isEmpty)
            #expect(toStdout.stdout == fileOutput, "-o - must be byte-identical to the file output")

            let fromStdin = try ToolRunner.run(["quantize", "-", "-o", dir.file("stdin.safetensors"), "--quiet"], stdin: inputBytes)
            #expect(fromStdin.status == 0, "\(fromStdin)")
            #expect(try ToolRunner.readFile(dir.file("stdin.safetensors")) == fileOutput, "stdin input must give the same bytes")

            let pipeThrough = try ToolRunner.run(["quantize", "-", "-o", "-", "--quiet"], stdin: inputBytes)
            #expect(pipeThrough.status == 0, "\(pipeThrough)")
            #expect(pipeThrough.stdout == fileOutput)

            // -o - writes no manifest; the file runs do, and both describe the same input bytes.
            #expect(try dir.contents() == ["file.manifest.json", "file.safetensors", "in.safetensors", "stdin.manifest.json", "stdin.safetensors"])
            let fromFile = try CLIScaffold.jsonObject(try ToolRunner.readFile(dir.file("file.manifest.json")))
            let fromPipe = try CLIScaffold.jsonObject(try ToolRunner.readFile(dir.file("stdin.manifest.json")))
            let fileInput = try #require(fromFile["input"] as? [String: Any])
            let pipeInput = try #require(fromPipe["input"] as? [String: Any])
            #expect(pipeInput["path"] as? String == "<stdin>")
            #expect(fileInput["path"] as? String == input)
            #expect(pipeInput["sha256"] as? String == fileInput["sha256"] as? String)
            #expect(CLIScaffold.int(pipeInput["bytes"]) == inputBytes.count)
            let fileOut = try #require(fromFile["output"] as? [String: Any])
            let pipeOut = try #require(fromPipe["output"] as? [String: Any])
            #expect(pipeOut["sha256"] as? String == fileOut["sha256"] as? String)
        }
    }

    @Test("quantize --json prints the manifest on stdout, with the run's summary as 'run'")
    func quantizeJSON() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.write(CLIScaffold.smallCheckpoint(), to: "in.safetensors")
            let result = try ToolRunner.run(["quantize", input, "-o", dir.file("out.safetensors"), "--json", "--quiet"])
            #expect(result.status == 0, "\(result)")
            let printed = try JSONParser.parse(result.stdout)
            let written = try JSONParser.parse(try ToolRunner.readFile(dir.file("out.manifest.json")))
            let members = printed.objectValue ?? []
            #expect(members.last?.key == "run", "the summary comes last")
            #expect(JSONValue.object(members.filter { $0.key != "run" }) == written, "--json prints the manifest that was written")
            #expect(printed["run"]?["files"]?.arrayValue?.first?["bytes_out"]?.unsignedValue == UInt64(try ToolRunner.readFile(dir.file("out.safetensors")).count))
            #expect(CLIScaffold.int(try CLIScaffold.jsonObject(result.stdout)["schema_version"]) == 1)
        }
    }

    // MARK: The manifest

    @Test("the manifest is byte-identical across two runs with the same arguments")
    func manifestIsDeterministic() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.copyFixture(CLIScaffold.tinyLlama, as: "model.safetensors")
            let arguments = ["quantize", input, "--exclude", "*.mlp.down_proj", "--quiet"]
            #expect(try ToolRunner.run(arguments).status == 0)
            let firstManifest = try ToolRunner.readFile(dir.file("model.nvfp4.manifest.json"))
            let firstOutput = try ToolRunner.readFile(dir.file("model.nvfp4.safetensors"))
            try FileManager.default.removeItem(atPath: dir.file("model.nvfp4.manifest.json"))
            try FileManager.default.removeItem(atPath: dir.file("model.nvfp4.safetensors"))
            #expect(try ToolRunner.run(arguments).status == 0)
            #expect(try ToolRunner.readFile(dir.file("model.nvfp4.manifest.json")) == firstManifest)
            #expect(try ToolRunner.readFile(dir.file("model.nvfp4.safetensors")) == firstOutput)
            #expect(firstManifest.last == UInt8(ascii: "\n"))
        }
    }

    @Test("--hash chooses which files the manifest records a SHA-256 for", arguments: ["all", "output", "none"])
    func hashScopes(_ scope: String) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.copyFixture(CLIScaffold.tinyLlama, as: "model.safetensors")
            let output = dir.file("q.safetensors")
            let run = try ToolRunner.run(["quantize", input, "-o", output, "--hash", scope, "--quiet"])
            #expect(run.status == 0, "\(run)")
            let m = try CLIScaffold.jsonObject(try ToolRunner.readFile(dir.file("q.manifest.json")))
            let inputSum = (try #require(m["input"] as? [String: Any]))["sha256"]
            let outputSum = (try #require(m["output"] as? [String: Any]))["sha256"]
            if scope == "all" { #expect(inputSum as? String == (try CLIScaffold.sha256(input))) } else { #expect(inputSum is NSNull) }
            if scope == "none" { #expect(outputSum is NSNull) } else { #expect(outputSum as? String == (try CLIScaffold.sha256(output))) }
        }
        let bad = try ToolRunner.run(["quantize", CLIScaffold.tinyLlama, "-o", "/tmp/never.safetensors", "--hash", "md5"])
        #expect(bad.status == 2 && bad.stderrLines.count == 1 && bad.stderr.contains("--hash"), "\(bad)")
    }

    @Test("the manifest has the documented fields")
    func manifestFields() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.copyFixture(CLIScaffold.tinyLlama, as: "model.safetensors")
            let output = dir.file("q.safetensors")
            let arguments = ["quantize", input, "-o", output, "--exclude", "*.mlp.down_proj", "--quiet"]
            #expect(try ToolRunner.run(arguments).status == 0)
            let m = try CLIScaffold.jsonObject(try ToolRunner.readFile(dir.file("q.manifest.json")))

            #expect(CLIScaffold.int(m["schema_version"]) == 1)
            let tool = try #require(m["tool"] as? [String: Any])
            #expect(tool["name"] as? String == "nvfp4")
            #expect(tool["version"] as? String == nvfp4Version)
            #expect(CLIScaffold.strings(m["invocation"]) == ["nvfp4"] + arguments)

            let options = try #require(m["options"] as? [String: Any])
            #expect(options["format"] as? String == "torchao")
            #expect(options["scaling"] as? String == "two-level")
            #expect(options["numerics"] as? String == "cuda")
            #expect(options["activations"] as? String == "dynamic-nvfp4")
            #expect(options["method"] as? String == "rtn")
            #expect(CLIScaffold.int(options["block_size"]) == 16)
            #expect(CLIScaffold.strings(options["include"]) == [])
            #expect(CLIScaffold.strings(options["exclude"]) == ["*.mlp.down_proj"])

            for (key, path) in [("input", input), ("output", output)] {
                let file = try #require(m[key] as? [String: Any])
                #expect(file["path"] as? String == path)
                #expect(CLIScaffold.int(file["bytes"]) == (try ToolRunner.readFile(path)).count)
                if key == "output" {
                    #expect(file["sha256"] as? String == (try CLIScaffold.sha256(path)), "output.sha256 is the file's SHA-256")
                } else {
                    #expect(file["sha256"] is NSNull, "the input is hashed only with --hash all")
                }
            }

            let inputHeader = try SafetensorsReader(path: input).header
            let outputTensors = try CLIScaffold.tensors(output)
            let entries = try #require(m["tensors"] as? [[String: Any]])
            #expect(entries.compactMap { $0["name"] as? String } == inputHeader.tensors.map(\.name), "one entry per input tensor, in file order")
            var quantized = 0
            var quantizedElements = 0
            for (entry, tensor) in zip(entries, inputHeader.tensors) {
                #expect(entry["dtype"] as? String == tensor.dtype.rawValue)
                #expect(CLIScaffold.ints(entry["shape"]) == tensor.shape)
                let outputs = try #require(CLIScaffold.strings(entry["outputs"]))
                for name in outputs { #expect(outputTensors[name] != nil, "output \(name) of \(tensor.name) exists") }
                switch entry["action"] as? String {
                case "quantized":
                    quantized += 1
                    quantizedElements += tensor.elementCount
                    let module = String(tensor.name.dropLast(".weight".count))
                    #expect(Set(outputs) == [module + "._weight_qdata", module + "._weight_scale", module + "._weight_per_tensor_scale"])
                    #expect(entry["reason"] == nil)
                    let amax = try #require(CLIScaffold.double(entry["amax"]))
                    #expect(amax > 0)
                    let pts = try #require(CLIScaffold.double(entry["per_tensor_scale"]))
                    let bits = try #require(entry["per_tensor_scale_bits"] as? String)
                    let stored = try #require(outputTensors[module + "._weight_per_tensor_scale"])
                    let storedBits = stored.bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
                    #expect(Float(pts).bitPattern == storedBits, "per_tensor_scale is the stored fp32 value")
                    #expect(bits == "0x" + String(repeating: "0", count: 8 - String(storedBits, radix: 16).count) + String(storedBits, radix: 16))
                    let error = try #require(entry["error"] as? [String: Any])
                    let rmse = try #require(CLIScaffold.double(error["relative_rmse"]))
                    #expect(rmse > 0 && rmse < 0.2)
                    #expect(CLIScaffold.double(error["sqnr_db"]) != nil)
                    #expect((CLIScaffold.double(error["max_abs_error"]) ?? -1) > 0)
                case "kept":
                    #expect(outputs == [tensor.name])
                    #expect(outputTensors[tensor.name]?.bytes == (try SafetensorsReader(path: input).withBytes(of: tensor) { Array($0) }))
                    let reason = try #require(entry["reason"] as? String)
                    #expect(KeepReason(rawValue: reason) != nil, "documented reason: \(reason)")
                default:
                    Issue.record("tensor \(tensor.name): action \(String(describing: entry["action"]))")
                }
            }
            let reasons = Dictionary(entries.compactMap { e in (e["reason"] as? String).map { (e["name"] as! String, $0) } }, uniquingKeysWith: { a, _ in a })
            #expect(reasons["model.embed_tokens.weight"] == KeepReason.embedding.rawValue)
            #expect(reasons["lm_head.weight"] == KeepReason.lmHead.rawValue)
            #expect(reasons["model.norm.weight"] == KeepReason.norm.rawValue)
            #expect(reasons["model.layers.0.mlp.down_proj.weight"] == KeepReason.excluded.rawValue)
            #expect(quantized == 12, "q/k/v/o, gate and up projections of 2 layers")

            let summary = try #require(m["summary"] as? [String: Any])
            #expect(CLIScaffold.int(summary["tensors"]) == inputHeader.tensors.count)
            #expect(CLIScaffold.int(summary["quantized"]) == quantized)
            #expect(CLIScaffold.int(summary["kept"]) == inputHeader.tensors.count - quantized)
            #expect(CLIScaffold.int(summary["quantized_elements"]) == quantizedElements)
            #expect((CLIScaffold.double(summary["relative_rmse"]) ?? 1) < 0.2)
            #expect(CLIScaffold.double(summary["sqnr_db"]) != nil)
        }
    }

    // MARK: inspect

    @Test("inspect --json lists the tensors", arguments: [CLIScaffold.casesBF16, CLIScaffold.expectedTwoLevelCUDA, CLIScaffold.tinyLlama])
    func inspectJSON(_ fixture: String) throws {
        let path = ToolRunner.fixture(fixture)
        let result = try ToolRunner.run(["inspect", path, "--json"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stderr.isEmpty)
        let json = try CLIScaffold.jsonObject(result.stdout)
        let tensors = try #require(json["tensors"] as? [[String: Any]])
        let header = try SafetensorsReader(path: path).header
        #expect(tensors.count == header.tensors.count)
        for (entry, tensor) in zip(tensors, header.tensors) {
            #expect(entry["name"] as? String == tensor.name)
            #expect(entry["dtype"] as? String == tensor.dtype.rawValue)
            #expect(CLIScaffold.ints(entry["shape"]) == tensor.shape)
        }
        let weights = try #require(json["nvfp4_weights"] as? [[String: Any]])
        #expect(weights.count == (fixture == CLIScaffold.expectedTwoLevelCUDA ? 20 : 0))

        let fromStdin = try ToolRunner.run(["inspect", "-", "--json"], stdin: try ToolRunner.readFile(path))
        #expect(fromStdin.status == 0, "\(fromStdin)")
        let streamed = try #require(try CLIScaffold.jsonObject(fromStdin.stdout)["tensors"] as? [[String: Any]])
        #expect(streamed.compactMap { $0["name"] as? String } == header.tensors.map(\.name))
    }

    @Test("inspect rejects a file that is not safetensors")
    func inspectRejectsGarbage() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let path = try dir.write(Array("this is not a checkpoint".utf8), to: "notes.safetensors")
            let result = try ToolRunner.run(["inspect", path])
            CLIScaffold.expectOneErrorLine(result)
            #expect(result.stderr.contains(path))
        }
    }

    // MARK: verify

    @Test("verify passes at 0.15, fails at 0.01, and cannot compare a file that lacks a tensor")
    func verify() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let original = try dir.copyFixture(CLIScaffold.casesBF16, as: "cases.safetensors")
            let quantized = dir.file("q.safetensors")
            #expect(try ToolRunner.run(["quantize", original, "-o", quantized, "--quiet"]).status == 0)

            for arguments in [[], ["--tolerance", "0.15"], ["--tolerance=0.15"]] {
                let pass = try ToolRunner.run(["verify", original, quantized] + arguments)
                #expect(pass.status == 0, "\(pass)")
                #expect(pass.stderr.isEmpty)
                #expect(pass.stdoutText.contains("ok: 20 NVFP4 weights"), "\(pass)")
            }

            let fail = try ToolRunner.run(["verify", original, quantized, "--tolerance", "0.01"])
            #expect(fail.status == 1, "\(fail)")
            #expect(fail.stdoutText.contains("FAILED"), "\(fail)")
            #expect(fail.stdoutText.contains("exceeds tolerance"), "\(fail)")

            let json = try ToolRunner.run(["verify", original, quantized, "--json"])
            #expect(json.status == 0, "\(json)")
            let report = try CLIScaffold.jsonObject(json.stdout)
            #expect(report["passed"] as? Bool == true)
            #expect(CLIScaffold.double(report["tolerance"]) == 0.15)
            #expect((report["mismatches"] as? [Any])?.isEmpty == true)
            let tensors = try #require(report["tensors"] as? [[String: Any]])
            #expect(tensors.count == 20)
            for t in tensors {
                #expect(t["kind"] as? String == "quantized")
                #expect(t["passed"] as? Bool == true)
                #expect((CLIScaffold.double(t["relative_rmse"]) ?? 1) <= 0.15)
            }
            let failJSON = try ToolRunner.run(["verify", original, quantized, "--json", "--tolerance", "0.01"])
            #expect(failJSON.status == 1)
            #expect(try CLIScaffold.jsonObject(failJSON.stdout)["passed"] as? Bool == false)

            // A quantized file made from an input without `tiny.weight`.
            let all = try CLIScaffold.tensors(original)
            let header = try SafetensorsReader(path: original).header
            let reduced = try dir.write(
                CLIScaffold.safetensors(header.tensors.filter { $0.name != "tiny.weight" }.map { ($0.name, all[$0.name]!) }),
                to: "reduced.safetensors")
            let lacking = dir.file("lacking.safetensors")
            #expect(try ToolRunner.run(["quantize", reduced, "-o", lacking, "--quiet"]).status == 0)
            #expect(try CLIScaffold.tensors(lacking)["tiny._weight_qdata"] == nil)
            let missing = try ToolRunner.run(["verify", original, lacking])
            CLIScaffold.expectOneErrorLine(missing, stdoutEmpty: false)
            #expect(missing.stderr.contains("tiny.weight") && missing.stderr.contains("missing"), "\(missing.stderr)")
        }
    }

    @Test("verify reads the quantized file from stdin")
    func verifyFromStdin() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let original = try dir.copyFixture(CLIScaffold.tinyLlama, as: "model.safetensors")
            let quantized = dir.file("q.safetensors")
            #expect(try ToolRunner.run(["quantize", original, "-o", quantized, "--quiet"]).status == 0)
            let result = try ToolRunner.run(["verify", original, "-", "--quiet"], stdin: try ToolRunner.readFile(quantized))
            #expect(result.status == 0, "\(result)")
            #expect(result.stdoutText.hasPrefix("ok: 14 NVFP4 weights"), "\(result)")
        }
    }

    // MARK: dequantize

    @Test("dequantize equals torchao's NVFP4Tensor.dequantize(bfloat16) for every weight")
    func dequantizeMatchesTorchAO() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.copyFixture(CLIScaffold.casesBF16, as: "cases.safetensors")
            let quantized = dir.file("q.safetensors")
            #expect(try ToolRunner.run(["quantize", input, "-o", quantized, "--quiet"]).status == 0)
            let dense = dir.file("dense.safetensors")
            let result = try ToolRunner.run(["dequantize", quantized, "-o", dense])
            #expect(result.status == 0, "\(result)")
            #expect(result.stdout.isEmpty)

            let ours = try CLIScaffold.tensors(dense)
            let torchao = try CLIScaffold.tensors(ToolRunner.fixture(CLIScaffold.expectedDequantBF16))
            #expect(torchao.count == 20)
            #expect(Set(ours.keys) == Set(torchao.keys))
            for (name, expected) in torchao {
                let mine = try #require(ours[name], "missing \(name)")
                #expect(mine.dtype == expected.dtype && mine.shape == expected.shape, "\(name)")
                #expect(mine.bytes == expected.bytes, "tensor \(name) differs from torchao's dequantize")
            }

            // Through stdin and stdout, the same bytes.
            let piped = try ToolRunner.run(["dequantize", "-", "-o", "-", "--quiet"], stdin: try ToolRunner.readFile(quantized))
            #expect(piped.status == 0, "\(piped)")
            #expect(piped.stdout == (try ToolRunner.readFile(dense)))

            // dequantize refuses to overwrite without --force.
            let refused = try ToolRunner.run(["dequantize", quantized, "-o", dense])
            CLIScaffold.expectOneErrorLine(refused)
            let selfOverwrite = try ToolRunner.run(["dequantize", quantized, "-o", quantized, "--force"])
            CLIScaffold.expectOneErrorLine(selfOverwrite)
            #expect(try CLIScaffold.tensors(quantized)["tiny._weight_qdata"] != nil, "the input survives")
        }
    }
}
