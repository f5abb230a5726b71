import Foundation
import Glibc

/// Runs the built `nvfp4` executable as a subprocess, for end-to-end tests of the command line.
///
/// Under `swift test` on Linux the test runner is `<scratch>/<triple>/debug/nvfp4PackageTests.xctest`
/// (`CommandLine.arguments[0]`), and `swift build --build-tests` puts the `nvfp4` executable in the
/// same folder, so that is where it is looked for first; `<repo>/.build/debug/nvfp4` is the fallback.
enum ToolRunner {
    /// What a finished run produced.
    struct Result: CustomStringConvertible {
        /// The exit status; for a process killed by a signal, 128 + the signal number.
        var status: Int32
        /// Everything written to stdout, as bytes (it may be a safetensors file).
        var stdout: [UInt8]
        /// Everything written to stderr, decoded as UTF-8.
        var stderr: String

        /// stdout decoded as UTF-8.
        var stdoutText: String { String(decoding: stdout, as: UTF8.self) }

        /// The lines of stderr, without their newlines (a trailing newline gives no empty line).
        var stderrLines: [String] {
            var lines = stderr.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            if lines.last == "" { lines.removeLast() }
            return lines
        }

        var description: String {
            let isText = !stdout.contains(0) && String(validating: stdout, as: UTF8.self) != nil
            let shown = isText ? ": " + String(stdoutText.prefix(400)) : " (binary)"
            return "exit \(status); stdout \(stdout.count) bytes\(shown); stderr: \(stderr.prefix(800))"
        }
    }

    /// The repository root, found from this file's path (`Tests/NVFP4KitTests/Support/ToolRunner.swift`).
    static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // Support
        .deletingLastPathComponent()  // NVFP4KitTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()

    /// The absolute path of a file under `Fixtures/`.
    static func fixture(_ relativePath: String) -> String {
        repositoryRoot.appendingPathComponent("Fixtures").appendingPathComponent(relativePath).path
    }

    /// Where the executable was found.
    enum ExecutableSource: Equatable {
        /// Beside the test binary (the folder of `CommandLine.arguments[0]`).
        case besideTestBinary
        /// Beside the loaded test bundle (macOS `.xctest` bundles).
        case besideTestBundle
        /// `<repo>/.build/debug/nvfp4`.
        case repositoryBuildFolder
    }

