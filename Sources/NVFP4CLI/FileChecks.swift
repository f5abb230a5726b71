import Glibc
import NVFP4Kit

/// Whether anything exists at `path` (following links).
func fileExists(_ path: String) -> Bool { access(path, F_OK) == 0 }

/// Refuses outputs that are, contain or lie inside the input (same path, a symbolic link, a hard
/// link, a folder holding it), before any work starts, `--force` included (``OutputGuard``).
func refuseOverwritingInput(input: String, outputs: [String]) throws {
    try OutputGuard.refuseOverlap(inputs: [input], outputs: outputs)
}

/// Removes what killed runs left beside (and inside) the outputs, and says so in one line.
func removeCrashLeftovers(near outputs: [String], quiet: Bool) {
    let removed = CrashLeftovers.remove(near: outputs)
    if !removed.isEmpty && !quiet {
        Terminal.err("removed \(removed.count) leftover(s) of interrupted nvfp4 runs: \(removed.joined(separator: ", "))\n")
    }
}

/// For `--dry-run`, which checks no output: warns (stderr, unless `quiet`) about each output that
/// exists, which the real run would refuse without `--force`, so that the plan does not hide it.
func warnExistingOutputs(_ outputs: [String], force: Bool, quiet: Bool) {
    guard !force, !quiet else { return }
    for path in outputs where path != "-" {
        guard let what = OutputGuard.describeExisting(path, manifestName: FolderQuantizeJob.manifestFileName) else { continue }
        Terminal.err("warning: \(path) already exists (\(what)); the real run needs --force to replace it\n")
    }
}

/// Refuses outputs that exist, saying what is there and that `--force` would replace it; with
/// `--force`, refuses still a folder where a single file is to be written (a file cannot replace it).
func refuseExistingOutputs(_ outputs: [String], force: Bool, singleFile: Bool) throws(UsageError) {
    for path in outputs where path != "-" {
        guard let what = OutputGuard.describeExisting(path, manifestName: FolderQuantizeJob.manifestFileName) else { continue }
        if singleFile && isFolder(path) {
            throw UsageError(message: "\(path) is a folder (\(what)); this writes one file: name a file, e.g. \(path)/model.nvfp4.safetensors")
        }
        if !force { throw UsageError(message: "\(path) already exists (\(what)); use --force to replace it") }
    }
}
