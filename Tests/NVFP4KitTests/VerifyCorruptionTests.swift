import Foundation
import NVFP4Kit
import Testing

/// One byte of damage done to a quantized checkpoint.
enum Damage: String, CaseIterable, CustomStringConvertible {
    /// The first block scale set to 0: that block's 16 weights decode to zero.
    case zeroScale
    /// The low nibble of the first packed byte flipped: one weight changes.
    case flipNibble

    var description: String { rawValue }

    /// The tensor it hits (the first block scales or packed tensor of the file) and the new byte.
    func target(in header: SafetensorsHeader) -> (tensor: TensorInfo, value: (UInt8) -> UInt8)? {
        switch self {
        case .zeroScale: return header.tensors.first { $0.dtype == .f8E4M3 }.map { ($0, { _ in 0 }) }
        case .flipNibble: return header.tensors.first { $0.dtype == .u8 }.map { ($0, { $0 ^ 0x01 }) }
        }
    }

    /// Applies it to the safetensors file at `path`, in place; returns the tensor's name.
    @discardableResult
    func apply(to path: String) throws -> String {
        let reader = try SafetensorsReader(path: path, hashing: false)
        let (tensor, value) = try #require(target(in: reader.header))
        let offset = reader.dataStart + Int(tensor.dataOffsets.lowerBound)
        let old = try ToolRunner.readFile(path)[offset]
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.seek(toOffset: UInt64(offset))
        try handle.write(contentsOf: Data([value(old)]))
        try handle.close()
        #expect(value(old) != old)
        return tensor.name
    }
}

/// Every file under `path` with its bytes: what a read-only command must leave as it found it.
func folderSnapshot(_ path: String) throws -> [String: [UInt8]] {
    var result: [String: [UInt8]] = [:]
    let enumerator = try #require(FileManager.default.enumerator(atPath: path))
    for case let name as String in enumerator {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path + "/" + name, isDirectory: &isFolder), !isFolder.boolValue {
            result[name] = try ToolRunner.readFile(path + "/" + name)
        } else {
            result[name + "/"] = []
        }
    }
    return result
}

@Suite("verify: corruption the tolerance cannot see")
struct VerifyCorruptionTests {
    static let formats = ["torchao", "compressed-tensors", "modelopt"]
    static let methods = ["rtn", "mse"]

