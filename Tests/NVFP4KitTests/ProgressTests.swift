import Foundation
import NVFP4Kit
@testable import NVFP4CLI
import Testing

/// Progress on a pseudo-terminal (util-linux `script` gives the tool one), the line-per-file form
/// with `--progress`, and silence otherwise.
@Suite("progress")
struct ProgressTests {
    /// Runs `arguments` on a pseudo-terminal `columns` wide; returns what the terminal showed.
    static func onTerminal(_ arguments: [String], columns: Int) throws -> String {
        let tool = try #require(ToolRunner.executable?.path)
        let command = ([tool] + arguments).map { "'\($0)'" }.joined(separator: " ")
        let result = try ShellRunner.run("stty cols \(columns) 2>/dev/null; COLUMNS=\(columns) script -q -e -c \"stty cols \(columns); \(command)\" /dev/null")
        #expect(result.status == 0, "\(result)")
        return String(decoding: result.stdout, as: UTF8.self)
    }

    @Test("on a terminal: one line redrawn in place, within the width, with percent, bytes and the tensor; cleared before the summary")
    func terminal() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let shown = try Self.onTerminal(["quantize", ModelFixtures.llama, "-o", scratch.file("out")], columns: 60)
        // Each redraw starts with "\r ESC[K"; the last one clears the line for the summary.
        let segments = shown.components(separatedBy: "\r\u{1B}[K").dropFirst()
        #expect(segments.last?.hasPrefix("kept:") == true, "the line is cleared before the summary: \(shown)")
        let redraws = segments.dropLast().map { $0.components(separatedBy: "\n")[0] }
        #expect(!redraws.isEmpty, "no progress drawn: \(shown)")
        for line in redraws {
            #expect(line.count < 60, "wider than the terminal: \(line)")
            #expect(line.hasPrefix("quantize "), "\(line)")
        }
        #expect(redraws.contains { $0.contains("%") && $0.contains("/3 ") }, "files i/N and percent: \(redraws)")
        #expect(shown.contains("wrote 3 files"), "the summary follows: \(shown)")
    }

    @Test("off a terminal nothing, with --progress one line per file, for every command", arguments: ["quantize", "verify", "dequantize", "check"])
    func lines(command: String) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let quantized = scratch.file("q")
        #expect(try ToolRunner.run(["quantize", ModelFixtures.llama, "-o", quantized, "-q"]).status == 0)
        let arguments: [String]
        switch command {
        case "quantize": arguments = ["quantize", ModelFixtures.llama, "-o", scratch.file("out")]
        case "verify": arguments = ["verify", ModelFixtures.llama, quantized]
        case "dequantize": arguments = ["dequantize", quantized, "-o", scratch.file("dense")]
        default: arguments = ["check", quantized]
        }
        let silent = try ToolRunner.run(arguments)
        #expect(!silent.stderr.contains("\r") && !silent.stderr.contains("\(command) 1/"), "\(silent)")
        let logged = try ToolRunner.run(arguments.map { $0 == scratch.file("out") ? scratch.file("out2") : $0 == scratch.file("dense") ? scratch.file("dense2") : $0 } + ["--progress"])
        let lines = logged.stderrLines.filter { $0.hasPrefix("\(command) ") && $0.contains(" in ") && $0.hasSuffix("/s)") }
        let files = ["quantize": 3, "dequantize": 3][command] ?? 1
        #expect(lines.count == files, "\(logged)")
        #expect(!logged.stderr.contains("\r"))
    }

    @Test("time left: m:ss and h:mm:ss")
    func durations() {
        #expect(ProgressDisplay.duration(5) == "0:05")
        #expect(ProgressDisplay.duration(750) == "12:30")
        #expect(ProgressDisplay.duration(3723) == "1:02:03")
    }
}

extension ProgressTests {
    @Test("merge --progress prints one line per shard it checks")
    func mergeLines() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let out = scratch.file("out")
        for worker in ["0/2", "1/2"] { #expect(try ToolRunner.run(["quantize", ModelFixtures.llama, "-o", out, "--shard", worker, "-q"]).status == 0) }
        let merged = try ToolRunner.run(["merge", out, "--progress"])
        #expect(merged.status == 0, "\(merged)")
        #expect(merged.stderrLines.filter { $0.hasPrefix("merge ") && $0.contains("/3 ") && $0.hasSuffix("/s)") }.count == 3, "\(merged)")
    }
}
