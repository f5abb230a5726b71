import Crypto
import Glibc

/// The quantize manifest `verify` checks a quantized checkpoint against: the one `quantize` wrote
/// beside its output (found without being told), or the one `--manifest` names.
public struct VerifyManifest: Sendable {
    /// Where it was read from.
    public var path: String
    public var document: JSONValue
    /// Whether it was found beside the output (`false`: named by `--manifest`).
    public var discovered: Bool

    /// How the blocks were chosen, when verify can re-run it (``BlockRule``).
    public var blockRule: BlockRule? { BlockRule(manifestOptions: document["options"]) }
    /// The method quantize used (`options.method`), if the manifest names one nvfp4 writes.
    public var method: QuantizationMethod? { QuantizationMethod(manifestOptions: document["options"]) }

    /// The `--fp8-block-size` the run was given (a bare FP8 file's block), if any.
    public var fp8BlockSize: [Int]? {
        guard let block = document["options"]?["fp8_block_size"]?.arrayValue?.compactMap(FP8Checkpoint.blockExtent), block.count == 2 else { return nil }
        return block
    }

    /// Where `quantize` writes the manifest of output file `output`: `dir/m.nvfp4.safetensors`
    /// (or `.safetensors.zst`) → `dir/m.nvfp4.manifest.json`.
    public static func defaultPath(forOutput output: String) -> String {
        let output = output.hasSuffix(".zst") ? String(output.dropLast(".zst".count)) : output
        let stem = output.hasSuffix(".safetensors") ? String(output.dropLast(".safetensors".count)) : output
        return stem + ".manifest.json"
    }

    /// Where the manifest of quantized checkpoint `path` lies when `quantize` wrote it: inside a
    /// folder, beside a file; `nil` for stdin.
    public static func defaultPath(forQuantized path: String, isFolder: Bool) -> String? {
        if path == "-" { return nil }
        return isFolder ? path + "/" + FolderQuantizeJob.manifestFileName : defaultPath(forOutput: path)
    }

    /// The manifest named by `given`, else the one beside `quantized` if there is one.
    ///
    /// - Throws: ``FileError`` when the named manifest, or one found beside the output, cannot be
    ///   read or is not a manifest (a found manifest that is not one is an error, never skipped).
    public static func locate(quantized: String, isFolder: Bool, given: String?) throws -> VerifyManifest? {
        if let given { return VerifyManifest(path: given, document: try read(given), discovered: false) }
        guard let path = defaultPath(forQuantized: quantized, isFolder: isFolder) else { return nil }
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return VerifyManifest(path: path, document: try read(path), discovered: true)
    }

    /// The most bytes a manifest may have.
    public static let maxByteCount = 256 << 20

    /// Reads and parses a manifest (a regular file, or `-` for stdin).
    public static func read(_ path: String) throws -> JSONValue {
        let reader: any ByteStream
        switch try InputSource.open(path) {
        case .mapped(let file):
            if file.bytes.count > maxByteCount { throw FileError(path: path, cause: ManifestCheck.InvalidManifest(reason: "larger than 256 MiB")) }
            return try parse(Array(file.bytes), path: path)
        case .stream(let stream, _): reader = stream
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try chunk.withUnsafeMutableBytes { try reader.read(into: $0) }
            if n == 0 { break }
            bytes += chunk[0..<n]
            if bytes.count > maxByteCount { throw FileError(path: path, cause: ManifestCheck.InvalidManifest(reason: "larger than 256 MiB")) }
        }
        return try parse(bytes, path: path)
    }

    /// Members verify never reads: the per-tensor lists (a million entries for a million tensors).
    /// They are still checked as JSON, but not kept.
    static let unreadMembers: Set<String> = ["tensors", "tensor_names"]

    private static func parse(_ bytes: [UInt8], path: String) throws(FileError) -> JSONValue {
        do { return try JSONParser.parse(bytes, droppingMembers: unreadMembers) } catch { throw FileError(path: path, cause: ManifestCheck.InvalidManifest(reason: "\(error)")) }
    }
}

extension ManifestCheck {
    /// The differences between a folder manifest's `shards` records and the quantized folder's
    /// shards: each shard's size and SHA-256 (where recorded), shards missing from either side.
    ///
    /// - Throws: ``InvalidManifest`` when the manifest has no usable `shards` records; ``FileError``
    ///   when a shard cannot be read.
    public static func folderFailures(manifest: JSONValue, folder: CheckpointSource) throws -> [String] {
        guard let records = manifest["shards"]?.arrayValue else { throw InvalidManifest(reason: "no shards records (is it a single file's manifest?)") }
        var failures: [String] = []
        var listed = Set<String>()
        for record in records {
            guard let name = record["name"]?.stringValue, CheckpointSource.isPlainFileName(name),
                let bytes = record["output"]?["bytes"]?.unsignedValue, let sha = record["output"]?["sha256"],
                sha == .null || sha.stringValue != nil
            else { throw InvalidManifest(reason: "a shards record lacks a plain file name, output.bytes or output.sha256") }
            guard listed.insert(name).inserted else { throw InvalidManifest(reason: "shard \(name) is listed twice") }
            guard let shard = folder.shards.first(where: { $0.fileName == name }) else {
                failures.append("\(folder.file(name)): listed in the manifest but not a shard of the folder")
                continue
            }
            let measured = try digest(ofFile: shard.path)
            if measured.byteCount != bytes || (sha.stringValue.map { $0 != measured.sha256 } ?? false) {
                failures.append("\(shard.path): SHA-256 \(measured.sha256) (\(measured.byteCount) bytes) differs from the manifest's \(sha.stringValue ?? "null") (\(bytes) bytes)")
            }
        }
        for shard in folder.shards where !listed.contains(shard.fileName) {
            failures.append("\(shard.path): a shard the manifest does not list")
        }
        return failures
    }

    /// The SHA-256 (lowercase hex) and size of a regular file, read through a mapping whose pages
    /// are released behind the hasher.
    static func digest(ofFile path: String) throws -> (sha256: String, byteCount: UInt64) {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw FileError(path: path, cause: error) }
        var hasher = SHA256()
        let step = 16 << 20
        var offset = 0
        while offset < file.bytes.count {
            let end = min(file.bytes.count, offset + step)
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: file.bytes[offset..<end]))
            file.release(offset..<end)
            offset = end
        }
        return (hasher.finalize().hexString, UInt64(file.bytes.count))
    }
}
