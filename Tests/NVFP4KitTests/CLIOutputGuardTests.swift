import Foundation
import Glibc
import NVFP4Kit
import Testing

// A binary checkpoint is never written to a terminal; every --json report says its schema
// version; the shared -q and -j do what they say on check and verify.

/// Helpers private to these tests.
private enum GuardScaffold {
    /// A bf16 [16, 32] row-parallel weight (a down_proj), so that `check --tp 4` finds K/4 = 8.
    static func checkpoint() -> [UInt8] {
        let weight = (0..<(16 * 32)).flatMap { i -> [UInt8] in
            let v = Float((i * 7) % 13 - 6) * 0.125 + 0.0625
            return withUnsafeBytes(of: UInt16(v.bitPattern >> 16).littleEndian) { Array($0) }
        }
        let plan = SafetensorsLayoutPlan(tensors: [PlannedTensor(name: "model.layers.0.mlp.down_proj.weight", dtype: .bf16, shape: [16, 32])], metadata: [])
        return plan.headerBytes + weight
    }

    /// Runs nvfp4 with stdout on a pseudo-terminal; returns the status, stderr and what reached the terminal.
    static func runOnTerminal(_ arguments: [String], in directory: String, columns: UInt16 = 80) throws -> (status: Int32, stderr: String, terminal: [UInt8]) {
        // posix_openpt and friends are not in Swift's Glibc module: the Linux ioctls they wrap.
        let master = open("/dev/ptmx", O_RDWR | O_NOCTTY)
        guard master >= 0 else { throw ToolRunnerError(message: "no /dev/ptmx: \(String(cString: strerror(errno)))") }
        defer { close(master) }
        var unlock: Int32 = 0
        var number: UInt32 = 0
        let TIOCSPTLCK: UInt = 0x4004_5431  // _IOW('T', 0x31, int)
        let TIOCGPTN: UInt = 0x8004_5430  // _IOR('T', 0x30, unsigned int)
        guard ioctl(master, TIOCSPTLCK, &unlock) == 0, ioctl(master, TIOCGPTN, &number) == 0 else {
            throw ToolRunnerError(message: "cannot unlock the pseudo-terminal: \(String(cString: strerror(errno)))")
        }
        let slave = open("/dev/pts/\(number)", O_RDWR | O_NOCTTY)
        guard slave >= 0 else { throw ToolRunnerError(message: "cannot open /dev/pts/\(number)") }
        #expect(isatty(slave) == 1)
        var size = winsize(ws_row: 24, ws_col: columns, ws_xpixel: 0, ws_ypixel: 0)
        let TIOCSWINSZ: UInt = 0x5414
        guard ioctl(slave, TIOCSWINSZ, &size) == 0 else { throw ToolRunnerError(message: "cannot size the pseudo-terminal") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(ToolRunner.executable).path)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.environment = ProcessInfo.processInfo.environment.filter { $0.key != "COLUMNS" }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle(fileDescriptor: slave, closeOnDealloc: true)
        let err = Pipe()
        process.standardError = err
        try process.run()
        process.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        // What the child wrote to the terminal, without blocking.
        _ = fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK)
        var terminal: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(master, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            terminal += chunk[0..<n]
        }
        return (process.terminationStatus, stderr, terminal)
    }
}

