import Foundation
import NVFP4Kit
import Testing

// docs/json.md against the real outputs: every `--json` output and manifest of the fixtures,
// flattened to dotted paths, must have every member documented, every documented non-optional
// member present, and the documented types.

/// Each output's schema, from the sections of docs/json.md.
private struct Schemas {
    let fileManifest, fileStdout, folderManifest, folderStdout, partFile: JSONSchema
    let dryRun, verify, inspectFile, inspectFolder, check: JSONSchema

    init(_ doc: JSONSchemaDoc) throws {
        typealias P = JSONSchema.Part
        let manifest = [P(section: "manifest-common"), P(section: "options"), P(section: "fusion")]
        let nestedTensors = P(section: "tensor-entry", from: "tensors[]", to: "shards[].tensors[]")
        fileManifest = try JSONSchema(doc, manifest + [P(section: "quantize-file"), P(section: "tensor-entry")])
        fileStdout = try JSONSchema(doc, manifest + [P(section: "quantize-file"), P(section: "tensor-entry"), P(section: "run")])
        let folder = manifest + [P(section: "quantize-folder"), P(section: "shard-record"), nestedTensors]
        folderManifest = try JSONSchema(doc, folder)
        folderStdout = try JSONSchema(doc, folder + [P(section: "run")])
        partFile = try JSONSchema(doc, [
            P(section: "part-file"), P(section: "options", from: "options", to: "summary.options"),
            P(section: "fusion", from: "fusion", to: "summary.fusion"), P(section: "shard-record"), nestedTensors,
        ])
        dryRun = try JSONSchema(doc, [P(section: "dry-run")])
        verify = try JSONSchema(doc, [P(section: "verify")])
        inspectFile = try JSONSchema(doc, [P(section: "inspect-file"), P(section: "inspect-model")])
        inspectFolder = try JSONSchema(doc, [P(section: "inspect-folder"), P(section: "inspect-model")])
        check = try JSONSchema(doc, [P(section: "check")])
    }
}

/// Runs commands and checks what they print or write, collecting the documented paths met.
private final class OutputChecker {
    let schemas: Schemas
    let dir: ToolRunner.TemporaryDirectory
    var seen = Set<String>()

    init(_ schemas: Schemas, _ dir: ToolRunner.TemporaryDirectory) {
        self.schemas = schemas
        self.dir = dir
    }

    /// Checks `json` against `schema`, naming `what` in every failure.
    @discardableResult
    func check(_ json: [UInt8], _ schema: JSONSchema, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) -> JSONValue? {
        let document: JSONValue
        do { document = try JSONParser.parse(json) } catch {
            Issue.record("\(what): not JSON (\(error)): \(String(decoding: json.prefix(300), as: UTF8.self))", sourceLocation: sourceLocation)
            return nil
        }
        let problems = schema.problems(in: document, seen: &seen)
        #expect(problems.isEmpty, "\(what) departs from docs/json.md:\n\(problems.joined(separator: "\n"))", sourceLocation: sourceLocation)
        #expect(document["schema_version"]?.unsignedValue == 1, "\(what): schema_version", sourceLocation: sourceLocation)
        return document
    }

    /// Runs `nvfp4 arguments`, expects `status`, and checks its stdout against `schema`.
    @discardableResult
    func run(_ arguments: [String], _ schema: JSONSchema, status: Int32 = 0, sourceLocation: SourceLocation = #_sourceLocation) throws -> JSONValue? {
        let result = try ToolRunner.run(arguments)
        let what = "nvfp4 " + arguments.joined(separator: " ")
        #expect(result.status == status, "\(what): \(result)", sourceLocation: sourceLocation)
        return check(result.stdout, schema, what, sourceLocation: sourceLocation)
    }

    /// Checks a file written by a run.
    func file(_ path: String, _ schema: JSONSchema, sourceLocation: SourceLocation = #_sourceLocation) throws {
        check(try ToolRunner.readFile(path), schema, path, sourceLocation: sourceLocation)
    }
}

