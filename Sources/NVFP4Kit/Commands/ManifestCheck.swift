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
    /// - Throws: ``InvalidManifest`` when the manifest lacks the `input`/`output` records.
    public static func failures(
        manifest: JSONValue, original: (sha256: String, byteCount: UInt64), quantized: (sha256: String, byteCount: UInt64)
    ) throws(InvalidManifest) -> [String] {
        var failures: [String] = []
        for (role, key, measured) in [("original", "input", original), ("quantized", "output", quantized)] {
            guard let record = manifest[key], let sha = record["sha256"]?.stringValue, let bytes = record["bytes"]?.unsignedValue else {
                throw InvalidManifest(reason: "no \(key).sha256 and \(key).bytes")
            }
            if sha != measured.sha256 || bytes != measured.byteCount {
                failures.append("the \(role) file's SHA-256 \(measured.sha256) (\(measured.byteCount) bytes) differs from the manifest's \(key) \(sha) (\(bytes) bytes)")
            }
        }
        return failures
    }
}