@Suite("nvfp4 output guards, JSON schema versions, shared options")
struct CLIOutputGuardTests {
    @Test("-o - on a terminal is refused with one line, before any work", arguments: [
        ["quantize", "in.safetensors", "-o", "-"], ["quantize", "in.safetensors", "-o-", "--format", "modelopt"],
        ["quantize", "-", "--output=-"], ["dequantize", "q.safetensors", "-o", "-"], ["dequantize", "missing.safetensors", "-o", "-"],
    ])
    func binaryToTerminal(_ arguments: [String]) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            try dir.write(GuardScaffold.checkpoint(), to: "in.safetensors")
            #expect(try ToolRunner.run(["quantize", "in.safetensors", "-o", "q.safetensors"], in: dir.path).status == 0)
            let before = try dir.contents()
            let result = try GuardScaffold.runOnTerminal(arguments, in: dir.path)
            #expect(result.status == 2, "\(result)")
            #expect(result.stderr.hasPrefix("error: refusing to write a binary checkpoint to the terminal") && result.stderr.filter { $0 == "\n" }.count == 1, "\(result.stderr)")
            #expect(result.terminal.count == 0, "bytes reached the terminal")
            #expect(try dir.contents() == before)
        }
    }

    @Test("text on a terminal and -o - into a pipe still work")
    func notRefused() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            try dir.write(GuardScaffold.checkpoint(), to: "in.safetensors")
            let inspect = try GuardScaffold.runOnTerminal(["inspect", "in.safetensors"], in: dir.path)
            #expect(inspect.status == 0 && String(decoding: inspect.terminal, as: UTF8.self).contains("down_proj"), "\(inspect)")
            // A dry run writes no checkpoint: its plan is text for the terminal.
            let dryRun = try GuardScaffold.runOnTerminal(["quantize", "in.safetensors", "-o", "-", "--dry-run"], in: dir.path)
            #expect(dryRun.status == 0 && String(decoding: dryRun.terminal, as: UTF8.self).contains("nothing written"), "\(dryRun)")
            #expect(try dir.contents() == ["in.safetensors"])
            let piped = try ToolRunner.run(["quantize", "in.safetensors", "-o", "-"], in: dir.path)
            #expect(piped.status == 0 && piped.stdout.count > 8, "\(piped)")
        }
    }

    @Test("help on a terminal wraps to the terminal's width (TIOCGWINSZ), COLUMNS unset", arguments: [50, 120] as [UInt16])
    func terminalWidth(_ columns: UInt16) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let result = try GuardScaffold.runOnTerminal(["help", "quantize"], in: dir.path, columns: columns)
            // The terminal turns each \n into \r\n; the screen is the one COLUMNS=<columns> gives.
            let shown = String(decoding: result.terminal, as: UTF8.self).replacingOccurrences(of: "\r\n", with: "\n")
            let expected = try ShellRunner.run("COLUMNS=\(columns) \"$NVFP4\" help quantize").stdoutText
            #expect(result.status == 0 && shown == expected, "\(result.status): \(shown.prefix(400))")
            #expect(expected != (try ShellRunner.run("COLUMNS=80 \"$NVFP4\" help quantize").stdoutText))
        }
    }

    @Test("every --json output carries schema_version 1")
    func schemaVersions() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.write(GuardScaffold.checkpoint(), to: "in.safetensors")
            let q = dir.file("q.safetensors")
            let folder = try dir.makeSubfolder("model")
            try dir.write(GuardScaffold.checkpoint(), to: "model/model.safetensors")
            try dir.write(Array(#"{"model_type": "llama", "hidden_size": 32, "intermediate_size": 16}"#.utf8), to: "model/config.json")
            let runs: [[String]] = [
                ["quantize", input, "-o", q, "--json"],
                ["verify", input, q, "--json"],
                ["inspect", q, "--json"],
                ["inspect", folder, "--json"],
                ["check", q, "--json"],
                ["quantize", folder, "-o", dir.file("out"), "--json"],
            ]
            for arguments in runs {
                let result = try ToolRunner.run(arguments)
                #expect(result.status == 0, "\(arguments): \(result)")
                let object = try JSONSerialization.jsonObject(with: Data(result.stdout)) as? [String: Any]
                #expect((object?["schema_version"] as? NSNumber)?.intValue == 1, "\(arguments): \(result)")
            }
        }
    }

    @Test("check -q prints only findings; verify -j n gives the same report for any n")
    func quietAndThreads() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.write(GuardScaffold.checkpoint(), to: "in.safetensors")
            let q = dir.file("q.safetensors")
            #expect(try ToolRunner.run(["quantize", input, "-o", q]).status == 0)
            let clean = try ToolRunner.run(["check", q])
            let cleanQuiet = try ToolRunner.run(["check", q, "-q"])
            #expect(clean.status == 0 && clean.stdoutText.hasPrefix("ok: "), "\(clean)")
            #expect(cleanQuiet.status == 0 && cleanQuiet.stdout.isEmpty && cleanQuiet.stderr.isEmpty, "\(cleanQuiet)")
            // K = 32 over 4 ranks is 8 per rank: a finding on the row-parallel down_proj.
            let found = try ToolRunner.run(["check", q, "--tp", "4"])
            let foundQuiet = try ToolRunner.run(["check", q, "--quiet", "--tp", "4"])
            #expect(found.status == 1 && foundQuiet.status == 1, "\(found) \(foundQuiet)")
            let lines = foundQuiet.stdoutText.split(separator: "\n")
            #expect(lines.count == 1 && lines[0].hasSuffix("[k-not-multiple-of-16]"), "\(foundQuiet)")
            #expect(found.stdoutText.hasPrefix(foundQuiet.stdoutText) && found.stdoutText.count > foundQuiet.stdoutText.count)

            let one = try ToolRunner.run(["verify", input, q, "--json", "-j", "1"])
            let three = try ToolRunner.run(["verify", input, q, "--json", "--threads", "3"])
            #expect(one.status == 0 && one.stdout == three.stdout, "\(one)")
            let zero = try ToolRunner.run(["verify", input, q, "-j0"])
            #expect(zero.status == 2 && zero.stderr.contains("invalid value '0' for --threads"), "\(zero)")
        }
    }
}
