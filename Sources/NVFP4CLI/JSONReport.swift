import NVFP4Kit

/// The `--json` reports of verify, inspect and check. Each starts with `schema_version`
/// (the manifest, which quantize and merge print, has its own: `Manifest.schemaVersion`).
/// New members do not change the version; a removed, renamed or retyped member does.
enum JSONReport {
    static let schemaVersion = 1

    /// An object whose first member is `schema_version`.
    static func document(_ members: [(key: String, value: JSONValue)]) -> JSONValue {
        .object([("schema_version", .int(schemaVersion))] + members)
    }
}
