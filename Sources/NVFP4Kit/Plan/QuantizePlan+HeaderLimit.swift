/// The output side of the header size limit: a plan never writes a file whose header the tool
/// (or the reference reader) would refuse to read back.
extension QuantizePlan {
    /// The length of output shard `index`'s padded JSON header, measured without building it.
    public func outputHeaderLength(ofOutputShard index: Int) -> UInt64 {
        let parts = headerParts(ofOutputShard: index)
        return SafetensorsLayoutPlan.headerLength(tensors: parts.tensors, metadata: parts.metadata)
    }

    /// Throws for the first output shard whose JSON header would exceed
    /// ``SafetensorsHeader/maxHeaderLength``, the one limit readers and writers share.
    ///
    /// Runs when the plan is made, before any tensor data is read or any byte is written; the
    /// headers are measured, not built.
    func checkHeaderLimits() throws {
        for index in outputShards.indices {
            // torchao's metadata describes every tensor: a bound from the names alone refuses a
            // huge header before that metadata (hundreds of MB for a million tensors) is built.
            let bound = options.format == .torchao ? torchaoHeaderLowerBound(ofOutputShard: index) : 0
            let (length, atLeast) = bound > SafetensorsHeader.maxHeaderLength ? (bound, true) : (outputHeaderLength(ofOutputShard: index), false)
            guard length > SafetensorsHeader.maxHeaderLength else { continue }
            throw FileError(path: source.displayPath, cause: PlanError.outputHeaderTooLarge(
                shard: source.folder == nil ? nil : outputShards[index].name, length: length, atLeast: atLeast,
                tensors: outputShards[index].tensors.count, describesAll: options.format == .torchao))
        }
    }

    /// A lower bound on output shard `index`'s torchao header, measured without building its
    /// metadata: the tensor entries exactly, plus every described tensor's name twice (its
    /// `__metadata__` key and its `tensor_names` entry), quoted but not escaped. Escaping and the
    /// descriptors only add to it.
    func torchaoHeaderLowerBound(ofOutputShard index: Int) -> UInt64 {
        let entries = SafetensorsLayoutPlan.headerLength(tensors: tensors(ofOutputShard: index).lazy.flatMap(\.outputs), metadata: [])
        // Described as in ``headerParts(ofOutputShard:)``: every tensor but consumed FP8 scales.
        let names = tensors.reduce(0) { $0 + ($1.kind == .consumed ? 0 : 2 * ($1.tensor.name.utf8.count + 2)) }
        return entries + UInt64(names)
    }
}
