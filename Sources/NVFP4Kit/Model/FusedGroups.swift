/// Linear layers that an engine fuses into one GEMM, and that must therefore share one
/// per-tensor (global) scale: vLLM takes the max of differing scales silently (wrong for every
/// other member) and TensorRT-LLM asserts equality.
///
/// A rule names sibling modules under one parent (`<parent>.q_proj`, `<parent>.k_proj`,
/// `<parent>.v_proj`). The rules that apply come from `config.json`'s `architectures` (and
/// `model_type`); an architecture not in the table gets every rule (the fallback by name), which
/// is safe because sharing a scale between modules that are not fused only costs a little precision.
public struct FusionRule: Sendable, Equatable {
    /// The leaf names of the members, in the engine's order.
    public var members: [String]
    /// The name of the fused module the engines build (`qkv_proj`), used to check that no
    /// exclude entry is a substring of it; `nil` when the members stay separate modules in the
    /// engine's naming (MoE experts are fused under their parent).
    public var fusedName: String?

    public init(_ members: [String], fusedName: String?) {
        self.members = members
        self.fusedName = fusedName
    }

    /// q/k/v of attention (vLLM `qkv_proj`).
    public static let qkv = FusionRule(["q_proj", "k_proj", "v_proj"], fusedName: "qkv_proj")
    /// gate/up of a gated MLP, a shared expert, or one routed expert (vLLM `gate_up_proj`, `w13`).
    public static let gateUp = FusionRule(["gate_proj", "up_proj"], fusedName: "gate_up_proj")
    /// Mixtral-style expert w1/w3 (vLLM `w13`).
    public static let w1w3 = FusionRule(["w1", "w3"], fusedName: nil)
    /// DeepSeek MLA's q_a / kv_a (vLLM `fused_qkv_a_proj`).
    public static let mlaA = FusionRule(["q_a_proj", "kv_a_proj_with_mqa"], fusedName: "fused_qkv_a_proj")

    /// Every rule: the fallback for an architecture not in ``FusedGroups/rulesByArchitecture``.
    public static let all: [FusionRule] = [.qkv, .gateUp, .w1w3, .mlaA]
}

/// One fused group found in a checkpoint.
public struct FusedGroup: Sendable, Equatable {
    /// The parent module (`model.layers.0.self_attn`).
    public var parent: String
    /// The members' weight tensor names, in the rule's order.
    public var weights: [String]
    /// The fused module name (`model.layers.0.self_attn.qkv_proj`), if the engine has one.
    public var fusedModule: String?
    /// The rule that matched.
    public var rule: FusionRule

    /// A readable name: `model.layers.0.self_attn.{q_proj,k_proj,v_proj}`.
    public var displayName: String {
        let leaves = weights.map { moduleName($0).split(separator: ".").last.map(String.init) ?? $0 }
        return (parent.isEmpty ? "" : parent + ".") + "{" + leaves.joined(separator: ",") + "}"
    }
}

/// Finds fused groups among a checkpoint's tensors.
public struct FusedGroups: Sendable {
    /// The rules that apply.
    public var rules: [FusionRule]
    /// How the rules were chosen, for the manifest (`LlamaForCausalLM`, or `fallback: …`).
    public var source: String

    /// Known architectures and the fusions vLLM builds for them (`packed_modules_mapping`).
    public static let rulesByArchitecture: [String: [FusionRule]] = [
        "LlamaForCausalLM": [.qkv, .gateUp],
        "MistralForCausalLM": [.qkv, .gateUp],
        "Qwen2ForCausalLM": [.qkv, .gateUp],
        "Qwen3ForCausalLM": [.qkv, .gateUp],
        "MixtralForCausalLM": [.qkv, .w1w3],
        "Qwen2MoeForCausalLM": [.qkv, .gateUp],
        "Qwen3MoeForCausalLM": [.qkv, .gateUp],
        "DeepseekV2ForCausalLM": [.mlaA, .gateUp],
        "DeepseekV3ForCausalLM": [.mlaA, .gateUp],
    ]

    public init(rules: [FusionRule], source: String) {
        self.rules = rules
        self.source = source
    }

    /// The rules for a model's `config.json`: its first known architecture, else every rule.
    public init(config: JSONValue?) {
        let architectures = config?["architectures"]?.arrayValue?.compactMap(\.stringValue) ?? []
        if let known = architectures.first(where: { FusedGroups.rulesByArchitecture[$0] != nil }) {
            self.init(rules: FusedGroups.rulesByArchitecture[known]!, source: known)
        } else {
            let reason = (architectures.first ?? config?["model_type"]?.stringValue).map { "\($0) is not in the table" } ?? "no config.json architecture"
            self.init(rules: FusionRule.all, source: "fallback by name (\(reason))")
        }
    }

    /// The groups among `weightNames` (tensor names ending in `.weight`). A group needs at least
    /// two members present; members are listed in the rule's order.
    public func groups(in weightNames: [String]) -> [FusedGroup] {
        let present = Set(weightNames)
        var result: [FusedGroup] = []
        var seen = Set<String>()
        for name in weightNames where name.hasSuffix(".weight") {
            let module = moduleName(name)
            guard let dot = module.lastIndex(of: ".") else { continue }
            let parent = String(module[..<dot])
            let leaf = String(module[module.index(after: dot)...])
            for rule in rules where rule.members.contains(leaf) {
                let members = rule.members.map { "\(parent).\($0).weight" }.filter(present.contains)
                guard members.count >= 2, !seen.contains(members[0]) else { continue }
                seen.insert(members[0])
                result.append(FusedGroup(parent: parent, weights: members, fusedModule: rule.fusedName.map { "\(parent).\($0)" }, rule: rule))
            }
        }
        return result
    }
}
