import Foundation
import Testing

// `nvfp4 completions bash|zsh|fish`, run in the real shells: bash's completion function is called
// as bash calls it (COMP_WORDS, COMP_CWORD); fish is asked with `complete -C`; zsh's script is
// syntax-checked and registered with compinit. scripts/setup.sh installs zsh and fish.

@Suite("nvfp4 completions")
struct CLICompletionTests {
    /// A command line being completed (the last word is the one under the cursor) and the
    /// completions expected, sorted, as the user would see them.
    struct Case: Sendable, CustomTestStringConvertible {
        var words: [String]
        var expected: [String]
        var testDescription: String { words.joined(separator: " ") + "|" }
    }

    static let bashCases: [Case] = [
        Case(words: ["nvfp4", "qu"], expected: ["quantize"]),
        Case(words: ["nvfp4", "c"], expected: ["check", "completions"]),
        Case(words: ["nvfp4", "--v"], expected: ["--version"]),
        Case(words: ["nvfp4", "quantize", "m.safetensors", "--f"], expected: ["--follow-links", "--force", "--format", "--fp8-block-size"]),
        Case(words: ["nvfp4", "quantize", "--se"], expected: ["--search-radius"]),
        Case(words: ["nvfp4", "quantize", "m.safetensors", "--format", ""], expected: ["compressed-tensors", "modelopt", "torchao"]),
        Case(words: ["nvfp4", "quantize", "--format", "=", "mo"], expected: ["modelopt"]),
        Case(words: ["nvfp4", "quantize", "--format", "="], expected: ["compressed-tensors", "modelopt", "torchao"]),
        Case(words: ["nvfp4", "quantize", "--method", "m"], expected: ["mse"]),
        Case(words: ["nvfp4", "quantize", "--io", ""], expected: ["buffered", "direct"]),
        Case(words: ["nvfp4", "quantize", "-j", ""], expected: []),
        Case(words: ["nvfp4", "quantize", "--compress", "z"], expected: ["zstd"]),
        Case(words: ["nvfp4", "dequantize", "--dtype", ""], expected: ["bf16", "f32"]),
        Case(words: ["nvfp4", "check", "x", "--skip", "block-scale-n"], expected: ["block-scale-nan", "block-scale-negative"]),
        Case(words: ["nvfp4", "check", "--t"], expected: ["--tensor-parallel", "--tp"]),
        Case(words: ["nvfp4", "inspect", "--"], expected: ["--help", "--json"]),
        Case(words: ["nvfp4", "help", "de"], expected: ["dequantize"]),
        Case(words: ["nvfp4", "completions", ""], expected: ["bash", "fish", "zsh"]),
        // Files where a path goes: a positional, -o, a path-valued option; the value of -o is no positional.
        Case(words: ["nvfp4", "inspect", "mod"], expected: ["model.safetensors"]),
        Case(words: ["nvfp4", "quantize", "-o", "mod"], expected: ["model.safetensors"]),
        Case(words: ["nvfp4", "verify", "model.safetensors", "-j", "2", "mod"], expected: ["model.safetensors"]),
        Case(words: ["nvfp4", "quantize", "--calibration", "am"], expected: ["amax.json"]),
        Case(words: ["nvfp4", "quantize", "model.safetensors", "mod"], expected: []),
        Case(words: ["nvfp4", "completions", "bash", ""], expected: []),
    ]

    static func quoted(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    @Test("bash: the sourced script completes commands, options, choice values and files", arguments: bashCases)
    func bash(_ c: Case) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            try dir.write([], to: "model.safetensors")
            try dir.write([], to: "amax.json")
            let script = """
                source <("$NVFP4" completions bash)
                COMP_WORDS=(\(c.words.map(Self.quoted).joined(separator: " ")))
                COMP_CWORD=\(c.words.count - 1)
                _nvfp4
                printf '%s\\n' "${COMPREPLY[@]}" | sort
                """
            let result = try ShellRunner.run(script, in: dir.path)
            #expect(result.status == 0 && result.stderr.isEmpty, "\(result)")
            let got = result.stdoutText.split(separator: "\n").map(String.init).filter { !$0.isEmpty }
            #expect(got == c.expected, "\(c.words): \(result)")
        }
    }

    @Test("bash: the script registers itself for nvfp4")
    func bashRegisters() throws {
        let result = try ShellRunner.run("source <(\"$NVFP4\" completions bash) && complete -p nvfp4")
        #expect(result.status == 0 && result.stdoutText == "complete -F _nvfp4 nvfp4\n", "\(result)")
    }

    static func requireShell(_ shell: String) throws {
        try #require(ShellRunner.has(shell), "\(shell) is missing: run scripts/setup.sh")
    }

    @Test("zsh: the script parses and registers _nvfp4 with compinit, sourced or from fpath")
    func zsh() throws {
        try Self.requireShell("zsh")
        try ToolRunner.withTemporaryDirectory { dir in
            let made = try ShellRunner.run("\"$NVFP4\" completions zsh > _nvfp4 && zsh -n _nvfp4", in: dir.path)
            #expect(made.status == 0 && made.stderr.isEmpty, "\(made)")
            let sourced = try ShellRunner.run(
                "zsh -f -c 'autoload -Uz compinit && compinit -u -d \(dir.path)/dump && source ./_nvfp4 && print -r -- $_comps[nvfp4]'", in: dir.path)
            #expect(sourced.status == 0 && sourced.stdoutText == "_nvfp4\n", "\(sourced)")
            let fpath = try ShellRunner.run(
                "zsh -f -c 'fpath=(\(dir.path) $fpath); autoload -Uz compinit && compinit -u -d \(dir.path)/dump2 && print -r -- $_comps[nvfp4]'", in: dir.path)
            #expect(fpath.status == 0 && fpath.stdoutText == "_nvfp4\n", "\(fpath)")
        }
    }

    static let fishCases: [Case] = [
        Case(words: ["nvfp4", "qu"], expected: ["quantize"]),
        Case(words: ["nvfp4", "quantize", "--form"], expected: ["--format"]),
        Case(words: ["nvfp4", "quantize", "--format", ""], expected: ["compressed-tensors", "modelopt", "torchao"]),
        Case(words: ["nvfp4", "quantize", "--format="], expected: ["--format=compressed-tensors", "--format=modelopt", "--format=torchao"]),
        Case(words: ["nvfp4", "check", "--skip", "block-scale-n"], expected: ["block-scale-nan", "block-scale-negative"]),
        Case(words: ["nvfp4", "completions", ""], expected: ["bash", "fish", "zsh"]),
        Case(words: ["nvfp4", "inspect", "mod"], expected: ["model.safetensors"]),
    ]

    @Test("fish: the script parses and completes", arguments: fishCases)
    func fish(_ c: Case) throws {
        try Self.requireShell("fish")
        try ToolRunner.withTemporaryDirectory { dir in
            try dir.write([], to: "model.safetensors")
            let made = try ShellRunner.run("\"$NVFP4\" completions fish > nvfp4.fish && fish --no-execute nvfp4.fish", in: dir.path)
            #expect(made.status == 0 && made.stderr.isEmpty, "\(made)")
            let line = c.words.joined(separator: " ")
            let result = try ShellRunner.run("fish --no-config -c \(Self.quoted("source nvfp4.fish; complete -C \(Self.quoted(line))")) | cut -f1 | sort", in: dir.path)
            #expect(result.status == 0, "\(result)")
            let got = result.stdoutText.split(separator: "\n").map(String.init).filter { !$0.isEmpty }
            #expect(got == c.expected, "\(line): \(result)")
        }
    }
}
