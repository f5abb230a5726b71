import Foundation
import NVFP4Kit
import Testing

/// The fuzzer's committed seeds (Fuzz/corpus) and every crash or hang it ever found
/// (Fuzz/regressions), replayed through the same readers as the harness
/// (Fuzz/Sources/nvfp4-fuzz/FuzzTarget.swift): each must be read or rejected with an error,
/// never crash, hang or trap.
private let fuzzFiles: [String] = {
    var files: [String] = []
    for folder in ["corpus", "regressions"] {
        let path = ToolRunner.repositoryRoot.appendingPathComponent("Fuzz/\(folder)").path
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        files += names.filter { !$0.hasPrefix(".") && $0 != "README.md" }.sorted().map { "\(folder)/\($0)" }
    }
    return files
}()

/// The fuzz harness's walk: NVFP4 modules grouped and a few rows dequantized, every tensor read.
private func readEverything(_ reader: SafetensorsReader) throws {
    try ExhaustiveRead.run(reader)
}

@Suite("Fuzz corpus and regressions")
struct FuzzRegressionTests {
    @Test("the committed fuzz inputs exist")
    func corpusIsThere() {
        #expect(fuzzFiles.filter { $0.hasPrefix("corpus/") }.count >= 5, "\(fuzzFiles)")
    }

    @Test("every fuzz input is read or rejected without crashing", arguments: fuzzFiles)
    func replay(_ name: String) throws {
        let path = ToolRunner.repositoryRoot.appendingPathComponent("Fuzz/\(name)").path
        let bytes = try ToolRunner.readFile(path)
        // Mapped (or, for zstd content, streamed) through the path-based reader.
        do { try readEverything(try SafetensorsReader(path: path)) } catch is FileError {}
        // Random access (zstd content spooled).
        do { try readEverything(try SafetensorsReader.randomAccess(path: path)) } catch is FileError {}
        // A stream with short reads.
        do { try readEverything(try SafetensorsReader(stream: MemoryStream(bytes, chunk: 5), displayPath: name)) } catch is FileError {}
        // The command line, end to end: exit 0 or a one-line error, never a crash.
        let r = try ToolRunner.run(["inspect", path])
        #expect(r.status == 0 || (r.status == 2 && r.stderr.hasPrefix("error: ") && r.stderr.split(separator: "\n").count == 1), "\(r)")
    }
}
