/// An NVFP4 weight stored in torchao's layout: its parts and what they describe.
public struct NVFP4Weight: Sendable {
    /// The state-dict name of the logical weight (`model.layers.0.mlp.up_proj.weight`).
    public var name: String
    /// Logical rows (N) and columns (K).
    public var rows: Int
    public var columns: Int
    public var packed: TensorInfo
    public var scales: TensorInfo
    public var scaleLayout: ScaleLayout
    public var perTensorScale: TensorInfo?
    public var activationScale: TensorInfo?
    /// `orig_dtype` from the metadata, if recorded.
    public var originalDtype: DType?

    /// The stored tensors of this weight, in file order.
    public var parts: [TensorInfo] {
        [packed, scales, perTensorScale, activationScale].compactMap { $0 }.sorted { $0.dataOffsets.lowerBound < $1.dataOffsets.lowerBound }
    }

    /// The logical shape `[N, K]`.
    public var logicalShape: [Int] { [rows, columns] }
}

/// A stored tensor set that looks like an NVFP4 weight but cannot be one.
public struct LayoutProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public var tensor: String
    public var reason: String
    public var description: String { "tensor \"\(tensor)\": \(reason)" }
}

/// The tensors of a checkpoint, with torchao NVFP4 parts grouped into weights.
public struct CheckpointContents: Sendable {
    /// NVFP4 weights, in the file order of their first part.
    public var weights: [NVFP4Weight]
    /// Tensors that are not part of an NVFP4 weight.
    public var plain: [TensorInfo]

    /// Groups the tensors of `header`.
    ///
    /// A weight is recognised by `<module>._<param>_qdata` (U8 `[N, K/2]`) next to
    /// `<module>._<param>_scale` (F8_E4M3), with optional `_per_tensor_scale` and
    /// `_act_per_tensor_scale` (F32 scalars). The scale layout comes from the metadata's
    /// `is_swizzled_scales`, else from the scale shape (swizzled when ambiguous, as torchao writes).
    ///
    /// - Throws: ``LayoutProblem`` when parts are missing or have impossible shapes.
    public init(header: SafetensorsHeader) throws(LayoutProblem) {
        var weights: [NVFP4Weight] = []
        var consumed = Set<String>()
        for tensor in header.tensors where tensor.name.hasSuffix("_qdata") {
            guard let (module, parameter) = CheckpointContents.split(packedName: tensor.name) else { continue }
            let prefix = "\(module)._\(parameter)_"
            let name = "\(module).\(parameter)"
            guard let scales = header.tensor(named: prefix + "scale") else {
                throw LayoutProblem(tensor: tensor.name, reason: "NVFP4 data without its block scales \"\(prefix)scale\"")
            }
            guard tensor.dtype == .u8, tensor.shape.count == 2 else {
                throw LayoutProblem(tensor: tensor.name, reason: "NVFP4 data must be a 2-D U8 tensor, found \(tensor.dtype.rawValue) \(tensor.shape)")
            }
            guard scales.dtype == .f8E4M3 else {
                throw LayoutProblem(tensor: scales.name, reason: "block scales must be F8_E4M3, found \(scales.dtype.rawValue)")
            }
            let rows = tensor.shape[0]
            let columns = tensor.shape[1] * 2
            guard columns % 16 == 0 else {
                throw LayoutProblem(tensor: tensor.name, reason: "K = \(columns) is not a multiple of 16")
            }
            let blocks = columns / 16
            let descriptor = header.metadataValue(name).flatMap { try? JSONParser.parse($0) }
            let layout: ScaleLayout
            if let swizzled = descriptor?["_data"]?["is_swizzled_scales"]?.boolValue {
                layout = swizzled ? .swizzled : .rowMajor
            } else {
                layout = scales.shape == ScaleLayout.swizzled.storedShape(rows: rows, blocks: blocks) ? .swizzled : .rowMajor
            }
            guard scales.shape == layout.storedShape(rows: rows, blocks: blocks) else {
                throw LayoutProblem(tensor: scales.name, reason: "block scales have shape \(scales.shape), expected \(layout.storedShape(rows: rows, blocks: blocks)) (\(layout.rawValue)) for a [\(rows), \(columns)] weight")
            }
            var weight = NVFP4Weight(
                name: name, rows: rows, columns: columns, packed: tensor, scales: scales, scaleLayout: layout,
                perTensorScale: nil, activationScale: nil,
                originalDtype: descriptor?["_data"]?["orig_dtype"]?["_data"]?.stringValue.flatMap(TorchAOLayout.dtype(torchName:)))
            for (suffix, keyPath) in [("per_tensor_scale", \NVFP4Weight.perTensorScale), ("act_per_tensor_scale", \NVFP4Weight.activationScale)] {
                guard let scalar = header.tensor(named: prefix + suffix) else { continue }
                guard scalar.dtype == .f32, scalar.elementCount == 1 else {
                    throw LayoutProblem(tensor: scalar.name, reason: "must be one F32 value, found \(scalar.dtype.rawValue) \(scalar.shape)")
                }
                weight[keyPath: keyPath] = scalar
            }
            weights.append(weight)
            consumed.formUnion(weight.parts.map(\.name))
        }
        self.weights = weights.sorted { $0.parts[0].dataOffsets.lowerBound < $1.parts[0].dataOffsets.lowerBound }
        plain = header.tensors.filter { !consumed.contains($0.name) }
    }

