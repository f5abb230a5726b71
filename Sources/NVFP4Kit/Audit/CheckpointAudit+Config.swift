/// `nvfp4 check`'s rules about the quantization config (`config.json`'s `quantization_config`,
/// ModelOpt's `hf_quant_config.json`): what engines read to pick and set up their loader.
extension CheckpointAudit {
    mutating func checkConfig() {
        let configPath = source.file("config.json")
        let hfPath = source.file(EngineLayoutNames.ConfigStrings.hfQuantConfigFile)
        let quantizedLayout = model.modules.isEmpty ? nil : model.layout
        if source.isFolder && source.config == nil {
            add(.configMissing, source.path, "config.json", "the folder has no config.json; engines cannot load it")
        }
        guard source.isFolder else { return }
        if let layout = quantizedLayout, source.config != nil, !config.isPresent {
            add(.configMissing, configPath, "quantization_config",
                "the tensors are \(layout.rawValue) NVFP4 but config.json has no quantization_config\(layout == .modelopt ? " and there is no hf_quant_config.json" : ""); engines will load the packed bytes as plain weights")
            return
        }
        if let declared = config.declaredLayout, let layout = quantizedLayout, declared != layout {
            add(.configLayoutMismatch, configPath, "quantization_config.quant_method",
                "the config declares \(declared.rawValue) (quant_method \(config.quantMethod.map { "\"\($0)\"" } ?? "none")) but the tensors are \(layout.rawValue); the engine will pick the wrong loader")
        } else if config.isPresent, quantizedLayout == nil {
            if config.declaredLayout == nil, let method = config.quantMethod {
                add(.configLayoutMismatch, configPath, "quantization_config.quant_method",
                    "quant_method \"\(method)\" is left in config.json but the tensors are unquantized; engines route the model to the \(method) loader: remove the stale quantization_config")
            } else {
                add(.configLayoutMismatch, configPath, "quantization_config",
                    "the config declares \(config.declaredLayout?.rawValue ?? config.quantAlgo ?? "?") quantization but no tensor is NVFP4")
            }
        } else if config.isPresent, config.declaredLayout == nil, let method = config.quantMethod {
            add(.configLayoutMismatch, configPath, "quantization_config.quant_method",
                "quant_method \"\(method)\" is not an NVFP4 loader (expected compressed-tensors, modelopt or torchao)")
        }
        switch config.declaredLayout {
        case .compressedTensors?: checkCompressedTensorsConfig(configPath)
        case .modelopt?: checkModelOptConfig(configPath, hfPath)
        default: break
        }
    }

    mutating func checkCompressedTensorsConfig(_ path: String) {
        guard let qc = config.quantizationConfig else { return }
        let wanted = EngineLayoutNames.ConfigStrings.compressedTensorsFormat
        if let f = qc["format"], f.stringValue != wanted {
            add(.configInvalid, path, "quantization_config.format", "format is \(f.serialized()) but NVFP4 needs \"\(wanted)\"; vLLM finds no scheme otherwise")
        }
        guard let groups = qc["config_groups"]?.objectValue, !groups.isEmpty else {
            add(.configInvalid, path, "quantization_config.config_groups", "config_groups is missing or empty; vLLM matches no layer to a scheme")
            return
        }
        var anyFormat = qc["format"] != nil
        for (name, group) in groups {
            let key = "quantization_config.config_groups.\(name)"
            if let f = group["format"] {
                anyFormat = true
                if f.stringValue != wanted { add(.configInvalid, path, key + ".format", "format is \(f.serialized()) but NVFP4 needs \"\(wanted)\"") }
            }
            if group["targets"]?.arrayValue == nil { add(.configInvalid, path, key + ".targets", "targets must be a list (vLLM requires it)") }
            if let w = group["weights"], w.objectValue != nil {
                checkQuantizationArgs(w, path, key + ".weights")
            } else {
                add(.configInvalid, path, key + ".weights", "weights arguments are missing; vLLM cannot detect NVFP4")
            }
            if let a = group["input_activations"], a.objectValue != nil { checkQuantizationArgs(a, path, key + ".input_activations") }
        }
        if !anyFormat { add(.configInvalid, path, "quantization_config.format", "no format at the top level or in any group; vLLM needs \"\(wanted)\" to run W4A4") }
        if let status = qc["quantization_status"], status.stringValue != "compressed" {
            add(.configInvalid, path, "quantization_config.quantization_status", "quantization_status is \(status.serialized()); transformers loads packed tensors only with \"compressed\"")
        }
        if let ignore = qc["ignore"], ignore.arrayValue?.allSatisfy({ $0.stringValue != nil }) != true {
            add(.configInvalid, path, "quantization_config.ignore", "ignore must be a list of strings")
        }
    }

    /// vLLM's NVFP4 detection: num_bits 4, type float, strategy tensor_group, group_size 16, symmetric.
    mutating func checkQuantizationArgs(_ args: JSONValue, _ path: String, _ key: String) {
        let expectations: [(String, JSONValue)] = [
            ("num_bits", 4), ("type", "float"), ("strategy", .string(EngineLayoutNames.ConfigStrings.tensorGroupStrategy)),
            ("group_size", .int(EngineLayoutNames.ConfigStrings.groupSize)), ("symmetric", true),
        ]
        for (field, expected) in expectations {
            let found = args[field]
            let ok = field == "group_size" || field == "num_bits" ? found?.doubleValue == expected.doubleValue : found == expected
            if !ok {
                add(.configInvalid, path, key + "." + field,
                    "\(field) is \(found?.serialized() ?? "missing") but NVFP4 needs \(expected.serialized()); vLLM does not recognise the scheme as NVFP4")
            }
        }
    }

    mutating func checkModelOptConfig(_ configPath: String, _ hfPath: String) {
        let valid = [EngineLayoutNames.ConfigStrings.modeloptW4A4, EngineLayoutNames.ConfigStrings.modeloptW4A16]
        if let hf = config.hfQuantization {
            for key in ["quant_algo", "group_size", "kv_cache_quant_algo", EngineLayoutNames.ConfigStrings.modeloptExcludeKey] where hf[key] == nil {
                add(.configInvalid, hfPath, "quantization.\(key)", "\(key) is missing; vLLM requires group_size, kv_cache_quant_algo and exclude_modules in hf_quant_config.json")
            }
            checkAlgo(hf["quant_algo"], hfPath, "quantization.quant_algo", valid)
            checkGroupSize(hf["group_size"], hfPath, "quantization.group_size")
            if let e = hf[EngineLayoutNames.ConfigStrings.modeloptExcludeKey], e.arrayValue?.allSatisfy({ $0.stringValue != nil }) != true {
                add(.configInvalid, hfPath, "quantization.exclude_modules", "exclude_modules must be a list of strings")
            }
        }
        if let qc = config.quantizationConfig {
            if config.hfQuantization == nil && qc["quant_algo"] == nil {
                add(.configInvalid, configPath, "quantization_config.quant_algo", "quant_algo is missing; vLLM raises \"Missing 'quant_algo' in quantization config\"")
            }
            checkAlgo(qc["quant_algo"], configPath, "quantization_config.quant_algo", valid)
            checkGroupSize(qc["group_size"], configPath, "quantization_config.group_size")
            if let hf = config.hfQuantization {
                if let a = qc["quant_algo"]?.stringValue, let b = hf["quant_algo"]?.stringValue, a.uppercased() != b.uppercased() {
                    add(.configDisagreement, configPath, "quantization_config.quant_algo",
                        "config.json says \(a) but hf_quant_config.json says \(b); TensorRT-LLM reads hf_quant_config.json, vLLM and SGLang may read config.json")
                }
                let ignore = Set((qc["ignore"]?.arrayValue ?? []).compactMap(\.stringValue))
                let exclude = Set((hf[EngineLayoutNames.ConfigStrings.modeloptExcludeKey]?.arrayValue ?? []).compactMap(\.stringValue))
                if qc["ignore"] != nil, hf[EngineLayoutNames.ConfigStrings.modeloptExcludeKey] != nil, ignore != exclude {
                    let onlyA = ignore.subtracting(exclude).sorted().prefix(3), onlyB = exclude.subtracting(ignore).sorted().prefix(3)
                    add(.configDisagreement, configPath, "quantization_config.ignore",
                        "differs from hf_quant_config.json exclude_modules (only in config.json: \(onlyA.joined(separator: ", ")); only in hf_quant_config.json: \(onlyB.joined(separator: ", "))); engines reading different files keep different modules")
                }
            }
        }
    }

    mutating func checkAlgo(_ value: JSONValue?, _ path: String, _ key: String, _ valid: [String]) {
        guard let value else { return }
        if !valid.contains(value.stringValue?.uppercased() ?? "") {
            add(.configInvalid, path, key, "quant_algo is \(value.serialized()) but an NVFP4 checkpoint needs \"NVFP4\" (W4A4) or \"W4A16_NVFP4\" (weight-only)")
        }
    }

    mutating func checkGroupSize(_ value: JSONValue?, _ path: String, _ key: String) {
        guard let value, value.doubleValue != Double(EngineLayoutNames.ConfigStrings.groupSize) else { return }
        add(.configInvalid, path, key, "group_size is \(value.serialized()) but NVFP4 blocks are 16 elements")
    }
}
