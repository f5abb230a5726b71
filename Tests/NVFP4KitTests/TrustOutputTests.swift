import Foundation
import Glibc
import NVFP4Kit
import Testing

// Issue 13: outputs never touch inputs, --force replaces only what nvfp4 wrote, killed runs'
// leftovers are cleaned, and zstd input is checked before it is spooled.

@Suite("Outputs never touch inputs")
struct OutputGuardTests {
    /// How the output relates to the input.
    enum Overlap: String, CaseIterable, Sendable {
        case sameFolder, sameFolderViaLink, outputContainsInput, outputIsPreviousOutputHoldingInput, outputInsideInput, outputInsideInputViaLink
        case singleFileOutputIsParentFolder
    }

    @Test("an output that is, contains or lies inside the input is refused, --force included", arguments: Overlap.allCases)
    func overlap(_ overlap: Overlap) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            var input = dir.file("in")
            var output = ""
            switch overlap {
            case .sameFolder:
                try HostileFolders.copyModel(into: dir)
                output = input
            case .sameFolderViaLink:
                try HostileFolders.copyModel(into: dir)
                symlink(input, dir.file("alias"))
                output = dir.file("alias")
            case .outputContainsInput:
                try dir.makeSubfolder("work")
                input = try HostileFolders.copyModel(into: dir, as: "work/in")
                output = dir.file("work")
            case .outputIsPreviousOutputHoldingInput:
                try HostileFolders.copyModel(into: dir)
                let first = try ToolRunner.run(["quantize", input, "-o", dir.file("out"), "-q"])
                #expect(first.status == 0, "\(first)")
                #expect(rename(input, dir.file("out/in")) == 0)
                input = dir.file("out/in")
                output = dir.file("out")
            case .outputInsideInput:
                try HostileFolders.copyModel(into: dir)
                output = "\(input)/quantized"
            case .outputInsideInputViaLink:
                try HostileFolders.copyModel(into: dir)
                symlink(input, dir.file("alias"))
                output = dir.file("alias/quantized")
            case .singleFileOutputIsParentFolder:
                try dir.makeSubfolder("d")
                input = try dir.copyFixture("tiny-llama/model.safetensors", as: "d/m.safetensors")
                output = dir.file("d")
            }
            let before = HostileFolders.tree(dir.path)
            let r = try ToolRunner.run(["quantize", input, "-o", output, "--force", "-q"])
            #expect(r.status == 2 && r.stderrLines.count == 1, "\(r)")
            let expected = ["is the input", "contains the input", "lies inside the input folder"]
            #expect(expected.contains { r.stderr.contains($0) }, "\(r)")
            #expect(HostileFolders.tree(dir.path) == before, "nothing moved, nothing hidden left")
        }
    }

    /// What already exists at the output when --force is given.
    enum Existing: String, CaseIterable, Sendable {
        case previousOutput, emptyFolder, previousOutputWithUserSubfolder, foreignFolder, regularFile, linkToPreviousOutput
    }

    @Test("--force replaces only a file-only folder nvfp4 wrote or an empty folder, and leaves nothing hidden", arguments: Existing.allCases)
    func force(_ existing: Existing) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try HostileFolders.copyModel(into: dir)
            let out = dir.file("out")
            let replaceable: Bool
            switch existing {
            case .previousOutput:
                #expect(try ToolRunner.run(["quantize", input, "-o", out, "-q"]).status == 0)
                replaceable = true
            case .emptyFolder:
                try dir.makeSubfolder("out")
                replaceable = true
            case .previousOutputWithUserSubfolder:
                #expect(try ToolRunner.run(["quantize", input, "-o", out, "-q"]).status == 0)
                try dir.makeSubfolder("out/my-notes")
                try dir.write(Array("mine".utf8), to: "out/my-notes/a.txt")
                replaceable = false
            case .foreignFolder:
                try dir.makeSubfolder("out")
                try dir.write(Array("mine".utf8), to: "out/a.txt")
                replaceable = false
            case .regularFile:
                try dir.write(Array("mine".utf8), to: "out")
                replaceable = false
            case .linkToPreviousOutput:
                #expect(try ToolRunner.run(["quantize", input, "-o", dir.file("real"), "-q"]).status == 0)
                symlink(dir.file("real"), out)
                replaceable = false
            }
            let before = HostileFolders.tree(dir.path)
            let r = try ToolRunner.run(["quantize", input, "-o", out, "--force", "-q", "--format", "modelopt"])
            if replaceable {
                #expect(r.status == 0, "\(r)")
                #expect(ToolRunner.exists("\(out)/hf_quant_config.json"))
                #expect(try dir.contents() == ["in", "out"], "no hidden leftover beside the output")
            } else {
                #expect(r.status == 2 && r.stderrLines.count == 1 && r.stderr.contains("--force replaces only"), "\(r)")
                #expect(HostileFolders.tree(dir.path) == before)
            }
        }
    }
}

