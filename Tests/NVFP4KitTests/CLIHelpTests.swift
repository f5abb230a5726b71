import Foundation
import Testing

// Help screens, USAGE lines, the man page and the mistakes the command line catches before any
// work (issue 14). Help screens are pinned by golden files in Fixtures/help/ and the man page by
// docs/nvfp4.1; `NVFP4_UPDATE_GOLDENS=1 swift test --filter CLIHelpTests` (scripts/update-goldens.sh)
// rewrites them from the tool.

/// Runs the tool through bash, where the environment (COLUMNS) can be set.
enum HelpScaffold {
    /// Every command, and `nil` for `nvfp4` itself.
    static let commands: [String?] = [nil, "quantize", "inspect", "verify", "check", "dequantize", "merge", "help", "completions", "man"]

    static var updating: Bool { ProcessInfo.processInfo.environment["NVFP4_UPDATE_GOLDENS"] == "1" }

    static func quoted(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    /// `COLUMNS=<columns> nvfp4 <arguments>`; `columns` nil: COLUMNS unset (stdout and stderr are pipes).
    static func run(_ arguments: [String], columns: Int?) throws -> ShellRunner.Result {
        let env = columns.map { "COLUMNS=\($0)" } ?? "env -u COLUMNS"
        return try ShellRunner.run("\(env) \"$NVFP4\" " + arguments.map(quoted).joined(separator: " "))
    }

    static func helpArguments(_ command: String?) -> [String] { command.map { ["help", $0] } ?? ["--help"] }

    static func goldenPath(_ command: String?) -> String { ToolRunner.fixture("help/\(command ?? "nvfp4").txt") }

    /// The displayed width of a line (characters, not bytes: help has an ellipsis).
    static func width(_ line: Substring) -> Int { line.count }

    /// The words of a text, whatever its wrapping.
    static func words(_ text: String) -> [Substring] { text.split(whereSeparator: { $0 == " " || $0 == "\n" }) }

    /// One row of a help screen's OPTIONS section: its spellings and its help, `(default: …)` removed.
    struct OptionRow {
        var names: [String]
        var help: String
        /// The spelling USAGE shows: the first long one.
        var usageName: String? { names.first { $0.hasPrefix("--") } }
    }

    /// The OPTIONS rows of a help screen wide enough that no help text wraps (a long label puts
    /// its help on the next line).
    static func optionRows(_ help: String) -> [OptionRow] {
        var rows: [OptionRow] = []
        let lines = (help.components(separatedBy: "\nOPTIONS:\n").last ?? "").split(separator: "\n").map(String.init)
        var i = 0
        while i < lines.count {
            let line = lines[i]
            i += 1
            guard line.hasPrefix("  -") else { continue }
            var label = String(line.dropFirst(2))
            var text = ""
            if let gap = label.range(of: "  ") {
                text = String(label[gap.upperBound...])
                label = String(label[..<gap.lowerBound])
            } else if i < lines.count {
                text = lines[i]
                i += 1
            }
            text = text.trimmingCharacters(in: .whitespaces)
            if let d = text.range(of: " (default: ") { text = String(text[..<d.lowerBound]) }
            let names = label.split(separator: " ").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: ",")) }.filter { $0.hasPrefix("-") }
            rows.append(OptionRow(names: names, help: text))
        }
        return rows
    }
}

