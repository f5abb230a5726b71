import Glibc
import NVFP4Kit

/// The committed model folders (`scripts/fixtures/make_model_folders.py`) and helpers to read outputs.
enum ModelFixtures {
    static func folder(_ name: String) -> String { "\(FixturePaths.root)/Fixtures/models/\(name)" }
    static let llama = folder("llama")
    static let qwenMoE = folder("qwen-moe")
    static let mixtral = folder("mixtral")

    /// One stored tensor of an output folder.
    struct Stored: Equatable {
        var dtype: DType
        var shape: [Int]
        var bytes: [UInt8]
        var shard: String
    }

    /// Every tensor of every `.safetensors` file in `folder`, by name.
    static func tensors(in folder: String) throws -> [String: Stored] {
        var result: [String: Stored] = [:]
        for name in try listFolder(folder) where name.hasSuffix(".safetensors") {
            let reader = try SafetensorsReader(path: "\(folder)/\(name)")
            for t in reader.header.tensors {
                result[t.name] = Stored(dtype: t.dtype, shape: t.shape, bytes: try reader.withBytes(of: t) { Array($0) }, shard: name)
            }
        }
        return result
    }

    /// Quantizes `input` into a fresh folder under `scratch` with the library.
    static func quantize(
        _ input: String, format: CheckpointFormat, into scratch: ScratchFolder, name: String? = nil,
        exclude: [String] = [], calibration: [String: Float]? = nil
    ) throws -> (output: String, plan: QuantizePlan) {
        var options = QuantizeOptions()
        options.format = format
        options.threads = 2
        options.selection = TensorSelection(exclude: exclude)
        let plan = try QuantizePlan(folder: try ModelFolder(path: input), options: options, calibration: calibration)
        let output = scratch.file(name ?? format.rawValue)
        try FolderQuantizeJob.run(plan: plan, output: output, replace: false, invocation: ["nvfp4", "test"])
        return (output, plan)
    }

    /// A float32 from 4 little-endian bytes.
    static func float(_ bytes: [UInt8]) -> Float {
        Float(bitPattern: UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24)
    }

    /// The max |x| of a bf16 tensor's bytes.
    static func bf16Amax(_ bytes: [UInt8]) -> Float {
        var amax: Float = 0
        for i in stride(from: 0, to: bytes.count, by: 2) {
            let v = Float(bitPattern: (UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8) << 16)
            amax = max(amax, abs(v))
        }
        return amax
    }

    /// A file's bytes.
    static func read(_ path: String) throws -> [UInt8] {
        let file = try MappedFile(path: path)
        return Array(file.bytes)
    }

    /// The JSON of a file.
    static func json(_ path: String) throws -> JSONValue {
        try JSONParser.parse(String(decoding: try read(path), as: UTF8.self))
    }
}

/// The names in a folder (sorted, without `.` and `..`).
func listFolder(_ path: String) throws -> [String] {
    guard let dir = opendir(path) else { throw SystemError(call: "opendir", path: path) }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafePointer(to: entry.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}