    @Test("a folder: one damaged byte fails verify (block check and shard SHA-256), nothing changes",
          arguments: formats, Damage.allCases)
    func folder(format: String, damage: Damage) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let out = dir.file("out")
            let q = try ToolRunner.run(["quantize", ModelFixtures.llama, "-o", out, "--format", format, "-q"])
            try #require(q.status == 0, "\(q)")
            let clean = try ToolRunner.run(["verify", ModelFixtures.llama, out])
            #expect(clean.status == 0, "\(clean)")
            #expect(clean.stdoutText.contains("manifest: \(out)/nvfp4-manifest.json (found beside the output)"), "\(clean)")
            let shard = try #require(try listFolder(out).first { name in
                name.hasSuffix(".safetensors") && (try? damage.target(in: SafetensorsReader(path: out + "/" + name, hashing: false).header)) != nil
            })
            let tensor = try damage.apply(to: out + "/" + shard)
            let before = try folderSnapshot(dir.path)
            let r = try ToolRunner.run(["verify", ModelFixtures.llama, out, "--tolerance", "1e30", "--json"])
            #expect(r.status == 1, "\(r)")
            let report = try JSONParser.parse(r.stdout)
            let failures = report["manifest_failures"]?.arrayValue?.compactMap(\.stringValue) ?? []
            #expect(failures.count == 1 && failures[0].hasPrefix("\(out)/\(shard): SHA-256"), "\(failures)")
            let blockFailures = (report["tensors"]?.arrayValue ?? []).flatMap { $0["failures"]?.arrayValue?.compactMap(\.stringValue) ?? [] }
            #expect(blockFailures.contains { $0.contains("1 block differs from re-quantizing the original (rtn") }, "\(tensor): \(blockFailures)")
            #expect(try folderSnapshot(dir.path) == before)
        }
    }

    @Test("a file: one damaged byte fails verify whatever the tolerance, with the manifest found beside it",
          arguments: formats, methods)
    func file(format: String, method: String) throws {
        for damage in Damage.allCases {
            try ToolRunner.withTemporaryDirectory { dir in
                let input = try dir.copyFixture("tiny-llama/model.safetensors", as: "m.safetensors")
                let q = try ToolRunner.run(["quantize", input, "--format", format, "--method", method, "-q"])
                try #require(q.status == 0, "\(q)")
                let output = dir.file("m.nvfp4.safetensors")
                let clean = try ToolRunner.run(["verify", input, output])
                #expect(clean.status == 0, "\(clean)")
                #expect(clean.stdoutText.contains("every block re-quantized with \(method)"), "\(clean)")
                let tensor = try damage.apply(to: output)
                let before = try folderSnapshot(dir.path)
                let r = try ToolRunner.run(["verify", input, output, "--tolerance", "1e30", "-q"])
                #expect(r.status == 1, "\(damage) \(tensor): \(r)")
                #expect(r.stdoutText.contains("MANIFEST: \(dir.file("m.nvfp4.manifest.json")): \(output): SHA-256"), "\(r)")
                #expect(r.stdoutText.contains("block differs from re-quantizing the original (\(method)"), "\(damage) \(tensor): \(r)")
                #expect(try folderSnapshot(dir.path) == before)
            }
        }
    }

    @Test("without recorded sums (--hash none) the block check alone still catches a zeroed scale")
    func blocksWithoutHashes() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.copyFixture("tiny-llama/model.safetensors", as: "m.safetensors")
            try #require(try ToolRunner.run(["quantize", input, "--hash", "none", "-q"]).status == 0)
            let output = dir.file("m.nvfp4.safetensors")
            try Damage.zeroScale.apply(to: output)
            let r = try ToolRunner.run(["verify", input, output, "--tolerance", "1e30", "-q"])
            #expect(r.status == 1, "\(r)")
            #expect(!r.stdoutText.contains("MANIFEST:"), "\(r)")
            #expect(r.stdoutText.contains("scale code 0x00 (expected 0x"), "\(r)")
        }
    }

    @Test("--manifest points elsewhere, for files and folders; no manifest: the tolerance alone, and the output says so")
    func explicitManifest() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let out = dir.file("out")
            try #require(try ToolRunner.run(["quantize", ModelFixtures.llama, "-o", out, "--format", "modelopt", "-q"]).status == 0)
            let moved = dir.file("elsewhere.json")
            try FileManager.default.moveItem(atPath: out + "/nvfp4-manifest.json", toPath: moved)
            let none = try ToolRunner.run(["verify", ModelFixtures.llama, out])
            #expect(none.status == 0 && none.stdoutText.contains("manifest: none given or found beside the output"), "\(none)")
            let given = try ToolRunner.run(["verify", ModelFixtures.llama, out, "--manifest", moved])
            #expect(given.status == 0 && given.stdoutText.contains("manifest: \(moved) (--manifest)"), "\(given)")
            // A single file's manifest does not describe a folder.
            let input = try dir.copyFixture("tiny-llama/model.safetensors", as: "m.safetensors")
            try #require(try ToolRunner.run(["quantize", input, "-q"]).status == 0)
            let wrong = try ToolRunner.run(["verify", ModelFixtures.llama, out, "--manifest", dir.file("m.nvfp4.manifest.json")])
            #expect(wrong.status == 2 && wrong.stderrLines.count == 1 && wrong.stderr.contains("not an nvfp4 manifest: no shards records"), "\(wrong)")
        }
    }

    @Test("a manifest found beside the output that is not a manifest is an input error, not skipped")
    func brokenDiscoveredManifest() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.copyFixture("tiny-llama/model.safetensors", as: "m.safetensors")
            try #require(try ToolRunner.run(["quantize", input, "-q"]).status == 0)
            try dir.write(Array(String(repeating: "[", count: 100_000).utf8), to: "m.nvfp4.manifest.json")
            let r = try ToolRunner.run(["verify", input, dir.file("m.nvfp4.safetensors")])
            #expect(r.status == 2 && r.stderrLines.count == 1, "\(r)")
            #expect(r.stderr.contains("m.nvfp4.manifest.json") && r.stderr.contains("nesting deeper than"), "\(r)")
        }
    }

    @Test("a folder original beside a single-file output: the output's SHA-256 and blocks are checked, the input's size is not compared")
    func folderOriginalFileOutput() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let folder = dir.file("orig")
            try FileManager.default.copyItem(atPath: ToolRunner.fixture("tiny-llama"), toPath: folder)
            let output = dir.file("q.safetensors")
            try #require(try ToolRunner.run(["quantize", folder + "/model.safetensors", "-o", output, "-q"]).status == 0)
            let clean = try ToolRunner.run(["verify", folder, output, "-q"])
            #expect(clean.status == 0 && clean.stdoutText.contains("manifest: \(dir.file("q.manifest.json")) (found beside the output)"), "\(clean)")
            try Damage.flipNibble.apply(to: output)
            let r = try ToolRunner.run(["verify", folder, output, "-q"])
            #expect(r.status == 1 && r.stdoutText.contains("\(output): SHA-256") && !r.stdoutText.contains("\(folder): SHA-256"), "\(r)")
        }
    }
}
