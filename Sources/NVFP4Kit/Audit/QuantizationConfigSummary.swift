import Glibc

/// How an ignore/exclude entry matched a module name.
public enum IgnoreMatch: Sendable, Equatable {
    /// The entry is the module name.
    case exact(String)
    /// A compressed-tensors `re:` regex (matched from the start, as Python's `re.match`) or a
    /// ModelOpt `fnmatch` wildcard.
    case pattern(String)
    /// A plain substring of the name: vLLM's ModelOpt loader excludes such modules too
    /// (`exclude_module in prefix`), which is rarely what the entry meant.
    case substring(String)

    /// The entry that matched.
    public var entry: String {
        switch self {
        case .exact(let e), .pattern(let e), .substring(let e): return e
        }
    }
}

/// What a checkpoint's configuration says about quantization, read from `config.json`'s
/// `quantization_config` and ModelOpt's `hf_quant_config.json`.
public struct QuantizationConfigSummary {
    /// `config.json`'s `quantization_config`, if any.
    public var quantizationConfig: JSONValue?
    /// `hf_quant_config.json`'s `quantization` object, if any.
    public var hfQuantization: JSONValue?
    /// The layout the config declares (`quant_method`, or ModelOpt when only hf_quant_config.json exists).
    public var declaredLayout: CheckpointLayout?
    /// `quant_method` as written.
    public var quantMethod: String?
    /// compressed-tensors' top-level `format`.
    public var format: String?
    /// ModelOpt's `quant_algo` (hf_quant_config.json first, as TensorRT-LLM reads it).
    public var quantAlgo: String?
    /// Whether the config says activations are quantized (W4A4: static input scales needed);
    /// `nil` when it does not say (torchao, no config).
    public var activationsQuantized: Bool?
    /// The ignore (compressed-tensors), exclude (ModelOpt) or `modules_to_not_convert` (torchao)
    /// entries, from every source.
    public var ignore: [String]
    /// compressed-tensors `targets` of every config group.
    public var targets: [String]

    /// Compiled `re:` patterns of ``ignore`` and ``targets`` (compiled once: a model has many modules).
    private var regexes: [String: Regex<AnyRegexOutput>] = [:]

    /// Reads the configs; tolerant of any shape (the audit reports bad shapes).
    public init(config: JSONValue?, hfQuantConfig: JSONValue?) {
        quantizationConfig = config?["quantization_config"].flatMap { $0.objectValue == nil ? nil : $0 }
        hfQuantization = hfQuantConfig?["quantization"].flatMap { $0.objectValue == nil ? nil : $0 }
        let qc = quantizationConfig
        quantMethod = qc?["quant_method"]?.stringValue
        format = qc?["format"]?.stringValue
        quantAlgo = hfQuantization?["quant_algo"]?.stringValue ?? qc?["quant_algo"]?.stringValue
        if let quantMethod {
            declaredLayout = EngineLayoutNames.format(quantMethod: quantMethod).map(CheckpointLayout.init)
        } else {
            declaredLayout = hfQuantization != nil ? .modelopt : nil
        }
        var ignore: [String] = []
        // Every layout's ignore-list key (`ignore`, torchao's `modules_to_not_convert`), then ModelOpt's hf_quant_config.json.
        var keys: [String] = []
        for names in EngineLayoutNames.all where !keys.contains(names.ignoreListKey) { keys.append(names.ignoreListKey) }
        for list in keys.map({ qc?[$0] }) + [hfQuantization?[EngineLayoutNames.ConfigStrings.modeloptExcludeKey]] {
            for entry in list?.arrayValue ?? [] { if let s = entry.stringValue, !ignore.contains(s) { ignore.append(s) } }
        }
        self.ignore = ignore
        targets = (qc?["config_groups"]?.objectValue ?? []).flatMap { ($0.value["targets"]?.arrayValue ?? []).compactMap(\.stringValue) }
        for entry in ignore + targets where entry.hasPrefix("re:") {
            if let regex = try? Regex(String(entry.dropFirst(3))) { regexes[entry] = regex }
        }
        switch declaredLayout {
        case .compressedTensors?:
            let groups = qc?["config_groups"]?.objectValue ?? []
            if groups.isEmpty {
                activationsQuantized = nil
            } else {
                activationsQuantized = groups.contains { group in
                    if case .object = group.value["input_activations"] ?? .null { return true }
                    return false
                }
            }
        case .modelopt?:
            switch quantAlgo?.uppercased() {
            case EngineLayoutNames.ConfigStrings.modeloptW4A4: activationsQuantized = true
            case EngineLayoutNames.ConfigStrings.modeloptW4A16: activationsQuantized = false
            default: activationsQuantized = nil
            }
        default:
            activationsQuantized = nil
        }
    }

