import Glibc
import NVFP4Kit

/// `nvfp4 inspect`.
enum InspectCommand {
    static let spec = CommandSpec(
        name: "inspect",
        overview: "List the tensors of a safetensors file or model folder, with NVFP4 weights grouped.",
        arguments: [ArgumentSpec(name: "<file>", help: "A .safetensors or .safetensors.zst file, '-' for stdin (plain or zstd), a model folder (config.json, shards, index), or a model id in the local Hub cache (org/name[@revision]).")],
        options: [.json],
        discussion: """
            Reads the headers, configs and the 4-byte per-tensor scales, never the tensor data. Understands torchao, \
            compressed-tensors and ModelOpt NVFP4 layouts: reports the layout, the quantization config, fused groups \
            (and whether their global scales match), and which Linear weights stayed unquantized and why.
            A folder is summarised per shard instead of per tensor. A .zst file is decompressed only as far as its \
            header; stdin is read to its end (and checked), so the program writing into the pipe can finish.
            """)

    static func run(_ parsed: ParsedArguments, _ invocation: [String]) throws -> Int32 {
        let path = try modelArguments(parsed, ["file"], command: spec.name)[0]
        if InspectModelReport.isFolder(path) { return try InspectModelReport.runFolder(path: path, json: parsed.flag("--json")) }
        // Streamed for stdin and .zst: only the header and, where mapped, the scalar scales are read.
        let reader = try SafetensorsReader(path: path, hashing: false)
        let header = reader.header
        let inspection = CheckpointInspection(source: try CheckpointSource(singleFile: reader, path: path))
        try inspection.model.requireDecodable(in: inspection.source)
        // Read a pipe to its end, so that the program writing into it can finish (and the stream is checked).
        if path == "-" && !standardInputIsRegularFile() { _ = try reader.finish() }
        if parsed.flag("--json") {
            var members = fileJSON(reader: reader)
            members.append(("nvfp4_weights", .array(inspection.model.modules.map(inspection.json(module:)))))
            members += inspection.jsonMembers
            Terminal.out(JSONReport.document(members).serialized(.pretty))
            return ExitStatus.success
        }
        // The tensor table is written as it is made: a million rows are never held.
        Terminal.out("\(reader.displayPath): \(header.tensors.count) tensors, \(Format.bytes(UInt64(reader.dataStart) + header.dataByteCount)) (header \(reader.dataStart) bytes)\n\n")
        Format.writeTable(rowCount: header.tensors.count + 1, row: { r in
            guard r > 0 else { return ["NAME", "DTYPE", "SHAPE", "BYTES"] }
            let t = header.tensors[r - 1]
            return [t.name, t.dtype.rawValue, shapeText(t.shape), String(t.byteCount)]
        }, to: Terminal.out)
        var text = InspectModelReport.weightTable(inspection, withFile: false)
        if !header.metadata.isEmpty {
            text += "\nmetadata keys: \(header.metadata.count)"
            let originals = Set(inspection.model.modules.map(\.originalName) + ["tensor_names"])
            let plainKeys = header.metadata.map(\.key).filter { header.tensor(named: $0) == nil && !originals.contains($0) }
            if !plainKeys.isEmpty { text += " (" + plainKeys.joined(separator: ", ") + ")" }
            text += "\n"
        }
        text += "\n" + InspectModelReport.summary(inspection)
        Terminal.out(text)
        return ExitStatus.success
    }

    static func standardInputIsRegularFile() -> Bool {
        var st = stat()
        return fstat(0, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    static func shapeText(_ shape: [Int]) -> String { "[" + shape.map(String.init).joined(separator: ", ") + "]" }

    /// The file-level members of `inspect --json` for a single file.
    static func fileJSON(reader: SafetensorsReader) -> [(key: String, value: JSONValue)] {
        let header = reader.header
        return [
            ("file", .string(reader.displayPath)),
            ("header_bytes", .int(reader.dataStart)),
            ("data_bytes", .int(header.dataByteCount)),
            ("metadata", .object(header.metadata.map { ($0.key, JSONValue.string($0.value)) })),
            ("tensors", .array(header.tensors.map { t in
                .object([
                    ("name", .string(t.name)),
                    ("dtype", .string(t.dtype.rawValue)),
                    ("shape", .array(t.shape.map { .int($0) })),
                    ("bytes", .int(t.byteCount)),
                    ("data_offsets", .array([.int(t.dataOffsets.lowerBound), .int(t.dataOffsets.upperBound)])),
                ])
            })),
        ]
    }
}
