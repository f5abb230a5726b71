import Glibc
import NVFP4Kit
import Testing

/// The three layouts store one codec's bytes: these tests check the exact byte relations.
@Suite("checkpoint layouts")
struct LayoutTests {
    /// Quantizes the tiny Llama single file in `format` and returns its tensors.
    static func quantizeTinyLlama(_ format: CheckpointFormat?, scratch: ScratchFolder) throws -> [String: ModelFixtures.Stored] {
        var options = QuantizeOptions()
        if let format { options.format = format }
        options.threads = 2
        let output = scratch.file("\(format?.rawValue ?? "default").safetensors")
        let reader = try SafetensorsReader(path: FixturePaths.tinyLlama)
        let sink = try AtomicFileSink(path: output, replace: false)
        _ = try QuantizeJob.run(reader: reader, sink: sink, options: options)
        try sink.publish()
        var result: [String: ModelFixtures.Stored] = [:]
        let out = try SafetensorsReader(path: output)
        for t in out.header.tensors {
            result[t.name] = ModelFixtures.Stored(dtype: t.dtype, shape: t.shape, bytes: try out.withBytes(of: t) { Array($0) }, shard: output)
        }
        return result
    }

    static let modules = ["q_proj", "k_proj", "v_proj", "o_proj"].map { "model.layers.0.self_attn.\($0)" }
        + ["gate_proj", "up_proj", "down_proj"].map { "model.layers.1.mlp.\($0)" }