    /// The `nvfp4` executable and how it was found, or `nil` if it was not built.
    static let executable: (path: String, source: ExecutableSource)? = {
        var candidates: [(String, ExecutableSource)] = []
        if let argument0 = CommandLine.arguments.first {
            let runner = URL(fileURLWithPath: argument0).resolvingSymlinksInPath()
            candidates.append((runner.deletingLastPathComponent().appendingPathComponent("nvfp4").path, .besideTestBinary))
        }
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            let folder = URL(fileURLWithPath: bundle.bundlePath).deletingLastPathComponent()
            candidates.append((folder.appendingPathComponent("nvfp4").path, .besideTestBundle))
        }
        candidates.append((repositoryRoot.appendingPathComponent(".build/debug/nvfp4").path, .repositoryBuildFolder))
        for (path, source) in candidates {
            var st = stat()
            if stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(path, X_OK) == 0 {
                return (path, source)
            }
        }
        return nil
    }()

    /// Test processes must survive writing to a child that stopped reading its stdin.
    private static let ignoreBrokenPipes: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

    /// Runs `nvfp4` with `arguments`.
    ///
    /// - Parameters:
    ///   - arguments: The arguments after the program name.
    ///   - stdin: Bytes fed to the child's stdin through a pipe; `nil` gives it `/dev/null`.
    ///   - directory: The working folder of the child (default: this process's).
    ///   - timeout: Seconds after which the child is killed (its status is then 128 + SIGKILL).
    /// - Returns: The status and the captured output.
    static func run(
        _ arguments: [String], stdin: [UInt8]? = nil, in directory: String? = nil, timeout: Double = 300,
        environment: [String: String]? = nil
    ) throws -> Result {
        _ = ignoreBrokenPipes
        guard let executable else {
            throw ToolRunnerError(message: "the nvfp4 executable is not built (looked beside \(CommandLine.arguments.first ?? "?") and in .build/debug)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable.path)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let outPipe = Pipe()
        let errPipe = Pipe()
        let inPipe = stdin == nil ? nil : Pipe()
        process.standardOutput = outPipe
        process.standardError = errPipe
        process.standardInput = inPipe ?? FileHandle.nullDevice

        let collected = Collected()
        try process.run()
        // The child holds its own copies; the parent's copies of the child's ends must go, or the
        // reads below never see end-of-file.
        try? outPipe.fileHandleForWriting.close()
        try? errPipe.fileHandleForWriting.close()
        try? inPipe?.fileHandleForReading.close()

        // Dedicated threads (not the dispatch pool, which a busy test run may have exhausted) drain
        // the pipes, feed stdin and kill a child that outlives `timeout`.
        let pid = process.processIdentifier
        let exited = DispatchSemaphore(value: 0)
        let watchdog = runOnThread {
            if exited.wait(timeout: .now() + timeout) == .timedOut { kill(pid, SIGKILL) }
        }
        let outFD = outPipe.fileHandleForReading.fileDescriptor
        let errFD = errPipe.fileHandleForReading.fileDescriptor
        var workers = [
            runOnThread { collected.setStdout(readAll(outFD)) },
            runOnThread { collected.setStderr(readAll(errFD)) },
        ]
        if let inPipe, let stdin {
            let writer = UncheckedSendable(inPipe.fileHandleForWriting)
            workers.append(runOnThread {
                writeAllIgnoringBrokenPipe(stdin, to: writer.value.fileDescriptor)
                try? writer.value.close()
            })
        }
        process.waitUntilExit()
        exited.signal()
        for done in workers { done.wait() }
        watchdog.wait()
        try? outPipe.fileHandleForReading.close()
        try? errPipe.fileHandleForReading.close()

        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return Result(status: status, stdout: collected.stdout, stderr: String(decoding: collected.stderr, as: UTF8.self))
    }

    /// Starts `body` on a new thread; the returned semaphore is signalled when it returns.
    static func runOnThread(_ body: @escaping @Sendable () -> Void) -> DispatchSemaphore {
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            body()
            done.signal()
        }
        thread.start()
        return done
    }

    /// Reads a descriptor to its end with `read(2)`, retrying on `EINTR`.
    private static func readAll(_ fd: Int32) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return bytes
    }

    /// Writes all of `bytes`, stopping quietly if the reader went away (`EPIPE`).
    private static func writeAllIgnoringBrokenPipe(_ bytes: [UInt8], to fd: Int32) {
        var offset = 0
        bytes.withUnsafeBytes { buffer in
            while offset < buffer.count {
                let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += n
            }
        }
    }

    /// Output gathered by the reader threads.
    private final class Collected: @unchecked Sendable {
        private let lock = NSLock()
        private var out: [UInt8] = []
        private var err: [UInt8] = []
        func setStdout(_ bytes: [UInt8]) { lock.withLock { out = bytes } }
        func setStderr(_ bytes: [UInt8]) { lock.withLock { err = bytes } }
        var stdout: [UInt8] { lock.withLock { out } }
        var stderr: [UInt8] { lock.withLock { err } }
    }

    /// Hands a value that is only used from one thread at a time to a dispatch closure.
    private struct UncheckedSendable<Value>: @unchecked Sendable {
        var value: Value
        init(_ value: Value) { self.value = value }
    }

    // MARK: - Temporary folders

    /// A fresh folder under `/tmp`, removed with everything in it by ``withTemporaryDirectory(_:)``.
    struct TemporaryDirectory {
        /// The folder's absolute path.
        let path: String

        /// The absolute path of `name` inside the folder.
        func file(_ name: String) -> String { path + "/" + name }

        /// Writes `bytes` to `name` inside the folder and returns its path.
        @discardableResult
        func write(_ bytes: [UInt8], to name: String) throws -> String {
            let target = file(name)
            try Data(bytes).write(to: URL(fileURLWithPath: target))
            return target
        }

        /// Copies a fixture into the folder under `name` and returns the copy's path.
        @discardableResult
        func copyFixture(_ relativePath: String, as name: String) throws -> String {
            let target = file(name)
            try FileManager.default.copyItem(atPath: ToolRunner.fixture(relativePath), toPath: target)
            return target
        }

        /// The names in `subfolder` (or the folder itself), hidden ones included, sorted.
        func contents(of subfolder: String? = nil) throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: subfolder.map(file) ?? path).sorted()
        }

        /// Creates a subfolder and returns its path.
        @discardableResult
        func makeSubfolder(_ name: String) throws -> String {
            try FileManager.default.createDirectory(atPath: file(name), withIntermediateDirectories: true)
            return file(name)
        }
    }

    /// Runs `body` with a new, empty folder `/tmp/nvfp4-tests.XXXXXX`, then removes it.
    static func withTemporaryDirectory<R>(_ body: (TemporaryDirectory) throws -> R) throws -> R {
        var template = Array("/tmp/nvfp4-tests.XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw ToolRunnerError(message: "mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        let directory = TemporaryDirectory(path: String(cString: made))
        defer { try? FileManager.default.removeItem(atPath: directory.path) }
        return try body(directory)
    }

    /// The bytes of a file.
    static func readFile(_ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Whether anything exists at `path` (a dangling symbolic link counts).
    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }
}

/// A failure of the test harness itself (not of the code under test).
struct ToolRunnerError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
