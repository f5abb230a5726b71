/// The reports of one output shard's tensors, in plan order.
///
/// Only tensors with measurements (quantized weights: amax, scales, error) keep a stored
/// ``TensorReport``; every other tensor's report (kept, consumed, dequantized: name, dtype, shape,
/// decision and outputs, all in the plan) is derived from its plan entry when read. A shard of a
/// million kept tensors thus costs four bytes each, not a report each.
public struct TensorReports: RandomAccessCollection, Sendable {
    /// Where each report lives: an index into `measured`, or -1 for one derived from the plan.
    private var slots: [Int32] = []
    private var measured: [TensorReport] = []
    /// The plan's entries and the shard's positions in them (shared with the plan, not copied).
    private let entries: [TensorPlan]
    private let order: [Int]

    /// Reports of output shard `index` of `plan`, filled with ``append(_:for:)``.
    init(plan: QuantizePlan, outputShard index: Int) {
        entries = plan.tensors
        order = plan.outputShards[index].tensors
        slots.reserveCapacity(order.count)
    }

    /// Reports given in full (one stored report each).
    public init(_ reports: [TensorReport]) {
        entries = []
        order = []
        measured = reports
        slots = reports.indices.map(Int32.init)
    }

    /// Records the next tensor's report: `report`, or `nil` when the plan entry says it all.
    mutating func append(_ report: TensorReport?) {
        guard let report else { return slots.append(-1) }
        slots.append(Int32(measured.count))
        measured.append(report)
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { slots.count }

    public subscript(position: Int) -> TensorReport {
        let slot = slots[position]
        return slot >= 0 ? measured[Int(slot)] : TensorReport(planned: entries[order[position]])
    }
}

extension TensorReport {
    /// What the plan says of `entry`, before any measurement.
    init(planned entry: TensorPlan) {
        let tensor = entry.tensor
        self.init(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape, decision: entry.decision)
        outputs = entry.outputs.map(\.name)
    }
}
