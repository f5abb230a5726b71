/// The version of the tool, recorded in manifests and printed by `--version`.
public let nvfp4Version = "0.1.0"

/// The manifest written beside a quantized checkpoint (schema: `docs/json.md`).
///
/// It is deterministic: the same input and options give the same bytes (no timestamps).
public enum Manifest {
    /// The manifest schema version.
    public static let schemaVersion = 1

    /// The members every manifest starts with.
    static func preamble(options: JSONValue, invocation: [String]) -> [(key: String, value: JSONValue)] {
        [
            ("schema_version", .int(schemaVersion)),
            ("tool", .object([("name", "nvfp4"), ("version", .string(nvfp4Version))])),
            ("invocation", .array((["nvfp4"] + invocation.dropFirst()).map { .string($0) })),
            ("options", options),
        ]
    }

    /// The manifest of a single-file run (schema: `docs/json.md`).
    ///
    /// - Parameters:
    ///   - result: What was written.
    ///   - plan: The plan it was written from.
    ///   - arguments: The invocation, program name first (recorded as `nvfp4 …` for reproduction).
    public static func document(result: QuantizeResult, plan: QuantizePlan, arguments: [String]) -> JSONValue {
        .object(head(result: result, plan: plan, arguments: arguments) + [("tensors", .array(result.tensors.map(tensorEntry)))])
    }

    /// Writes ``document(result:plan:arguments:)`` as `.pretty` text to a sealed, unpublished file
    /// at `path` (stdout for `-`; the caller publishes it) without building it: each tensor's
    /// entry exists only while it is written, so a million tensors cost one entry of memory.
    public static func write(result: QuantizeResult, plan: QuantizePlan, arguments: [String], to path: String, replace: Bool) throws -> any OutputSink {
        let head = head(result: result, plan: plan, arguments: arguments)
        return try sealedFile(to: path, replace: replace) { sink in
            var out = JSONOutput(sink: JSONFileSink(sink))
            JSONValue.writeObject(count: head.count + 1, style: .pretty, indent: 0, to: &out, key: { $0 < head.count ? head[$0].key : "tensors" }) { i, out, indent in
                guard i == head.count else { return head[i].value.write(to: &out, style: .pretty, indent: indent) }
                JSONValue.writeArray(count: result.tensors.count, style: .pretty, indent: indent, to: &out) { tensorEntry(result.tensors[$0]) }
            }
            out.append(UInt8(ascii: "\n"))
            try out.sink.finish()
        }
    }

    /// The members of a single-file manifest before `tensors`.
    static func head(result: QuantizeResult, plan: QuantizePlan, arguments: [String]) -> [(key: String, value: JSONValue)] {
        let quantized = result.tensors.filter { $0.decision == .quantize }
        var total = QuantizationError()
        for t in quantized { if let e = t.error { total.merge(e) } }
        return preamble(options: optionsEntry(plan), invocation: arguments) + [
            ("input", file(result.input)),
            ("output", file(result.output)),
            ("fusion", fusionEntry(plan)),
            ("summary", .object([
                ("tensors", .int(result.tensors.count)),
                ("quantized", .int(quantized.count)),
                ("kept", .int(result.tensors.count - quantized.count)),
                ("quantized_elements", .int(quantized.reduce(0) { $0 + $1.shape.reduce(1, *) })),
                ("relative_rmse", .finite(total.relativeRMSE)),
                ("sqnr_db", .finite(total.sqnrDB)),
            ])),
        ]
    }

    /// The manifest of a model folder (schema: `docs/json.md`); deterministic, no timestamps or output paths.
    static func folderDocument(summary: FolderSummary, records: [JSONValue], invocation: [String]) -> JSONValue {
        .object(preamble(options: summary.options, invocation: invocation) + [
            ("input_folder", .string(summary.folder.path)),
            ("fusion", summary.fusion),
            ("ignore", .array(summary.quantization.ignore.map { .string($0) })),
            ("copied_files", .array(summary.folder.otherFiles.map { .string($0) })),
            ("shards", .array(records)),
        ])
    }

