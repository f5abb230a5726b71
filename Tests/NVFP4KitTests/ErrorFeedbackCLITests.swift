import Foundation
import NVFP4Kit
import Testing

// End-to-end tests of `--method gptq --statistics`: every layout, fused groups, stacked experts,
// verify at the default tolerance, and the errors.

/// A statistics file (`docs/quality.md`): one `F32 [K, K]` moment matrix per input, with `shared` aliases.
func statisticsFile(_ inputs: [(module: String, columns: Int)], shared: [String: String] = [:], tokens: String = "4096") -> [UInt8] {
    let plan = SafetensorsLayoutPlan(
        tensors: inputs.map { PlannedTensor(name: $0.module, dtype: .f32, shape: [$0.columns, $0.columns]) },
        metadata: [("format", "nvfp4-statistics"), ("version", "1"), ("tokens", tokens),
                   ("shared_inputs", "{" + shared.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \"\($0.value)\"" }.joined(separator: ", ") + "}")])
    var bytes = plan.headerBytes
    for input in inputs {
        let h = ErrorFeedbackTests.moments(columns: input.columns, samples: 3 * input.columns, seed: UInt64(input.columns + input.module.count))
        for v in h { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
    }
    return bytes
}

/// tiny-llama's distinct inputs: q/k/v share one, gate/up share one.
private func tinyLlamaStatistics(dropping dropped: String? = nil, downColumns: Int = 352) -> [UInt8] {
    var inputs: [(module: String, columns: Int)] = []
    var shared: [String: String] = [:]
    for layer in 0..<2 {
        let p = "model.layers.\(layer)"
        inputs += [("\(p).self_attn.q_proj", 128), ("\(p).self_attn.o_proj", 128), ("\(p).mlp.gate_proj", 128), ("\(p).mlp.down_proj", downColumns)]
        shared["\(p).self_attn.k_proj"] = "\(p).self_attn.q_proj"
        shared["\(p).self_attn.v_proj"] = "\(p).self_attn.q_proj"
        shared["\(p).mlp.up_proj"] = "\(p).mlp.gate_proj"
    }
    if let dropped { inputs.removeAll { $0.module == dropped } }
    return statisticsFile(inputs, shared: shared)
}