    /// Whether any quantization config was found.
    public var isPresent: Bool { quantizationConfig != nil || hfQuantization != nil }

    /// How a module is matched by the ignore/exclude list under the loader rules of `layout`, or `nil`.
    ///
    /// compressed-tensors (vLLM `should_ignore_layer`): exact names and `re:` regexes anchored at the
    /// start. ModelOpt (vLLM `is_layer_excluded`): exact names, then plain substrings, then `fnmatch`.
    public func ignoreMatch(for module: String, layout: CheckpointLayout) -> IgnoreMatch? {
        for entry in ignore where entry == module { return .exact(entry) }
        switch layout {
        case .torchao:
            // transformers skips the named module and everything under it.
            for entry in ignore where module.hasPrefix(entry + ".") { return .pattern(entry) }
        case .compressedTensors:
            for entry in ignore where entry.hasPrefix("re:") {
                if matchesPrefix(entry, module) { return .pattern(entry) }
            }
        case .modelopt:
            for entry in ignore where fnmatch(entry, module, 0) == 0 { return .pattern(entry) }
            for entry in ignore where module.containsBytes(entry) { return .substring(entry) }
        default:
            break
        }
        return nil
    }

    /// Whether a compressed-tensors config group targets Linear module `module` (vLLM
    /// `find_matched_target`): an exact name, a `re:` regex matched from the start, or a class name.
    /// Every Linear checkpoint module is some `…Linear` class in the engine, so a class name containing
    /// `Linear` matches all of them; other class names are taken to match (they cannot be resolved
    /// from the checkpoint). `nil` when there are no targets.
    public func isTargeted(_ module: String) -> Bool? {
        guard !targets.isEmpty else { return nil }
        for target in targets {
            if target == module { return true }
            if target.hasPrefix("re:") {
                if matchesPrefix(target, module) { return true }
            } else if !target.contains(".") {
                return true  // a class name: "Linear" matches every Linear layer
            }
        }
        return false
    }

    /// Python `re.match(pattern, text)` for a `re:` entry: a match that starts at the beginning.
    /// An invalid pattern matches nothing.
    func matchesPrefix(_ entry: String, _ text: String) -> Bool {
        guard let regex = regexes[entry] else { return false }
        return (try? regex.prefixMatch(in: text)) != nil
    }
}

extension String {
    /// Whether `needle`'s UTF-8 bytes occur in this string's: Python's `needle in text` (what vLLM's
    /// loaders run), and far faster on long module lists than the Unicode-aware `contains`.
    func containsBytes(_ needle: String) -> Bool {
        var text = self
        var pattern = needle
        return text.withUTF8 { haystack in
            pattern.withUTF8 { n in
                if n.isEmpty { return true }
                guard n.count <= haystack.count else { return false }
                let first = n[0]
                for start in 0...(haystack.count - n.count) where haystack[start] == first {
                    if memcmp(haystack.baseAddress! + start, n.baseAddress!, n.count) == 0 { return true }
                }
                return false
            }
        }
    }
}
