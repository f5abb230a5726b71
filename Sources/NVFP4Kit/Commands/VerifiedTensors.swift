/// The verified tensors of a ``VerifyReport``, in the original's order.
///
/// A kept tensor found identical (most of a huge checkpoint) is stored as its position in the
/// original's tensor list, 4 bytes, and read back as the result it stands for; every other result
/// (quantized weights, anything that failed) is stored whole.
public struct VerifiedTensors: RandomAccessCollection, Sendable {
    /// Index into `stored`, or -(position + 1) for an identical kept tensor at `position` of `originals`.
    private var slots: [Int32] = []
    private var stored: [VerifiedTensor] = []
    private let originals: LocatedTensorSubset?

    /// Results given in full.
    public init(_ tensors: [VerifiedTensor] = []) {
        originals = nil
        for t in tensors { append(t) }
    }

    /// Results of the tensors of `originals`, filled by ``append(_:)`` and ``appendIdenticalKept(at:)``.
    init(originals: LocatedTensorSubset) {
        self.originals = originals
        slots.reserveCapacity(originals.count)
    }

    mutating func append(_ tensor: VerifiedTensor) {
        slots.append(Int32(stored.count))
        stored.append(tensor)
    }

    /// Records that the kept tensor at `position` of the originals is stored unchanged.
    mutating func appendIdenticalKept(at position: Int) {
        precondition(originals != nil, "no originals to refer to")
        slots.append(-Int32(position) - 1)
    }

    /// Adds a failure to result `index`.
    mutating func appendFailure(_ failure: String, at index: Int) {
        var tensor = self[index]
        tensor.failures.append(failure)
        if slots[index] >= 0 {
            stored[Int(slots[index])] = tensor
        } else {
            slots[index] = Int32(stored.count)
            stored.append(tensor)
        }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { slots.count }

    public subscript(index: Int) -> VerifiedTensor {
        let slot = slots[index]
        if slot >= 0 { return stored[Int(slot)] }
        let info = originals![Int(-(slot + 1))].info
        return VerifiedTensor(original: info, kind: .kept, shape: info.shape, error: nil, failures: [])
    }
}
