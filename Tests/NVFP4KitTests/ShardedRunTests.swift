import Foundation
import Glibc
import NVFP4Kit
import Testing

/// `--shard I/N` workers plus `merge`, `verify` across shards, and the folder command line.
@Suite("sharded runs and folder verify")
struct ShardedRunTests {
    @Test("4 workers + merge give the single run's folder byte for byte (manifest: all but the invocation)",
          arguments: [(ModelFixtures.qwenMoE, CheckpointFormat.modelopt), (ModelFixtures.llama, .compressedTensors), (ModelFixtures.mixtral, .torchao)])
    func workersThenMerge(input: String, format: CheckpointFormat) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let single = try ModelFixtures.quantize(input, format: format, into: scratch, name: "single").output
        var options = QuantizeOptions()
        options.format = format
        let merged = scratch.file("merged")
        // Workers run in a scrambled order; each derives the same plan on its own.
        for index in [2, 0, 3, 1] {
            let plan = try QuantizePlan(folder: try ModelFolder(path: input), options: options, calibration: nil)
            try FolderQuantizeJob.runWorker(plan: plan, share: WorkerShare(index: index, count: 4), output: merged)
        }
        #expect(!fileExistsAt("\(merged)/nvfp4-manifest.json"), "workers write no manifest")
        try FolderQuantizeJob.merge(output: merged, invocation: ["nvfp4", "merge", merged])
        #expect(try listFolder(merged) == listFolder(single))
        for name in try listFolder(single) where name != FolderQuantizeJob.manifestFileName {
            #expect(try ModelFixtures.read("\(merged)/\(name)") == ModelFixtures.read("\(single)/\(name)"), "\(name)")
        }
        var a = try ModelFixtures.json("\(single)/\(FolderQuantizeJob.manifestFileName)").objectValue!
        var b = try ModelFixtures.json("\(merged)/\(FolderQuantizeJob.manifestFileName)").objectValue!
        a.removeAll { $0.key == "invocation" }
        b.removeAll { $0.key == "invocation" }
        #expect(JSONValue.object(a) == JSONValue.object(b))
    }

    @Test("--max-shard-size splits shards; verify and workers + merge still agree")
    func maxShardSize() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        var options = QuantizeOptions()
        options.format = .modelopt
        let limit = 3000
        let plan = try QuantizePlan(folder: try ModelFolder(path: ModelFixtures.qwenMoE), options: options, calibration: nil, maxShardSize: limit)
        #expect(plan.outputShards.count > 3)
        let single = scratch.file("single")
        try FolderQuantizeJob.run(plan: plan, output: single, replace: false, invocation: [])
        let names = try listFolder(single).filter { $0.hasSuffix(".safetensors") }
        #expect(names == (1...names.count).map { "model-\(String(format: "%05d", $0))-of-\(String(format: "%05d", names.count)).safetensors" })
        for name in names {
            let header = try SafetensorsReader(path: "\(single)/\(name)").header
            // A shard goes over the limit only when it holds one input tensor's outputs.
            let inputs = Set(header.tensors.map { t in
                ["weight_scale_2", "weight_scale", "weight", "input_scale"].reduce(t.name) { n, s in n.hasSuffix(".\(s)") ? String(n.dropLast(s.count + 1)) : n }
            })
            #expect(header.dataByteCount <= UInt64(limit) || inputs.count == 1, "\(name): \(header.dataByteCount) bytes")
        }
        let report = try VerifyJob.run(original: try CheckpointSource(path: ModelFixtures.qwenMoE), quantized: try CheckpointSource(path: single), tolerance: 0.15)
        #expect(report.passed, "\(report.mismatches)")
        let merged = scratch.file("merged")
        for index in 0..<3 {
            let p = try QuantizePlan(folder: try ModelFolder(path: ModelFixtures.qwenMoE), options: options, calibration: nil, maxShardSize: limit)
            try FolderQuantizeJob.runWorker(plan: p, share: WorkerShare(index: index, count: 3), output: merged)
        }
        try FolderQuantizeJob.merge(output: merged, invocation: [])
        for name in try listFolder(single) where name != FolderQuantizeJob.manifestFileName {
            #expect(try ModelFixtures.read("\(merged)/\(name)") == ModelFixtures.read("\(single)/\(name)"), "\(name)")
        }
    }

    @Test("merge refuses missing workers and parts from different runs")
    func mergeRefuses() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        var options = QuantizeOptions()
        options.format = .compressedTensors
        let out = scratch.file("out")
        let plan = try QuantizePlan(folder: try ModelFolder(path: ModelFixtures.llama), options: options, calibration: nil)
        try FolderQuantizeJob.runWorker(plan: plan, share: WorkerShare(index: 0, count: 2), output: out)
        #expect(throws: ModelFolderError.self) { try FolderQuantizeJob.merge(output: out, invocation: []) }
        options.format = .modelopt
        let other = try QuantizePlan(folder: try ModelFolder(path: ModelFixtures.llama), options: options, calibration: nil)
        try FolderQuantizeJob.runWorker(plan: other, share: WorkerShare(index: 1, count: 2), output: out)
        #expect(throws: ModelFolderError.self) { try FolderQuantizeJob.merge(output: out, invocation: []) }
        #expect(!fileExistsAt("\(out)/config.json"))
    }

    @Test("WorkerShare parses I/N and splits shards deterministically")
    func workerShare() {
        #expect(WorkerShare("1/4") == WorkerShare(index: 1, count: 4))
        for bad in ["4/4", "-1/4", "1/0", "1", "a/b", "1/4/5", ""] { #expect(WorkerShare(bad) == nil, "\(bad)") }
        let owners = (0..<10).map { p in (0..<4).filter { WorkerShare(index: $0, count: 4).owns(shardAt: p) } }
        #expect(owners.allSatisfy { $0.count == 1 })
    }

    @Test("verify works across shards for every layout, and catches a tampered scale", arguments: CheckpointFormat.allCases)
    func verifyFolders(format: CheckpointFormat) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let output = try ModelFixtures.quantize(ModelFixtures.qwenMoE, format: format, into: scratch).output
        let report = try VerifyJob.run(
            original: try CheckpointSource(path: ModelFixtures.qwenMoE), quantized: try CheckpointSource(path: output), tolerance: 0.15)
        #expect(report.passed, "\(report.mismatches) \(report.tensors.filter { !$0.failures.isEmpty }.map(\.failures))")
        #expect(report.tensors.filter { $0.kind == .quantized }.count == 19)
        // Tamper with one member's global scale (engine layouts): the fused-group check fails.
        guard format != .torchao else { return }
        let name = format == .modelopt ? "model.layers.0.self_attn.k_proj.weight_scale_2" : "model.layers.0.self_attn.k_proj.weight_global_scale"
        let shard = try ModelFixtures.tensors(in: output)[name]!.shard
        var bytes = try ModelFixtures.read("\(output)/\(shard)")
        let reader = try SafetensorsReader(path: "\(output)/\(shard)")
        let at = reader.dataStart + Int(reader.header.tensor(named: name)!.dataOffsets.lowerBound)
        bytes[at] ^= 1
        let sink = try AtomicFileSink(path: "\(output)/\(shard)", replace: true)
        try sink.write(bytes)
        _ = try sink.commit()
        let tampered = try VerifyJob.run(
            original: try CheckpointSource(path: ModelFixtures.qwenMoE), quantized: try CheckpointSource(path: output), tolerance: 0.15)
        #expect(!tampered.passed)
        #expect(tampered.tensors.contains { $0.failures.contains { $0.contains("fused group") } })
    }

    @Test("command line: quantize a folder, refuse to overwrite, verify, shard + merge")
    func commandLine() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let out = scratch.file("out")
        let q = try ToolRunner.run(["quantize", ModelFixtures.llama, "-o", out, "--format", "modelopt", "-q"])
        #expect(q.status == 0, "\(q)")
        let again = try ToolRunner.run(["quantize", ModelFixtures.llama, "-o", out, "--format", "modelopt"])
        #expect(again.status == 2 && again.stderr.contains("already exists"), "\(again)")
        let forced = try ToolRunner.run(["quantize", ModelFixtures.llama, "-o", out, "--format", "compressed-tensors", "--force", "-q"])
        #expect(forced.status == 0, "\(forced)")
        #expect(!fileExistsAt("\(out)/hf_quant_config.json"), "--force replaced the whole folder")
        let v = try ToolRunner.run(["verify", ModelFixtures.llama, out, "-q"])
        #expect(v.status == 0, "\(v)")
        let notOurs = scratch.file("plain")
        mkdir(notOurs, 0o755)
        try sealedTextFile("mine", to: "\(notOurs)/a.txt", replace: false).publish()  // an empty folder may be replaced
        let refused = try ToolRunner.run(["quantize", ModelFixtures.llama, "-o", notOurs, "--force"])
        #expect(refused.status == 2 && refused.stderr.contains("not an nvfp4 output folder"), "\(refused)")
        let badFormat = try ToolRunner.run(["quantize", ModelFixtures.llama, "-o", scratch.file("x"), "--format", "gguf"])
        #expect(badFormat.status == 2 && badFormat.stderrLines.count == 1, "\(badFormat)")
        let sharded = scratch.file("sharded")
        for i in 0..<2 {
            let w = try ToolRunner.run(["quantize", ModelFixtures.llama, "-o", sharded, "--format", "compressed-tensors", "--shard", "\(i)/2", "-q"])
            #expect(w.status == 0, "\(w)")
        }
        let m = try ToolRunner.run(["merge", sharded, "-q"])
        #expect(m.status == 0, "\(m)")
        for name in try listFolder(out) where name != FolderQuantizeJob.manifestFileName {
            #expect(try ModelFixtures.read("\(sharded)/\(name)") == ModelFixtures.read("\(out)/\(name)"), "\(name)")
        }
        let calibration = scratch.file("amax.json")
        let sink = try sealedTextFile(#"{"model.layers.0.self_attn.q_proj": 2.5}"#, to: calibration, replace: false)
        try sink.publish()
        let missing = try ToolRunner.run(["quantize", ModelFixtures.llama, "-o", scratch.file("cal"), "--format", "modelopt", "--calibration", calibration])
        #expect(missing.status == 2 && missing.stderr.contains("has no calibrated max |input|"), "\(missing)")
        #expect(!fileExistsAt(scratch.file("cal")))
    }
}

