import NVFP4Kit
import Testing

@Suite struct SelectionTests {
    private func tensor(_ name: String, _ shape: [Int], _ dtype: DType = .bf16) -> TensorInfo {
        TensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: 0..<UInt64(shape.reduce(1, *) * dtype.bitWidth / 8))
    }

    @Test(arguments: [
        ("model.layers.0.self_attn.q_proj.weight", [64, 128], TensorDecision.quantize),
        ("model.layers.0.mlp.gate_proj.weight", [352, 128], .quantize),
        ("model.layers.0.mlp.down_proj.weight", [128, 352], .quantize),
        ("model.embed_tokens.weight", [256, 128], .keep(.embedding)),
        ("lm_head.weight", [256, 128], .keep(.lmHead)),
        ("model.norm.weight", [128], .keep(.norm)),
        ("model.layers.0.q_norm.weight", [128], .keep(.norm)),
        ("block.weight", [128], .keep(.notTwoDimensional)),
        ("model.layers.0.input_layernorm.weight", [128, 128], .keep(.norm)),
        ("encoder.layer.0.attention.output.LayerNorm.weight", [384, 384], .keep(.norm)),
        ("transformer.h.0.ln_1.weight", [768, 768], .keep(.norm)),
        ("model.layers.0.mlp.gate.weight", [8, 128], .keep(.router)),
        ("model.layers.0.block_sparse_moe.gate.weight", [16, 128], .keep(.router)),
        ("model.layers.0.mlp.router.weight", [16, 128], .keep(.router)),
        ("model.layers.0.self_attn.q_proj.bias", [64], .keep(.notAWeight)),
        ("model.layers.0.mlp.up_proj.weight", [350, 128], .keep(.notMultipleOf16)),
        ("model.layers.0.mlp.up_proj.weight", [352, 120], .keep(.notMultipleOf16)),
        ("subnormal.weight", [16, 64], .quantize),
        ("conv.weight", [16, 16, 3], .keep(.notTwoDimensional)),
    ] as [(String, [Int], TensorDecision)])
    func defaultRule(_ name: String, _ shape: [Int], _ decision: TensorDecision) {
        #expect(TensorSelection().decide(tensor(name, shape)) == decision)
    }

    @Test func nonFloatDtypesAreKept() {
        #expect(TensorSelection().decide(tensor("a.weight", [16, 16], .i32)) == .keep(.unsupportedDtype))
        #expect(TensorSelection().decide(tensor("a.weight", [16, 16], .f16)) == .quantize)
    }

    @Test func includeAndExcludeOverrideTheRule() {
        let only = TensorSelection(include: ["*.mlp.*"])
        #expect(only.decide(tensor("model.layers.0.mlp.up_proj.weight", [32, 32])) == .quantize)
        #expect(only.decide(tensor("model.layers.0.self_attn.q_proj.weight", [32, 32])) == .keep(.notIncluded))
        let embed = TensorSelection(include: ["lm_head"])
        #expect(embed.decide(tensor("lm_head.weight", [32, 32])) == .quantize)
        let both = TensorSelection(include: ["*"], exclude: ["*.q_proj"])
        #expect(both.decide(tensor("model.layers.0.self_attn.q_proj.weight", [32, 32])) == .keep(.excluded))
        #expect(both.decide(tensor("model.layers.0.self_attn.k_proj.weight", [32, 32])) == .quantize)
    }

    /// The demo checkpoint: every decoder linear quantized, embeddings/lm_head/norms kept.
    @Test func tinyLlamaPlan() throws {
        let reader = try SafetensorsReader(path: FixturePaths.tinyLlama)
        let plan = try QuantizePlan(file: reader, options: QuantizeOptions())
        let layout = plan.layoutPlan(ofOutputShard: 0)
        let quantized = plan.tensors.filter(\.isQuantized).map(\.tensor.name)
        #expect(quantized.count == 14)
        #expect(quantized.allSatisfy { $0.contains("_proj.weight") })
        #expect(!quantized.contains("lm_head.weight"))
        #expect(layout.tensors.count == reader.header.tensors.count + 2 * 14)
        #expect(layout.headerBytes.count % 8 == 0)
    }
}