@Suite("nvfp4 help, usage, man page and mistakes caught early")
struct CLIHelpTests {
    @Test("every help screen at width 80 equals its golden file", arguments: HelpScaffold.commands)
    func goldenHelp(_ command: String?) throws {
        let result = try HelpScaffold.run(HelpScaffold.helpArguments(command), columns: 80)
        #expect(result.status == 0 && result.stderr.isEmpty, "\(result)")
        let path = HelpScaffold.goldenPath(command)
        if HelpScaffold.updating { try result.stdoutText.write(toFile: path, atomically: true, encoding: .utf8) }
        let golden = try String(contentsOfFile: path, encoding: .utf8)
        #expect(result.stdoutText == golden, "help for \(command ?? "nvfp4") changed; run scripts/update-goldens.sh and review the diff")
        for line in golden.split(separator: "\n") {
            #expect(HelpScaffold.width(line) <= 80, "longer than 80: \(line)")
        }
        // `X --help` is the same screen, and an unknown width (pipes, no COLUMNS) is 80.
        let flag = try HelpScaffold.run(command.map { [$0, "--help"] } ?? ["-h"], columns: nil)
        #expect(flag.status == 0 && flag.stdoutText == golden, "\(flag)")
    }

    @Test("help wraps to COLUMNS without losing or reordering a word", arguments: [40, 60, 100, 200])
    func wrapsToWidth(_ columns: Int) throws {
        for command in HelpScaffold.commands {
            let wrapped = try HelpScaffold.run(HelpScaffold.helpArguments(command), columns: columns).stdoutText
            let golden = try String(contentsOfFile: HelpScaffold.goldenPath(command), encoding: .utf8)
            let (got, want) = (HelpScaffold.words(wrapped), HelpScaffold.words(golden))
            let firstDifference = zip(got, want).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(got.count, want.count)
            #expect(got.count == want.count && firstDifference == got.count,
                    "\(command ?? "nvfp4") at \(columns): words differ from the golden's at word \(firstDifference): \(got.dropFirst(firstDifference).prefix(5)) vs \(want.dropFirst(firstDifference).prefix(5))")
            for line in wrapped.split(separator: "\n") where HelpScaffold.width(line) > columns {
                // Only what cannot be split may stick out: one word, one USAGE element, one option label alone.
                let unit = line.trimmingCharacters(in: .whitespaces)
                let oneWord = !unit.contains(" ")
                let oneUsageElement = unit.hasPrefix("[") && unit.hasSuffix("]") && unit.filter { $0 == "[" }.count == 1
                let labelAlone = unit.hasPrefix("-") && !unit.contains("  ") && line.hasPrefix("  -")
                #expect(oneWord || oneUsageElement || labelAlone, "\(command ?? "nvfp4") at \(columns): \(line)")
            }
        }
    }

    @Test("USAGE lists every option of the command; an option means the same on every command")
    func usageAndSharedOptions() throws {
        var meaning: [String: (command: String, help: String)] = [:]
        for case let command? in HelpScaffold.commands {
            let help = try HelpScaffold.run(["help", command], columns: 10_000).stdoutText
            let usage = try #require(help.split(separator: "\n").first { $0.hasPrefix("USAGE: nvfp4 \(command)") })
            let rows = HelpScaffold.optionRows(help)
            #expect(rows.last?.names == ["-h", "--help"] && rows.last?.help == "Show help information.", "\(command)")
            for row in rows.dropLast() {
                let name = try #require(row.usageName, "\(command): \(row.names)")
                #expect(usage.contains("[\(name)") || usage.contains(" \(name) "), "\(command): USAGE lacks \(name): \(usage)")
                for spelling in row.names {
                    if let seen = meaning[spelling] {
                        #expect(seen.help == row.help, "\(spelling) means '\(seen.help)' on \(seen.command) but '\(row.help)' on \(command)")
                    } else {
                        meaning[spelling] = (command, row.help)
                    }
                }
            }
        }
        // The drift issue 14 found: --search-radius was missing from quantize's USAGE.
        let quantize = try HelpScaffold.run(["help", "quantize"], columns: 10_000).stdoutText
        #expect(quantize.contains("[--search-radius <n>]"))
        // Shared options are offered wherever they apply.
        for (command, options) in [("check", ["--quiet", "-q", "--json"]), ("merge", ["--json", "--quiet"]),
                                   ("verify", ["--threads", "-j", "--json", "--quiet"]), ("dequantize", ["--threads", "-j", "--quiet", "--io"])] {
            let names = HelpScaffold.optionRows(try HelpScaffold.run(["help", command], columns: 10_000).stdoutText).flatMap(\.names)
            for option in options { #expect(names.contains(option), "\(command) lacks \(option)") }
        }
    }

    @Test("docs/cli.md's table of shared options names the commands that take each")
    func sharedOptionsDocumented() throws {
        let doc = try String(contentsOfFile: ToolRunner.repositoryRoot.appendingPathComponent("docs/cli.md").path, encoding: .utf8)
        var takers: [String: Set<String>] = [:]
        for case let command? in HelpScaffold.commands {
            for row in HelpScaffold.optionRows(try HelpScaffold.run(["help", command], columns: 10_000).stdoutText) {
                for name in row.names { takers[name, default: []].insert(command) }
            }
        }
        let rows = doc.split(separator: "\n").filter { $0.hasPrefix("| `-") }
        #expect(rows.count >= 9)
        for row in rows {
            let cells = row.replacingOccurrences(of: "\\|", with: "/").split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            let names = cells[0].split(separator: "`").flatMap { $0.split(separator: ",") }
                .compactMap { $0.split(separator: " ").first.map(String.init) }.filter { $0.hasPrefix("-") }
            let commands = Set(cells[2].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
            #expect(!names.isEmpty)
            for name in names { #expect(takers[name] == commands, "docs/cli.md: \(name) is taken by \(takers[name]?.sorted() ?? [])") }
        }
    }

    @Test("nvfp4 man is docs/nvfp4.1, and groff reads it without a warning")
    func manPage() throws {
        let result = try HelpScaffold.run(["man"], columns: 80)
        #expect(result.status == 0 && result.stderr.isEmpty, "\(result)")
        let path = ToolRunner.repositoryRoot.appendingPathComponent("docs/nvfp4.1").path
        if HelpScaffold.updating { try result.stdoutText.write(toFile: path, atomically: true, encoding: .utf8) }
        #expect(result.stdoutText == (try String(contentsOfFile: path, encoding: .utf8)), "docs/nvfp4.1 is stale; run scripts/update-goldens.sh")
        // Not hostage to the width.
        #expect(try HelpScaffold.run(["man"], columns: 200).stdout == result.stdout)
        for case let command? in HelpScaffold.commands { #expect(result.stdoutText.contains(".SS \(command)\n")) }
        for option in ["\\-\\-search\\-radius", "\\-\\-tensor\\-parallel", "\\-\\-skip", "\\-\\-compare\\-method", "\\-\\-dtype"] {
            #expect(result.stdoutText.contains("\\fB\(option)\\fR"), "the man page documents \(option)")
        }
        try #require(ShellRunner.has("groff"), "groff is missing: run scripts/setup.sh")
        let rendered = try ShellRunner.run("\"$NVFP4\" man | groff -man -Tutf8 -ww 2>&1 >/dev/null")
        #expect(rendered.status == 0 && rendered.stdout.isEmpty, "groff warnings: \(rendered)")
        let text = try ShellRunner.run("\"$NVFP4\" man | groff -man -Tascii -P-c -P-b -P-u")
        #expect(text.stdoutText.contains("--search-radius <n>"), "\(text.stdoutText.prefix(2000))")
    }

    /// A mistake, and the hint its one error line must give.
    struct Mistake: Sendable, CustomTestStringConvertible {
        var arguments: [String]
        var mentions: String
        var testDescription: String { arguments.joined(separator: " ") }
    }

    static let mistakes: [Mistake] = [
        Mistake(arguments: ["quantise", "m.safetensors"], mentions: "unknown command 'quantise'; did you mean 'quantize'?"),
        Mistake(arguments: ["inspcet", "m.safetensors"], mentions: "did you mean 'inspect'?"),
        Mistake(arguments: ["help", "quantise"], mentions: "unknown command 'quantise'; did you mean 'quantize'?"),
        Mistake(arguments: ["help", "dequant"], mentions: "did you mean 'dequantize'?"),
        Mistake(arguments: ["--verison"], mentions: "unknown option '--verison'; did you mean '--version'?"),
        Mistake(arguments: ["quantize", "m.safetensors", "--fromat", "modelopt"], mentions: "unknown option '--fromat' for 'nvfp4 quantize'; did you mean '--format'?"),
        Mistake(arguments: ["quantize", "m.safetensors", "--format", "modelop"], mentions: "invalid value 'modelop' for --format; expected one of: compressed-tensors, modelopt, torchao; did you mean 'modelopt'?"),
        Mistake(arguments: ["quantize", "m.safetensors", "--format=compresed-tensors"], mentions: "did you mean 'compressed-tensors'?"),
        Mistake(arguments: ["quantize", "m.safetensors", "--methd", "mse"], mentions: "did you mean '--method'?"),
        Mistake(arguments: ["quantize", "m.safetensors", "--thread", "2"], mentions: "did you mean '--threads'?"),
        Mistake(arguments: ["quantize", "m.safetensors", "--io", "bufferd"], mentions: "did you mean 'buffered'?"),
        Mistake(arguments: ["verify", "a", "b", "--compare-method", "mes"], mentions: "did you mean 'mse'?"),
        Mistake(arguments: ["dequantize", "a", "-o", "b", "--dtype", "bf61"], mentions: "did you mean 'bf16'?"),
        Mistake(arguments: ["check", "a", "--skip", "block-scale-nans"], mentions: "did you mean 'block-scale-nan'?"),
        Mistake(arguments: ["check", "a", "--tensor-paralel", "2"], mentions: "did you mean '--tensor-parallel'?"),
        Mistake(arguments: ["completions", "bsh"], mentions: "unknown shell 'bsh'; expected one of: bash, zsh, fish; did you mean 'bash'?"),
        Mistake(arguments: ["inspect", "m.safetensors", "--jsn"], mentions: "did you mean '--json'?"),
        Mistake(arguments: ["check", "a", "--tp", "0"], mentions: "invalid value '0' for --tensor-parallel; expected a whole number from 1 to 1024"),
        Mistake(arguments: ["quantize", "m.safetensors", "--search-radius", "x"], mentions: "invalid value 'x' for --search-radius"),
    ]

    @Test("mistakes get a did-you-mean in one error line, before any work", arguments: mistakes)
    func didYouMean(_ m: Mistake) throws {
        try ToolRunner.withTemporaryDirectory { dir in
            let result = try ToolRunner.run(m.arguments, in: dir.path)
            #expect(result.status == 2 && result.stdout.isEmpty && result.stderrLines.count == 1, "\(result)")
            #expect(result.stderr.hasPrefix("error: ") && result.stderr.contains(m.mentions), "expected \"\(m.mentions)\" in: \(result.stderr)")
            #expect(try dir.contents().isEmpty, "a usage error writes nothing")
        }
    }

    @Test("nothing near: no guess", arguments: [["frobnicate"], ["quantize", "m", "--zzzzzz"], ["quantize", "m", "--format", "gguf"]])
    func noGuess(_ arguments: [String]) throws {
        let result = try ToolRunner.run(arguments)
        #expect(result.status == 2 && result.stderrLines.count == 1 && !result.stderr.contains("did you mean"), "\(result)")
    }

    @Test("-V is --version; help help describes help")
    func versionAndHelpHelp() throws {
        let short = try ToolRunner.run(["-V"])
        let long = try ToolRunner.run(["--version"])
        #expect(short.status == 0 && short.stdout == long.stdout && !short.stdout.isEmpty)
        let helpHelp = try ToolRunner.run(["help", "help"])
        #expect(helpHelp.status == 0 && helpHelp.stdoutText.hasPrefix("OVERVIEW: Show help for a command"), "\(helpHelp)")
        #expect(helpHelp.stdoutText.contains("USAGE: nvfp4 help [<command>]"))
    }
}
