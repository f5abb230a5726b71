/// What an option's value is: the parser checks it, help shows it, completions offer it.
enum OptionValue: Equatable {
    /// No value: the option is a flag.
    case none
    /// One of these words; anything else is a usage error (with a did-you-mean). The placeholder
    /// is `<a|b|c>` unless one is given (for long lists).
    case choice([String], placeholder: String? = nil)
    /// A whole number in this range.
    case wholeNumber(placeholder: String, range: ClosedRange<Int>)
    /// A file or folder path (completions offer files).
    case path(placeholder: String)
    /// Free text, checked by the command.
    case text(placeholder: String, suggestions: [String] = [])

    /// `<torchao|compressed-tensors|modelopt>`, `<n>`, or `nil` for a flag.
    var placeholder: String? {
        switch self {
        case .none: nil
        case .choice(let words, let placeholder): placeholder ?? "<" + words.joined(separator: "|") + ">"
        case .wholeNumber(let p, _), .path(let p), .text(let p, _): p
        }
    }

    /// The words completions offer for the value.
    var completionWords: [String] {
        switch self {
        case .choice(let words, _): words
        case .text(_, let suggestions): suggestions
        default: []
        }
    }
}

/// One command-line option: the same concept, spelling and meaning wherever a command takes it.
/// Every option is defined once, in `OptionTable.swift`; commands list the ones they take.
struct OptionSpec: Equatable {
    /// Spellings, long first (`--output`, `-o`).
    var names: [String]
    var value: OptionValue
    var help: String
    var repeatable = false
    /// What the command does without the option (shown as `(default: …)`); set per command with ``defaulting(_:)``.
    var defaultText: String?
    /// Whether the command cannot run without it; set per command with ``required()``.
    var isRequired = false

    var takesValue: Bool { value != .none }
    var key: String { names[0] }
    /// The placeholder of its value, or `nil` for a flag.
    var valueName: String? { value.placeholder }

    /// This option as a command uses it, with what happens when it is not given.
    func defaulting(_ text: String) -> OptionSpec {
        var copy = self
        copy.defaultText = text
        return copy
    }

    /// This option as a command that cannot run without it uses it.
    func required() -> OptionSpec {
        var copy = self
        copy.isRequired = true
        return copy
    }

    /// The help text with the default appended.
    var fullHelp: String { defaultText.map { help + " (default: \($0))" } ?? help }
}

/// What completions offer for a positional argument.
enum ArgumentCompletion: Equatable {
    case files
    case words([String])
    /// The tool's command names.
    case commands
}

/// A positional argument: its name, help, and what completions offer for it.
struct ArgumentSpec {
    var name: String
    var help: String
    var completion: ArgumentCompletion = .files
    /// Whether it can be left out.
    var isOptional = false
}

/// A subcommand's interface: what help, usage, completions and the man page print and what the parser accepts.
struct CommandSpec {
    var name: String
    var overview: String
    var arguments: [ArgumentSpec]
    var options: [OptionSpec]
    /// Paragraphs, separated by a newline; help wraps them to the terminal width.
    var discussion: String = ""
    /// The option naming an output that is a binary checkpoint (`-o -`: stdout); see ``ParsedArguments/refuseBinaryOutputToTerminal``.
    var binaryOutput: OptionSpec?

    func option(named name: String) -> OptionSpec? { options.first { $0.names.contains(name) } }

    /// `nvfp4 quantize <input> [--output <output>] …`, from the arguments and options.
    var usageWords: [String] {
        var words = ["nvfp4", name]
        for a in arguments { words.append(a.isOptional ? "[\(a.name)]" : a.name) }
        for o in options {
            var word = o.names[0] + (o.valueName.map { " \($0)" } ?? "")
            if o.repeatable { word += " ..." }
            words.append(o.isRequired ? word : "[\(word)]")
        }
        return words
    }
}

/// A usage error: exits 2 with a one-line message.
struct UsageError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }

    /// `invalid value 'modelop' for --format; expected one of: …; did you mean 'modelopt'?`
    static func invalidChoice(_ value: String, for option: String, expected words: [String]) -> UsageError {
        let hint = Suggestion.didYouMean(value, among: words).map { "; \($0)" } ?? ""
        return UsageError(message: "invalid value '\(value)' for \(option); expected one of: \(words.sorted().joined(separator: ", "))\(hint)")
    }

    /// `missing argument <input>; see 'nvfp4 quantize --help'`, or `unexpected argument …`, when
    /// `positionals` does not fit `required` names and at most `allowed` arguments.
    static func checkCount(_ positionals: [String], required: [String], allowed: Int, command: String) throws(UsageError) {
        if positionals.count < required.count {
            throw UsageError(message: "missing argument \(required[positionals.count]); see 'nvfp4 \(command) --help'")
        }
        if positionals.count > allowed {
            throw UsageError(message: "unexpected argument '\(positionals[allowed])'; see 'nvfp4 \(command) --help'")
        }
    }
}

