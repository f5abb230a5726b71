/// Checks a quantize manifest against the files `verify` was given.
///
/// The manifest records the SHA-256 and size of the input and output safetensors bytes
/// (decompressed, for `.zst` files); a difference means one of the files is not the one the
/// manifest describes (altered, truncated, or another checkpoint).
public enum ManifestCheck {
    /// A manifest that cannot be used for the check.
    public struct InvalidManifest: Error, Sendable, CustomStringConvertible {
        public var reason: String
        public init(reason: String) { self.reason = reason }
        public var description: String { "not an nvfp4 manifest: \(reason)" }
    }

    /// The differences between `manifest` and the measured files; empty when both match.
    ///
    /// A SHA-256 the manifest does not record (`null`: `quantize --hash output` leaves the input's
    /// out, `--hash none` both) is not compared; sizes always are. `original` is `nil` when the
    /// original is not one file (a folder beside a single-file output): only the output is checked.
    ///
    /// - Throws: ``InvalidManifest`` when the manifest lacks the `input`/`output` records.
    public static func failures(
        manifest: JSONValue, original: (sha256: String?, byteCount: UInt64)?, quantized: (sha256: String?, byteCount: UInt64),
        paths: (original: String, quantized: String) = ("the original file", "the quantized file")
    ) throws(InvalidManifest) -> [String] {
        var failures: [String] = []
        let measuredFiles: [(String, String, (sha256: String?, byteCount: UInt64)?)] = [(paths.original, "input", original), (paths.quantized, "output", quantized)]
        for (role, key, measured) in measuredFiles {
            guard let measured else { continue }
            guard let record = manifest[key], let bytes = record["bytes"]?.unsignedValue, let shaValue = record["sha256"] else {
                throw InvalidManifest(reason: "no \(key).sha256 and \(key).bytes")
            }
            let recorded = shaValue.stringValue
            guard recorded != nil || shaValue == .null else { throw InvalidManifest(reason: "\(key).sha256 is not a string or null") }
            let measuredText = "\(measured.sha256 ?? "?") (\(measured.byteCount) bytes)"
            if bytes != measured.byteCount {
                failures.append("\(role): SHA-256 \(measuredText) differs from the manifest's \(key) \(recorded ?? "null") (\(bytes) bytes)")
            } else if let recorded, let sha = measured.sha256, recorded != sha {
                failures.append("\(role): SHA-256 \(measuredText) differs from the manifest's \(key) \(recorded) (\(bytes) bytes)")
            }
        }
        return failures
    }
}