@Suite("Leftovers of killed runs")
struct CrashLeftoverTests {
    /// Starts `nvfp4 quantize - -o out`, feeds it a header and part of the data, waits until its
    /// temporary output exists, and kills it with SIGKILL (no handler runs). Returns the leftover's name.
    static func killMidWrite(in dir: ToolRunner.TemporaryDirectory) throws -> (leftover: String, pid: pid_t) {
        let bytes = try ToolRunner.readFile(ToolRunner.fixture("tiny-llama/model.safetensors"))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ToolRunner.executable!.path)
        process.arguments = ["quantize", "-", "-o", dir.file("out.safetensors"), "-q"]
        let stdin = Pipe()
        process.standardInput = stdin
        process.standardError = FileHandle.nullDevice
        try process.run()
        let length = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        try stdin.fileHandleForWriting.write(contentsOf: Data(bytes[0..<(8 + length + 16)]))
        var leftover: String?
        for _ in 0..<400 where leftover == nil {
            usleep(25_000)
            leftover = try dir.contents().first { $0.hasPrefix(".out.safetensors.") }
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try? stdin.fileHandleForWriting.close()
        guard let leftover else { throw ToolRunnerError(message: "no temporary output appeared") }
        return (leftover, process.processIdentifier)
    }

    @Test("after SIGKILL mid-write, the next run removes the temporary file and says so")
    func sigkill() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let (leftover, pid) = try Self.killMidWrite(in: dir)
            #expect(leftover.contains(".nvfp4-\(pid)-"), "the name carries the owner's pid: \(leftover)")
            #expect(try dir.contents() == [leftover], "SIGKILL left it behind")
            let r = try ToolRunner.run(["quantize", ToolRunner.fixture("tiny-llama/model.safetensors"), "-o", dir.file("out.safetensors")])
            #expect(r.status == 0, "\(r)")
            #expect(r.stderrLines.first == "removed 1 leftover(s) of interrupted nvfp4 runs: \(dir.file(leftover))", "\(r)")
            #expect(try dir.contents() == ["out.manifest.json", "out.safetensors"])
        }
    }

    @Test("merge removes dead runs' leftovers inside and beside the merged folder, never a live run's")
    func mergedFolder() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let (killed, _) = try Self.killMidWrite(in: dir)
            let tag = killed.split(separator: "-").last!.split(separator: ".").first!  // the host tag
            let input = try HostileFolders.copyModel(into: dir)
            let out = dir.file("out")
            for i in 0..<2 { #expect(try ToolRunner.run(["quantize", input, "-o", out, "--shard", "\(i)/2", "-q"]).status == 0) }
            #expect(!ToolRunner.exists(dir.file(killed)), "the first worker removed the killed run's file beside out")
            let dead = try HostileFolders.deadProcessID()
            let deadFile = ".config.json.nvfp4-\(dead)-\(tag).Ab12Cd"
            let deadFolder = ".out.nvfp4-\(dead)-\(tag).Xy34Zw"
            let liveFile = ".index.nvfp4-\(getpid())-\(tag).Qq56Rr"
            let otherHost = ".x.nvfp4-\(dead)-00000000.Ab12Cd"
            try dir.write([1, 2, 3], to: "out/\(deadFile)")
            try dir.write([1], to: "out/\(liveFile)")
            try dir.write([1], to: "out/\(otherHost)")
            try dir.makeSubfolder(deadFolder)
            try dir.write([1], to: "\(deadFolder)/model-00001-of-00003.safetensors")
            let r = try ToolRunner.run(["merge", out])
            #expect(r.status == 0, "\(r)")
            let line = r.stderrLines.first { $0.hasPrefix("removed ") } ?? ""
            #expect(line.hasPrefix("removed 2 leftover(s)") && line.contains(deadFile) && line.contains(deadFolder), "\(r)")
            #expect(!ToolRunner.exists("\(out)/\(deadFile)") && !ToolRunner.exists(dir.file(deadFolder)))
            #expect(ToolRunner.exists("\(out)/\(liveFile)"), "a live run's temporary file stays")
            #expect(ToolRunner.exists("\(out)/\(otherHost)"), "another host's temporary file stays")
        }
    }
}

@Suite("zstd input: skippable frames, declared size, spool")
struct ZstdTrustTests {
    static let model = ToolRunner.fixture("tiny-llama/model.safetensors")

    /// A skippable frame (magic 0x184D2A50 + `nibble`) holding `payload`.
    static func skippable(_ payload: [UInt8], nibble: UInt8) -> [UInt8] {
        let size = UInt32(payload.count)
        return [0x50 | nibble, 0x2A, 0x4D, 0x18] + withUnsafeBytes(of: size.littleEndian) { Array($0) } + payload
    }