/// A JSON object text from `members` (values already JSON).
private func objectText(_ members: [(String, String)]) -> String {
    "{" + members.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}"
}

@Suite("docs/json.md")
struct JSONDocsTests {
    @Test("every output's section is there, and each document starts with schema_version")
    func sections() throws {
        let doc = try JSONSchemaDoc.load()
        for name in ["manifest-common", "part-file", "run", "dry-run", "verify", "inspect-file", "inspect-folder", "check"] {
            #expect(doc.sections[name]?.contains { $0.path.hasSuffix("schema_version") && $0.field == .init(types: ["integer"], optional: false, verbatim: false) } == true, "\(name)")
        }
        for name in ["options", "fusion", "tensor-entry", "shard-record", "inspect-model"] { #expect(doc.sections[name]?.isEmpty == false, "\(name)") }
        let text = String(decoding: try ToolRunner.readFile(FixturePaths.root + "/docs/json.md"), as: UTF8.self)
        for reason in KeepReason.allCases { #expect(text.contains("`\(reason.rawValue)`"), "keep reason '\(reason.rawValue)' is not in docs/json.md") }
    }

    @Test("the checker finds an undocumented member, a missing one and a wrong type")
    func checkerCanFail() throws {
        let doc = try JSONSchemaDoc.parse("""
            <!-- json: t -->
            | field | type | meaning |
            |---|---|---|
            | `a` | integer | . |
            | `b` | string\\|null (optional) | . |
            | `m` | object | . |
            | `m.<k>` | number | . |
            | `l` | array | . |
            | `l[]` | object | . |
            | `l[].x` | boolean | . |
            """)
        let schema = try JSONSchema(doc, [.init(section: "t")])
        var seen = Set<String>()
        let good = try JSONParser.parse(#"{"a": 1, "m": {"any.key": 2.5, "k2": 3}, "l": [{"x": true}]}"#)
        #expect(schema.problems(in: good, seen: &seen).isEmpty)
        let bad = try JSONParser.parse(#"{"b": 3, "m": {"k": "s"}, "l": [{"x": true, "y": 1}], "z": null}"#)
        #expect(Set(schema.problems(in: bad, seen: &seen)) == [
            "a: documented, but missing", "b: is integer, documented null|string", "m.<k>: is string, documented number",
            "l[].y: not documented", "z: not documented",
        ])
        #expect(throws: (any Error).self) { try JSONSchemaDoc.parse("<!-- json: t -->\n| `a` | int | . |\n") }
    }

    @Test("every --json output and manifest of the fixtures matches docs/json.md", .timeLimit(.minutes(10)))
    func realOutputs() throws {
        let doc = try JSONSchemaDoc.load()
        let schemas = try Schemas(doc)
        try ToolRunner.withTemporaryDirectory { dir in
            let c = OutputChecker(schemas, dir)
            try singleFiles(c)
            try folders(c)
            try reports(c)
            // Every documented path was met at least once (a row no output has is stale).
            var missing: [String] = []
            for (section, rows) in doc.sections.sorted(by: { $0.key < $1.key }) {
                for row in rows where !c.seen.contains(section + "|" + row.path) {
                    missing.append(section + "|" + row.path)
                }
            }
            #expect(missing.isEmpty, "documented but produced by no fixture run:\n\(missing.joined(separator: "\n"))")
        }
    }

    /// quantize FILE in every layout and its options; dry-run.
    private func singleFiles(_ c: OutputChecker) throws {
        let s = c.schemas
        let tiny = FixturePaths.tinyLlama
        let plan = try #require(try c.run(["quantize", tiny, "-o", c.dir.file("plan.safetensors"), "--dry-run", "--json"], s.dryRun))
        // The quantized modules and their input widths, for calibration and importance files.
        let modules: [(name: String, columns: Int)] = (plan["tensors"]?.arrayValue ?? []).compactMap { t in
            guard t["action"]?.stringValue == "quantize", let name = t["name"]?.stringValue, let k = t["shape"]?.arrayValue?.last?.unsignedValue else { return nil }
            return (String(name.dropLast(".weight".count)), Int(k))
        }
        #expect(modules.count == 14)
        let calibration = try c.dir.write(Array(objectText(modules.map { ($0.name, "2.5") }).utf8), to: "amax.json")
        let importance = try c.dir.write(Array(("{\"format\": \"nvfp4-importance\", \"version\": 1, \"modules\": "
            + objectText(modules.map { m in (m.name, "[" + (0..<m.columns).map { String(1 + $0 % 7) }.joined(separator: ",") + "]") }) + "}").utf8), to: "importance.json")
        let statistics = try c.dir.write(statisticsFile(
            (0..<2).flatMap { l in [("model.layers.\(l).self_attn.q_proj", 128), ("model.layers.\(l).self_attn.o_proj", 128), ("model.layers.\(l).mlp.gate_proj", 128), ("model.layers.\(l).mlp.down_proj", 352)] },
            shared: Dictionary(uniqueKeysWithValues: (0..<2).flatMap { l in [("model.layers.\(l).self_attn.k_proj", "model.layers.\(l).self_attn.q_proj"), ("model.layers.\(l).self_attn.v_proj", "model.layers.\(l).self_attn.q_proj"), ("model.layers.\(l).mlp.up_proj", "model.layers.\(l).mlp.gate_proj")] })),
            to: "stats.safetensors")
        let runs: [(name: String, extra: [String])] = [
            ("torchao", []),
            ("ct", ["--format", "compressed-tensors", "--hash", "all", "--exclude", "model.layers.0.self_attn.q_proj.weight"]),
            ("modelopt", ["--format", "modelopt", "--calibration", calibration]),
            ("mse", ["--method", "mse", "--importance", importance, "--include", "model.layers.*"]),
            ("single", ["--no-global-scale", "--hash", "none"]),
            ("gptq", ["--method", "gptq", "--statistics", statistics]),
        ]
        for (name, extra) in runs {
            let out = c.dir.file("\(name).safetensors")
            try c.run(["quantize", tiny, "-o", out, "--json"] + extra, s.fileStdout)
            try c.file(c.dir.file("\(name).manifest.json"), s.fileManifest)
            try c.run(["quantize", tiny, "-o", c.dir.file("plan-\(name).safetensors"), "--dry-run", "--json"] + extra, s.dryRun)
        }
        try c.run(["quantize", tiny, "-o", c.dir.file("x.safetensors"), "--dry-run", "--json", "--exclude", "no.such.tensor"], s.dryRun)
    }

    /// quantize FOLDER (stacked experts too), --shard workers' part files, merge.
    private func folders(_ c: OutputChecker) throws {
        let s = c.schemas
        for (model, format) in [(ModelFixtures.llama, "torchao"), (ModelFixtures.qwenMoE, "compressed-tensors"), (ModelFixtures.qwenMoE, "modelopt")] {
            let out = c.dir.file("\(format)-\((model as NSString).lastPathComponent)")
            try c.run(["quantize", model, "-o", out, "--format", format, "--json", "--hash", "all", "--tensor-parallel", "2"], s.folderStdout)
            try c.file(out + "/nvfp4-manifest.json", s.folderManifest)
            try c.run(["quantize", model, "-o", c.dir.file("plan"), "--format", format, "--dry-run", "--json"], s.dryRun)
        }
        let sharded = c.dir.file("sharded")
        for i in 0..<2 {
            let w = try ToolRunner.run(["quantize", ModelFixtures.llama, "-o", sharded, "--format", "modelopt", "--shard", "\(i)/2", "-q"])
            #expect(w.status == 0, "\(w)")
            try c.file(sharded + "/nvfp4-part-\(i)-of-2.json", s.partFile)
        }
        try c.run(["merge", sharded, "--json"], s.folderManifest)
        try c.file(sharded + "/nvfp4-manifest.json", s.folderManifest)

        // Stacked [E, N, K] experts: per-expert scales (inspect's per_tensor_scale array).
        let stacked = try c.dir.makeSubfolder("stacked")
        try StackedExpertsTests.write(stacked + "/model.safetensors", [("model.layers.0.mlp.experts.gate_up.weight", [3, 128, 64], StackedExpertsTests.bf16(experts: 3, rows: 128, columns: 64))])
        try c.dir.write(Array(#"{"architectures":["SomeMoeForCausalLM"]}"#.utf8), to: "stacked/config.json")
        try c.run(["quantize", stacked, "-o", c.dir.file("stacked-out"), "--dry-run", "--json"], s.dryRun)
        try c.run(["quantize", stacked, "-o", c.dir.file("stacked-out"), "--json"], s.folderStdout)
        try c.run(["inspect", c.dir.file("stacked-out"), "--json"], s.inspectFolder)
    }

    /// verify (pass, fail, mismatch, manifest), inspect (files and folders), check.
    private func reports(_ c: OutputChecker) throws {
        let s = c.schemas
        let tiny = FixturePaths.tinyLlama
        let out = c.dir.file("torchao.safetensors")
        try c.run(["verify", tiny, out, "--json"], s.verify)
        try c.run(["verify", tiny, out, "--json", "--tolerance", "0", "--compare-method", "mse"], s.verify, status: 1)
        try c.run(["verify", ModelFixtures.llama, c.dir.file("modelopt-qwen-moe"), "--json"], s.verify, status: 2)
        // A manifest whose recorded output digest is wrong.
        let manifest = String(decoding: try ToolRunner.readFile(c.dir.file("ct.manifest.json")), as: UTF8.self)
        let digest = try #require(try JSONParser.parse(manifest)["output"]?["sha256"]?.stringValue)
        try c.dir.write(Array(manifest.replacingOccurrences(of: digest, with: String(repeating: "0", count: 64)).utf8), to: "bad.manifest.json")
        try c.run(["verify", tiny, c.dir.file("ct.safetensors"), "--manifest", c.dir.file("bad.manifest.json"), "--json"], s.verify, status: 1)

        for file in [out, c.dir.file("modelopt.safetensors"), c.dir.file("single.safetensors"), tiny, ToolRunner.fixture("llm-compressor/nvfp4/model.safetensors")] {
            try c.run(["inspect", file, "--json"], s.inspectFile)
        }
        for folder in [ToolRunner.fixture("llm-compressor/nvfp4"), ToolRunner.fixture("modelopt/nvfp4"), c.dir.file("compressed-tensors-qwen-moe"), ModelFixtures.llama,
                       ToolRunner.fixture("fp8/deepseek"), ToolRunner.fixture("fp8/ct")] {
            try c.run(["inspect", folder, "--json"], s.inspectFolder)
        }
        // A bare block-FP8 file: without a block size its block-scaled weights are listed as unconvertible.
        try c.run(["inspect", ToolRunner.fixture("fp8/block-f32.safetensors"), "--json"], s.inspectFile)
        // FP8 input: the options it records.
        try c.run(["quantize", ToolRunner.fixture("fp8/deepseek"), "-o", c.dir.file("fp8-out"), "--mla-attention", "quantize", "--json", "-q"], s.folderStdout)
        try c.run(["quantize", ToolRunner.fixture("fp8/block-f32.safetensors"), "-o", c.dir.file("fp8-bare.safetensors"), "--fp8-block-size", "128x128", "--json", "-q"], s.fileStdout)

        let unfused = ToolRunner.fixture("llm-compressor/nvfp4a16-unfused")
        try c.run(["check", unfused, "--json"], s.check, status: 1)
        try c.run(["check", unfused, "--json", "--skip", "fused-global-scale-mismatch"], s.check)
        try c.run(["check", c.dir.file("modelopt-qwen-moe"), "--json"], s.check)
    }
}
