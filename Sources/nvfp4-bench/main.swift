// nvfp4-bench: end-to-end benchmark of the nvfp4 executable against `cp` on the same file.
//
// Usage: swift build -c release && .build/release/nvfp4-bench [--size-gib 2] [--runs 5] [--dir /tmp/nvfp4-bench] [--keep] [--torchao PYTHON]
//
// It writes a seeded synthetic Llama-shaped bf16 checkpoint (hidden 2048, intermediate 5632, as many
// layers as fit the size), then times, in one run and on the same file, median of --runs:
// `cp` of the file, `nvfp4 quantize` with 1 thread and with all cores (also with --hash none/all,
// --io buffered, and to stdout = /dev/null), `nvfp4 quantize` of the same shapes as block FP8 (the
// element rate of FP8 input next to bf16's), `nvfp4 verify` and `nvfp4 dequantize` (output read
// once first); it
// prints GB/s of bf16 input, G elements/s, the ratio to `cp`, and the peak anonymous memory
// (RssAnon sampled from /proc every 2 ms) and peak RSS of each command.
import Dispatch
import Glibc
import NVFP4Kit

struct Options {
    var sizeGiB = 2.0
    var runs = 5
    var directory = "/tmp/nvfp4-bench"
    var keep = false
    /// A Python with torchao installed: also time scripts/bench/torchao_baseline.py (one run).
    var torchao: String?
}

func parseOptions() -> Options {
    var o = Options()
    var args = CommandLine.arguments.dropFirst().makeIterator()
    while let a = args.next() {
        switch a {
        case "--size-gib": o.sizeGiB = Double(args.next() ?? "") ?? o.sizeGiB
        case "--runs": o.runs = Int(args.next() ?? "") ?? o.runs
        case "--dir": o.directory = args.next() ?? o.directory
        case "--keep": o.keep = true
        case "--torchao": o.torchao = args.next()
        default:
            print("usage: nvfp4-bench [--size-gib G] [--runs N] [--dir PATH] [--keep] [--torchao PYTHON]")
            exit(2)
        }
    }
    return o
}

/// Seeded xorshift64* generator.
struct Random {
    var state: UInt64
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
}

