/// Reader-side members of the format table: how a stored tensor is recognised as a layout's
/// packed NVFP4 data, and what a reader may expect of the other parts.
///
/// Everything here is derived from the table's strings (``EngineLayoutNames``); no layout is
/// spelled out again.
extension EngineLayoutNames {
    /// The parameter name every layout's suffixes are written for (`weight`).
    static let defaultParameter = "weight"

    /// Whether the suffixes spell the parameter inside them (torchao's `_<param>_qdata`), so that
    /// parameters other than `weight` (a stacked expert tensor `experts.gate_up_proj`) have their
    /// own tensor set; otherwise only `weight` is ever stored.
    public var namesParameters: Bool { packed.hasPrefix("_" + EngineLayoutNames.defaultParameter + "_") }

    /// Whether the packed data is stored under the dense weight's own name (ModelOpt's U8
    /// `<m>.weight`): then only the U8 dtype tells packed data from a kept weight.
    public var packedKeepsWeightName: Bool { packed == EngineLayoutNames.defaultParameter }

    /// Whether a module may lack the per-tensor scale: torchao's single-level mode
    /// (`use_dynamic_per_tensor_scale=False`) stores none; the engine layouts always need one.
    public var perTensorScaleOptional: Bool { namesParameters }

    /// Whether a module of this layout may store its block scales in the other ``ScaleLayout``:
    /// a layout that swizzles (torchao) records `is_swizzled_scales` per tensor and may store them
    /// row-major; the row-major layouts never swizzle.
    public var scaleLayoutMayVary: Bool { swizzledBlockScales }

    /// The names of parameter `parameter`'s tensors (`gate_up_proj` → `_gate_up_proj_qdata`, …);
    /// `self` for `weight` or a layout that does not name parameters.
    public func forParameter(_ parameter: String) -> EngineLayoutNames {
        guard namesParameters, parameter != EngineLayoutNames.defaultParameter else { return self }
        let slot = "_" + EngineLayoutNames.defaultParameter + "_"
        func rename(_ suffix: String) -> String {
            suffix.hasPrefix(slot) ? "_" + parameter + "_" + suffix.dropFirst(slot.count) : suffix
        }
        var names = self
        names.packed = rename(packed)
        names.blockScales = rename(blockScales)
        names.globalScale = rename(globalScale)
        names.inputScale = rename(inputScale)
        return names
    }

    /// The module and parameter of a tensor that holds this layout's packed data, or `nil`.
    ///
    /// compressed-tensors: `<m>.weight_packed`. ModelOpt: a U8 `<m>.weight`. torchao:
    /// `<m>._<param>_qdata` (`<m>._weight_qdata`, or a stacked expert tensor's
    /// `<m>._gate_up_proj_qdata`).
    public func packedTensor(_ tensor: TensorInfo) -> (module: String, parameter: String)? {
        guard namesParameters else {
            guard let module = module(of: tensor.name, suffix: packed) else { return nil }
            if packedKeepsWeightName && tensor.dtype != .u8 { return nil }
            return (module, EngineLayoutNames.defaultParameter)
        }
        // `<m>._<param><tail>`, tail = `_qdata`.
        let tail = String(packed.dropFirst(1 + EngineLayoutNames.defaultParameter.count))
        let name = Array(tensor.name.utf8)
        guard name.count > tail.utf8.count, tensor.name.hasSuffix(tail) else { return nil }
        let stem = name.dropLast(tail.utf8.count)
        let dot = UInt8(ascii: "."), underscore = UInt8(ascii: "_")
        guard let split = stem.indices.reversed().first(where: { stem[$0] == dot && $0 + 1 < stem.endIndex && stem[$0 + 1] == underscore }) else {
            return nil
        }
        let module = String(decoding: stem[..<split], as: UTF8.self)
        let parameter = String(decoding: stem[(split + 2)...], as: UTF8.self)
        guard !module.isEmpty, !parameter.isEmpty else { return nil }
        return (module, parameter)
    }

    /// The original (dense) tensor name of a module's parameter: `<m>.<param>`.
    public static func originalName(module: String, parameter: String) -> String { module + "." + parameter }

    /// The layout and module/parameter of a tensor holding packed NVFP4 data in any layout of the
    /// table, or `nil`.
    public static func packedTensor(_ tensor: TensorInfo) -> (names: EngineLayoutNames, module: String, parameter: String)? {
        for names in all {
            if let (module, parameter) = names.packedTensor(tensor) { return (names.forParameter(parameter), module, parameter) }
        }
        return nil
    }

    /// Whether a tensor name ends in one of the table's scale suffixes (for `weight`).
    public static func hasScaleSuffix(_ tensorName: String) -> Bool {
        all.contains { names in names.suffixes.dropFirst().contains { tensorName.hasSuffix("." + $0) } }
    }
}
