import Foundation
import Glibc

/// Runs a bash script, with `$NVFP4` set to the built executable, for tests of real shell pipelines.
enum ShellRunner {
    struct Result: CustomStringConvertible {
        var status: Int32
        var stdout: [UInt8]
        var stderr: String
        var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
        var description: String { "exit \(status); stdout \(stdout.count) bytes: \(stdoutText.prefix(300)); stderr: \(stderr.prefix(800))" }
    }

    /// Whether a command is on `PATH`.
    static func has(_ command: String) -> Bool {
        (try? run("command -v \(command) >/dev/null"))?.status == 0
    }

    /// Runs `script` with `bash -o pipefail -c` in `directory`; a child killed by a signal reports 128 + signal.
    static func run(_ script: String, in directory: String? = nil, timeout: Double = 300) throws -> Result {
        guard let tool = ToolRunner.executable?.path else { throw ToolRunnerError(message: "the nvfp4 executable is not built") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-o", "pipefail", "-c", script]
        var environment = ProcessInfo.processInfo.environment
        environment["NVFP4"] = tool
        process.environment = environment
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? out.fileHandleForWriting.close()
        try? err.fileHandleForWriting.close()
        let pid = process.processIdentifier
        let exited = DispatchSemaphore(value: 0)
        let watchdog = ToolRunner.runOnThread { if exited.wait(timeout: .now() + timeout) == .timedOut { kill(pid, SIGKILL) } }
        let box = Box()
        let outFD = out.fileHandleForReading.fileDescriptor, errFD = err.fileHandleForReading.fileDescriptor
        let readers = [ToolRunner.runOnThread { box.set(out: readAll(outFD)) }, ToolRunner.runOnThread { box.set(err: readAll(errFD)) }]
        process.waitUntilExit()
        exited.signal()
        readers.forEach { $0.wait() }
        watchdog.wait()
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return Result(status: status, stdout: box.out, stderr: String(decoding: box.err, as: UTF8.self))
    }

    static func readAll(_ fd: Int32) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return bytes }
            bytes += chunk[0..<n]
        }
    }

    private final class Box: @unchecked Sendable {
        private let lock = NSLock()
        private var o: [UInt8] = [], e: [UInt8] = []
        func set(out: [UInt8]) { lock.withLock { o = out } }
        func set(err: [UInt8]) { lock.withLock { e = err } }
        var out: [UInt8] { lock.withLock { o } }
        var err: [UInt8] { lock.withLock { e } }
    }
}

/// Single-quotes a path for a shell script.
func shellQuoted(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'" }
