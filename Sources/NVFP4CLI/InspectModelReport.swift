import Glibc
import NVFP4Kit

/// The model-level part of `nvfp4 inspect`: every layout, and whole model folders.
enum InspectModelReport {
    /// Whether `path` is a folder (following links).
    static func isFolder(_ path: String) -> Bool {
        var st = stat()
        return path != "-" && stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// `nvfp4 inspect FOLDER`.
    static func runFolder(path: String, json: Bool) throws -> Int32 {
        let inspection = CheckpointInspection(source: try CheckpointSource(path: path))
        try inspection.model.requireDecodable(in: inspection.source)
        if json {
            var members: [(key: String, value: JSONValue)] = [("path", .string(path)), ("folder", true)]
            members += inspection.jsonMembers
            members.append(("nvfp4_weights", .array(inspection.model.modules.map(inspection.json(module:)))))
            Terminal.out(JSONReport.document(members).serialized(.pretty))
            return ExitStatus.success
        }
        var text = "\(path): model folder, \(inspection.source.shards.count) safetensors file\(inspection.source.shards.count == 1 ? "" : "s")\n\n"
        var rows: [[String]] = [["FILE", "TENSORS", "BYTES", "NVFP4 MODULES"]]
        for s in inspection.shards { rows.append([s.fileName, String(s.tensors), Format.bytes(s.bytes), String(s.quantizedModules)]) }
        text += Format.table(rows)
        text += weightTable(inspection, withFile: true)
        text += "\n" + summary(inspection)
        Terminal.out(text)
        return ExitStatus.success
    }

    /// The NVFP4 weights, one row each (empty when there are none).
    static func weightTable(_ inspection: CheckpointInspection, withFile: Bool) -> String {
        let modules = inspection.model.modules
        guard !modules.isEmpty else { return "" }
        var rows: [[String]] = [["NAME", "SHAPE", "LAYOUT", "ORIG", "SCALES", "GLOBAL SCALE (amax/2688)", "INPUT SCALE"] + (withFile ? ["FILE"] : [])]
        for m in modules {
            let global = m.perTensorScales(in: inspection.source).map { $0.count == 1 ? "\($0[0])" : "\($0.count) per expert" }
                ?? (m.globalScale == nil ? "none (single-level)" : "?")
            var row = [
                m.originalName, InspectCommand.shapeText(m.logicalShape), m.layout.rawValue, m.originalDtype?.shortName ?? "?", m.scaleLayout.rawValue,
                global, m.inputScaleValue(in: inspection.source).map { "\($0)" } ?? (m.inputScale == nil ? "-" : "?"),
            ]
            if withFile { row.append(inspection.source.shards[m.packed.shard].fileName) }
            rows.append(row)
        }
        return "\nNVFP4 weights (\(modules.count)):\n" + Format.table(rows)
    }

    /// Layout, config, counts, fused groups and kept modules as text.
    static func summary(_ inspection: CheckpointInspection) -> String {
        let model = inspection.model
        var text = "layout: \(model.layout == .unquantized && inspection.fp8.weightCount > 0 ? "FP8 (no NVFP4 weights)" : model.layout.rawValue)"
        if model.layoutsFound.count > 1 { text += " (mixed: \(model.layoutsFound.map(\.rawValue).joined(separator: ", ")); run 'nvfp4 check')" }
        if let fp8 = inspection.fp8.line { text += "\n" + fp8 }
        text += "\nquantization config: \(inspection.configLine)\n"
        let withInput = model.modules.filter { $0.inputScale != nil }.count
        text += "NVFP4 modules: \(model.modules.count) (\(Format.bytes(UInt64(inspection.packedBytes))) packed, \(withInput) with input scales); kept Linear weights: \(model.kept.count)\n"
        if !inspection.groups.isEmpty {
            let mismatched = inspection.groups.filter { $0.globalScalesMatch == false || $0.inputScalesMatch == false }
            let partial = inspection.groups.filter { !$0.quantizedMembers.isEmpty && $0.quantizedMembers.count < $0.group.members.count }
            text += "fused groups: \(inspection.groups.count), \(mismatched.count) with unequal scales, \(partial.count) partly quantized\n"
            for g in mismatched + partial {
                let what = g.globalScalesMatch == false ? "global scales differ" : g.inputScalesMatch == false ? "input scales differ" : "partly quantized"
                text += "  \(g.group.displayName): \(what)\n"
            }
        }
        if !inspection.kept.isEmpty {
            text += "kept (unquantized) Linear weights:\n"
            var rows: [[String]] = []
            for k in inspection.kept {
                rows.append(["  " + k.module.name, k.module.weight.info.dtype.rawValue, InspectCommand.shapeText(k.module.weight.info.shape), k.reason])
            }
            text += Format.table(rows)
        }
        return text
    }
}
