import Foundation
import NVFP4Kit
import Testing

/// The tiny Llama fixture: 21 tensors, 14 of them quantizable, 851 KiB.
private let model = ToolRunner.fixture("tiny-llama/model.safetensors")

/// The fixture's bytes, zstd-compressed with our own codec (no zstd command needed).
private func compressedModel() throws -> [UInt8] { try zstdCompress(try ToolRunner.readFile(model)) }

/// The expected NVFP4 output for the fixture, made from the plain file.
private func referenceOutput(_ dir: ToolRunner.TemporaryDirectory) throws -> [UInt8] {
    let path = dir.file("reference.safetensors")
    let r = try ToolRunner.run(["quantize", model, "-o", path, "--manifest", dir.file("reference.json"), "-q"])
    #expect(r.status == 0, "\(r)")
    return try ToolRunner.readFile(path)
}

@Suite("Shell pipelines")
struct PipelineTests {
    @Test("README: zstd -dc m.safetensors.zst | nvfp4 quantize - -o - --manifest m.json | nvfp4 inspect -")
    func readmePipeline() throws {
        try #require(ShellRunner.has("zstd"), "scripts/setup.sh installs the zstd command")
        try ToolRunner.withTemporaryDirectory { dir in
            let expected = try referenceOutput(dir)
            try dir.write(try compressedModel(), to: "m.safetensors.zst")
            let r = try ShellRunner.run(
                "zstd -dc m.safetensors.zst | \"$NVFP4\" quantize - -o - --manifest m.json | \"$NVFP4\" inspect -", in: dir.path)
            #expect(r.status == 0, "\(r)")
            #expect(r.stdoutText.hasPrefix("<stdin>: 49 tensors"), "\(r)")
            #expect(r.stdoutText.contains("NVFP4 weights (14):"), "\(r)")
            // The manifest describes exactly the bytes that went down the pipe.
            let manifest = try JSONParser.parse(try ToolRunner.readFile(dir.file("m.json")))
            #expect(manifest["output"]?["sha256"]?.stringValue == sha256Hex(expected))
            #expect(manifest["output"]?["path"]?.stringValue == "<stdout>")
            // The input is not hashed by default (quantize --hash output); its size is recorded.
            #expect(manifest["input"]?["sha256"] == .null)
            #expect(manifest["input"]?["bytes"]?.unsignedValue == UInt64(try ToolRunner.readFile(model).count))
            // Logs went to stderr only; stdout of the last stage is the inspect table.
            #expect(r.stderr.contains("quantized 14 of 21 tensors"), "\(r)")
        }
    }

