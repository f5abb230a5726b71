import Foundation
import NVFP4Kit
import Testing

/// A safetensors file of `count` bf16 `[16, 16]` weights whose names are `nameLength` bytes long.
func longNameCheckpoint(count: Int, nameLength: Int) -> [UInt8] {
    let stem = String(repeating: "a", count: max(1, nameLength - "m..weight".count - 4))
    let tensors = (0..<count).map { PlannedTensor(name: "m.\(stem)\($0).weight", dtype: .bf16, shape: [16, 16]) }
    let plan = SafetensorsLayoutPlan(tensors: tensors, metadata: [])
    var bytes = plan.headerBytes
    for i in 0..<(plan.dataByteCount / 2) {
        let value = BFloat16.fromFloat(Float((i * 7919) % 255) / 64 - 2)
        bytes.append(UInt8(value & 0xFF))
        bytes.append(UInt8(value >> 8))
    }
    return bytes
}

@Suite("header scale: the writer's limit is the reader's")
struct HeaderScaleTests {
    @Test("quantize refuses up front to write a header it would refuse to read: exit 2, one line, nothing written",
          arguments: [("torchao", 25), ("compressed-tensors", 35)])
    func outputHeaderOverLimit(format: String, count: Int) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            // Input headers of ~30-42 MB (readable); the outputs repeat each name 3-5 times.
            let input = try dir.write(longNameCheckpoint(count: count, nameLength: 1_200_000), to: "big.safetensors")
            let before = try folderSnapshot(dir.path)
            let header = try SafetensorsReader(path: input, hashing: false).header
            #expect(header.tensors.count == count)
            for extra in [[String](), ["--dry-run"]] {
                let r = try ToolRunner.run(["quantize", input, "--format", format] + extra)
                #expect(r.status == 2, "\(r)")
                #expect(r.stderrLines.count == 1, "\(r)")
                #expect(r.stderr.contains("error: \(input): the output would have a") && r.stderr.contains("over the \(SafetensorsHeader.maxHeaderLength)-byte limit"), "\(r)")
                #expect(try folderSnapshot(dir.path) == before)
            }
        }
    }

    @Test("the limit is one constant: the reader's error quotes it")
    func readerQuotesLimit() {
        let error = SafetensorsError.headerTooLarge(length: SafetensorsHeader.maxHeaderLength + 1)
        #expect(error.description.contains("\(SafetensorsHeader.maxHeaderLength)-byte limit"))
        #expect(throws: SafetensorsError.self) { try SafetensorsHeader.validateLength(SafetensorsHeader.maxHeaderLength + 1, fileSize: nil) }
    }
}

@Suite("summaries report what was written")
struct WrittenShardCountTests {
    @Test("--max-shard-size 1: the summary, --json and the dry run give the shard count written",
          arguments: CheckpointFormat.allCases)
    func shardCount(format: CheckpointFormat) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let out = dir.file("out")
            let dry = try ToolRunner.run(["quantize", ModelFixtures.llama, "-o", out, "--format", format.rawValue, "--max-shard-size", "1", "--dry-run", "--json"])
            #expect(dry.status == 0, "\(dry)")
            let r = try ToolRunner.run(["quantize", ModelFixtures.llama, "-o", out, "--format", format.rawValue, "--max-shard-size", "1", "--json"])
            #expect(r.status == 0, "\(r)")
            let written = try listFolder(out).filter { $0.hasSuffix(".safetensors") }
            #expect(written.count > 3)
            #expect(r.stderr.contains("wrote \(written.count) files, "), "\(r.stderr)")
            let manifest = try JSONParser.parse(r.stdout)
            let records = manifest["shards"]?.arrayValue ?? []
            #expect(records.compactMap { $0["name"]?.stringValue }.sorted() == written)
            for record in records {
                let name = try #require(record["name"]?.stringValue)
                let size = try #require(FileManager.default.attributesOfItem(atPath: out + "/" + name)[.size] as? Int)
                #expect(record["output"]?["bytes"]?.unsignedValue == UInt64(size), "\(name)")
            }
            let plan = try JSONParser.parse(dry.stdout)
            let planned = plan["output_files"]?.arrayValue ?? []
            #expect(planned.count == written.count, "\(dry.stdoutText.prefix(2000))")
        }
    }
}