    @Test("leading skippable frames are accepted, as by the zstd tool", arguments: [UInt8(0), 0x7, 0xF])
    func skippableFrames(_ nibble: UInt8) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let plain = try ToolRunner.readFile(Self.model)
            let framed = Self.skippable(Array("metadata".utf8), nibble: nibble) + Self.skippable([], nibble: 0) + (try zstdCompress(plain))
            try dir.write(framed, to: "m.safetensors.zst")
            try dir.write(framed, to: "unnamed")  // recognised by its first bytes
            let expected = try ToolRunner.run(["quantize", Self.model, "-o", "-", "-q"]).stdout
            for name in ["m.safetensors.zst", "unnamed"] {
                let r = try ToolRunner.run(["quantize", dir.file(name), "-o", "-", "-q"])
                #expect(r.status == 0 && r.stdout == expected, "\(name): \(r)")
            }
            let piped = try ToolRunner.run(["quantize", "-", "-o", "-", "-q"], stdin: framed)
            #expect(piped.status == 0 && piped.stdout == expected, "\(piped)")
            if ShellRunner.has("zstd") {
                try dir.write(framed, to: "check.zst")
                #expect(try ShellRunner.run("zstd -t -q check.zst", in: dir.path).status == 0, "the zstd tool accepts the same file")
            }
        }
    }

    /// A zstd frame whose header declares `contentSize` bytes, holding `content` as a raw block
    /// (not the last, so the frame is left open): written by hand from RFC 8878 §3.1.1.
    static func frameDeclaring(_ contentSize: UInt64, content: [UInt8]) -> [UInt8] {
        var bytes = zstdMagic
        bytes.append(0xC0)  // Frame_Header_Descriptor: 8-byte Frame_Content_Size, window descriptor present
        bytes.append(10 << 3)  // Window_Descriptor: window log 20
        bytes += withUnsafeBytes(of: contentSize.littleEndian) { Array($0) }
        let header = UInt32(content.count) << 3  // Last_Block 0, Block_Type raw
        bytes += [UInt8(header & 0xFF), UInt8(header >> 8 & 0xFF), UInt8(header >> 16 & 0xFF)]
        return bytes + content
    }

    @Test("a small .zst declaring more content than TMPDIR has free is refused before spooling")
    func declaredSizeAgainstFreeSpace() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            // The safetensors header claims a 1 PiB tensor; the frame claims as much content.
            let json = "{\"w.weight\":{\"dtype\":\"U8\",\"shape\":[1125899906842624],\"data_offsets\":[0,1125899906842624]}}"
            let header = withUnsafeBytes(of: UInt64(json.utf8.count).littleEndian) { Array($0) } + Array(json.utf8)
            try dir.write(Self.skippable([1, 2], nibble: 3) + Self.frameDeclaring(UInt64(header.count) + (1 << 50), content: header + [0, 0, 0]), to: "bomb.safetensors.zst")
            let spool = try dir.makeSubfolder("spool")
            let r = try ShellRunner.run("TMPDIR='\(spool)' \"$NVFP4\" dequantize bomb.safetensors.zst -o out.safetensors", in: dir.path, timeout: 60)
            #expect(r.status == 2, "\(r)")
            #expect(r.stderr.contains("TMPDIR") && r.stderr.contains(spool) && r.stderr.contains("bomb.safetensors.zst"), "\(r)")
            #expect(try dir.contents(of: "spool").isEmpty && !ToolRunner.exists(dir.file("out.safetensors")))
        }
    }

    @Test("the spool is gone after success and after a failure part-way")
    func spoolRemoved() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let quantized = try ToolRunner.run(["quantize", Self.model, "-o", dir.file("q.safetensors"), "-q"])
            #expect(quantized.status == 0, "\(quantized)")
            let compressed = try zstdCompress(try ToolRunner.readFile(dir.file("q.safetensors")))
            try dir.write(compressed, to: "q.safetensors.zst")
            try dir.write(Array(compressed.prefix(compressed.count * 2 / 3)), to: "cut.safetensors.zst")
            let spool = try dir.makeSubfolder("spool")
            let ok = try ShellRunner.run("TMPDIR='\(spool)' \"$NVFP4\" dequantize q.safetensors.zst -o d.safetensors -q", in: dir.path)
            #expect(ok.status == 0, "\(ok)")
            let cut = try ShellRunner.run("TMPDIR='\(spool)' \"$NVFP4\" dequantize cut.safetensors.zst -o e.safetensors -q", in: dir.path)
            #expect(cut.status == 2 && cut.stderr.contains("cut.safetensors.zst"), "\(cut)")
            #expect(try dir.contents(of: "spool").isEmpty)
        }
    }
}
