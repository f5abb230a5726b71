import Foundation
import Glibc
import NVFP4Kit
import Testing

private let model = ToolRunner.fixture("tiny-llama/model.safetensors")

/// Waits until `condition` holds, polling, for at most `seconds`.
private func waitUntil(seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}

@Suite("Faults: signals, full disks, changing inputs", .serialized)
struct FaultTests {
    enum Output: String, CaseIterable, Sendable { case plain = "out.safetensors", zstd = "out.safetensors.zst" }

    @Test("SIGINT or SIGTERM while the output is being written leaves no output and no temporary file",
          arguments: [SIGINT, SIGTERM], Output.allCases)
    func signalDuringWrite(signal: Int32, output: Output) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let outFolder = try dir.makeSubfolder("out")
            let bytes = try ToolRunner.readFile(model)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try #require(ToolRunner.executable?.path))
            process.arguments = ["quantize", "-", "-o", outFolder + "/" + output.rawValue]
            let stdin = Pipe()
            process.standardInput = stdin
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            try? stdin.fileHandleForReading.close()
            // Half the checkpoint: the header is read, the output's temporary file is open and
            // being written, and the process waits for the rest of its input.
            try stdin.fileHandleForWriting.write(contentsOf: Data(bytes[0..<(bytes.count / 2)]))
            let started = try waitUntil(seconds: 60) { try dir.contents(of: "out").contains { $0.hasPrefix(".out.safetensors") } }
            #expect(started, "the temporary output never appeared")
            #expect(process.isRunning)
            let pid = process.processIdentifier
            kill(pid, signal)
            let exited = DispatchSemaphore(value: 0)
            let watchdog = ToolRunner.runOnThread { if exited.wait(timeout: .now() + 60) == .timedOut { kill(pid, SIGKILL) } }
            process.waitUntilExit()
            exited.signal()
            watchdog.wait()
            try? stdin.fileHandleForWriting.close()
            #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == signal,
                    "the exit status must say which signal ended it: \(process.terminationReason) \(process.terminationStatus)")
            let left = try dir.contents(of: "out")
            #expect(left == [], "left behind: \(left)")
        }
    }

    @Test("a file-size limit (ulimit -f, EFBIG) gives one error line and no output", arguments: Output.allCases)
    func fileTooLarge(output: Output) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            try dir.makeSubfolder("out")
            // 8 KiB: far below the 349 KiB output (and its zstd-compressed form).
            let r = try ShellRunner.run("ulimit -f 8; exec \"$NVFP4\" quantize \(shellQuoted(model)) -o out/\(output.rawValue) -q", in: dir.path)
            #expect(r.status == 2, "\(r)")
            let lines = r.stderr.split(separator: "\n")
            #expect(lines.count == 1, "one line: \(r.stderr)")
            #expect(r.stderr.hasPrefix("error: ") && r.stderr.contains("File too large") && r.stderr.contains(output.rawValue), "\(r)")
            let left = try dir.contents(of: "out")
            #expect(left == [], "left behind: \(left)")
        }
    }

    @Test("a full disk (ENOSPC, written to /dev/full) gives one error line")
    func diskFull() throws {
        // /dev/full fails every write with ENOSPC: the stdout path.
        let r = try ShellRunner.run("exec \"$NVFP4\" quantize \(shellQuoted(model)) -o - -q > /dev/full")
        #expect(r.status == 2, "\(r)")
        #expect(r.stderr.split(separator: "\n").count == 1 && r.stderr.contains("No space left on device"), "\(r)")
    }

    /// Whether this process may mount a small tmpfs (root with CAP_SYS_ADMIN); probed once.
    static let canMountTmpfs: Bool = {
        guard getuid() == 0, let r = try? ShellRunner.run("d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs \"$d\" && umount \"$d\"; s=$?; rmdir \"$d\"; exit $s")
        else { return false }
        return r.status == 0
    }()

    @Test("a full file system (ENOSPC on a 128 KiB tmpfs) gives one error line and no output",
          .enabled(if: FaultTests.canMountTmpfs, "needs root and permission to mount a tmpfs"), arguments: Output.allCases)
    func fileSystemFull(output: Output) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let mountPoint = try dir.makeSubfolder("small")
            let m = try ShellRunner.run("mount -t tmpfs -o size=128k tmpfs \(shellQuoted(mountPoint))")
            try #require(m.status == 0, "\(m)")
            defer { _ = try? ShellRunner.run("umount \(shellQuoted(mountPoint))") }
            // Fill most of it first: about 30 KiB stay free, far less than either output (349 KiB, 304 KiB as zstd).
            _ = try ShellRunner.run("head -c 100000 /dev/zero > \(shellQuoted(mountPoint))/filler")
            let r = try ToolRunner.run(["quantize", model, "-o", mountPoint + "/" + output.rawValue, "-q"])
            #expect(r.status == 2, "\(r)")
            #expect(r.stderr.split(separator: "\n").count == 1 && r.stderr.hasPrefix("error: ") && r.stderr.contains("No space left on device"), "\(r)")
            let left = try dir.contents(of: "small")
            #expect(left == ["filler"], "left behind: \(left)")
        }
    }

    @Test("an input that grows or is rewritten while being read is detected before anything is published")
    func inputChangedWhileRead() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.write(try ToolRunner.readFile(model), to: "in.safetensors")
            // Grown (size differs).
            do {
                let reader = try SafetensorsReader(path: input)
                let handle = try #require(FileHandle(forWritingAtPath: input))
                try handle.seekToEnd()
                try handle.write(contentsOf: Data([0]))
                try handle.close()
                #expect(throws: FileError.self) { _ = try reader.finish() }
                do { _ = try reader.finish() } catch let error as FileError {
                    #expect(error.cause is InputChangedError && "\(error)".contains("changed while it was being read"), "\(error)")
                }
            }
            // Rewritten in place, same size (the modification time differs).
            try dir.write(try ToolRunner.readFile(model), to: "in.safetensors")
            let reader = try SafetensorsReader(path: input)
            usleep(50_000)  // file timestamps have a coarse clock
            let handle = try #require(FileHandle(forWritingAtPath: input))
            try handle.seek(toOffset: 5000)
            try handle.write(contentsOf: Data([0x55]))
            try handle.close()
            #expect(throws: FileError.self) { _ = try reader.finish() }
        }
    }

    @Test("a mapped input truncated while being read ends the process with one error line, not a crash (SIGBUS)")
    func truncatedWhileMapped() async throws {
        let result = await #expect(processExitsWith: .exitCode(2), observing: [\.standardErrorContent]) {
            TemporaryFileRegistry.installSignalHandlers()
            let path = "/tmp/nvfp4-sigbus-\(getpid()).safetensors"
            let json = "{\"x\":{\"dtype\":\"U8\",\"shape\":[1048576],\"data_offsets\":[0,1048576]}}"
            var bytes = withUnsafeBytes(of: UInt64(json.utf8.count).littleEndian) { Array($0) }
            bytes += Array(json.utf8) + [UInt8](repeating: 1, count: 1 << 20)
            _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
            let reader = try! SafetensorsReader(path: path, hashing: false)
            truncate(path, 4096)
            unlink(path)
            let tensor = reader.header.tensors[0]
            // Touching the pages past the new end raises SIGBUS.
            let sum = try! reader.withBytes(of: tensor) { $0.reduce(0) { $0 &+ Int($1) } }
            print(sum)
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(stderr.hasPrefix("error: /tmp/nvfp4-sigbus-") && stderr.hasSuffix("the file shrank while it was being read; nothing was written\n"), "\(stderr)")
        #expect(stderr.split(separator: "\n").count == 1)
    }

    @Test("nvfp4 quantize on an input truncated mid-run exits 2 with one error line and publishes nothing",
          arguments: OutputIO.allCases)
    func truncatedMidRun(io: OutputIO) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            // A kept embedding (written from the mapping: with --io buffered the kernel then
            // refuses the write instead of raising SIGBUS), then 4096 x 2048 bf16 (16 MiB) to
            // quantize: seconds of work for a debug build on one thread.
            let rows = 4096, columns = 2048
            let size = rows * columns * 2
            let json = "{\"embed_tokens.weight\":{\"dtype\":\"BF16\",\"shape\":[\(rows),\(columns)],\"data_offsets\":[0,\(size)]},"
                + "\"layer.weight\":{\"dtype\":\"BF16\",\"shape\":[\(rows),\(columns)],\"data_offsets\":[\(size),\(2 * size)]}}"
            var bytes = withUnsafeBytes(of: UInt64(json.utf8.count).littleEndian) { Array($0) } + Array(json.utf8)
            var row = [UInt8](repeating: 0x3C, count: columns * 2)  // bf16 high bytes: magnitudes near 1
            for i in stride(from: 0, to: row.count, by: 2) { row[i] = UInt8(truncatingIfNeeded: i &* 37) }
            bytes.reserveCapacity(bytes.count + 2 * rows * row.count)
            for _ in 0..<(2 * rows) { bytes += row }
            let input = try dir.write(bytes, to: "in.safetensors")
            let outFolder = try dir.makeSubfolder("out")
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try #require(ToolRunner.executable?.path))
            process.arguments = ["quantize", input, "-o", outFolder + "/out.safetensors", "-j", "1", "--io", io.rawValue]
            let err = Pipe()
            process.standardError = err
            process.standardOutput = FileHandle.nullDevice
            process.standardInput = FileHandle.nullDevice
            try process.run()
            try? err.fileHandleForWriting.close()
            let started = try waitUntil(seconds: 60) { try dir.contents(of: "out").contains { $0.hasPrefix(".out.safetensors") } }
            #expect(started, "the temporary output never appeared")
            truncate(input, 1 << 20)
            let stderr = ShellRunner.readAll(err.fileHandleForReading.fileDescriptor)
            process.waitUntilExit()
            let text = String(decoding: stderr, as: UTF8.self)
            #expect(process.terminationReason == .exit && process.terminationStatus == 2, "\(process.terminationReason) \(process.terminationStatus): \(text)")
            #expect(text.hasPrefix("error: \(input): ") && text.split(separator: "\n").count == 1, "\(text)")
            #expect(text.contains("shrank while it was being read") || text.contains("changed while it was being read"), "\(text)")
            let left = try dir.contents(of: "out")
            #expect(left == [], "left behind: \(left)")
        }
    }

    enum Alias: String, CaseIterable, Sendable {
        case samePath = "same path"
        case folderFree = "folder-free name vs ./name"
        case symbolicLink = "symbolic link"
        case hardLink = "hard link"
    }

    @Test("a .zst input can never be the output (same path, ./, symbolic or hard link), even with --force", arguments: Alias.allCases)
    func zstInputIsNotOutput(_ alias: Alias) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let original = try zstdCompress(try ToolRunner.readFile(model))
            try dir.write(original, to: "m.safetensors.zst")
            let output: String
            switch alias {
            case .samePath: output = "m.safetensors.zst"
            case .folderFree: output = "./m.safetensors.zst"
            case .symbolicLink:
                try FileManager.default.createSymbolicLink(atPath: dir.file("link.safetensors.zst"), withDestinationPath: "m.safetensors.zst")
                output = "link.safetensors.zst"
            case .hardLink:
                try FileManager.default.linkItem(atPath: dir.file("m.safetensors.zst"), toPath: dir.file("hard.safetensors.zst"))
                output = "hard.safetensors.zst"
            }
            let before = try dir.contents()
            let r = try ToolRunner.run(["quantize", "m.safetensors.zst", "-o", output, "--force"], in: dir.path)
            #expect(r.status == 2 && r.stderr.contains("is the input file"), "\(r)")
            #expect(try ToolRunner.readFile(dir.file("m.safetensors.zst")) == original)
            #expect(try dir.contents() == before)
        }
    }
}
