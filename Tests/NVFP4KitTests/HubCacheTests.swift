import Foundation
import NVFP4Kit
import Testing

/// Model ids resolved in a fake Hugging Face cache laid out as `huggingface_hub` writes it:
/// `models--org--name/{refs/main, snapshots/<commit>/<file> -> ../../blobs/<hash>, blobs/}`.
@Suite("Hugging Face cache ids")
struct HubCacheTests {
    static let commitA = String(repeating: "a1", count: 20)
    static let commitB = "b2" + String(repeating: "0", count: 38)

    /// A cache holding tiny-llama as `org/tiny` at two commits (main → A, branch `dev` → B).
    static func makeCache(_ scratch: ScratchFolder) throws -> String {
        let fm = FileManager.default
        let cache = scratch.file("hub")
        let repo = cache + "/models--org--tiny"
        for dir in ["blobs", "refs", "snapshots/\(commitA)", "snapshots/\(commitB)"] {
            try fm.createDirectory(atPath: "\(repo)/\(dir)", withIntermediateDirectories: true)
        }
        let files = ["model.safetensors", "config.json", "generation_config.json"]
        for (i, file) in files.enumerated() {
            let blob = "blob\(i)"
            try fm.copyItem(atPath: FixturePaths.root + "/Fixtures/tiny-llama/" + file, toPath: "\(repo)/blobs/\(blob)")
            for commit in [commitA, commitB] {
                try fm.createSymbolicLink(atPath: "\(repo)/snapshots/\(commit)/\(file)", withDestinationPath: "../../blobs/\(blob)")
            }
        }
        try Data((commitA + "\n").utf8).write(to: URL(fileURLWithPath: "\(repo)/refs/main"))
        try Data(commitB.utf8).write(to: URL(fileURLWithPath: "\(repo)/refs/dev"))
        return cache
    }

    @Test("ids, branches, full and short commits resolve to their snapshot", arguments: [
        ("org/tiny", commitA), ("org/tiny@main", commitA), ("org/tiny@dev", commitB), ("org/tiny@\(commitB)", commitB), ("org/tiny@b200000", commitB),
    ])
    func resolves(id: String, commit: String) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let cache = try Self.makeCache(scratch)
        let env: (String) -> String? = { $0 == "HF_HUB_CACHE" ? cache : nil }
        #expect(try HubCache.resolve(id, environment: env) == "\(cache)/models--org--tiny/snapshots/\(commit)")
    }

    @Test("the cache root follows HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME, HOME in that order")
    func root() {
        let all = ["HF_HUB_CACHE": "/a", "HF_HOME": "/b", "XDG_CACHE_HOME": "/c", "HOME": "/d"]
        #expect(HubCache.root { all[$0] } == "/a")
        #expect(HubCache.root { $0 == "HF_HUB_CACHE" ? nil : all[$0] } == "/b/hub")
        #expect(HubCache.root { ["XDG_CACHE_HOME", "HOME"].contains($0) ? all[$0] : nil } == "/c/huggingface/hub")
        #expect(HubCache.root { $0 == "HOME" ? "/d" : nil } == "/d/.cache/huggingface/hub")
        #expect(HubCache.root { $0 == "HF_HOME" ? "~/hf" : $0 == "HOME" ? "/d" : nil } == "/d/hf/hub")
    }

    @Test("paths, file names and odd strings are not ids", arguments: ["model.safetensors", "./org/tiny", "/abs/path", "a/b/c", "org/..", "-/x", "org/model.safetensors", "org/tiny@"])
    func notIDs(text: String) {
        #expect(HubModelID(text) == nil)
    }

    @Test("every command that reads a model takes an id; a local path of the same name wins")
    func commands() throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let cache = try Self.makeCache(scratch)
        let env = ["HF_HUB_CACHE": cache]
        let out = scratch.file("out")
        let quantize = try ToolRunner.run(["quantize", "org/tiny@dev", "-o", out, "--format", "modelopt", "-q"], environment: env)
        #expect(quantize.status == 0, "\(quantize)")
        #expect(FileManager.default.fileExists(atPath: out + "/model.safetensors") && FileManager.default.fileExists(atPath: out + "/config.json"))
        #expect(try ToolRunner.run(["inspect", "org/tiny"], environment: env).status == 0)
        #expect(try ToolRunner.run(["verify", "org/tiny", out], environment: env).status == 0)
        let check = try ToolRunner.run(["check", "org/tiny"], environment: env)
        #expect(check.status == 1 && check.stdoutText.contains("no NVFP4"), "a bf16 model has nothing to check: \(check)")
        // A folder named org/tiny in the working folder wins over the cache.
        try FileManager.default.createDirectory(atPath: scratch.file("org"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: out, toPath: scratch.file("org/tiny"))
        let local = try ToolRunner.run(["check", "org/tiny"], in: scratch.path, environment: env)
        #expect(local.status == 0, "the local NVFP4 folder is checked, not the cached bf16 model: \(local)")
    }

    @Test("an id that is not cached is exit 2 with the download command", arguments: [
        ("org/missing", "hf download org/missing"), ("org/tiny@nope", "revision nope is not in the cache"), ("org/tiny@ab1", "revision ab1 is not in the cache"),
    ])
    func notCached(id: String, message: String) throws {
        let scratch = ScratchFolder()
        defer { scratch.remove() }
        let cache = try Self.makeCache(scratch)
        let result = try ToolRunner.run(["inspect", id], environment: ["HF_HUB_CACHE": cache])
        #expect(result.status == 2)
        #expect(result.stderrLines.count == 1 && result.stderr.contains(message), "\(result)")
    }
}