    @Test("--format torchao writes exactly today's bytes")
    func torchaoUnchanged() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let implicit = try Self.quantizeTinyLlama(nil, scratch: scratch)
        let explicit = try Self.quantizeTinyLlama(.torchao, scratch: scratch)
        #expect(try ModelFixtures.read(scratch.file("default.safetensors")) == ModelFixtures.read(scratch.file("torchao.safetensors")))
        #expect(implicit == explicit.mapValues { var s = $0; s.shard = scratch.file("default.safetensors"); return s })
    }

    /// Fused partners (q/k/v, gate/up) of the tiny Llama's layers.
    static let fusedGroups = [["q_proj", "k_proj", "v_proj"].map { "model.layers.0.self_attn.\($0)" }, ["gate_proj", "up_proj"].map { "model.layers.1.mlp.\($0)" }]

    @Test("a single file's fused layers share one global scale in compressed-tensors and ModelOpt (the max of the members'), torchao keeps each weight's own")
    func singleFileFusedScales() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let torchao = try Self.quantizeTinyLlama(.torchao, scratch: scratch)
        let ct = try Self.quantizeTinyLlama(.compressedTensors, scratch: scratch)
        let modelopt = try Self.quantizeTinyLlama(.modelopt, scratch: scratch)
        for group in Self.fusedGroups {
            // torchao's own per-tensor scales: pts rises with amax, so the group's shared scale is the largest.
            let own = try group.map { ModelFixtures.float(try #require(torchao["\($0)._weight_per_tensor_scale"]).bytes) }
            #expect(Set(own.map(\.bitPattern)).count > 1, "the fixture's members have different amax")
            let shared = own.max()!
            for m in group {
                let scale2 = ModelFixtures.float(try #require(modelopt["\(m).weight_scale_2"]).bytes)
                let global = ModelFixtures.float(try #require(ct["\(m).weight_global_scale"]).bytes)
                #expect(scale2.bitPattern == shared.bitPattern, "\(m): ModelOpt weight_scale_2 is the group's shared scale")
                #expect(global.bitPattern == (1 / shared).bitPattern, "\(m): compressed-tensors stores its reciprocal")
                #expect(try #require(ct["\(m).weight_packed"]).bytes == (try #require(modelopt["\(m).weight"])).bytes)
            }
        }
    }

    @Test("packed bytes and block scales are identical across layouts; global scales are pts and 1/pts")
    func byteRelations() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let torchao = try Self.quantizeTinyLlama(.torchao, scratch: scratch)
        let ct = try Self.quantizeTinyLlama(.compressedTensors, scratch: scratch)
        let modelopt = try Self.quantizeTinyLlama(.modelopt, scratch: scratch)
        // Members of fused groups get the group's scale in the engine layouts (singleFileFusedScales).
        for m in Self.modules where !Self.fusedGroups.joined().contains(m) {
            let qdata = try #require(torchao["\(m)._weight_qdata"])
            let packed = try #require(ct["\(m).weight_packed"])
            let weight = try #require(modelopt["\(m).weight"])
            #expect(weight.dtype == .u8 && packed.dtype == .u8)
            #expect(weight.bytes == packed.bytes && packed.bytes == qdata.bytes, "\(m): packed bytes differ")
            #expect(weight.shape == qdata.shape && packed.shape == qdata.shape)
            let rows = weight.shape[0], blocks = weight.shape[1] * 2 / 16

            let ctScale = try #require(ct["\(m).weight_scale"])
            let moScale = try #require(modelopt["\(m).weight_scale"])
            let swizzled = try #require(torchao["\(m)._weight_scale"])
            #expect(ctScale.dtype == .f8E4M3 && ctScale.shape == [rows, blocks])
            #expect(ctScale.bytes == moScale.bytes)
            // Row-major scale (r, b) is the swizzled scale at ScaleLayout.swizzled.offset(r, b).
            for r in 0..<rows {
                for b in 0..<blocks {
                    #expect(ctScale.bytes[r * blocks + b] == swizzled.bytes[ScaleLayout.swizzled.offset(row: r, block: b, blocks: blocks)])
                }
            }

            let pts = try #require(torchao["\(m)._weight_per_tensor_scale"])
            let scale2 = try #require(modelopt["\(m).weight_scale_2"])
            let global = try #require(ct["\(m).weight_global_scale"])
            #expect(scale2.dtype == .f32 && scale2.shape == [] && global.dtype == .f32 && global.shape == [1])
            #expect(scale2.bytes == pts.bytes, "ModelOpt weight_scale_2 is torchao's per-tensor scale, bit for bit")
            // compressed-tensors stores the fp32 reciprocal, as its ModelOpt converter does (`1 / weight_scale_2`).
            #expect(ModelFixtures.float(global.bytes).bitPattern == (1 / ModelFixtures.float(scale2.bytes)).bitPattern)
            #expect(ct["\(m).input_global_scale"] == nil && modelopt["\(m).input_scale"] == nil, "weight-only has no input scale")
            #expect(ct["\(m).weight"] == nil, "compressed-tensors removes the original weight")
        }
        // Kept tensors are copied unchanged in every layout.
        for name in ["model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"] {
            #expect(ct[name]?.bytes == torchao[name]?.bytes && modelopt[name]?.bytes == torchao[name]?.bytes)
        }
    }

    @Test("dequantized weights agree between ModelOpt (s × pts) and compressed-tensors (s / gs)")
    func dequantizedAgree() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let ct = try Self.quantizeTinyLlama(.compressedTensors, scratch: scratch)
        let modelopt = try Self.quantizeTinyLlama(.modelopt, scratch: scratch)
        for m in Self.modules {
            let pts = ModelFixtures.float(modelopt["\(m).weight_scale_2"]!.bytes)
            let gs = ModelFixtures.float(ct["\(m).weight_global_scale"]!.bytes)
            for code in Set(ct["\(m).weight_scale"]!.bytes) {
                let s = E4M3.decode(code)
                let a = s * pts, b = s / gs
                #expect(abs(a - b) <= abs(a) * Float.ulpOfOne, "\(m): scale code \(code) dequantizes to \(a) vs \(b)")
            }
        }
    }

    @Test("header metadata: torchao describes tensors, the engine layouts keep format=pt")
    func metadata() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        for format in [CheckpointFormat.compressedTensors, .modelopt] {
            _ = try Self.quantizeTinyLlama(format, scratch: scratch)
            let header = try SafetensorsReader(path: scratch.file("\(format.rawValue).safetensors")).header
            #expect(header.metadataValue("format") == "pt")
            #expect(header.metadataValue("tensor_names") == nil)
        }
    }
}
