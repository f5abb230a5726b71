import Foundation
import NVFP4Kit
import Testing

/// `quantize --dry-run` shows what a real run then does, writes nothing, and mistakes in
/// `--include`/`--exclude` or a run with nothing to quantize are caught before any work.
@Suite("dry run and early mistakes")
struct DryRunTests {
    @Test("a dry run over an existing output warns that the real run needs --force (file, manifest, folder); --force and --quiet do not", arguments: [false, true])
    func existingOutput(folder: Bool) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let input = folder ? ModelFixtures.qwenMoE : FixturePaths.tinyLlama
        let output = scratch.file(folder ? "out" : "out.safetensors")
        let first = try ToolRunner.run(["quantize", input, "-o", output])
        try #require(first.status == 0, "\(first)")
        let before = try FileManager.default.contentsOfDirectory(atPath: scratch.path).sorted()
        let dry = try ToolRunner.run(["quantize", input, "-o", output, "--dry-run"])
        #expect(dry.status == 0, "\(dry)")
        let warnings = dry.stderr.split(separator: "\n").filter { $0.hasPrefix("warning: ") }
        let expected = folder ? [output] : [output, scratch.file("out.manifest.json")]
        #expect(warnings.count == expected.count, "\(dry.stderr)")
        for (line, path) in zip(warnings, expected) {
            #expect(line.hasPrefix("warning: \(path) already exists (") && line.hasSuffix("); the real run needs --force to replace it"), "\(line)")
        }
        let real = try ToolRunner.run(["quantize", input, "-o", output])
        #expect(real.status == 2 && real.stderr.contains("already exists"), "the run the warning announced: \(real)")
        for extra in [["--force"], ["--quiet"]] {
            let quietRun = try ToolRunner.run(["quantize", input, "-o", output, "--dry-run"] + extra)
            #expect(quietRun.status == 0 && !quietRun.stderr.contains("already exists"), "\(extra): \(quietRun)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).sorted() == before, "a dry run writes nothing")
    }

    @Test("the dry-run plan matches what the real run writes: decisions, files, sizes", arguments: CheckpointFormat.allCases, [false, true])
    func planMatchesRun(format: CheckpointFormat, folder: Bool) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let input = folder ? ModelFixtures.qwenMoE : FixturePaths.tinyLlama
        let output = scratch.file(folder ? "out" : "out.safetensors")
        let common = ["quantize", input, "-o", output, "--format", format.rawValue, "--exclude", "*.q_proj"]
        let dry = try ToolRunner.run(common + ["--dry-run", "--json"])
        try #require(dry.status == 0, "\(dry)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).isEmpty, "a dry run writes nothing")
        let plan = try JSONParser.parse(Array(dry.stdout))
        #expect(plan["schema_version"]?.unsignedValue == 1)
        let run = try ToolRunner.run(common)
        try #require(run.status == 0, "\(run)")

