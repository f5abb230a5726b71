/// Stacked mixture-of-experts weights `[E, N, K]` and the per-expert 2-D projections they stand for.
///
/// Two namings reach us:
/// - transformers 5 (and Qwen3.5-MoE on disk): `<p>.experts.gate_up_proj` `[E, 2I, H]` (gate rows
///   first, then up, as `chunk(2, dim=-1)` splits them in the forward pass) and
///   `<p>.experts.down_proj` `[E, H, I]`, with no `.weight` suffix;
/// - a stacked `.weight`: `<p>.experts.<proj>.weight` `[E, N, K]`.
///
/// torchao stores such a tensor as one 3-D `NVFP4Tensor` (its name kept). compressed-tensors and
/// ModelOpt store each expert's projection as a 2-D module, `<p>.experts.<e>.<proj>`, which is what
/// vLLM's and SGLang's MoE weight loaders read (`expert_params_mapping`). This type is the one
/// place that maps between the two, for writers and readers alike.
public struct StackedExpertNaming: Sendable, Equatable {
    /// One per-expert 2-D module cut from the stacked tensor.
    public struct Slice: Sendable, Equatable {
        /// The expert index.
        public var expert: Int
        /// The module name (`model.layers.0.mlp.experts.3.gate_proj`).
        public var module: String
        /// The rows of the expert's `[N, K]` matrix this module holds.
        public var rows: Range<Int>
    }

    /// The stacked tensor's name.
    public var tensor: String
    /// `<p>.experts`.
    public var expertsModule: String
    /// The per-expert projection leaves and the share of N each holds, in row order
    /// (`[gate_proj, up_proj]` for a fused gate/up, else one leaf).
    public var leaves: [String]
    /// E, N and K.
    public var experts: Int
    public var rows: Int
    public var columns: Int

    /// The naming of `tensor` (`[E, N, K]`), or `nil` when it is not a stacked expert weight.
    public init?(_ tensor: TensorInfo) {
        guard tensor.shape.count == 3, tensor.shape.allSatisfy({ $0 > 0 }) else { return nil }
        let parts = tensor.name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        var leaf: String
        var expertsIndex: Int
        if parts.last == "weight", parts.count >= 3 {
            leaf = parts[parts.count - 2]
            expertsIndex = parts.count - 3
        } else {
            guard let last = parts.last, last.hasSuffix("_proj") || ["w1", "w2", "w3", "w13"].contains(last) else { return nil }
            leaf = last
            expertsIndex = parts.count - 2
        }
        guard expertsIndex >= 0, parts[expertsIndex] == "experts" else { return nil }
        self.tensor = tensor.name
        expertsModule = parts[...expertsIndex].joined(separator: ".")
        (experts, rows, columns) = (tensor.shape[0], tensor.shape[1], tensor.shape[2])
        switch leaf {
        case "gate_up_proj":
            guard rows % 2 == 0 else { return nil }
            leaves = ["gate_proj", "up_proj"]
        case "w13":
            guard rows % 2 == 0 else { return nil }
            leaves = ["w1", "w3"]
        default:
            leaves = [leaf]
        }
    }

    /// The per-expert modules, expert by expert, each expert's leaves in row order.
    public var slices: [Slice] {
        let share = rows / leaves.count
        return (0..<experts).flatMap { e in
            leaves.enumerated().map { i, leaf in
                Slice(expert: e, module: "\(expertsModule).\(e).\(leaf)", rows: (i * share)..<((i + 1) * share))
            }
        }
    }

    /// The weight name of a slice's module, as a per-expert checkpoint would have it.
    public static func weightName(of slice: Slice) -> String { slice.module + ".weight" }
}
