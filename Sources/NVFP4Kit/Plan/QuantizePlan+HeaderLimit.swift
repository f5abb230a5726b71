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
            let length = outputHeaderLength(ofOutputShard: index)
            guard length > SafetensorsHeader.maxHeaderLength else { continue }
            throw FileError(path: source.displayPath, cause: PlanError.outputHeaderTooLarge(
                shard: source.folder == nil ? nil : outputShards[index].name, length: length, tensors: outputShards[index].tensors.count,
                describesAll: options.format == .torchao))
        }
    }
}