/// Writes a Llama-shaped bf16 checkpoint of about `bytes` bytes; returns its element count. With
/// `fp8`, the same shapes with the linear layers as DeepSeek-style block FP8 (F8_E4M3 codes and
/// an F32 `weight_scale_inv` per 128 × 128 block), the embedding, norms and lm_head in bf16.
func writeCheckpoint(path: String, bytes: Int, fp8: Bool = false) throws -> Int {
    let hidden = 2048, intermediate = 5632, vocab = 32000, kv = 512
    var shapes: [(String, [Int])] = [("model.embed_tokens.weight", [vocab, hidden])]
    var total = vocab * hidden * 2 * 2 + hidden * 2
    var layer = 0
    let perLayer = (2 * hidden * hidden + 2 * kv * hidden + 3 * hidden * intermediate) * 2 + 2 * hidden * 2
    while total + perLayer <= bytes || layer == 0 {
        let p = "model.layers.\(layer)"
        shapes += [
            ("\(p).input_layernorm.weight", [hidden]),
            ("\(p).self_attn.q_proj.weight", [hidden, hidden]), ("\(p).self_attn.k_proj.weight", [kv, hidden]),
            ("\(p).self_attn.v_proj.weight", [kv, hidden]), ("\(p).self_attn.o_proj.weight", [hidden, hidden]),
            ("\(p).post_attention_layernorm.weight", [hidden]),
            ("\(p).mlp.gate_proj.weight", [intermediate, hidden]), ("\(p).mlp.up_proj.weight", [intermediate, hidden]),
            ("\(p).mlp.down_proj.weight", [hidden, intermediate]),
        ]
        total += perLayer
        layer += 1
    }
    shapes += [("model.norm.weight", [hidden]), ("lm_head.weight", [vocab, hidden])]
    func isFP8(_ name: String, _ shape: [Int]) -> Bool { fp8 && shape.count == 2 && name.contains(".layers.") }
    var planned: [PlannedTensor] = []
    for (name, shape) in shapes {
        if isFP8(name, shape) {
            planned.append(PlannedTensor(name: name + "_scale_inv", dtype: .f32, shape: [(shape[0] + 127) / 128, (shape[1] + 127) / 128]))
            planned.append(PlannedTensor(name: name, dtype: .f8E4M3, shape: shape))
        } else {
            planned.append(PlannedTensor(name: name, dtype: .bf16, shape: shape))
        }
    }
    let plan = SafetensorsLayoutPlan(tensors: planned, metadata: [("format", "pt")])
    let sink = try AtomicFileSink(path: path, replace: true)
    try sink.write(plan.headerBytes)
    var rng = Random(state: 0x9E37_79B9_7F4A_7C15)
    let chunk = 1 << 20
    var buffer = [UInt16](repeating: 0, count: chunk)
    var elements = 0
    for t in planned {
        var left = t.shape.reduce(1, *)
        if t.dtype == .f32 {  // block scales of about amax / 448 for N(0, 0.02) weights
            let scales = (0..<left).map { _ in Float(0.08 / 448) * (1 + Float(rng.next() >> 40) / Float(1 << 24)) }
            try scales.withUnsafeBytes { try sink.write($0) }
            continue
        }
        elements += left
        if t.dtype == .f8E4M3 {
            var codes = [UInt8](repeating: 0, count: chunk)
            while left > 0 {
                let n = min(chunk, left)
                for i in 0..<n {
                    let c = UInt8(truncatingIfNeeded: rng.next() >> 56)
                    codes[i] = c & 0x7F == 0x7F ? c ^ 1 : c  // never NaN
                }
                try codes.withUnsafeBytes { try sink.write(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                left -= n
            }
            continue
        }
        let isNorm = t.shape.count == 1
        while left > 0 {
            let n = min(chunk, left)
            for i in 0..<n {
                if isNorm { buffer[i] = 0x3F80; continue }
                // Approximately N(0, 0.02): the sum of four uniforms, scaled.
                let r = rng.next()
                let s = Float(r & 0xFFFF) + Float((r >> 16) & 0xFFFF) + Float((r >> 32) & 0xFFFF) + Float(r >> 48) - 131070
                buffer[i] = BFloat16.fromFloat(s * (0.02 / 37837.0))
            }
            try buffer.withUnsafeBytes { try sink.write(UnsafeRawBufferPointer(rebasing: $0[0..<(n * 2)])) }
            left -= n
        }
    }
    _ = try sink.commit()
    return elements
}

struct Sample {
    var wall: Double
    /// User + system CPU seconds (steadier than wall time when other work shares the cores).
    var cpu: Double
    var peakRSS: Int  // KiB
    var peakAnon: Int  // KiB
    var status: Int32
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func anonKiB(pid: pid_t) -> Int {
    guard let f = fopen("/proc/\(pid)/status", "r") else { return 0 }
    defer { fclose(f) }
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, 256, f) != nil {
        let s = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if s.hasPrefix("RssAnon:") { return Int(s.split(separator: " ")[1]) ?? 0 }
    }
    return 0
}

/// Runs a command with stdout and stderr sent to /dev/null; samples its anonymous memory.
func run(_ argv: [String]) -> Sample {
    var pid: pid_t = 0
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    let cargs = argv.map { strdup($0) } + [nil]
    defer { cargs.forEach { free($0) } }
    let start = now()
    guard posix_spawn(&pid, argv[0], &actions, nil, cargs, environ) == 0 else {
        print("cannot start \(argv[0])")
        exit(1)
    }
    var peakAnon = 0
    var status: Int32 = 0
    var usage = rusage()
    while true {
        let r = wait4(pid, &status, WNOHANG, &usage)
        if r == pid { break }
        peakAnon = max(peakAnon, anonKiB(pid: pid))
        usleep(2000)
    }
    let wall = now() - start
    posix_spawn_file_actions_destroy(&actions)
    let cpu = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    return Sample(wall: wall, cpu: cpu, peakRSS: usage.ru_maxrss, peakAnon: peakAnon, status: (status >> 8) & 0xFF)
}

func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

func fmt(_ x: Double, _ d: Int = 2) -> String {
    var p = 1.0
    for _ in 0..<d { p *= 10 }
    let v = (x * p).rounded() / p
    return "\(v)"
}

let options = parseOptions()
let binDir = String(CommandLine.arguments[0].prefix(upTo: CommandLine.arguments[0].lastIndex(of: "/") ?? CommandLine.arguments[0].startIndex))
let tool = (binDir.isEmpty ? "." : binDir) + "/nvfp4"
mkdir(options.directory, 0o755)
let input = options.directory + "/synthetic.safetensors"
let output = options.directory + "/synthetic.nvfp4.safetensors"
let copy = options.directory + "/copy.safetensors"
let dense = options.directory + "/dequantized.safetensors"
let bytes = Int(options.sizeGiB * 1_073_741_824)
print("writing a \(fmt(options.sizeGiB)) GiB synthetic Llama-shaped bf16 checkpoint to \(input) …")
let elements = try writeCheckpoint(path: input, bytes: bytes)
let fp8Input = options.directory + "/synthetic-fp8.safetensors"
let fp8Output = options.directory + "/synthetic-fp8.nvfp4.safetensors"
print("writing the same shapes as block FP8 (linear layers F8_E4M3 + 128x128 F32 scales) to \(fp8Input) …")
let fp8Elements = try writeCheckpoint(path: fp8Input, bytes: bytes, fp8: true)
precondition(fp8Elements == elements)
func sizeOnDisk(_ path: String) -> Double {
    var st = stat()
    stat(path, &st)
    return Double(st.st_size)
}
let fileBytes = sizeOnDisk(input)
print("file: \(Int(fileBytes)) bytes (FP8: \(Int(sizeOnDisk(fp8Input)))), \(elements) elements; cores: \(ParallelLoop.availableCores); runs: \(options.runs) (median)")

let commands: [(String, [String])] = [
    ("cp", ["/bin/cp", input, copy]),
    ("quantize -j1", [tool, "quantize", input, "-o", output, "--force", "-q", "-j", "1"]),
    ("quantize", [tool, "quantize", input, "-o", output, "--force", "-q"]),
    ("quantize --hash none", [tool, "quantize", input, "-o", output, "--force", "-q", "--hash", "none"]),
    ("quantize --hash all", [tool, "quantize", input, "-o", output, "--force", "-q", "--hash", "all"]),
    ("quantize --io buffered", [tool, "quantize", input, "-o", output, "--force", "-q", "--io", "buffered"]),
    // stdout goes to /dev/null: the pipeline without the file system (what a pipe consumer sees).
    ("quantize -o - --hash none", [tool, "quantize", input, "-o", "-", "-q", "--hash", "none"]),
    ("  the same, -j1", [tool, "quantize", input, "-o", "-", "-q", "--hash", "none", "-j", "1"]),
    ("quantize FP8 input", [tool, "quantize", fp8Input, "-o", fp8Output, "--force", "-q", "--fp8-block-size", "128x128"]),
    ("quantize FP8 input -j1", [tool, "quantize", fp8Input, "-o", fp8Output, "--force", "-q", "--fp8-block-size", "128x128", "-j", "1"]),
    ("FP8 -o - --hash none", [tool, "quantize", fp8Input, "-o", "-", "-q", "--hash", "none", "--fp8-block-size", "128x128"]),
    ("verify", [tool, "verify", input, output, "-q"]),
    ("dequantize", [tool, "dequantize", output, "-o", dense, "--force", "-q"]),
]
/// Untimed steps before a command: the targets are for a warm page cache, and the default
/// `quantize` writes its output around the cache (`--io direct`), so `verify` first reads it once.
let before: [String: [String]] = ["verify": ["/bin/cat", output], "dequantize": ["/bin/cat", output]]
var results: [String: (wall: Double, cpu: Double, rss: Int, anon: Int)] = [:]
_ = run(["/bin/cat", input])  // warm the page cache
for (name, argv) in commands {  // warm-up
    if let warm = before[name] { _ = run(warm) }
    _ = run(argv)
}
// Rounds interleave the commands, so a burst of other load on the machine hits all of them alike.
var samples: [String: [Sample]] = [:]
for _ in 0..<options.runs {
    for (name, argv) in commands {
        if let warm = before[name] { _ = run(warm) }
        let s = run(argv)
        if s.status != 0 {
            print("\(name) exited \(s.status)")
            exit(1)
        }
        samples[name, default: []].append(s)
    }
}
for (name, _) in commands {
    let s = samples[name]!
    results[name] = (median(s.map(\.wall)), median(s.map(\.cpu)), s.map(\.peakRSS).max()!, s.map(\.peakAnon).max()!)
}
let cp = results["cp"]!.wall
print("")
print("command                    median s   GB/s in   G elem/s   × cp    CPU s    peak anon MiB   peak RSS MiB")
for (name, _) in commands {
    let r = results[name]!
    print(
        [name.padding(25), fmt(r.wall, 3).padding(10), fmt((name.contains("FP8") ? sizeOnDisk(fp8Input) : fileBytes) / r.wall / 1e9).padding(9),
         fmt(Double(elements) / r.wall / 1e9).padding(10), fmt(r.wall / cp).padding(7), fmt(r.cpu, 3).padding(8),
         fmt(Double(r.anon) / 1024, 1).padding(15), fmt(Double(r.rss) / 1024, 1)].joined(separator: " "))
}
if let python = options.torchao {
    // One run: torchao on the CPU manages tens of MB/s. Run from the repository root.
    let s = run([python, "scripts/bench/torchao_baseline.py", input, options.directory + "/torchao.safetensors"])
    unlink(options.directory + "/torchao.safetensors")
    if s.status == 0 {
        print("torchao (CPU, 1 run)       " + [fmt(s.wall, 3).padding(10), fmt(fileBytes / s.wall / 1e9).padding(9),
            fmt(Double(elements) / s.wall / 1e9).padding(10), fmt(s.wall / cp).padding(7), fmt(s.cpu, 3).padding(8),
            fmt(Double(s.peakAnon) / 1024, 1).padding(15), fmt(Double(s.peakRSS) / 1024, 1)].joined(separator: " "))
    } else {
        print("torchao baseline exited \(s.status) (is torchao installed for \(python)?)")
    }
}
let q1 = results["quantize -j1"]!.wall, qn = results["quantize"]!.wall
print("")
print("thread scaling, 1 thread / all cores: quantize \(fmt(q1 / qn))× (the output's SHA-256 is one sequential stream, and the disk takes the rest); to /dev/null with --hash none \(fmt(results["  the same, -j1"]!.wall / results["quantize -o - --hash none"]!.wall))×")
print("verify / quantize = \(fmt(results["verify"]!.wall / qn))×")
print("FP8 input / bf16 input, G elements/s: \(fmt(qn / results["quantize FP8 input"]!.wall))× with all cores, \(fmt(q1 / results["quantize FP8 input -j1"]!.wall))× with 1 thread, \(fmt(results["quantize -o - --hash none"]!.wall / results["FP8 -o - --hash none"]!.wall))× to /dev/null with --hash none (the same shapes; FP8 is dequantized to bf16, then the same codec)")
if !options.keep {
    unlink(input)
    unlink(output)
    unlink(copy)
    unlink(dense)
    unlink(fp8Input)
    unlink(fp8Output)
    unlink(options.directory + "/synthetic-fp8.nvfp4.manifest.json")
    unlink(options.directory + "/synthetic.nvfp4.manifest.json")
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
