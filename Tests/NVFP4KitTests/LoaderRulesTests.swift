import Glibc
import NVFP4Kit
import Testing

/// The loader rules of `checkpoint-formats.md` (vLLM, SGLang, TensorRT-LLM, transformers), checked
/// on every fixture folder in both engine layouts, weight-only and calibrated.
@Suite("engine loader rules")
struct LoaderRulesTests {
    static let cases: [(String, CheckpointFormat, Bool)] = [ModelFixtures.llama, ModelFixtures.qwenMoE, ModelFixtures.mixtral].flatMap { folder in
        [CheckpointFormat.compressedTensors, .modelopt].flatMap { format in [false, true].map { (folder, format, $0) } }
    }

    @Test("an output folder obeys the loaders' rules", arguments: cases)
    func rules(folder: String, format: CheckpointFormat, calibrated: Bool) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let original = try ModelFixtures.tensors(in: folder)
        var calibration: [String: Float]?
        if calibrated {
            let plan = try QuantizePlan(folder: try ModelFolder(path: folder), options: QuantizeOptions(), calibration: nil)
            calibration = Dictionary(uniqueKeysWithValues: plan.quantizedModules.enumerated().map { ($1, 0.5 + Float($0)) })
        }
        let output = try ModelFixtures.quantize(folder, format: format, into: scratch, calibration: calibration).output
        let tensors = try ModelFixtures.tensors(in: output)
        let config = try ModelFixtures.json("\(output)/config.json")
        let q = try #require(config["quantization_config"])
        // Linear layers of the original: 2-D `.weight` tensors other than embeddings.
        let linears = original.filter { $0.key.hasSuffix(".weight") && $0.value.shape.count == 2 && !$0.key.contains("embed") }
            .keys.map { String($0.dropLast(".weight".count)) }.sorted()
        let quantized = linears.filter { m in
            format == .compressedTensors ? tensors["\(m).weight_packed"] != nil : tensors["\(m).weight_scale_2"] != nil
        }
        let kept = linears.filter { !quantized.contains($0) }
        #expect(!quantized.isEmpty)
        #expect(config["dtype"] == (try ModelFixtures.json("\(folder)/config.json"))["dtype"], "dtype stays bf16")

        // safetensors: every file is listed by the index, no stale shard, format=pt, header padded to 8.
        let index = try ModelFixtures.json("\(output)/model.safetensors.index.json")
        let listed = Set(index["weight_map"]!.objectValue!.compactMap(\.value.stringValue))
        #expect(listed == Set(try listFolder(output).filter { $0.hasSuffix(".safetensors") }))
        for shard in listed {
            let reader = try SafetensorsReader(path: "\(output)/\(shard)")
            #expect(reader.header.metadataValue("format") == "pt")
            #expect(reader.dataStart % 8 == 0)
        }

        switch format {
        case .compressedTensors:
            #expect(q["quant_method"]?.stringValue == "compressed-tensors")
            #expect(q["format"]?.stringValue == "nvfp4-pack-quantized")
            #expect(q["quantization_status"]?.stringValue == "compressed", "transformers needs it")
            let group = try #require(q["config_groups"]?["group_0"])
            #expect(group["targets"]?.arrayValue != nil)
            for args in [group["weights"], calibrated ? group["input_activations"] : nil].compactMap({ $0 }) {
                #expect(args["strategy"]?.stringValue == "tensor_group" && args["group_size"]?.unsignedValue == 16)
                #expect(args["symmetric"]?.boolValue == true && args["type"]?.stringValue == "float" && args["num_bits"]?.unsignedValue == 4)
                for key in ["scale_dtype", "zp_dtype", "observer"] { #expect(args[key] == nil, "\(key) breaks compressed-tensors 0.11-0.12") }
            }
            #expect(calibrated ? group["input_activations"]?["dynamic"]?.stringValue == "local" : group["input_activations"] == .null)
            let ignore = Set(q["ignore"]?.arrayValue?.compactMap(\.stringValue) ?? [])
            for m in kept { #expect(ignore.contains(m), "kept Linear \(m) must be ignored") }
            for m in quantized {
                #expect(!ignore.contains(m))
                #expect(tensors["\(m).weight"] == nil && tensors["\(m).weight_zero_point"] == nil)
                let packed = tensors["\(m).weight_packed"]!, shape = original["\(m).weight"]!.shape
                #expect(packed.dtype == .u8 && packed.shape == [shape[0], shape[1] / 2])
                #expect(tensors["\(m).weight_scale"]?.dtype == .f8E4M3 && tensors["\(m).weight_scale"]?.shape == [shape[0], shape[1] / 16])
                #expect(tensors["\(m).weight_global_scale"]?.shape == [1])
                #expect((tensors["\(m).input_global_scale"] != nil) == calibrated, "W4A16 has no input_global_scale; W4A4 needs it")
            }
        case .modelopt:
            #expect(q["quant_method"]?.stringValue?.hasPrefix("modelopt") == true)
            #expect(q["quant_algo"]?.stringValue == (calibrated ? "NVFP4" : "W4A16_NVFP4"))
            let hf = try ModelFixtures.json("\(output)/hf_quant_config.json")["quantization"]
            for key in ["group_size", "kv_cache_quant_algo", "exclude_modules"] { #expect(hf?[key] != nil, "vLLM requires \(key)") }
            let excludes = hf?["exclude_modules"]?.arrayValue?.compactMap(\.stringValue) ?? []
            func excluded(_ m: String) -> Bool { excludes.contains { IgnoreList.vllmModelOptExcludes($0, module: m) } }
            for m in kept { #expect(excluded(m), "kept Linear \(m) must be excluded") }
            for m in quantized {
                #expect(!excluded(m), "quantized \(m) is matched by an exclude entry")
                let shape = original["\(m).weight"]!.shape
                #expect(tensors["\(m).weight"]?.dtype == .u8 && tensors["\(m).weight"]?.shape == [shape[0], shape[1] / 2])
                #expect(tensors["\(m).weight_scale_2"]?.shape == [])
                if calibrated {
                    let v = ModelFixtures.float(tensors["\(m).input_scale"]!.bytes)
                    #expect(v.isFinite && v > 0, "every quantized module needs a finite positive input_scale")
                } else {
                    #expect(tensors["\(m).input_scale"] == nil)
                }
            }
        case .torchao:
            Issue.record("not an engine layout")
        }

        // Fused groups: all quantized or all kept; equal weight (and input) global scales (TRT-LLM asserts ==).
        let plan = try QuantizePlan(folder: try ModelFolder(path: folder), options: QuantizeOptions(), calibration: nil)
        for group in plan.fusion.groups(in: Array(original.keys).sorted()) {
            let modules = group.weights.map { String($0.dropLast(".weight".count)) }
            #expect(Set(modules.map(quantized.contains)).count == 1, "\(modules)")
            for suffix in format == .modelopt ? ["weight_scale_2", "input_scale"] : ["weight_global_scale", "input_global_scale"] {
                #expect(Set(modules.compactMap { tensors["\($0).\(suffix)"]?.bytes }).count <= 1, "\(modules) \(suffix)")
            }
        }
    }
}