@Suite("temporary output folders")
struct TemporaryFolderTests {
    @Test("abort removes the folder and its files; publish never clobbers a folder that appeared meanwhile")
    func abortAndNoReplace() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let dest = scratch.file("out")
        let a = try TemporaryFolder(destination: dest, replace: false)
        for name in ["x.safetensors", "config.json"] {
            let sink = try sealedTextFile("data", to: a.file(name), replace: false)
            try sink.publish()
        }
        #expect(try listFolder(scratch.path).count == 1 && listFolder(a.path).count == 2)
        a.abort()
        #expect(try listFolder(scratch.path).isEmpty)

        let b = try TemporaryFolder(destination: dest, replace: false)
        mkdir(dest, 0o755)  // someone else created the destination meanwhile
        #expect(throws: SystemError.self) { try b.publish() }
        #expect(try listFolder(scratch.path) == ["out"], "the temporary folder is gone, the other folder untouched")

        let c = try TemporaryFolder(destination: dest, replace: true)
        let sink = try sealedTextFile("new", to: c.file("f"), replace: false)
        try sink.publish()
        try c.publish()
        #expect(try listFolder(dest) == ["f"])
        #expect(try listFolder(scratch.path) == ["out"], "the replaced folder was removed")
    }
}

@Suite("interrupting a folder run")
struct InterruptTests {
    @Test("Ctrl-C while shards are being written leaves no output and no temporary folder")
    func sigint() throws {
        guard let executable = ToolRunner.executable?.path else {
            Issue.record("the nvfp4 executable is not built")
            return
        }
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        // Four 2048×2048 bf16 shards: long enough in a debug build to be interrupted mid-run.
        let input = scratch.file("in")
        mkdir(input, 0o755)
        var map: [(key: String, value: JSONValue)] = []
        for shard in 1...4 {
            let name = "model-0000\(shard)-of-00004.safetensors"
            let tensor = "model.layers.\(shard).mlp.down_proj.weight"
            var bytes = [UInt8](repeating: 0, count: 2048 * 2048 * 2)
            for i in stride(from: 0, to: bytes.count, by: 2) { bytes[i + 1] = UInt8(0x3C + (i / 2) % 3) }
            let plan = SafetensorsLayoutPlan(tensors: [PlannedTensor(name: tensor, dtype: .bf16, shape: [2048, 2048])], metadata: [("format", "pt")])
            let sink = try AtomicFileSink(path: "\(input)/\(name)", replace: false)
            try sink.write(plan.headerBytes + bytes)
            _ = try sink.commit()
            map.append((tensor, .string(name)))
        }
        let index = JSONValue.object([("metadata", .object([])), ("weight_map", .object(map))]).serialized(.pretty)
        try sealedTextFile(index, to: "\(input)/model.safetensors.index.json", replace: false).publish()
        try sealedTextFile(#"{"architectures":["LlamaForCausalLM"]}"#, to: "\(input)/config.json", replace: false).publish()

        var pid: pid_t = 0
        let output = scratch.file("out")
        let argv = [executable, "quantize", input, "-o", output, "--format", "modelopt", "--threads", "1", "-q"]
        var cargs = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        // The test runner's threads may block or ignore SIGINT; give the child a clean slate.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGINT)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        #expect(posix_spawn(&pid, executable, nil, &attributes, &cargs, environ) == 0)
        // Wait until the hidden temporary folder holds a finished shard, then interrupt.
        var sawTemporary = false
        for _ in 0..<2000 {
            let hidden = (try? listFolder(scratch.path))?.first { $0.hasPrefix(".out.") }
            if let hidden, let files = try? listFolder("\(scratch.path)/\(hidden)"), files.contains(where: { !$0.hasPrefix(".") }) {
                sawTemporary = true
                break
            }
            usleep(5000)
        }
        kill(pid, SIGINT)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        #expect(sawTemporary, "the run finished before it could be interrupted")
        #expect((status & 0x7F) == SIGINT, "killed by SIGINT (status \(status))")
        #expect(try listFolder(scratch.path) == ["in"], "nothing but the input is left")
    }
}