    /// The `options` member: the settings that decide the output bytes.
    static func optionsEntry(_ plan: QuantizePlan) -> JSONValue {
        let options = plan.options
        let activations: JSONValue
        if !options.scalePlan.inputAmax.isEmpty {
            activations = "calibrated-nvfp4"
        } else if options.format == .torchao {
            activations = options.dynamicActivations ? "dynamic-nvfp4" : "none"
        } else {
            activations = "none"
        }
        var members: [(key: String, value: JSONValue)] = [
            ("format", .string(options.format.rawValue)),
            ("scaling", .string(options.mode.rawValue)),
            ("numerics", .string(options.numerics.rawValue)),
            ("activations", activations),
            ("method", .string(options.method.rawValue)),
            ("search_radius", options.method != .rtn ? .int(options.searchRadius) : .null),
            ("importance", options.method == .mse ? options.importancePath.map { .string($0) } ?? .null : .null),
            ("statistics", options.method == .gptq ? options.statistics.map { .string($0.path) } ?? .null : .null),
            ("block_size", 16),
            ("include", .array(options.selection.include.map { .string($0) })),
            ("exclude", .array(options.selection.exclude.map { .string($0) })),
        ]
        if plan.tensorParallel > 1 { members.append(("tensor_parallel", .int(plan.tensorParallel))) }
        if options.mlaAttention != .keep { members.append(("mla_attention", .string(options.mlaAttention.rawValue))) }
        if let block = options.fp8BlockSize { members.append(("fp8_block_size", .array(block.map { .int($0) }))) }
        return .object(members)
    }

    /// The `fusion` member: where the rules came from, every fused group with whether its members
    /// share one global scale (and the amax they share), and the weights kept for a kept partner.
    static func fusionEntry(_ plan: QuantizePlan) -> JSONValue {
        .object([
            ("rules_from", .string(plan.fusion.source)),
            ("groups", .array(plan.groups.map(groupEntry))),
            ("kept_for_partner", .array(plan.keptFusedPartners.map { entry in
                .object([("module", .string(moduleName(entry.kept))), ("kept_partners", .array(entry.because.map { .string(moduleName($0)) }))])
            })),
        ])
    }

    static func groupEntry(_ g: QuantizePlan.Group) -> JSONValue {
        var members: [(key: String, value: JSONValue)] = [
            ("members", .array(g.group.weights.map { .string(moduleName($0)) })),
            ("action", g.quantized ? "quantized" : "kept"),
            ("shares_global_scale", .bool(g.sharesScale)),
        ]
        if let shared = g.sharedAmax {
            members.append(("member_amax", .array(g.memberAmax.map { .finite(Double($0)) })))
            members.append(("shared_amax", .finite(Double(shared))))
        }
        return .object(members)
    }

    private static func file(_ f: FileSummary) -> JSONValue {
        .object([("path", .string(f.path)), ("bytes", .int(f.byteCount)), ("sha256", f.sha256.map { .string($0) } ?? .null)])
    }

    static func tensorEntry(_ t: TensorReport) -> JSONValue {
        var members: [(key: String, value: JSONValue)] = [
            ("name", .string(t.name)),
            ("dtype", .string(t.dtype.rawValue)),
            ("shape", .array(t.shape.map { .int($0) })),
        ]
        switch t.decision {
        case .quantize:
            members.append(("action", "quantized"))
            members.append(("outputs", .array(t.outputs.map { .string($0) })))
            members.append(("amax", .finite(Double(t.amax ?? 0))))
            members.append(("per_tensor_scale", t.perTensorScale.map { .finite(Double($0)) } ?? .null))
            members.append(("per_tensor_scale_bits", t.perTensorScale.map { .string(hex32($0.bitPattern)) } ?? .null))
            if let input = t.inputScale {
                members.append(("input_scale", .finite(Double(input))))
                members.append(("input_scale_bits", .string(hex32(input.bitPattern))))
            }
            if let e = t.error {
                members.append(("error", .object([
                    ("relative_rmse", .finite(e.relativeRMSE)),
                    ("sqnr_db", .finite(e.sqnrDB)),
                    ("max_abs_error", .finite(e.maxAbsoluteError)),
                ])))
            }
            if t.importanceWeighted { members.append(("importance_weighted", true)) }
            if t.errorFeedback { members.append(("error_feedback", true)) }
        case .keep(let reason):
            members.append(("action", "kept"))
            members.append(("reason", .string(reason.rawValue)))
            members.append(("outputs", .array(t.outputs.map { .string($0) })))
        }
        return .object(members)
    }
}

/// `0x3b8db6db`: a float's exact bits for people comparing against torch.
func hex32(_ bits: UInt32) -> String {
    let digits = String(bits, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
}

extension QuantizationMethod {
    /// The method a quantize manifest's `options` name (`options.method`), if nvfp4 writes it (the
    /// key ``Manifest`` writes above).
    public init?(manifestOptions options: JSONValue?) {
        guard let method = options?["method"]?.stringValue.flatMap(QuantizationMethod.init(rawValue:)) else { return nil }
        self = method
    }
}
