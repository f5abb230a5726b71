import Foundation
import Glibc
import NVFP4Kit
import Testing

// Issue 13, "trust nothing on disk": the file policy (docs/security.md) against hostile folders
// built in a temporary folder. Each case checks the exit status, the one-line message, and that
// nothing outside the output changed.

@Suite("File policy: links, special files, names")
struct FilePolicyTests {
    /// A link planted as an extra file of the input folder, and whether the policy allows it.
    enum PlantedLink: String, CaseIterable, Sendable {
        case absoluteOutside, relativeClimbingOut, insideFolder, insideSubfolder, viaLinkedSubfolderOut
    }

    @Test("a symlinked extra file is copied only when it resolves inside the folder", arguments: PlantedLink.allCases)
    func plantedLink(_ kind: PlantedLink) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try HostileFolders.copyModel(into: dir)
            let secret = try dir.write(Array("SECRET-KEY".utf8), to: "secret.txt")
            chmod(secret, 0o600)
            try dir.makeSubfolder("in/docs")
            try dir.write(Array("inside".utf8), to: "in/docs/readme.txt")
            let allowed: Bool
            switch kind {
            case .absoluteOutside: symlink(secret, "\(input)/README.md"); allowed = false
            case .relativeClimbingOut: symlink("../secret.txt", "\(input)/README.md"); allowed = false
            case .insideFolder: symlink("tokenizer_config.json", "\(input)/README.md"); allowed = true
            case .insideSubfolder: symlink("docs/readme.txt", "\(input)/README.md"); allowed = true
            case .viaLinkedSubfolderOut:
                symlink(dir.path, "\(input)/up")
                symlink("up/secret.txt", "\(input)/README.md")
                allowed = false
            }
            let before = HostileFolders.tree(dir.path)
            let r = try ToolRunner.run(["quantize", input, "-o", dir.file("out"), "-q"])
            if allowed {
                #expect(r.status == 0, "\(r)")
                let copy = try ToolRunner.readFile(dir.file("out/README.md"))
                #expect(copy == (try ToolRunner.readFile("\(input)/README.md")))
                #expect(!ToolRunner.exists(dir.file("out/up")), "a linked folder is not copied")
            } else {
                #expect(r.status == 2 && r.stderrLines.count == 1, "\(r)")
                #expect(r.stderr.contains("\(input)/README.md") && r.stderr.contains("outside the folder") && r.stderr.contains("--follow-links"), "\(r)")
                #expect(!ToolRunner.exists(dir.file("out")))
                #expect(!r.stderr.contains("SECRET"))
            }
            #expect(HostileFolders.tree(dir.path, excluding: dir.file("out")) == before, "nothing outside the output changed")
        }
    }

    @Test("--follow-links copies a link leaving the folder, never with wider permissions than its source")
    func followLinks() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try HostileFolders.copyModel(into: dir)
            let secret = try dir.write(Array("shared-on-purpose".utf8), to: "notes.txt")
            chmod(secret, 0o600)
            symlink(secret, "\(input)/notes.txt")
            try dir.write(Array("x".utf8), to: "in/private.txt")
            chmod("\(input)/private.txt", 0o640)
            let r = try ToolRunner.run(["quantize", input, "-o", dir.file("out"), "-q", "--follow-links"])
            #expect(r.status == 0, "\(r)")
            #expect(try ToolRunner.readFile(dir.file("out/notes.txt")) == Array("shared-on-purpose".utf8))
            #expect(HostileFolders.mode(dir.file("out/notes.txt")) & ~0o600 == 0, "0600 source, copy no wider")
            #expect(HostileFolders.mode(dir.file("out/private.txt")) & ~0o640 == 0, "0640 source, copy no wider")
            let single = try ToolRunner.run(["quantize", ToolRunner.fixture("tiny-llama/model.safetensors"), "-o", dir.file("x.safetensors"), "--follow-links"])
            #expect(single.status == 2 && single.stderr.contains("--follow-links needs a model folder"), "\(single)")
        }
    }

    @Test("a Hugging Face cache snapshot (snapshots/<rev>/f -> ../../blobs/<hash>) is read on the command line")
    func cacheSnapshot() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let repo = try dir.makeSubfolder("models--x--llama")
            try dir.makeSubfolder("models--x--llama/blobs")
            let snapshot = try dir.makeSubfolder("models--x--llama/snapshots/abc")
            for (i, name) in try listFolder(ModelFixtures.llama).enumerated() {
                try FileManager.default.copyItem(atPath: "\(ModelFixtures.llama)/\(name)", toPath: "\(repo)/blobs/h\(i)")
                symlink("../../blobs/h\(i)", "\(snapshot)/\(name)")
            }
            let r = try ToolRunner.run(["quantize", snapshot, "-o", dir.file("out"), "-q"])
            #expect(r.status == 0, "\(r)")
            // The same links one level further up are not the cache layout: refused.
            let other = try dir.makeSubfolder("other/deeper")
            symlink("../../models--x--llama/blobs/h0", "\(other)/config.json")
            try FileManager.default.copyItem(atPath: "\(ModelFixtures.llama)/model.safetensors.index.json", toPath: "\(other)/model.safetensors.index.json")
            let refused = try ToolRunner.run(["quantize", other, "-o", dir.file("out2"), "-q"])
            #expect(refused.status == 2 && refused.stderr.contains("config.json") && refused.stderr.contains("outside the folder"), "\(refused)")
        }
    }

    /// Where a FIFO (or device) is planted.
    enum SpecialPlace: String, CaseIterable, Sendable {
        case configJSON, shard, index, extraFile, singleInput, calibration, deviceInput
    }

    @Test("a FIFO or device is refused at once, naming the file and its type, never read", arguments: SpecialPlace.allCases)
    func specialFile(_ place: SpecialPlace) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try HostileFolders.copyModel(into: dir)
            var arguments = ["quantize", input, "-o", dir.file("out"), "-q"]
            var named = ""
            func plantFIFO(_ path: String) {
                unlink(path)
                mkfifo(path, 0o644)
                named = path
            }
            switch place {
            case .configJSON: plantFIFO("\(input)/config.json")
            case .shard: plantFIFO("\(input)/model-00002-of-00003.safetensors")
            case .index: plantFIFO("\(input)/model.safetensors.index.json")
            case .extraFile: plantFIFO("\(input)/notes")
            case .singleInput:
                plantFIFO(dir.file("pipe.safetensors"))
                arguments = ["quantize", named, "-o", dir.file("o.safetensors")]
            case .calibration:
                plantFIFO(dir.file("amax.json"))
                arguments += ["--format", "modelopt", "--calibration", named]
            case .deviceInput:
                named = "/dev/zero"
                arguments = ["quantize", "/dev/zero", "-o", dir.file("o.safetensors")]
            }
            let before = HostileFolders.tree(dir.path)
            let r = try ToolRunner.run(arguments, timeout: 30)
            #expect(r.status == 2 && r.stderrLines.count == 1, "blocked or failed differently: \(r)")
            let type = place == .deviceInput ? "is a character device" : "is a FIFO (named pipe)"
            #expect(r.stderr.contains(named) && r.stderr.contains(type) && r.stderr.contains("not a regular file"), "\(r)")
            #expect(HostileFolders.tree(dir.path) == before)
        }
    }

    @Test("a pipe on stdin ('-') stays allowed")
    func stdinPipe() throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let bytes = try ToolRunner.readFile(ToolRunner.fixture("tiny-llama/model.safetensors"))
            let r = try ToolRunner.run(["quantize", "-", "-o", dir.file("o.safetensors"), "-q"], stdin: bytes)
            #expect(r.status == 0 && ToolRunner.exists(dir.file("o.safetensors")), "\(r)")
        }
    }

    @Test("merge refuses part files whose shard names are paths", arguments: ["../x.safetensors", "/tmp/x.safetensors", "sub/x.safetensors", ".hidden.safetensors", ""])
    func mergePartNames(_ name: String) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try HostileFolders.copyModel(into: dir)
            let out = dir.file("out")
            for i in 0..<2 {
                let w = try ToolRunner.run(["quantize", input, "-o", out, "--shard", "\(i)/2", "-q"])
                #expect(w.status == 0, "\(w)")
            }
            try dir.write(Array("outside".utf8), to: "x.safetensors")
            for i in 0..<2 {
                let path = "\(out)/nvfp4-part-\(i)-of-2.json"
                let text = String(decoding: try ToolRunner.readFile(path), as: UTF8.self)
                let edited = text.replacingOccurrences(of: "\"model-00001-of-00003.safetensors\"", with: "\"\(name)\"")
                #expect(edited != text)
                try dir.write(Array(edited.utf8), to: "out/nvfp4-part-\(i)-of-2.json")
            }
            let before = HostileFolders.tree(dir.path)
            let r = try ToolRunner.run(["merge", out])
            #expect(r.status == 2 && r.stderrLines.count == 1 && r.stderr.contains("only plain file names"), "\(r)")
            #expect(HostileFolders.tree(dir.path) == before, "merge changed nothing")
        }
    }

    /// How a checked entry is replaced between the folder's listing and the open.
    enum Swap: String, CaseIterable, Sendable {
        case absoluteLinkOut, relativeLinkOut, linkInside
    }

    @Test("an entry swapped for a link after the listing is checked again when opened", arguments: Swap.allCases)
    func swapAfterListing(_ swap: Swap) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let input = try HostileFolders.copyModel(into: dir)
            let secret = try dir.write(Array("SECRET-KEY".utf8), to: "secret.txt")
            let folder = try ModelFolder(path: input)
            #expect(folder.otherFiles.contains("tokenizer_config.json"))
            let entry = "\(input)/tokenizer_config.json"
            unlink(entry)
            switch swap {
            case .absoluteLinkOut: symlink(secret, entry)
            case .relativeLinkOut: symlink("../secret.txt", entry)
            case .linkInside: symlink("config.json", entry)
            }
            let opened = Result { try MappedFile(path: entry) }
            switch (swap, opened) {
            case (.linkInside, .success(let file)):
                let expected = try ToolRunner.readFile("\(input)/config.json")
                withExtendedLifetime(file) { #expect(Array(file.bytes) == expected) }
            case (.linkInside, .failure(let error)):
                Issue.record("a link inside the folder was refused: \(error)")
            case (_, .success):
                Issue.record("the swapped link out of the folder was opened")
            case (_, .failure(let error)):
                let text = "\(error)"
                #expect(text.contains(entry) && text.contains("outside the folder") && !text.contains("SECRET"), "\(text)")
            }
            // A file the user names directly is not under the folder rule.
            try dir.makeSubfolder("elsewhere")
            let direct = try dir.write(Array("mine".utf8), to: "elsewhere/mine.txt")
            symlink(secret, dir.file("elsewhere/link.txt"))
            for (path, expected) in [(dir.file("elsewhere/link.txt"), "SECRET-KEY"), (direct, "mine")] {
                let file = try MappedFile(path: path)
                withExtendedLifetime(file) { #expect(Array(file.bytes) == Array(expected.utf8)) }
            }
        }
    }
}