/// Parsed arguments of one subcommand.
struct ParsedArguments {
    var positionals: [String] = []
    var values: [String: [String]] = [:]
    var flags: Set<String> = []

    func value(_ key: String) -> String? { values[key]?.last }
    func all(_ key: String) -> [String] { values[key] ?? [] }
    func flag(_ key: String) -> Bool { flags.contains(key) }
    /// A whole-number option's value (the parser checked its range), or `nil` when not given.
    func wholeNumber(_ option: OptionSpec) -> Int? { value(option.key).flatMap { Int($0) } }

    /// Parses `arguments` against `spec`: `--opt value`, `--opt=value`, `-o value`, `-ovalue`,
    /// `--` ends options, and a lone `-` is a positional (stdin or stdout). Choices and whole
    /// numbers are checked here; an unknown option or choice gets a did-you-mean.
    init(_ arguments: [String], spec: CommandSpec) throws(UsageError) {
        var i = 0
        var optionsEnded = false
        while i < arguments.count {
            let argument = arguments[i]
            i += 1
            if optionsEnded || argument == "-" || !argument.hasPrefix("-") {
                positionals.append(argument)
                continue
            }
            if argument == "--" {
                optionsEnded = true
                continue
            }
            var name = argument
            var inlineValue: String?
            if argument.hasPrefix("--"), let eq = argument.firstIndex(of: "=") {
                name = String(argument[..<eq])
                inlineValue = String(argument[argument.index(after: eq)...])
            } else if !argument.hasPrefix("--"), argument.count > 2,
                      let short = spec.option(named: String(argument.prefix(2))), short.takesValue {
                // `-j4`, `-oout.safetensors`: a short option's value attached, as make and xz take it.
                name = String(argument.prefix(2))
                inlineValue = String(argument.dropFirst(2))
            }
            guard let option = spec.option(named: name) else {
                let hint = Suggestion.didYouMean(name, among: spec.options.flatMap(\.names) + ["--help"])
                    ?? "see 'nvfp4 \(spec.name) --help'"
                throw UsageError(message: "unknown option '\(name)' for 'nvfp4 \(spec.name)'; \(hint)")
            }
            if option.takesValue {
                let value: String
                if let inlineValue {
                    value = inlineValue
                } else {
                    guard i < arguments.count else { throw UsageError(message: "option '\(name)' needs a value \(option.valueName!)") }
                    value = arguments[i]
                    i += 1
                }
                if !option.repeatable, values[option.key] != nil {
                    throw UsageError(message: "option '\(name)' was given more than once")
                }
                try Self.check(value, of: option)
                values[option.key, default: []].append(value)
            } else {
                if inlineValue != nil { throw UsageError(message: "option '\(name)' takes no value") }
                flags.insert(option.key)
            }
        }
        try UsageError.checkCount(
            positionals, required: spec.arguments.filter { !$0.isOptional }.map(\.name), allowed: spec.arguments.count, command: spec.name)
        for option in spec.options where option.isRequired && values[option.key] == nil && !flags.contains(option.key) {
            throw UsageError(message: "missing \(option.names.last!) \(option.valueName ?? ""); see 'nvfp4 \(spec.name) --help'")
        }
    }

    /// Checks a choice or a whole number against the option's table entry.
    private static func check(_ value: String, of option: OptionSpec) throws(UsageError) {
        switch option.value {
        case .choice(let words, _) where !words.contains(value):
            throw UsageError.invalidChoice(value, for: option.key, expected: words)
        case .wholeNumber(_, let range):
            guard let n = Int(value), range.contains(n) else {
                throw UsageError(
                    message: "invalid value '\(value)' for \(option.key); expected a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
        default:
            break
        }
    }

    /// Refuses a binary checkpoint on stdout (`-o -`) when stdout is a terminal, before any work:
    /// the one place quantize and dequantize check it.
    func refuseBinaryOutputToTerminal(_ spec: CommandSpec, stdoutIsTerminal: Bool) throws(UsageError) {
        guard let output = spec.binaryOutput, value(output.key) == "-", !flag(OptionSpec.dryRun.key), stdoutIsTerminal else { return }
        throw UsageError(
            message: "refusing to write a binary checkpoint to the terminal (-o -); redirect stdout to a file or a pipe, or name an output file")
    }
}
