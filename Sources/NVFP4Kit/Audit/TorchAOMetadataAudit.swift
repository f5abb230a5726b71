/// `check`'s reading of torchao's `__metadata__`: each NVFP4 weight's descriptor is what
/// `unflatten_tensor_state_dict` rebuilds the `NVFP4Tensor` from, so a descriptor with a wrong
/// block size, an unknown dtype, data names that are not the stored tensors, or hostile nesting
/// loads wrongly or not at all.
enum TorchAOMetadataRules {
    /// The deepest nesting a descriptor may have: torchao's own is 4 levels; anything far deeper
    /// is hostile and is not parsed further.
    static let maxDepth = 8

    /// The data names a descriptor may list.
    static let knownDataNames: Set<String> = ["qdata", "scale", "per_tensor_scale", "act_per_tensor_scale"]

    /// What is wrong with the descriptor `text` of module `m`, or `nil`.
    static func problem(_ text: String?, module m: QuantizedModule) -> String? {
        guard let text else {
            return "no __metadata__ entry \"\(m.originalName)\" describes this NVFP4 weight; torchao's unflatten_tensor_state_dict cannot rebuild it"
        }
        let value: JSONValue
        do { value = try JSONParser.parse(Array(text.utf8), maxDepth: maxDepth) } catch {
            return "its __metadata__ entry is not a torchao descriptor (\(error))"
        }
        guard value["_type"]?.stringValue == "NVFP4Tensor", let data = value["_data"], data.objectValue != nil else {
            return "its __metadata__ entry is not an NVFP4Tensor descriptor (_type \(value["_type"]?.serialized() ?? "missing"))"
        }
        guard data["block_size"]?.unsignedValue == UInt64(NVFP4Codec.blockSize) else {
            return "its __metadata__ block_size is \(data["block_size"]?.serialized() ?? "missing"), not \(NVFP4Codec.blockSize): NVFP4 blocks are 16 elements"
        }
        let dtype = data["orig_dtype"]?["_data"]?.stringValue
        guard data["orig_dtype"]?["_type"]?.stringValue == "torch.dtype", dtype.flatMap(TorchAOLayout.dtype(torchName:)) != nil else {
            return "its __metadata__ orig_dtype \(data["orig_dtype"]?.serialized() ?? "missing") is not bfloat16, float16 or float32"
        }
        if let swizzled = data["is_swizzled_scales"], swizzled.boolValue == nil {
            return "its __metadata__ is_swizzled_scales is \(swizzled.serialized()), not true or false"
        }
        if let kwargs = data["act_quant_kwargs"], kwargs != .null,
            kwargs["_data"]?["block_size"]?.unsignedValue != UInt64(NVFP4Codec.blockSize)
        {
            return "its __metadata__ act_quant_kwargs has block_size \(kwargs["_data"]?["block_size"]?.serialized() ?? "missing"), not \(NVFP4Codec.blockSize)"
        }
        guard let names = value["_tensor_data_names"]?.arrayValue?.compactMap(\.stringValue),
            names.count == value["_tensor_data_names"]?.arrayValue?.count
        else { return "its __metadata__ has no _tensor_data_names list of strings" }
        var expected: Set<String> = ["qdata", "scale"]
        if m.globalScale != nil { expected.insert("per_tensor_scale") }
        if m.inputScale != nil { expected.insert("act_per_tensor_scale") }
        guard Set(names) == expected, names.count == expected.count else {
            return "its __metadata__ _tensor_data_names \(names) do not name the stored tensors \(expected.sorted())"
        }
        return nil
    }
}

extension CheckpointAudit {
    /// Every torchao NVFP4 weight needs a well-formed descriptor in its shard's `__metadata__`.
    mutating func checkTorchAOMetadata() {
        for m in model.modules where m.layout == .torchao {
            let header = source.shards[m.packed.shard].reader.header
            if let problem = TorchAOMetadataRules.problem(header.metadataValue(m.originalName), module: m) {
                add(.torchaoMetadataInvalid, source.path(of: m.packed), m.name, problem + "; torchao loads this weight wrongly or not at all")
            }
        }
    }
}
