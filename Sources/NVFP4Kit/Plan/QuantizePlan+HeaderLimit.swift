/// The output side of the header size limit: a plan never writes a file whose header the tool
/// (or the reference reader) would refuse to read back.
extension QuantizePlan {
    /// Throws for the first output shard whose JSON header would exceed
    /// ``SafetensorsHeader/maxHeaderLength``, the one limit readers and writers share.
    ///
    /// Runs when the plan is made, before any tensor data is read or any byte is written.
    func checkHeaderLimits() throws {
        for index in outputShards.indices {
            let length = UInt64(layoutPlan(ofOutputShard: index).headerBytes.count - 8)
            guard length > SafetensorsHeader.maxHeaderLength else { continue }
            throw FileError(path: source.displayPath, cause: PlanError.outputHeaderTooLarge(
                shard: outputShards[index].name, length: length, tensors: outputShards[index].tensors.count,
                describesAll: options.format == .torchao))
        }
    }
}
