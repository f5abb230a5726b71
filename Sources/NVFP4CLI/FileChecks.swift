import Glibc
import NVFP4Kit

/// Whether anything exists at `path` (following links).
func fileExists(_ path: String) -> Bool { access(path, F_OK) == 0 }

/// An output that would overwrite an input: refused before any work starts.
struct OutputIsInputError: Error, CustomStringConvertible {
    var input: String
    var output: String
    var description: String { "\(output) is the input file \(input) (same path, link or hard link); choose another output" }
}

/// Refuses outputs that name the input itself, through the same path, a symbolic link or a hard link.
func refuseOverwritingInput(input: String, outputs: [String]) throws {
    guard input != "-", let source = FileIdentity.of(path: input) else { return }
    for output in outputs where output != "-" {
        if output == input || FileIdentity.of(path: output) == source {
            throw OutputIsInputError(input: input, output: output)
        }
    }
}