        // Every tensor's action and reason is what the manifest records.
        let manifestPath = folder ? output + "/" + FolderQuantizeJob.manifestFileName : scratch.file("out.manifest.json")
        let manifest = try ModelFixtures.json(manifestPath)
        let entries = manifest["tensors"]?.arrayValue ?? manifest["shards"]?.arrayValue?.flatMap { $0["tensors"]?.arrayValue ?? [] } ?? []
        let recorded = Dictionary(entries.map { ($0["name"]!.stringValue!, $0) }, uniquingKeysWith: { a, _ in a })
        let rows = plan["tensors"]?.arrayValue ?? []
        #expect(rows.count == recorded.count)
        for row in rows {
            let name = row["name"]!.stringValue!
            let entry = try #require(recorded[name], "\(name) is not in the manifest")
            #expect((row["action"]?.stringValue == "quantize") == (entry["action"]?.stringValue == "quantized"), "\(name)")
            #expect(row["reason"]?.stringValue == entry["reason"]?.stringValue, "\(name)")
        }
        // The planned files and sizes are the files written.
        for file in plan["output_files"]?.arrayValue ?? [] {
            let path = folder ? output + "/" + file["name"]!.stringValue! : file["name"]!.stringValue!
            let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int
            #expect(size == file["bytes"]?.unsignedValue.map(Int.init), "\(path)")
        }
        #expect(plan["totals"]?["quantized"]?.unsignedValue == UInt64(entries.filter { $0["action"]?.stringValue == "quantized" }.count))
    }

    @Test("the text dry run lists every tensor and the totals, and names the output")
    func text() throws {
        let result = try ToolRunner.run(["quantize", FixturePaths.tinyLlama, "--dry-run", "--format", "modelopt"])
        #expect(result.status == 0, "\(result)")
        let text = result.stdoutText
        #expect(text.contains("model.layers.0.self_attn.{q_proj,k_proj,v_proj} (shared scale)"))
        #expect(text.contains("plan (modelopt): quantize 14 of 21 tensors"))
        #expect(text.contains("model.nvfp4.safetensors; nothing written (--dry-run)"))
        #expect(!FileManager.default.fileExists(atPath: FixturePaths.root + "/Fixtures/tiny-llama/model.nvfp4.safetensors"))
    }

    @Test("an --include that matches nothing is an error, an --exclude that matches nothing a warning", arguments: [false, true])
    func globs(folder: Bool) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let input = folder ? ModelFixtures.llama : FixturePaths.tinyLlama
        let output = scratch.file("out")
        let include = try ToolRunner.run(["quantize", input, "-o", output, "--include", "q_proj"])
        #expect(include.status == 2)
        #expect(include.stderrLines.count == 1 && include.stderr.contains("--include 'q_proj' matches no tensor"), "\(include)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).isEmpty)
        let exclude = try ToolRunner.run(["quantize", input, "-o", output, "--exclude", "*.nothing"])
        #expect(exclude.status == 0, "\(exclude)")
        #expect(exclude.stderr.contains("warning: --exclude '*.nothing' matches no tensor"), "\(exclude)")
    }

    @Test("a run that would quantize nothing is exit 2 with the reasons, and writes nothing", arguments: [false, true])
    func nothingToQuantize(folder: Bool) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let input = folder ? ModelFixtures.llama : FixturePaths.tinyLlama
        let result = try ToolRunner.run(["quantize", input, "-o", scratch.file("out"), "--exclude", "*_proj"])
        #expect(result.status == 2)
        #expect(result.stderrLines.count == 1 && result.stderr.contains("no tensor would be quantized") && result.stderr.contains("matched --exclude"), "\(result)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).isEmpty)
    }
}

/// What is already at the output is named before anything is replaced.
@Suite("existing outputs")
struct ExistingOutputTests {
    @Test("an existing output is described, and --force says what it replaces")
    func described() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let folder = scratch.file("out")
        #expect(try ToolRunner.run(["quantize", ModelFixtures.llama, "-o", folder, "-q"]).status == 0)
        let refused = try ToolRunner.run(["quantize", ModelFixtures.llama, "-o", folder])
        #expect(refused.status == 2 && refused.stderr.contains("already exists (an nvfp4 output folder of ") && refused.stderr.contains("use --force"), "\(refused)")
        let replaced = try ToolRunner.run(["quantize", ModelFixtures.llama, "-o", folder, "--force"])
        #expect(replaced.status == 0 && replaced.stderrLines.first?.hasPrefix("replacing \(folder): an nvfp4 output folder of ") == true, "\(replaced)")
        let file = scratch.file("out.safetensors")
        #expect(try ToolRunner.run(["quantize", FixturePaths.tinyLlama, "-o", file, "-q"]).status == 0)
        let again = try ToolRunner.run(["quantize", FixturePaths.tinyLlama, "-o", file])
        #expect(again.status == 2 && again.stderr.contains("already exists (a file of "), "\(again)")
    }

    @Test("a folder where a single file is to be written is refused, even with --force", arguments: ["quantize", "dequantize"])
    func folderForFile(command: String) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let folder = scratch.file("d")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var input = FixturePaths.tinyLlama
        if command == "dequantize" {
            input = scratch.file("q.safetensors")
            #expect(try ToolRunner.run(["quantize", FixturePaths.tinyLlama, "-o", input, "-q"]).status == 0)
        }
        let result = try ToolRunner.run([command, input, "-o", folder, "--force"])
        #expect(result.status == 2 && result.stderrLines.count == 1 && result.stderr.contains("\(folder) is a folder (an empty folder); this writes one file"), "\(result)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).isEmpty)
    }
}
