/// Whether MLA attention projections become NVFP4.
public enum MLAAttentionPolicy: String, Sendable, CaseIterable {
    /// Kept in high precision, as NVIDIA's DeepSeek NVFP4 recipe (Model-Optimizer `ptq.py`
    /// disables `*attn*` quantizers unless asked).
    case keep
    /// q_a/kv_a (one fused group), q_b and o quantized; `kv_b_proj` still kept.
    case quantize
}

/// Keep rules that depend on the model rather than on one tensor's name: DeepSeek-family MTP
/// layers (`model.layers.{num_hidden_layers + i}` for `i < num_nextn_predict_layers`, from
/// `config.json`) and MLA attention (the attention module of any layer that has a `kv_b_proj`).
struct ModelKeepRules {
    /// `model.layers.61.` for DeepSeek-V3's one MTP layer.
    var mtpPrefixes: [String]
    /// `model.layers.3.self_attn.` for every attention module that holds a `kv_b_proj`.
    var mlaAttentionPrefixes: Set<String>
    var mlaAttention: MLAAttentionPolicy

    init(config: JSONValue?, tensorNames: some Sequence<String>, mlaAttention: MLAAttentionPolicy) {
        let layers = config?["num_hidden_layers"]?.unsignedValue.map { Int(clamping: $0) }
        let mtp = config?["num_nextn_predict_layers"]?.unsignedValue.map { Int(clamping: min($0, 1 << 16)) } ?? 0
        if let layers, layers < 1 << 24, mtp > 0 {
            mtpPrefixes = (layers..<(layers + mtp)).map { "model.layers.\($0)." }
        } else {
            mtpPrefixes = []
        }
        let kvB = tensorNames.filter { moduleName($0).hasSuffix(".kv_b_proj") }
        mlaAttentionPrefixes = Set(kvB.map { moduleName(moduleName($0)) + "." })
        self.mlaAttention = mlaAttention
    }

    /// Why `name` (a tensor the name rules would quantize) is kept, or `nil`.
    func reason(for name: String) -> KeepReason? {
        if mtpPrefixes.contains(where: { name.hasPrefix($0) }) { return .multiTokenPrediction }
        if mlaAttention == .keep, mlaAttentionPrefixes.contains(where: { name.hasPrefix($0) }) { return .mlaAttention }
        return nil
    }
}
