/// What a finished quantize run did, from its plan and the executor's reports: the files written
/// with their sizes, the weights quantized and kept (kept ones grouped by reason, with names),
/// the fused groups, the error measured, and the time it took. The CLI prints it; `--json` adds it
/// to the manifest it prints as `run` (docs/json.md).
public struct RunSummary: Sendable {
    /// One written file: its name and the input and output bytes behind it.
    public struct File: Sendable {
        public var name: String
        public var bytesIn: UInt64
        public var bytesOut: UInt64

        public init(name: String, bytesIn: UInt64, bytesOut: UInt64) {
            self.name = name
            self.bytesIn = bytesIn
            self.bytesOut = bytesOut
        }
    }

    public var format: CheckpointFormat
    public var files: [File]
    public var tensors: Int
    public var quantized: Int
    /// Kept tensors by reason, in the plan's order of first appearance.
    public var keptByReason: [(reason: String, names: PlannedNames)]
    /// Weights kept only because a fused partner is kept, with those partners.
    public var keptForPartner: [(kept: String, because: [String])]
    public var sharedGroups: Int
    public var perWeightGroups: Int
    /// The error over every quantized weight (chunk sums merged), when measured.
    public var error: QuantizationError?
    public var wallSeconds: Double

    public init(plan: QuantizePlan, reports: some Sequence<TensorReport>, files: [File], wallSeconds: Double) {
        format = plan.options.format
        self.files = files
        tensors = plan.tensors.count
        quantized = plan.tensors.filter(\.isQuantized).count
        keptByReason = plan.keptByReason
        keptForPartner = plan.keptFusedPartners
        let groups = plan.groups.filter(\.quantized)
        sharedGroups = groups.filter(\.sharesScale).count
        perWeightGroups = groups.count - sharedGroups
        var total = QuantizationError()
        var measured = false
        for r in reports { if let e = r.error { total.merge(e); measured = true } }
        error = measured ? total : nil
        self.wallSeconds = wallSeconds
    }

    public var bytesIn: UInt64 { files.reduce(0) { $0 + $1.bytesIn } }
    public var bytesOut: UInt64 { files.reduce(0) { $0 + $1.bytesOut } }

    /// The version of ``json``'s layout.
    public static let schemaVersion = 1

    /// The summary as JSON (docs/json.md, `run`).
    public var json: JSONValue {
        .object([
            ("schema_version", .int(RunSummary.schemaVersion)),
            ("format", .string(format.rawValue)),
            ("files", .array(files.map { .object([("name", .string($0.name)), ("bytes_in", .int($0.bytesIn)), ("bytes_out", .int($0.bytesOut))]) })),
            ("tensors", .int(tensors)),
            ("quantized", .int(quantized)),
            ("kept", .int(tensors - quantized)),
            ("kept_by_reason", .object(keptByReason.map { ($0.reason, JSONValue.array($0.names.map { .string($0) })) })),
            ("kept_for_partner", .array(keptForPartner.map { .object([("tensor", .string($0.kept)), ("kept_partners", .array($0.because.map { .string($0) }))]) })),
            ("fused_groups", .object([("shared_scale", .int(sharedGroups)), ("per_weight_scale", .int(perWeightGroups))])),
            ("relative_rmse", error.map { .finite($0.relativeRMSE) } ?? .null),
            ("sqnr_db", error.map { .finite($0.sqnrDB) } ?? .null),
            ("bytes_in", .int(bytesIn)),
            ("bytes_out", .int(bytesOut)),
            ("wall_seconds", .finite(wallSeconds)),
            ("input_bytes_per_second", .finite(wallSeconds > 0 ? Double(bytesIn) / wallSeconds : 0)),
        ])
    }
}
