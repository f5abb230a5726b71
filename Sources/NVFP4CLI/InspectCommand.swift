import Glibc
import NVFP4Kit

/// `nvfp4 inspect`.
enum InspectCommand {
    static let spec = CommandSpec(
        name: "inspect",
        overview: "List the tensors of a safetensors file or model folder, with NVFP4 weights grouped.",
        usage: "nvfp4 inspect <file> [--json]",
        arguments: [("<file>", "A .safetensors or .safetensors.zst file, '-' for stdin (plain or zstd), or a model folder (config.json, shards, index).")],
        options: [OptionSpec(names: ["--json"], valueName: nil, help: "Print one JSON object instead of a table.")],
        discussion: """
            Reads the headers, configs and the 4-byte per-tensor scales, never the tensor data. Understands torchao,
            compressed-tensors and ModelOpt NVFP4 layouts: reports the layout, the quantization config, fused groups
            (and whether their global scales match), and which Linear weights stayed unquantized and why.
            A folder is summarised per shard instead of per tensor. A .zst file is decompressed only as far as its
            header; stdin is read to its end (and checked), so the program writing into the pipe can finish.
            """)

    static func run(_ parsed: ParsedArguments, _ invocation: [String]) throws -> Int32 {
        let path = try positionals(parsed, ["file"], command: spec.name)[0]
        if InspectModelReport.isFolder(path) { return try InspectModelReport.runFolder(path: path, json: parsed.flag("--json")) }
        let reader = try SafetensorsReader(path: path, hashing: false)
        let header = reader.header
        let contents: CheckpointContents
        do { contents = try CheckpointContents(header: header) } catch { throw FileError(path: reader.displayPath, cause: error) }
        // Read a pipe to its end, so that the program writing into it can finish (and the stream is checked).
        if path == "-" && !standardInputIsRegularFile() { _ = try reader.finish() }
        var scales: [String: Float] = [:]
        if reader.isRandomAccess {
            for w in contents.weights { scales[w.name] = try w.perTensorScaleValue(in: reader) }
        }
        let inspection = CheckpointInspection(source: try CheckpointSource(singleFile: reader, path: path))
        if parsed.flag("--json") {
            guard case .object(var members) = json(reader: reader, contents: contents, scales: scales) else { return ExitStatus.success }
            if contents.weights.isEmpty, let index = members.firstIndex(where: { $0.key == "nvfp4_weights" }) {
                members[index].value = .array(inspection.model.modules.map(inspection.json(module:)))
            }
            members += inspection.jsonMembers
            Terminal.out(JSONValue.object(members).serialized(.pretty))
            return ExitStatus.success
        }
        var rows: [[String]] = [["NAME", "DTYPE", "SHAPE", "BYTES"]]
        for t in header.tensors { rows.append([t.name, t.dtype.rawValue, shapeText(t.shape), String(t.byteCount)]) }
        var text = "\(reader.displayPath): \(header.tensors.count) tensors, \(Format.bytes(UInt64(reader.dataStart) + header.dataByteCount)) (header \(reader.dataStart) bytes)\n\n"
        text += Format.table(rows)
        if !contents.weights.isEmpty {
            text += "\nNVFP4 weights (\(contents.weights.count)):\n"
            var weightRows: [[String]] = [["NAME", "SHAPE", "ORIG", "SCALES", "PER-TENSOR SCALE"]]
            for w in contents.weights {
                let pts = scales[w.name].map { "\($0)" } ?? (w.perTensorScale == nil ? "none (single-level)" : "?")
                weightRows.append([w.name, shapeText(w.logicalShape), w.originalDtype?.shortName ?? "?", w.scaleLayout.rawValue, pts])
            }
            text += Format.table(weightRows)
        }
        if !header.metadata.isEmpty {
            text += "\nmetadata keys: \(header.metadata.count)"
            let described = Set(header.tensors.map(\.name) + contents.weights.map(\.name) + ["tensor_names"])
            let plainKeys = header.metadata.map(\.key).filter { !described.contains($0) }
            if !plainKeys.isEmpty { text += " (" + plainKeys.joined(separator: ", ") + ")" }
            text += "\n"
        }
        if contents.weights.isEmpty && !inspection.model.modules.isEmpty {
            text += "\nNVFP4 modules (\(inspection.model.modules.count)):\n"
            var moduleRows: [[String]] = [["MODULE", "SHAPE", "GLOBAL SCALE (amax/2688)", "INPUT SCALE"]]
            for m in inspection.model.modules {
                moduleRows.append([
                    m.name, shapeText([m.rows, m.columns]),
                    m.weightScale(in: inspection.source).map { "\($0)" } ?? (m.globalScale == nil ? "none" : "?"),
                    m.inputScaleValue(in: inspection.source).map { "\($0)" } ?? (m.inputScale == nil ? "-" : "?"),
                ])
            }
            text += Format.table(moduleRows)
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

    static func json(reader: SafetensorsReader, contents: CheckpointContents, scales: [String: Float]) -> JSONValue {
        let header = reader.header
        return .object([
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
            ("nvfp4_weights", .array(contents.weights.map { w in
                .object([
                    ("name", .string(w.name)),
                    ("shape", .array(w.logicalShape.map { .int($0) })),
                    ("layout", "torchao"),
                    ("scale_layout", .string(w.scaleLayout.rawValue)),
                    ("original_dtype", w.originalDtype.map { .string($0.shortName) } ?? .null),
                    ("per_tensor_scale", scales[w.name].map { .finite(Double($0)) } ?? .null),
                    ("tensors", .array(w.parts.map { .string($0.name) })),
                ])
            })),
        ])
    }
}
