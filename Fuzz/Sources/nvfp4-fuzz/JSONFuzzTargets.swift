import Glibc
import NVFP4Kit

/// The JSON files nvfp4 reads from a user's folder or command line, each fuzzed through the real
/// entry point that reads it (`NVFP4_FUZZ_TARGET=<name> scripts/fuzz.sh …`): the input becomes that
/// file in a scratch model folder (a valid one-shard model beside it), and the folder is read,
/// planned, audited or merged as the commands do. A thrown error is the expected outcome.
enum JSONFuzzTarget: String, CaseIterable {
    /// `model.safetensors.index.json`: ModelFolder, CheckpointSource, check's index rules, the plan.
    case index
    /// `config.json` and `hf_quant_config.json`: fusion rules, the plan, check's config rules.
    case config
    /// `nvfp4-part-0-of-1.json`: `merge`.
    case part
    /// A quantize manifest: `verify`'s reading of it (file and folder checks, the block rule).
    case manifest
    /// `--calibration` amax files: parsed and applied by the plan.
    case calibration
    /// `--importance` statistics.
    case importance

    /// The target chosen by `NVFP4_FUZZ_TARGET`, or `nil` for the safetensors/zstd target.
    static let selected: JSONFuzzTarget? = getenv("NVFP4_FUZZ_TARGET").flatMap { JSONFuzzTarget(rawValue: String(cString: $0)) }

    /// Runs the target's readers on one input.
    func run(_ bytes: [UInt8]) {
        let folder = JSONFuzzScratch.shared
        switch self {
        case .index:
            let model = folder.model(with: [ModelFolder.indexFileName: bytes])
            _ = try? QuantizePlan(folder: ModelFolder(path: model), options: JSONFuzzScratch.options, calibration: nil, measure: false)
            if let source = try? CheckpointSource(path: model) { _ = try? CheckpointAudit(source: source) }
        case .config:
            for name in ["config.json", EngineLayoutNames.ConfigStrings.hfQuantConfigFile] {
                let model = folder.model(with: [name: bytes])
                if let m = try? ModelFolder(path: model) {
                    _ = FusedGroups(config: m.config)
                    _ = try? QuantizePlan(folder: m, options: JSONFuzzScratch.options, calibration: nil, measure: false)
                }
                if let source = try? CheckpointSource(path: model) { _ = try? CheckpointAudit(source: source) }
            }
        case .part:
            let model = folder.model(with: ["nvfp4-part-0-of-1.json": bytes])
            _ = try? FolderQuantizeJob.merge(output: model, invocation: ["nvfp4", "merge"])
        case .manifest:
            let path = folder.file("manifest.json", bytes)
            guard let manifest = try? VerifyManifest.read(path) else { return }
            _ = BlockRule(manifestOptions: manifest["options"])
            _ = try? ManifestCheck.failures(manifest: manifest, original: (nil, 8), quantized: ("00", 8))
            if let source = try? CheckpointSource(path: folder.model(with: [:])) {
                _ = try? ManifestCheck.folderFailures(manifest: manifest, folder: source)
            }
        case .calibration:
            let path = folder.file("amax.json", bytes)
            guard let calibration = try? CalibrationFile.read(path) else { return }
            _ = try? QuantizePlan(
                folder: ModelFolder(path: folder.model(with: [:])), options: JSONFuzzScratch.options, calibration: calibration, measure: false)
        case .importance:
            let path = folder.file("importance.json", bytes)
            guard let statistics = try? ImportanceStatistics(path: path) else { return }
            var options = JSONFuzzScratch.options
            options.method = .mse
            options.importance = statistics
            _ = try? QuantizePlan(folder: ModelFolder(path: folder.model(with: [:])), options: options, calibration: nil, measure: false)
        }
    }
}

/// A scratch folder in /dev/shm (or /tmp) holding one small valid model, rebuilt for each input.
final class JSONFuzzScratch: Sendable {
    static let shared = JSONFuzzScratch()
    static let options: QuantizeOptions = {
        var o = QuantizeOptions()
        o.threads = 1
        return o
    }()

    let root: String
    /// A valid shard: two 2-D bf16 weights of a fused q/k pair and a norm.
    let shard: [UInt8]

    init() {
        let base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
        var template = Array("\(base)/nvfp4-fuzz-json.XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { fatalError("mkdtemp failed") }
        root = String(cString: made)
        let tensors = [
            PlannedTensor(name: "model.layers.0.self_attn.q_proj.weight", dtype: .bf16, shape: [16, 32]),
            PlannedTensor(name: "model.layers.0.self_attn.k_proj.weight", dtype: .bf16, shape: [16, 32]),
            PlannedTensor(name: "model.norm.weight", dtype: .bf16, shape: [32]),
        ]
        let plan = SafetensorsLayoutPlan(tensors: tensors, metadata: [("format", "pt")])
        shard = plan.headerBytes + (0..<plan.dataByteCount).map { UInt8(truncatingIfNeeded: $0 % 7 == 0 ? 0x3F : $0) }
    }

    /// Writes `bytes` to `name` in the scratch folder and returns its path.
    func file(_ name: String, _ bytes: [UInt8]) -> String {
        let path = root + "/" + name
        write(bytes, to: path)
        return path
    }

    /// A fresh model folder `root/model`: `model.safetensors` plus `files`.
    func model(with files: [String: [UInt8]]) -> String {
        let folder = root + "/model"
        if let dir = opendir(folder) {
            var names: [String] = []
            while let entry = readdir(dir) {
                let name = withUnsafePointer(to: entry.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(dir)
            for name in names { unlink(folder + "/" + name) }
        } else {
            mkdir(folder, 0o700)
        }
        write(shard, to: folder + "/model.safetensors")
        for (name, bytes) in files { write(bytes, to: folder + "/" + name) }
        return folder
    }

    private func write(_ bytes: [UInt8], to path: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { fatalError("cannot write \(path)") }
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        precondition(n == bytes.count)
        close(fd)
    }
}
