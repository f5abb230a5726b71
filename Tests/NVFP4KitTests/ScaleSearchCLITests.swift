import Foundation
import NVFP4Kit
import Testing

// End-to-end tests of `--method mse`, `--importance` and `verify --compare-method`.

private let tinyLlama = "tiny-llama/model.safetensors"

/// The tiny-llama fixture's quantized linear modules and their input widths.
private let tinyLlamaModules: [(name: String, columns: Int)] = (0..<2).flatMap { layer in
    [("self_attn.q_proj", 128), ("self_attn.k_proj", 128), ("self_attn.v_proj", 128), ("self_attn.o_proj", 128),
     ("mlp.gate_proj", 128), ("mlp.up_proj", 128), ("mlp.down_proj", 352)].map { ("model.layers.\(layer).\($0.0)", $0.1) }
}

/// An importance file for `modules` (channel k of a module gets 1 + (k mod 7)).
private func importanceJSON(_ modules: [(name: String, columns: Int)]) -> [UInt8] {
    let members = modules.map { m in
        "\"\(m.name)\": [" + (0..<m.columns).map { String(1 + $0 % 7) }.joined(separator: ",") + "]"
    }
    return Array(("{\"format\": \"nvfp4-importance\", \"version\": 1, \"modules\": {" + members.joined(separator: ", ") + "}}").utf8)
}

private func json(_ bytes: [UInt8]) throws -> [String: Any] {
    guard let object = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
        throw ToolRunnerError(message: "not a JSON object")
    }
    return object
}