    /// `a.b._weight_qdata` → (`a.b`, `weight`).
    static func split(packedName: String) -> (module: String, parameter: String)? {
        let stem = Array(packedName.utf8.dropLast("_qdata".count))
        guard let dot = stem.indices.reversed().first(where: { stem[$0] == UInt8(ascii: ".") && $0 + 1 < stem.count && stem[$0 + 1] == UInt8(ascii: "_") }) else {
            return nil
        }
        let module = String(decoding: stem[..<dot], as: UTF8.self)
        let parameter = String(decoding: stem[(dot + 2)...], as: UTF8.self)
        guard !module.isEmpty, !parameter.isEmpty else { return nil }
        return (module, parameter)
    }
}

extension NVFP4Weight {
    /// Reads the fp32 per-tensor scale, if the weight has one.
    public func perTensorScaleValue(in reader: SafetensorsReader) throws -> Float? {
        guard let info = perTensorScale else { return nil }
        return try reader.withBytes(of: info) { Float(bitPattern: UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self))) }
    }

    /// Invalid block-scale codes in the stored (non-padding) region: NaN (`0x7F`/`0xFF`) or negative.
    public func invalidScaleCodes(_ scaleBytes: UnsafeRawBufferPointer) -> (count: Int, first: (row: Int, block: Int)?) {
        let blocks = columns / 16
        var count = 0
        var first: (Int, Int)?
        for row in 0..<rows {
            for block in 0..<blocks {
                let code = scaleBytes[scaleLayout.offset(row: row, block: block, blocks: blocks)]
                if E4M3.isNaN(code) || code & 0x80 != 0 {
                    count += 1
                    if first == nil { first = (row, block) }
                }
            }
        }
        return (count, first)
    }

    /// Dequantizes rows into fp32 values, exactly as `NVFP4Tensor.dequantize` before its final cast.
    ///
    /// - Parameters:
    ///   - packed: The whole `[N, K/2]` packed data.
    ///   - scaleBytes: The whole stored scale tensor.
    ///   - perTensorScale: The fp32 per-tensor scale, or `nil` for single-level.
    ///   - rows: Rows to produce.
    ///   - body: Called per row with its K values.
    public func dequantize(
        packed: UnsafeRawBufferPointer, scaleBytes: UnsafeRawBufferPointer, perTensorScale: Float?,
        rows: Range<Int>, _ body: (Int, UnsafeBufferPointer<Float>) throws -> Void
    ) rethrows {
        let blocks = columns / 16
        let rowValues = UnsafeMutableBufferPointer<Float>.allocate(capacity: columns)
        defer { rowValues.deallocate() }
        for row in rows {
            for block in 0..<blocks {
                let code = scaleBytes[scaleLayout.offset(row: row, block: block, blocks: blocks)]
                let s = E4M3.decode(code)
                let factor = perTensorScale.map { $0 * s } ?? s
                for j in 0..<8 {
                    let byte = packed[row * (columns / 2) + block * 8 + j]
                    rowValues[block * 16 + 2 * j] = E2M1.values[Int(byte & 0x0F)] * factor
                    rowValues[block * 16 + 2 * j + 1] = E2M1.values[Int(byte >> 4)] * factor
                }
            }
            try body(row, UnsafeBufferPointer(rowValues))
        }
    }
}