@Suite("nvfp4 --method gptq")
struct ErrorFeedbackCLITests {
    @Test("every tensor solved with feedback, verify passes at the default tolerance, bytes independent of threads",
          arguments: ["torchao", "compressed-tensors", "modelopt"])
    func singleFile(format: String) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.copyFixture("tiny-llama/model.safetensors", as: "model.safetensors")
            let stats = try dir.write(tinyLlamaStatistics(), to: "stats.safetensors")
            for threads in ["1", "3"] {
                let r = try ToolRunner.run([
                    "quantize", input, "-o", dir.file("g\(threads).safetensors"), "--format", format, "--method", "gptq",
                    "--statistics", stats, "-j", threads])
                #expect(r.status == 0, "\(r.stderr)")
                #expect(!r.stderr.contains("warning"), "\(r.stderr)")
            }
            #expect(try ToolRunner.readFile(dir.file("g1.safetensors")) == ToolRunner.readFile(dir.file("g3.safetensors")))
            let manifest = try #require(try JSONSerialization.jsonObject(with: Data(ToolRunner.readFile(dir.file("g1.manifest.json")))) as? [String: Any])
            let options = try #require(manifest["options"] as? [String: Any])
            #expect(options["method"] as? String == "gptq" && options["statistics"] as? String == stats)
            #expect((manifest["tensors"] as? [[String: Any]] ?? []).filter { $0["error_feedback"] as? Bool == true }.count == 14)
            #expect(try ToolRunner.run(["quantize", input, "-o", dir.file("rtn.safetensors"), "--format", format, "-q"]).status == 0)
            let gptq = try ToolRunner.readFile(dir.file("g1.safetensors")), rtn = try ToolRunner.readFile(dir.file("rtn.safetensors"))
            #expect(gptq.count == rtn.count && gptq != rtn)
            let verify = try ToolRunner.run(["verify", input, dir.file("g1.safetensors")])
            #expect(verify.status == 0, "\(String(decoding: verify.stdout, as: UTF8.self))\(verify.stderr)")
            // The tolerance comes from the manifest's method unless given; the reason is printed.
            #expect(String(decoding: verify.stdout, as: UTF8.self).contains("tolerance: 0.25, gptq output"))
            #expect(String(decoding: verify.stdout, as: UTF8.self).contains("blocks not re-quantized (error feedback needs the calibration statistics)"))
            for (output, given, expected, reasoned) in [
                ("g1.safetensors", nil, 0.25, true), ("g1.safetensors", "0.15", 0.15, false), ("rtn.safetensors", nil, 0.15, false),
            ] as [(String, String?, Double, Bool)] {
                let r = try ToolRunner.run(["verify", input, dir.file(output), "--json"] + (given.map { ["--tolerance", $0] } ?? []))
                let report = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout)) as? [String: Any])
                #expect(report["tolerance"] as? Double == expected, "\(output) \(String(describing: given))")
                #expect((report["tolerance_reason"] as? String)?.contains("gptq") == (reasoned ? true : nil), "\(report)")
            }
        }
    }

    @Test("model folders: fused q/k/v and gate/up keep one shared global scale in the engine layouts", arguments: ["compressed-tensors", "modelopt"])
    func folderSharesScales(format: String) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let folder = try dir.makeSubfolder("model")
            for file in ["model.safetensors", "config.json"] { _ = try dir.copyFixture("tiny-llama/\(file)", as: "model/\(file)") }
            let stats = try dir.write(tinyLlamaStatistics(), to: "stats.safetensors")
            let r = try ToolRunner.run(["quantize", folder, "-o", dir.file("out"), "--format", format, "--method", "gptq", "--statistics", stats, "-q"])
            #expect(r.status == 0, "\(r.stderr)")
            let out = try ModelFixtures.tensors(in: dir.file("out"))
            let global = (format == "modelopt" ? CheckpointFormat.modelopt : .compressedTensors).names.globalScale
            for layer in 0..<2 {
                let p = "model.layers.\(layer)"
                let q = out["\(p).self_attn.q_proj.\(global)"]?.bytes
                #expect(q != nil && q == out["\(p).self_attn.k_proj.\(global)"]?.bytes && q == out["\(p).self_attn.v_proj.\(global)"]?.bytes)
                #expect(out["\(p).mlp.gate_proj.\(global)"]?.bytes == out["\(p).mlp.up_proj.\(global)"]?.bytes)
            }
            #expect(try ToolRunner.run(["verify", folder, dir.file("out")]).status == 0)
        }
    }

    @Test("stacked experts: the engine layouts store each expert exactly as the per-expert checkpoint does",
          arguments: [CheckpointFormat.compressedTensors, .modelopt])
    func stackedExperts(format: CheckpointFormat) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let (stacked, perExpert) = try StackedExpertNamingTests.folders(scratch)
        let prefix = StackedExpertNamingTests.prefix
        var inputs: [(module: String, columns: Int)] = []
        var shared: [String: String] = [:]
        for x in 0..<StackedExpertNamingTests.experts {
            inputs += [("\(prefix).\(x).gate_proj", StackedExpertNamingTests.hidden), ("\(prefix).\(x).down_proj", StackedExpertNamingTests.intermediate)]
            shared["\(prefix).\(x).up_proj"] = "\(prefix).\(x).gate_proj"
        }
        let path = scratch.file("stats.safetensors")
        FileManager.default.createFile(atPath: path, contents: Data(statisticsFile(inputs, shared: shared)))
        func run(_ folder: String, into output: String) throws {
            var options = QuantizeOptions()
            options.format = format
            options.method = .gptq
            options.statistics = try InputStatistics(path: path)
            options.threads = 2
            let plan = try QuantizePlan(folder: try ModelFolder(path: folder), options: options, calibration: nil)
            try FolderQuantizeJob.run(plan: plan, output: output, replace: false, invocation: ["nvfp4", "test"])
        }
        try run(stacked, into: scratch.file("a"))
        try run(perExpert, into: scratch.file("b"))
        _ = try StackedExpertNamingTests.quantize(stacked, format: format, method: .rtn, into: scratch.file("rtn"))
        let a = try ModelFixtures.tensors(in: scratch.file("a")), b = try ModelFixtures.tensors(in: scratch.file("b"))
        let rtn = try ModelFixtures.tensors(in: scratch.file("rtn"))
        #expect(Set(a.keys) == Set(b.keys))
        for (name, tensor) in b { #expect(a[name]?.bytes == tensor.bytes && a[name]?.shape == tensor.shape, "\(name)") }
        #expect(a.keys.contains { a[$0]!.dtype == .u8 && a[$0]!.bytes != rtn[$0]?.bytes })
    }

    @Test("a statistics file as --importance: the bytes of a JSON importance file holding its diagonals (shared inputs too); a negative diagonal is an error")
    func statisticsAsImportance() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = ToolRunner.fixture("tiny-llama/model.safetensors")
            let stats = try dir.write(tinyLlamaStatistics(), to: "stats.safetensors")
            var modules: [String: [Double]] = [:]
            for layer in 0..<2 {
                let p = "model.layers.\(layer)"
                for (module, columns, readers) in [("\(p).self_attn.q_proj", 128, ["q_proj", "k_proj", "v_proj"].map { "\(p).self_attn.\($0)" }),
                                                   ("\(p).self_attn.o_proj", 128, ["\(p).self_attn.o_proj"]),
                                                   ("\(p).mlp.gate_proj", 128, ["\(p).mlp.gate_proj", "\(p).mlp.up_proj"]),
                                                   ("\(p).mlp.down_proj", 352, ["\(p).mlp.down_proj"])] {
                    let h = ErrorFeedbackTests.moments(columns: columns, samples: 3 * columns, seed: UInt64(columns + module.count))
                    for reader in readers { modules[reader] = (0..<columns).map { Double(h[$0 * columns + $0]) } }
                }
            }
            let json = try dir.write(Array(try JSONSerialization.data(withJSONObject: ["format": "nvfp4-importance", "version": 1, "modules": modules] as [String: Any])), to: "diag.json")
            let a = try ToolRunner.run(["quantize", input, "-o", dir.file("a.safetensors"), "--method", "mse", "--importance", stats])
            let b = try ToolRunner.run(["quantize", input, "-o", dir.file("b.safetensors"), "--method", "mse", "--importance", json])
            try #require(a.status == 0 && b.status == 0, "\(a)\n\(b)")
            #expect(!a.stderr.contains("warning"), "\(a.stderr)")
            #expect(try ToolRunner.readFile(dir.file("a.safetensors")) == (try ToolRunner.readFile(dir.file("b.safetensors"))))
            let rtn = try ToolRunner.run(["quantize", input, "-o", dir.file("r.safetensors")])
            try #require(rtn.status == 0)
            #expect(try ToolRunner.readFile(dir.file("a.safetensors")) != (try ToolRunner.readFile(dir.file("r.safetensors"))))

            var bad = tinyLlamaStatistics()
            let headerEnd = 8 + Int(bad[0..<8].reversed().reduce(0) { $0 << 8 | UInt64($1) })
            let offset = try #require(SafetensorsHeader(json: bad[8..<headerEnd]).tensors.first { $0.name == "model.layers.1.mlp.down_proj" }).dataOffsets.lowerBound
            let entry = headerEnd + Int(offset) + (5 * 352 + 5) * 4
            withUnsafeBytes(of: Float(-1).bitPattern.littleEndian) { for (i, byte) in $0.enumerated() { bad[entry + i] = byte } }
            let badPath = try dir.write(bad, to: "bad.safetensors")
            let r = try ToolRunner.run(["quantize", input, "-o", dir.file("x.safetensors"), "--method", "mse", "--importance", badPath])
            #expect(r.status == 2 && r.stderr.hasPrefix("error: \(badPath): tensor \"model.layers.1.mlp.down_proj\": diagonal entry 5 is -1.0"), "\(r.stderr)")
            #expect(!ToolRunner.exists(dir.file("x.safetensors")))
        }
    }

    @Test("missing statistics warn and fall back to RTN; wrong widths and bad files are errors before any output")
    func errors() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.copyFixture("tiny-llama/model.safetensors", as: "model.safetensors")
            let partial = try dir.write(tinyLlamaStatistics(dropping: "model.layers.1.mlp.down_proj"), to: "partial.safetensors")
            let p = try ToolRunner.run(["quantize", input, "-o", dir.file("p.safetensors"), "--method", "gptq", "--statistics", partial])
            #expect(p.status == 0)
            #expect(p.stderr.contains("warning: \(partial) has no statistics for 1 quantized modules (model.layers.1.mlp.down_proj); they were quantized with RTN"), "\(p.stderr)")

            let wrong = try dir.write(tinyLlamaStatistics(downColumns: 128), to: "wrong.safetensors")
            let w = try ToolRunner.run(["quantize", input, "-o", dir.file("w.safetensors"), "--method", "gptq", "--statistics", wrong])
            #expect(w.status == 2)
            #expect(w.stderr.hasPrefix("error: \(wrong): module \"model.layers.0.mlp.down_proj\" has statistics of 128 channels"), "\(w.stderr)")
            #expect(!ToolRunner.exists(dir.file("w.safetensors")))

            let cases: [(bytes: [UInt8], message: String)] = [
                (statisticsFile([("m", 16)], tokens: "0"), "\"tokens\" must be a positive whole number"),
                (statisticsFile([("m", 16)], shared: ["k": "missing"]), "module \"k\" points to no tensor"),
                (Array(tinyLlamaStatistics().prefix(8)), "runs past the end"),
                (Array(try ToolRunner.readFile(input)), "not a statistics file"),
            ]
            for (i, c) in cases.enumerated() {
                let bad = try dir.write(c.bytes, to: "bad\(i).safetensors")
                let r = try ToolRunner.run(["quantize", input, "-o", dir.file("b.safetensors"), "--method", "gptq", "--statistics", bad])
                #expect(r.status == 2 && r.stderr.hasPrefix("error: \(bad)") && r.stderr.contains(c.message), "\(i): \(r.stderr)")
            }
            let noStats = try ToolRunner.run(["quantize", input, "-o", dir.file("n.safetensors"), "--method", "gptq"])
            #expect(noStats.status == 2 && noStats.stderr.contains("--method gptq needs --statistics"))
            let noMethod = try ToolRunner.run(["quantize", input, "-o", dir.file("n.safetensors"), "--statistics", partial])
            #expect(noMethod.status == 2 && noMethod.stderr.contains("--statistics needs --method gptq"))
            #expect(try dir.contents().filter { $0.hasPrefix(".") || $0.hasPrefix("b.") || $0.hasPrefix("n.") }.isEmpty)
        }
    }
}
