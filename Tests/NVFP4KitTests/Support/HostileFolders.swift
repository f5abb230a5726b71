import Foundation
import Glibc
import NVFP4Kit

/// Builders of hostile situations in a temporary folder, and a record of a whole folder tree to
/// prove that nothing outside an output changed.
enum HostileFolders {
    /// Copies the Llama model fixture into `dir/name` (real files, no links) and returns its path.
    @discardableResult
    static func copyModel(into dir: ToolRunner.TemporaryDirectory, as name: String = "in") throws -> String {
        let target = dir.file(name)
        try FileManager.default.copyItem(atPath: ModelFixtures.llama, toPath: target)
        return target
    }

    /// Every entry under `root` (hidden ones included): a file's bytes and mode, a link's target,
    /// a folder's or FIFO's kind; `excluding` a subtree.
    static func tree(_ root: String, excluding: String? = nil) -> [String: String] {
        var result: [String: String] = [:]
        func walk(_ path: String, _ relative: String) {
            if let excluding, path == excluding { return }
            var st = stat()
            guard lstat(path, &st) == 0 else { return }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                result[relative + "/"] = "dir \(st.st_mode & 0o7777)"
                for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] { walk(path + "/" + name, relative + "/" + name) }
            case S_IFLNK:
                result[relative] = "link -> " + ((try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? "?")
            case S_IFREG:
                let bytes = (try? ToolRunner.readFile(path)) ?? []
                result[relative] = "file \(st.st_mode & 0o7777) \(bytes.count) \(bytes.hashValue)"
            default:
                result[relative] = "special \(st.st_mode)"
            }
        }
        walk(root, "")
        return result
    }

    /// A process id that no longer exists: a child that already exited and was reaped.
    static func deadProcessID() throws -> pid_t {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        process.waitUntilExit()
        return process.processIdentifier
    }

    /// The mode bits of a file (not following links).
    static func mode(_ path: String) -> mode_t {
        var st = stat()
        lstat(path, &st)
        return st.st_mode & 0o7777
    }
}