    @Test("the same pipeline with zstd on both ends, through nvfp4 alone: cat | quantize --compress zstd | inspect | verify")
    func zstdBothEnds() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let expected = try referenceOutput(dir)
            try dir.write(try compressedModel(), to: "m.safetensors.zst")
            let r = try ShellRunner.run(
                "cat m.safetensors.zst | \"$NVFP4\" quantize - -o - --compress zstd:5 --manifest m.json -q > q.safetensors.zst && "
                + "\"$NVFP4\" inspect - < q.safetensors.zst && \"$NVFP4\" verify m.safetensors.zst q.safetensors.zst --manifest m.json -q",
                in: dir.path)
            #expect(r.status == 0, "\(r)")
            let compressed = try ToolRunner.readFile(dir.file("q.safetensors.zst"))
            #expect(Array(compressed.prefix(4)) == zstdMagic)
            #expect(try drain(try ZstdDecompressingStream(source: MemoryStream(compressed))) == expected)
        }
    }

    @Test("nvfp4 inspect --json m.safetensors | jq …")
    func inspectJSONIntoJQ() throws {
        let r = try ShellRunner.run("\"$NVFP4\" inspect --json \(shellQuoted(model))")
        #expect(r.status == 0 && r.stderr.isEmpty, "\(r)")
        let json = try JSONParser.parse(r.stdout)
        #expect(json["tensors"]?.arrayValue?.count == 21)
        if ShellRunner.has("jq") {
            let jq = try ShellRunner.run("\"$NVFP4\" inspect --json \(shellQuoted(model)) | jq -r '.tensors | length'")
            #expect(jq.status == 0 && jq.stdoutText == "21\n", "\(jq)")
        }
    }

    @Test("inspect reads a .zst file's header only, and all of stdin so the writer can finish")
    func inspectZst() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            // A header followed by data that is not even complete: a header-only read succeeds.
            let full = try compressedModel()
            let path = try dir.write(Array(full.prefix(full.count / 2)), to: "m.safetensors.zst")
            let r = try ToolRunner.run(["inspect", path])
            #expect(r.status == 0 && r.stdoutText.hasPrefix(path + ": 21 tensors"), "\(r)")
            // stdin is drained and checked: a truncated stream is an error there.
            let truncated = Array(try ToolRunner.readFile(model).dropLast(100))
            let s = try ToolRunner.run(["inspect", "-"], stdin: truncated)
            #expect(s.status == 2 && s.stderr.contains("<stdin>") && s.stderr.contains("ended"), "\(s)")
        }
    }

    @Test("a closed downstream pipe ends quantize quietly with a non-zero status", arguments: [false, true])
    func closedPipe(ignoreSIGPIPE: Bool) throws {
        // With SIGPIPE ignored (as some parents do), EPIPE must end the process the same quiet way.
        let trap = ignoreSIGPIPE ? "trap '' PIPE; " : ""
        let r = try ShellRunner.run(
            trap + "set +o pipefail; \"$NVFP4\" quantize \(shellQuoted(model)) -o - -q | head -c 10 > /dev/null; echo \"status=${PIPESTATUS[0]}\"")
        #expect(r.stdoutText == "status=141\n", "\(r)")
        #expect(r.stderr.isEmpty, "nothing on stderr: \(r)")
    }

    @Test("a closed downstream pipe ends inspect quietly")
    func closedPipeInspect() throws {
        let r = try ShellRunner.run("trap '' PIPE; set +o pipefail; \"$NVFP4\" inspect \(shellQuoted(model)) | head -c 1 > /dev/null; echo \"status=${PIPESTATUS[0]}\"")
        #expect(r.stdoutText == "status=141\n" || r.stdoutText == "status=0\n", "\(r)")
        #expect(r.stderr.isEmpty, "\(r)")
    }
}

/// Lowercase hex SHA-256 (swift-crypto, as the tool computes it).
func sha256Hex(_ bytes: [UInt8]) -> String {
    let sink = MemorySink()
    try? sink.write(bytes)
    return (try? sink.seal().sha256) ?? ""
}

@Suite("zstd output of dequantize")
struct DequantizeZstdTests {
    @Test("dequantize -o name.zst writes the same tensors, compressed; dequantize reads .zst input")
    func dequantizeZst() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let q = dir.file("q.safetensors")
            #expect(try ToolRunner.run(["quantize", model, "-o", q, "-q"]).status == 0)
            try dir.write(try zstdCompress(try ToolRunner.readFile(q)), to: "q.safetensors.zst")
            let plain = dir.file("d.safetensors"), packed = dir.file("d.safetensors.zst")
            #expect(try ToolRunner.run(["dequantize", q, "-o", plain, "-q"]).status == 0)
            let r = try ToolRunner.run(["dequantize", dir.file("q.safetensors.zst"), "-o", packed, "-q"])
            #expect(r.status == 0, "\(r)")
            let compressed = try ToolRunner.readFile(packed)
            #expect(Array(compressed.prefix(4)) == zstdMagic)
            #expect(try drain(try ZstdDecompressingStream(source: MemoryStream(compressed))) == ToolRunner.readFile(plain))
        }
    }
}
