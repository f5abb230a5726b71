import Foundation
@testable import NVFP4Kit
import Testing

/// Reading llama.cpp imatrix files: every fixture in both formats against the generator's own
/// means, and hostile variants of each format refused with a line naming the problem.
@Suite("llama.cpp imatrix files")
struct ImatrixReadTests {
    static let cases = ImatrixFixtures.names.flatMap { name in ImatrixFixtures.formats.map { (name, $0) } }

    @Test("each fixture reads to the generator's Hugging Face modules and means, bit for bit", arguments: cases)
    func readsFixture(name: String, format: String) throws {
        let read = try ImportanceStatistics(path: ImatrixFixtures.path(name, format)).modules
        let expected = try ImatrixFixtures.expected(name, format)
        #expect(!expected.isEmpty)
        for (module, means) in expected {
            #expect(read[module] == means, "\(module)")
        }
        // Anything else is the other family's name for an expected module, with the same means.
        for (module, means) in read where expected[module] == nil {
            let other = try #require(ImatrixFixtures.alternate(module), "unexpected module \(module)")
            #expect(expected[other] == means, "\(module)")
        }
    }

    @Test("files written by llama.cpp's own llama-imatrix (SmolLM2 GGUF, both formats) map every linear and agree with each other",
          arguments: ImatrixFixtures.formats)
    func llamaCppWritten(format: String) throws {
        let path = ToolRunner.fixture("imatrix/llama-cpp/smollm2.imatrix.\(format)")
        let modules = try ImportanceStatistics(path: path).modules
        // SmolLM2-135M: 30 layers; q/k/v/o/gate/up read the 576-wide hidden state, down the 1536-wide MLP.
        let widths = ["self_attn.q_proj": 576, "self_attn.k_proj": 576, "self_attn.v_proj": 576, "self_attn.o_proj": 576,
                      "mlp.gate_proj": 576, "mlp.up_proj": 576, "mlp.down_proj": 1536]
        for layer in 0..<30 {
            for (leaf, width) in widths {
                let means = try #require(modules["model.layers.\(layer).\(leaf)"], "layer \(layer) \(leaf)")
                #expect(means.count == width && means.allSatisfy { $0.isFinite && $0 >= 0 } && means.contains { $0 > 0 }, "layer \(layer) \(leaf)")
            }
        }
        #expect(modules.count == 210, "\(modules.keys.sorted().prefix(5))")
        // The other format of the same run: sums and counts there, sum/count x ncall here.
        let other = try ImportanceStatistics(path: ToolRunner.fixture("imatrix/llama-cpp/smollm2.imatrix.\(format == "gguf" ? "dat" : "gguf")")).modules
        for (module, means) in modules {
            let theirs = try #require(other[module])
            #expect(zip(means, theirs).allSatisfy { abs($0 - $1) <= 1e-5 * max(abs($0), abs($1)) }, "\(module)")
        }
    }

