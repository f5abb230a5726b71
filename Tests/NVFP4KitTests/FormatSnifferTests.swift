import Foundation
import NVFP4Kit
import Testing

/// Files of other formats are named for what they are, through every command and stdin.
@Suite("not safetensors: say what the file is")
struct FormatSnifferTests {
    static let cases: [(name: String, bytes: [UInt8], says: String)] = [
        ("config.json", Array("{\n  \"architectures\": [\"LlamaForCausalLM\"]\n}\n".utf8), "this is a JSON file"),
        ("list.json", Array("  [1, 2, 3, 4, 5, 6, 7, 8]".utf8), "this is a JSON file"),
        ("model.gguf", Array("GGUF".utf8) + [3, 0, 0, 0] + [UInt8](repeating: 0, count: 24), "GGUF file"),
        ("pytorch_model.bin", [0x80, 0x02, 0x7D, 0x71, 0x00, 0x28, 0x58, 0x01] + [UInt8](repeating: 0x41, count: 24), "Python pickle"),
        ("model.pt", Array("PK\u{3}\u{4}".utf8) + [UInt8](repeating: 0x14, count: 28), "zip archive"),
        ("model.safetensors.gz", [0x1F, 0x8B, 0x08, 0x00, 0x11, 0x22, 0x33, 0x44] + [UInt8](repeating: 0, count: 24), "gzip-compressed"),
        ("lfs.safetensors", Array("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n".utf8), "Git LFS pointer"),
    ]

    @Test("each format is named in one error line, exit 2", arguments: 0..<cases.count, ["quantize", "inspect", "check", "verify", "stdin"])
    func named(index: Int, command: String) throws {
        let c = Self.cases[index]
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let path = scratch.file(c.name)
        try Data(c.bytes).write(to: URL(fileURLWithPath: path))
        let arguments: [String]
        switch command {
        case "quantize": arguments = ["quantize", path, "-o", scratch.file("out.safetensors")]
        case "verify": arguments = ["verify", FixturePaths.tinyLlama, path]
        case "stdin": arguments = ["quantize", "-", "-o", scratch.file("out.safetensors")]
        default: arguments = [command, path]
        }
        let result = try ToolRunner.run(arguments, stdin: command == "stdin" ? c.bytes : nil)
        #expect(result.status == 2, "\(result)")
        #expect(result.stderrLines.count == 1 && result.stderr.contains(c.says), "\(result)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path) == [c.name], "nothing written")
    }

    @Test("a valid length prefix is never taken for another format: every length up to the limit reads as a length")
    func validLengthsPass() {
        for length: UInt64 in [8, 123, 0x7B, 0x7B7B, 0x8002, 0x0304_4B50 & 0x00FF_FFFF, 99_999_999] {
            #expect(throws: Never.self) { try SafetensorsHeader.validateLength(length, fileSize: length + 8) }
        }
    }
}
