/// Sibling Linear modules that engines fuse into one GEMM, and which therefore must share one
/// global (per-tensor) weight scale and one input scale.
///
/// vLLM loads q/k/v into `qkv_proj` and gate/up into `gate_up_proj` (and w1/w3 into `w13` for
/// MoE experts); it then uses the max or the first member's global scale for the whole fused
/// weight, so members quantized against different global scales decode wrongly. TensorRT-LLM
/// asserts equality. The member lists follow llm-compressor's `FUSED_LAYER_NAMES` and ModelOpt's
/// `preprocess_linear_fusion`.
public struct FusedModuleGroup: Sendable, Equatable {
    /// The parent module (`model.layers.0.self_attn`).
    public var parent: String
    /// The leaf names of the pattern that matched, in pattern order (`q_proj`, `k_proj`, `v_proj`).
    public var leaves: [String]
    /// Full module names of the members present, in pattern order.
    public var members: [String]

    /// A readable name: `model.layers.0.self_attn.{q_proj,k_proj,v_proj}`.
    public var displayName: String {
        let present = members.map { $0.split(separator: ".").last.map(String.init) ?? $0 }
        return (parent.isEmpty ? "" : parent + ".") + "{" + present.joined(separator: ",") + "}"
    }
}

/// The fused-member patterns and the grouping of module names by them, for reading checkpoints of
/// any architecture (`check`, `inspect`): every rule applies. (Quantizing picks the rules of the
/// model's architecture: ``FusedGroups``.)
public enum FusedModulePatterns {
    /// Leaf-name sets that are fused: attention q/k/v, MLP gate/up (dense, shared and routed experts),
    /// Mixtral-style experts' w1/w3, and DeepSeek MLA's q_a/kv_a (``FusionRule/all``).
    public static let patterns: [[String]] = FusionRule.all.map(\.members)

    /// Groups `modules` (full module names) by parent and pattern: ``FusedGroups`` with every
    /// rule, over the modules' weights. Only groups with at least two members present are
    /// returned, in the order of their first member in `modules`.
    public static func groups(in modules: [String]) -> [FusedModuleGroup] {
        FusedGroups(rules: FusionRule.all, source: "every rule").groups(in: modules.map { $0 + ".weight" }).map { group in
            FusedModuleGroup(parent: group.parent, leaves: group.rule.members, members: group.weights.map(moduleName))
        }
    }

    /// `a.b.q_proj` → (`a.b`, `q_proj`).
    static func split(_ module: String) -> (parent: String, leaf: String) {
        guard let dot = module.lastIndex(of: ".") else { return ("", module) }
        return (String(module[..<dot]), String(module[module.index(after: dot)...]))
    }
}
