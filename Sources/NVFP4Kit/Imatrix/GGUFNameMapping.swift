/// llama.cpp weight names → Hugging Face module names, for imatrix files (`docs/quality.md`,
/// "llama.cpp imatrix files"). The one table of this mapping, taken from gguf-py's
/// `tensor_mapping.py` for the Llama, Mistral/Mixtral and Qwen2/Qwen3 (and their MoE) families.
///
/// An imatrix names a weight `blk.<N>.<leaf>.weight` (or `output.weight`); its module is
/// `model.layers.<N>.<path>` for each path of the leaf's row (names of other families are
/// listed too: a name the model does not have is never looked up). A stacked `_exps` weight
/// holds one matrix per expert, `{e}` in the path. llama.cpp permutes the rows (outputs) of
/// q/k for its RoPE, never the columns (inputs), so per-input-channel statistics map unchanged.
enum GGUFNameMapping {
    /// One llama.cpp leaf and its Hugging Face module paths under `model.layers.<N>.`.
    struct Row {
        var leaf: String
        var paths: [String]
        /// A stacked expert weight (`[n_expert, N, K]`): `{e}` in `paths` is the expert.
        var stacked: Bool = false
    }

    static let rows: [Row] = [
        Row(leaf: "attn_q", paths: ["self_attn.q_proj"]),
        Row(leaf: "attn_k", paths: ["self_attn.k_proj"]),
        Row(leaf: "attn_v", paths: ["self_attn.v_proj"]),
        Row(leaf: "attn_output", paths: ["self_attn.o_proj"]),
        Row(leaf: "ffn_gate", paths: ["mlp.gate_proj"]),
        Row(leaf: "ffn_up", paths: ["mlp.up_proj"]),
        Row(leaf: "ffn_down", paths: ["mlp.down_proj"]),
        Row(leaf: "ffn_gate_inp", paths: ["mlp.gate", "block_sparse_moe.gate"]),
        Row(leaf: "ffn_gate_exps", paths: ["mlp.experts.{e}.gate_proj", "block_sparse_moe.experts.{e}.w1"], stacked: true),
        Row(leaf: "ffn_up_exps", paths: ["mlp.experts.{e}.up_proj", "block_sparse_moe.experts.{e}.w3"], stacked: true),
        Row(leaf: "ffn_down_exps", paths: ["mlp.experts.{e}.down_proj", "block_sparse_moe.experts.{e}.w2"], stacked: true),
        Row(leaf: "ffn_gate_shexp", paths: ["mlp.shared_expert.gate_proj"]),
        Row(leaf: "ffn_up_shexp", paths: ["mlp.shared_expert.up_proj"]),
        Row(leaf: "ffn_down_shexp", paths: ["mlp.shared_expert.down_proj"]),
        Row(leaf: "ffn_gate_inp_shexp", paths: ["mlp.shared_expert_gate"]),
    ]
    /// `output.weight` (recorded with `llama-imatrix --process-output`).
    static let outputModule = "lm_head"
    static let layerPrefix = "model.layers."
    /// Leaves that read the same input: one's statistics stand in for a sibling the file lacks.
    static let sharedInputs: [[String]] = [["attn_q", "attn_k", "attn_v"], ["ffn_gate", "ffn_up"], ["ffn_gate_exps", "ffn_up_exps"], ["ffn_gate_shexp", "ffn_up_shexp"]]
    /// Leaves whose input is the layer's hidden state, in the order tried to find a legacy
    /// file's expert count (its `_exps` entries lie flat, experts one after another).
    static let hiddenInputs = ["ffn_gate_inp", "attn_q", "attn_k", "attn_v"]

    /// The Hugging Face modules of an imatrix and their per-channel means; matrices without
    /// tokens are left out (searched unweighted, as llama.cpp's all-ones rows amount to).
    ///
    /// - Throws: ``ImportanceStatistics/Problem`` when no name maps, or a legacy `_exps` entry
    ///   cannot be split into experts.
    static func modules(of imatrix: LlamaImatrix) throws(ImportanceStatistics.Problem) -> [String: [Float]] {
        var layers: [Int: [String: [[Float]?]]] = [:]
        var modules: [String: [Float]] = [:]
        for (name, matrices) in imatrix.entries {
            let weight = name.hasSuffix(".weight") ? String(name.dropLast(".weight".count)) : name
            if weight == "output", let means = matrices.first, matrices.count == 1 {
                if let means { modules[outputModule] = means }
                continue
            }
            let parts = weight.split(separator: ".", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, parts[0] == "blk", let layer = Int(parts[1]), layer >= 0, String(layer) == parts[1] else { continue }
            layers[layer, default: [:]][String(parts[2])] = matrices
        }
        for (layer, var leaves) in layers {
            for group in sharedInputs {
                guard let present = group.first(where: { leaves[$0] != nil }) else { continue }
                for leaf in group where leaves[leaf] == nil { leaves[leaf] = leaves[present] }
            }
            for row in rows {
                guard let stored = leaves[row.leaf] else { continue }
                let matrices = row.stacked ? try experts(stored, leaf: row.leaf, layer: layer, leaves: leaves) : stored
                guard row.stacked || matrices.count == 1 else {
                    throw ImportanceStatistics.Problem(reason: "tensor \"blk.\(layer).\(row.leaf).weight\" holds \(matrices.count) matrices; a dense weight has one")
                }
                for (e, means) in matrices.enumerated() {
                    guard let means else { continue }
                    for path in row.paths {
                        modules["\(layerPrefix)\(layer).\(path.replacing("{e}", with: String(e)))"] = means
                    }
                }
            }
        }
        guard !modules.isEmpty else {
            throw ImportanceStatistics.Problem(reason: "no imatrix entry names a Llama, Mistral or Qwen weight (expected names like blk.0.attn_q.weight)")
        }
        return modules
    }

    /// A stacked weight's matrices, one per expert: as stored when the file has one per expert
    /// (GGUF), else the flat legacy entry cut into experts, their count found from a weight of
    /// the same layer whose input is the hidden state (gate/up) or from the layer's gate/up
    /// experts (down).
    private static func experts(_ stored: [[Float]?], leaf: String, layer: Int, leaves: [String: [[Float]?]]) throws(ImportanceStatistics.Problem) -> [[Float]?] {
        guard stored.count == 1, let flat = stored[0] else { return stored }
        let name = "blk.\(layer).\(leaf).weight"
        func flatCount(_ leaf: String) -> Int? { leaves[leaf].flatMap { $0.count == 1 ? $0[0]?.count : nil } }
        let expertCount: Int?
        if leaf == "ffn_down_exps" {
            let gate = ["ffn_gate_exps", "ffn_up_exps"].lazy.compactMap(flatCount).first
            let hidden = hiddenInputs.lazy.compactMap(flatCount).first
            expertCount = gate.flatMap { g in hidden.flatMap { h in h > 0 && g % h == 0 ? g / h : nil } }
        } else {
            expertCount = hiddenInputs.lazy.compactMap(flatCount).first.flatMap { h in h > 0 && flat.count % h == 0 ? flat.count / h : nil }
        }
        guard let expertCount, expertCount > 0, flat.count % expertCount == 0 else {
            throw ImportanceStatistics.Problem(reason: "legacy imatrix tensor \"\(name)\": cannot tell its expert count (\(flat.count) values; no attn_q or ffn_gate_inp of layer \(layer) that divides them)")
        }
        let channels = flat.count / expertCount
        return (0..<expertCount).map { Array(flat[($0 * channels)..<(($0 + 1) * channels)]) }
    }
}
