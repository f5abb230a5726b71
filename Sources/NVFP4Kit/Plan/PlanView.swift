/// What a plan will do, as people and scripts read it (`quantize --dry-run`): one row per input
/// tensor, and the totals. Everything comes from the ``QuantizePlan``; nothing is read or written.
public struct PlanView: Sendable {
    /// One input tensor's row.
    public struct Row: Sendable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        /// `quantize` or `keep`.
        public var action: String
        /// Why it is kept (``KeepReason`` text), `nil` when quantized.
        public var reason: String?
        /// ``TensorWriteKind/label``.
        public var kind: String
        /// The fused group's display name (`model.layers.0.self_attn.{q_proj,k_proj,v_proj}`), if any.
        public var group: String?
        /// Whether its global scale is shared with the group (engine layouts), for quantized members.
        public var sharesScale: Bool
        /// `rtn` or `mse` for quantized tensors.
        public var method: String?
        /// The output shard's file name.
        public var outputShard: String
        public var inputBytes: Int
        public var outputBytes: Int
    }

    public var rows: [Row]
    public var format: CheckpointFormat
    /// The output files, in order, with their planned size (header included).
    public var outputFiles: [(name: String, bytes: Int)]
    /// `--exclude` patterns that match no tensor.
    public var unmatchedExcludes: [String]

    /// The view of `plan`; `output` names a single file's output (a folder's shards keep their names).
    public init(_ plan: QuantizePlan, output: String? = nil) {
        let shardNames = plan.outputShards.map { plan.source.folder == nil ? output ?? $0.name : $0.name }
        format = plan.options.format
        let method = plan.options.method.rawValue
        rows = plan.tensors.map { t in
            var reason: String?
            if case .keep(let r) = t.decision { reason = r.rawValue }
            let group = t.group.map { plan.groups[$0] }
            return Row(
                name: t.tensor.name, dtype: t.tensor.dtype, shape: t.tensor.shape, action: t.isQuantized ? "quantize" : "keep",
                reason: reason, kind: t.kind.label, group: group.map(\.group.displayName),
                sharesScale: t.isQuantized && group?.sharesScale == true, method: t.isQuantized ? method : nil,
                outputShard: shardNames[t.outputShard], inputBytes: t.tensor.byteCount, outputBytes: t.outputByteCount)
        }
        outputFiles = plan.outputShards.indices.map { i in
            (shardNames[i], 8 + Int(plan.outputHeaderLength(ofOutputShard: i)) + plan.outputDataBytes(ofOutputShard: i))
        }
        unmatchedExcludes = plan.unmatchedExcludes
        keptByReason = plan.keptByReason
    }

    /// Input tensor bytes and planned output bytes (headers included).
    public var inputBytes: Int { rows.reduce(0) { $0 + $1.inputBytes } }
    public var outputBytes: Int { outputFiles.reduce(0) { $0 + $1.bytes } }

    /// Kept tensors by reason, in the order reasons first appear (``QuantizePlan/keptByReason``).
    public var keptByReason: [(reason: String, names: PlannedNames)]

    /// The version of ``json``'s layout (docs/json.md).
    public static let schemaVersion = 1

    /// The view as JSON (docs/json.md, "quantize --dry-run --json").
    public var json: JSONValue {
        .object([
            ("schema_version", .int(PlanView.schemaVersion)),
            ("format", .string(format.rawValue)),
            ("tensors", .array(rows.map { r in
                .object([
                    ("name", .string(r.name)), ("dtype", .string(r.dtype.rawValue)), ("shape", .array(r.shape.map { .int($0) })),
                    ("action", .string(r.action)), ("reason", r.reason.map { .string($0) } ?? .null), ("kind", .string(r.kind)),
                    ("fused_group", r.group.map { .string($0) } ?? .null), ("shares_global_scale", .bool(r.sharesScale)),
                    ("method", r.method.map { .string($0) } ?? .null), ("output_shard", .string(r.outputShard)),
                    ("input_bytes", .int(r.inputBytes)), ("output_bytes", .int(r.outputBytes)),
                ])
            })),
            ("totals", .object([
                ("tensors", .int(rows.count)),
                ("quantized", .int(rows.filter { $0.reason == nil }.count)),
                ("kept", .int(rows.filter { $0.reason != nil }.count)),
                ("kept_by_reason", .object(keptByReason.map { ($0.reason, JSONValue.int($0.names.count)) })),
                ("input_bytes", .int(inputBytes)),
                ("output_bytes", .int(outputBytes)),
            ])),
            ("output_files", .array(outputFiles.map { .object([("name", .string($0.name)), ("bytes", .int($0.bytes))]) })),
            ("unmatched_excludes", .array(unmatchedExcludes.map { .string($0) })),
        ])
    }
}
