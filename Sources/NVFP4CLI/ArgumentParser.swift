/// A command-line option of a subcommand.
struct OptionSpec {
    /// Spellings, long first (`--output`, `-o`).
    var names: [String]
    /// The placeholder of its value, or `nil` for a flag.
    var valueName: String?
    var help: String
    var repeatable = false

    var takesValue: Bool { valueName != nil }
    var key: String { names[0] }
}

/// A subcommand's interface: what help prints and what the parser accepts.
struct CommandSpec {
    var name: String
    var overview: String
    var usage: String
    var arguments: [(name: String, help: String)]
    var options: [OptionSpec]
    var discussion: String = ""

    func option(named name: String) -> OptionSpec? { options.first { $0.names.contains(name) } }
}

/// A usage error: exits 2 with a one-line message.
struct UsageError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Parsed arguments of one subcommand.
struct ParsedArguments {
    var positionals: [String] = []
    var values: [String: [String]] = [:]
    var flags: Set<String> = []

    func value(_ key: String) -> String? { values[key]?.last }
    func all(_ key: String) -> [String] { values[key] ?? [] }
    func flag(_ key: String) -> Bool { flags.contains(key) }

    /// Parses `arguments` against `spec`: `--opt value`, `--opt=value`, `-o value`, `-ovalue`,
    /// `--` ends options, and a lone `-` is a positional (stdin or stdout).
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
                throw UsageError(message: "unknown option '\(name)' for 'nvfp4 \(spec.name)'; see 'nvfp4 \(spec.name) --help'")
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
                values[option.key, default: []].append(value)
            } else {
                if inlineValue != nil { throw UsageError(message: "option '\(name)' takes no value") }
                flags.insert(option.key)
            }
        }
    }
}

/// Help text in the layout Swift's argument parser made familiar.
enum HelpFormatter {
    static let labelWidth = 26

    static func render(_ spec: CommandSpec) -> String {
        var text = "OVERVIEW: \(spec.overview)\n\n"
        if !spec.discussion.isEmpty { text += spec.discussion + "\n\n" }
        text += "USAGE: \(spec.usage)\n"
        if !spec.arguments.isEmpty {
            text += "\nARGUMENTS:\n"
            for a in spec.arguments { text += row(a.name, a.help) }
        }
        text += "\nOPTIONS:\n"
        for o in spec.options {
            let label = o.names.reversed().joined(separator: ", ") + (o.valueName.map { " \($0)" } ?? "")
            text += row(label, o.help)
        }
        text += row("-h, --help", "Show help information.")
        return text
    }

    static func row(_ label: String, _ help: String) -> String {
        let padded = "  " + label
        if padded.count + 1 < labelWidth {
            return padded + String(repeating: " ", count: labelWidth - padded.count) + help + "\n"
        }
        return padded + "\n" + String(repeating: " ", count: labelWidth) + help + "\n"
    }
}