@Suite("nvfp4 --method mse") struct ScaleSearchCLITests {
    @Test("mse output verifies through the dequantize path, beats RTN on every tensor, and the manifest records it")
    func mseVerifiesAndBeatsRTN() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.copyFixture(tinyLlama, as: "model.safetensors")
            let quantize = try ToolRunner.run(["quantize", input, "-o", dir.file("mse.safetensors"), "--method", "mse", "-q"])
            #expect(quantize.status == 0, "\(quantize.stderr)")
            let manifest = try json(ToolRunner.readFile(dir.file("mse.manifest.json")))
            let options = try #require(manifest["options"] as? [String: Any])
            #expect(options["method"] as? String == "mse")
            #expect((options["search_radius"] as? NSNumber)?.intValue == 8)
            #expect(options["importance"] is NSNull)
            let manifestErrors = Dictionary(uniqueKeysWithValues: try #require(manifest["tensors"] as? [[String: Any]]).compactMap { t -> (String, Double)? in
                guard let e = t["error"] as? [String: Any], let r = (e["relative_rmse"] as? NSNumber)?.doubleValue else { return nil }
                return (t["name"] as! String, r)
            })
            #expect(manifestErrors.count == 14)

            let verify = try ToolRunner.run(["verify", input, dir.file("mse.safetensors"), "--compare-method", "rtn", "--json"])
            #expect(verify.status == 0, "\(verify.stderr)")
            let report = try json(verify.stdout)
            var compared = 0
            for t in try #require(report["tensors"] as? [[String: Any]]) where t["kind"] as? String == "quantized" {
                let name = try #require(t["name"] as? String)
                let rmse = try #require((t["relative_rmse"] as? NSNumber)?.doubleValue)
                // verify dequantizes the file (NVFP4Weight.dequantize): the same error as measured while quantizing.
                #expect(abs(rmse - manifestErrors[name]!) <= 1e-6 * rmse, "\(name)")
                let comparison = try #require(t["comparison"] as? [String: Any])
                #expect(comparison["method"] as? String == "rtn")
                let ratio = try #require((comparison["error_square_sum_ratio"] as? NSNumber)?.doubleValue)
                #expect(ratio < 1, "\(name): mse/rtn squared error \(ratio)")
                compared += 1
            }
            #expect(compared == 14)
            let text = try ToolRunner.run(["verify", input, dir.file("mse.safetensors"), "--compare-method", "rtn"])
            let stdout = String(decoding: text.stdout, as: UTF8.self)
            #expect(stdout.contains("MSE VS RTN") && stdout.contains("total squared error -"), "\(stdout)")
        }
    }

    @Test("rtn stays the default, and --method rtn gives the same bytes")
    func rtnDefault() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.copyFixture(tinyLlama, as: "model.safetensors")
            #expect(try ToolRunner.run(["quantize", input, "-o", dir.file("a.safetensors"), "-q"]).status == 0)
            #expect(try ToolRunner.run(["quantize", input, "-o", dir.file("b.safetensors"), "--method", "rtn", "-q"]).status == 0)
            #expect(try ToolRunner.run(["quantize", input, "-o", dir.file("c.safetensors"), "--method", "mse", "-q"]).status == 0)
            let a = try ToolRunner.readFile(dir.file("a.safetensors"))
            #expect(a == (try ToolRunner.readFile(dir.file("b.safetensors"))))
            #expect(a != (try ToolRunner.readFile(dir.file("c.safetensors"))))
            let manifest = try json(ToolRunner.readFile(dir.file("a.manifest.json")))
            #expect((manifest["options"] as? [String: Any])?["method"] as? String == "rtn")
        }
    }

    @Test("mse bytes do not depend on the thread count")
    func threadsIndependent() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.copyFixture(tinyLlama, as: "model.safetensors")
            for n in ["1", "3"] {
                let r = try ToolRunner.run(["quantize", input, "-o", dir.file("t\(n).safetensors"), "--method", "mse", "-j", n, "-q"])
                #expect(r.status == 0)
            }
            #expect(try ToolRunner.readFile(dir.file("t1.safetensors")) == ToolRunner.readFile(dir.file("t3.safetensors")))
        }
    }

    @Test("--importance: weighted search is recorded; a missing module warns; a wrong width is an error naming it")
    func importance() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try dir.copyFixture(tinyLlama, as: "model.safetensors")
            let full = try dir.write(importanceJSON(tinyLlamaModules), to: "full.json")
            let r = try ToolRunner.run(["quantize", input, "-o", dir.file("imp.safetensors"), "--method", "mse", "--importance", full])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(!r.stderr.contains("warning"))
            let manifest = try json(ToolRunner.readFile(dir.file("imp.manifest.json")))
            #expect((manifest["options"] as? [String: Any])?["importance"] as? String == full)
            let weighted = (manifest["tensors"] as? [[String: Any]] ?? []).filter { $0["importance_weighted"] as? Bool == true }
            #expect(weighted.count == 14)
            let plain = try ToolRunner.readFile(dir.file("imp.safetensors"))
            #expect(try ToolRunner.run(["quantize", input, "-o", dir.file("mse.safetensors"), "--method", "mse", "-q"]).status == 0)
            #expect(plain != (try ToolRunner.readFile(dir.file("mse.safetensors"))))

            let partial = try dir.write(importanceJSON(Array(tinyLlamaModules.dropFirst())), to: "partial.json")
            let p = try ToolRunner.run(["quantize", input, "-o", dir.file("partial.safetensors"), "--method", "mse", "--importance", partial])
            #expect(p.status == 0)
            #expect(p.stderr.contains("warning: \(partial) has no statistics for 1 quantized modules (model.layers.0.self_attn.q_proj)"), "\(p.stderr)")

            var wrong = tinyLlamaModules
            wrong[3].columns = 64
            let bad = try dir.write(importanceJSON(wrong), to: "bad.json")
            let b = try ToolRunner.run(["quantize", input, "-o", dir.file("bad.safetensors"), "--method", "mse", "--importance", bad])
            #expect(b.status == 2)
            #expect(b.stderr.hasPrefix("error: \(bad): module \"model.layers.0.self_attn.o_proj\" has 64 channels"), "\(b.stderr)")
            #expect(!ToolRunner.exists(dir.file("bad.safetensors")))
            #expect(try dir.contents().filter { $0.hasPrefix(".") }.isEmpty)

            let u = try ToolRunner.run(["quantize", input, "-o", dir.file("u.safetensors"), "--importance", full])
            #expect(u.status == 2 && u.stderr.contains("--importance needs --method mse"))
            let g = try dir.write(Array("{\"format\": \"other\"}".utf8), to: "garbage.json")
            let gr = try ToolRunner.run(["quantize", input, "-o", dir.file("g.safetensors"), "--method", "mse", "--importance", g])
            #expect(gr.status == 2 && gr.stderr.contains(g) && gr.stderr.contains("not an importance file"), "\(gr.stderr)")
            let m = try ToolRunner.run(["quantize", input, "-o", dir.file("m.safetensors"), "--method", "best"])
            #expect(m.status == 2 && m.stderr.contains("--method"))
            let rad = try ToolRunner.run(["quantize", input, "-o", dir.file("r.safetensors"), "--method", "mse", "--search-radius", "200"])
            #expect(rad.status == 2 && rad.stderr.contains("--search-radius"))
        }
    }
}
