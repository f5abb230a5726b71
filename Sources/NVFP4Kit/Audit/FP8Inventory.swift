/// What `inspect` reports about a checkpoint's FP8 weights: how many, each scheme with its block
/// and scale dtype, and what the config's FP8 scheme says. Classified by the same rules the
/// quantize plan uses (``FP8Checkpoint``), so inspect and quantize never disagree.
public struct FP8Inventory: Sendable {
    /// One scheme found: `block 128x128 F32 weight_scale_inv`, `channel BF16 weight_scale`, …
    public struct Scheme: Sendable, Hashable {
        public var scheme: FP8Scheme
        public var block: [Int]?
        public var scaleDType: DType
        public var scaleSuffix: String
        public var description: String {
            let kind = block.map { "block \($0[0])x\($0[1])" } ?? scheme.rawValue
            return "\(kind), \(scaleDType.rawValue) \(scaleSuffix)"
        }
    }

    /// FP8 weights by scheme, in first-seen order.
    public var schemes: [(scheme: Scheme, weights: Int)]
    /// FP8 weights that cannot be converted, with the reason (quantize refuses them).
    public var problems: [String]
    /// The config's FP8 scheme in words, or `nil` when the config is not an FP8 one.
    public var configScheme: String?

    /// The FP8 weights of `headers` (every shard of one checkpoint) under `config`.
    public init(headers: [SafetensorsHeader], config: JSONValue?) {
        let index = FP8Checkpoint.lookupIndex(headers)
        let checkpoint = FP8Checkpoint(config: config, blockSize: nil)
        var counts: [Scheme: Int] = [:]
        var order: [Scheme] = []
        var problems: [String] = []
        for header in headers {
            for t in header.tensors where t.dtype == .f8E4M3 && (t.name.hasSuffix(".weight") || t.name == "weight") {
                do {
                    let source = try checkpoint.source(of: t, index: index)
                    let scheme = Scheme(
                        scheme: source.scheme, block: source.scheme == .block ? [source.scaling.blockRows, source.scaling.blockColumns] : nil,
                        scaleDType: source.scale.dtype, scaleSuffix: String(source.scale.name.dropFirst(t.name.count - "weight".count)))
                    if counts[scheme] == nil { order.append(scheme) }
                    counts[scheme, default: 0] += 1
                } catch {
                    problems.append(error.description)
                }
            }
        }
        schemes = order.map { ($0, counts[$0]!) }
        self.problems = problems
        configScheme = FP8Inventory.describe(config?["quantization_config"])
    }

    /// `inspect --json`'s `fp8` member.
    public var json: JSONValue {
        .object([
            ("weights", .int(weightCount)),
            ("schemes", .array(schemes.map { s in
                .object([
                    ("scheme", .string(s.scheme.scheme.rawValue)),
                    ("block", s.scheme.block.map { .array($0.map { .int($0) }) } ?? .null),
                    ("scale_dtype", .string(s.scheme.scaleDType.rawValue)),
                    ("scale_suffix", .string(s.scheme.scaleSuffix)),
                    ("weights", .int(s.weights)),
                ])
            })),
            ("unconvertible", .array(problems.map { .string($0) })),
            ("config_scheme", configScheme.map { .string($0) } ?? .null),
        ])
    }

    /// The text line: `FP8 weights: 8 (block 128x128, F32 weight_scale_inv: 8)`, or `nil` without FP8 weights.
    public var line: String? {
        guard weightCount > 0 else { return nil }
        var text = "FP8 weights: \(weightCount) (" + schemes.map { "\($0.scheme.description): \($0.weights)" }.joined(separator: "; ") + ")"
        if !problems.isEmpty { text += "; \(problems.count) cannot be converted: \(problems[0])" }
        return text
    }

    /// Number of FP8 weights.
    public var weightCount: Int { schemes.reduce(0) { $0 + $1.weights } + problems.count }

    /// `fp8, block 128x128 (weight_block_size), dynamic activations` or the compressed-tensors groups' schemes.
    static func describe(_ q: JSONValue?) -> String? {
        guard let q, FP8Checkpoint.isConvertible(quantizationConfig: q) else { return nil }
        if q["quant_method"]?.stringValue?.lowercased() == "fp8" {
            let block = q["weight_block_size"]?.arrayValue?.compactMap(FP8Checkpoint.blockExtent)
            let weights = block.map { $0.count == 2 ? "block \($0[0])x\($0[1]) (weight_block_size)" : "weight_block_size unreadable" } ?? "per tensor"
            let activations = q["activation_scheme"]?.stringValue.map { "\($0) activations" } ?? "activations unspecified"
            return "FP8 weights, \(weights), \(activations)"
        }
        let groups = (q["config_groups"]?.objectValue ?? []).map { name, group -> String in
            let w = group["weights"]
            var strategy = w?["strategy"]?.stringValue ?? "?"
            if let b = w?["block_structure"]?.arrayValue?.compactMap(FP8Checkpoint.blockExtent), b.count == 2 { strategy += " \(b[0])x\(b[1])" }
            let input = group["input_activations"]
            let activations = input == nil || input == .null ? "weight-only"
                : "FP8 \(input?["dynamic"]?.boolValue == true ? "dynamic" : "static") activations"
            return "\(name): FP8 \(strategy), \(activations)"
        }
        return "compressed-tensors float-quantized (" + groups.joined(separator: "; ") + ")"
    }
}