    @Test("content decides the format, not the name: a GGUF imatrix named .json and a .dat named .gguf read the same")
    func sniffsByContent() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let gguf = try dir.copyFixture("imatrix/llama.imatrix.gguf", as: "stats.json")
            let dat = try dir.copyFixture("imatrix/llama.imatrix.dat", as: "stats.gguf")
            #expect(try ImportanceStatistics(path: gguf).modules == ImportanceStatistics(path: ImatrixFixtures.path("llama", "gguf")).modules)
            #expect(try ImportanceStatistics(path: dat).modules == ImportanceStatistics(path: ImatrixFixtures.path("llama", "dat")).modules)
        }
    }

    /// Hostile GGUF variants and the words their error must contain.
    static let ggufCases: [(String, GGUFBuilder, String)] = {
        func base() -> GGUFBuilder {
            var b = GGUFBuilder()
            b.entry("blk.0.attn_q.weight", sums: [[4, 8, 12, 16]], counts: [4])
            return b
        }
        var cases: [(String, GGUFBuilder, String)] = []
        var b = base(); b.version = 1; cases.append(("version 1", b, "unsupported GGUF version 1"))
        b = base(); b.version = 0x0300_0000; cases.append(("big-endian", b, "big-endian"))
        b = base(); b.metadata = [("general.type", 8, GGUFBuilder.string("model"))]; cases.append(("a model file", b, "not an imatrix"))
        b = base(); b.tensors[0].2 = 1; cases.append(("F16 sums", b, "ggml type 1"))
        b = base(); b.tensors.removeLast(); cases.append(("sums without counts", b, "in_sum2 but no counts"))
        b = base(); b.tensors.removeFirst(); cases.append(("counts without sums", b, "without any"))
        b = base(); b.tensors[0].3 = GGUFBuilder.floats([4, -8, 12, 16]); cases.append(("negative sum", b, "channel 1"))
        b = base(); b.tensors[0].3 = GGUFBuilder.floats([4, .nan, 12, 16]); cases.append(("NaN sum", b, "blk.0.attn_q.weight.in_sum2"))
        b = base(); b.tensors[1].3 = GGUFBuilder.floats([-1]); cases.append(("negative count", b, "count -1.0"))
        b = base(); b.tensors[1] = ("blk.0.attn_q.weight.counts", [1, 3], 0, GGUFBuilder.floats([1, 1, 1])); cases.append(("counts do not divide", b, "not a multiple"))
        b = base(); b.tensorCountOverride = 1 << 40; cases.append(("huge tensor count", b, "tensor count"))
        b = base(); b.metadata.append(("x", 13, [0])); cases.append(("unknown value type", b, "unknown GGUF type 13"))
        b = base(); b.metadata.append(("general.alignment", 4, GGUFBuilder.u32(24))); cases.append(("alignment", b, "power of 2"))
        b = base(); b.metadata.append(("general.alignment", 10, GGUFBuilder.u64(32))); cases.append(("alignment type", b, "must be UINT32"))
        b = base(); b.metadata.append(("general.type", 8, GGUFBuilder.string("imatrix"))); cases.append(("duplicate key", b, "duplicate metadata key"))
        b = base(); b.tensors.append(b.tensors[0]); cases.append(("duplicate tensor", b, "duplicate tensor"))
        b = base(); b.tensors[0].1 = [4, 1, 1, 1, 1]; cases.append(("five dimensions", b, "5 dimensions"))
        b = base(); b.metadata.append(("a", 9, GGUFBuilder.u32(9) + GGUFBuilder.u64(1))); cases.append(("nested array", b, "array of unsupported"))
        b = base(); b.metadata.append(("a", 9, GGUFBuilder.u32(0) + GGUFBuilder.u64(1 << 50))); cases.append(("huge array", b, "truncated"))
        b = base(); b.offsetShift = 1 << 20; cases.append(("data past the end", b, "outside the file"))
        b = base(); b.tensors[0].0 = String(repeating: "x", count: 64) + ".in_sum2"; cases.append(("long name", b, "exceeds the limit of 63"))
        b = base(); b.tensors = [("blk.0.attn_q.weight.in_sum2", [4, 1], 0, []), ("blk.0.attn_q.weight.counts", [1, 1], 0, [])]; cases.append(("no data", b, "outside the file"))
        return cases
    }()

    @Test("hostile GGUF imatrix files are refused with the problem named", arguments: ggufCases.indices)
    func hostileGGUF(index: Int) throws {
        let (label, builder, words) = Self.ggufCases[index]
        let bytes = builder.bytes()
        let problem = #expect(throws: ImportanceStatistics.Problem.self, "\(label)") {
            try bytes.withUnsafeBytes { _ = try ImportanceStatistics(bytes: $0) }
        }
        #expect(problem?.reason.contains(words) == true, "\(label): \(problem?.reason ?? "-")")
    }

    @Test("every truncation of a real fixture in both formats is an error or reads exactly the whole file (a cut in trailing padding or the optional trailer)", arguments: ImatrixFixtures.formats)
    func truncations(format: String) throws {
        let whole = try ToolRunner.readFile(ImatrixFixtures.path("qwen-moe", format))
        let full = try whole.withUnsafeBytes { try ImportanceStatistics(bytes: $0) }.modules
        var refused = 0
        for length in stride(from: 0, to: whole.count, by: 7) {
            let prefix = Array(whole[0..<length])
            do {
                let read = try prefix.withUnsafeBytes { try ImportanceStatistics(bytes: $0) }.modules
                #expect(read == full, "\(length) of \(whole.count) read a part")
            } catch {
                refused += 1
            }
        }
        #expect(refused > whole.count / 7 - 8)
    }

    static let legacyCases: [(String, [UInt8], String)] = [
        ("count exceeds the file", legacyImatrix([("blk.0.attn_q.weight", 1, [1, 2])], count: 1000), "entry count 1000"),
        ("negative value", legacyImatrix([("blk.0.attn_q.weight", 1, [1, -2])]), "\"blk.0.attn_q.weight\" channel 1"),
        ("infinite value", legacyImatrix([("blk.0.attn_q.weight", 1, [.infinity, 2])]), "channel 0"),
        ("negative ncall", legacyImatrix([("blk.0.attn_q.weight", -1, [1, 2])]), "ncall -1"),
        ("junk after the trailer", legacyImatrix([("blk.0.attn_q.weight", 1, [1, 2])]) + [1, 2, 3], "unexpected bytes"),
        ("nval past the end", Array(legacyImatrix([("blk.0.attn_q.weight", 1, [1, 2])], trailer: false).dropLast(4)), "truncated"),
        ("no known weight", legacyImatrix([("token_embd.weight", 1, [1, 2])]), "no imatrix entry names"),
        ("experts without a hidden size", legacyImatrix([("blk.0.ffn_gate_exps.weight", 1, [1, 2, 3, 4, 5, 6])]), "expert count"),
    ]

    @Test("hostile legacy .dat files are refused with the problem named", arguments: legacyCases.indices)
    func hostileLegacy(index: Int) throws {
        let (label, bytes, words) = Self.legacyCases[index]
        let problem = #expect(throws: ImportanceStatistics.Problem.self, "\(label)") {
            try bytes.withUnsafeBytes { _ = try ImportanceStatistics(bytes: $0) }
        }
        #expect(problem?.reason.contains(words) == true, "\(label): \(problem?.reason ?? "-")")
    }

    @Test("legacy: mean is value / ncall; experts are cut by the layer's hidden size; q/k/v and gate/up share an input")
    func legacySemantics() throws {
        let bytes = legacyImatrix([
            ("blk.3.attn_q.weight", 4, [4, 8]),
            ("blk.3.ffn_gate_exps.weight", 2, [2, 4, 6, 8, 10, 12]),
            ("blk.3.ffn_down_exps.weight", 2, [2, 2, 2, 4, 4, 4, 6, 6, 6]),
        ], trailer: false)
        let modules = try bytes.withUnsafeBytes { try ImportanceStatistics(bytes: $0) }.modules
        #expect(modules["model.layers.3.self_attn.q_proj"] == [1, 2])
        #expect(modules["model.layers.3.self_attn.v_proj"] == [1, 2])
        #expect(modules["model.layers.3.mlp.experts.2.gate_proj"] == [5, 6])
        #expect(modules["model.layers.3.mlp.experts.2.up_proj"] == [5, 6])
        #expect(modules["model.layers.3.block_sparse_moe.experts.1.w3"] == [3, 4])
        #expect(modules["model.layers.3.mlp.experts.1.down_proj"] == [2, 2, 2])
        #expect(modules["model.layers.3.mlp.experts.3.gate_proj"] == nil)
    }

    @Test("GGUF: general.alignment 64 places the data; means are in_sum2 / counts per matrix; a count-0 expert has none")
    func ggufSemantics() throws {
        var b = GGUFBuilder()
        b.alignment = 64
        b.metadata.append(("general.alignment", 4, GGUFBuilder.u32(64)))
        b.metadata.append(("imatrix.datasets", 9, GGUFBuilder.u32(8) + GGUFBuilder.u64(2) + GGUFBuilder.string("a.txt") + GGUFBuilder.string("b.txt")))
        b.entry("blk.1.attn_k.weight", sums: [[3, 6, 9]], counts: [3])
        b.entry("blk.1.ffn_down_exps.weight", sums: [[2, 4], [0, 0], [8, 8]], counts: [2, 0, 4])
        let modules = try b.bytes().withUnsafeBytes { try ImportanceStatistics(bytes: $0) }.modules
        #expect(modules["model.layers.1.self_attn.k_proj"] == [1, 2, 3])
        #expect(modules["model.layers.1.self_attn.q_proj"] == [1, 2, 3])
        #expect(modules["model.layers.1.mlp.experts.0.down_proj"] == [1, 2])
        #expect(modules["model.layers.1.mlp.experts.1.down_proj"] == nil)
        #expect(modules["model.layers.1.block_sparse_moe.experts.2.w2"] == [2, 2])
    }

    @Test("the bounded cursor: little-endian reads, and every read past the end (or with a count that would overflow) refused before touching memory")
    func cursorBounds() throws {
        let bytes: [UInt8] = [0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x80, 0x3F, 0xFF]
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
        defer { buffer.deallocate() }
        buffer.copyBytes(from: bytes)
        var c = LittleEndianCursor(UnsafeRawBufferPointer(buffer))
        #expect(try c.uint32("a") == 0x0403_0201)
        #expect(try c.floats(1, "b") == [1.0])
        #expect(c.remaining == 1)
        var probe = c
        #expect(throws: LittleEndianCursor.Truncated.self) { try probe.uint32("c") }
        #expect(throws: LittleEndianCursor.Truncated.self) { try probe.uint64("d") }
        #expect(throws: LittleEndianCursor.Truncated.self) { try probe.floats(Int.max / 2, "e") }
        #expect(throws: LittleEndianCursor.Truncated.self) { try probe.bytes(-1, "f") }
        #expect(throws: LittleEndianCursor.Truncated.self) { try probe.skip(2, "g") }
        #expect(probe.remaining == 1)
        #expect(try c.bytes(1, "i") == [0xFF])
    }

    @Test("anything in none of the four formats names them all")
    func unknownFormat() throws {
        for bytes in [[UInt8](), Array("GGU".utf8), [0, 0, 0, 0, 5, 0, 0, 0], Array("name,value\n".utf8)] {
            let problem = #expect(throws: ImportanceStatistics.Problem.self) { try bytes.withUnsafeBytes { _ = try ImportanceStatistics(bytes: $0) } }
            #expect(problem?.reason.contains("nvfp4-importance JSON, a llama.cpp GGUF imatrix, a legacy llama.cpp .dat imatrix or an nvfp4-statistics safetensors file") == true, "\(bytes)")
        }
    }
}
