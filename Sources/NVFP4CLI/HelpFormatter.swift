/// Help screens, in the layout Swift's argument parser made familiar, wrapped to the terminal width.
enum HelpFormatter {
    /// Where option and command help starts.
    static let labelWidth = 26

    /// A command's help screen.
    static func render(_ spec: CommandSpec, width: Int) -> String {
        var text = wrap("OVERVIEW: " + spec.overview, width: width, indent: 2)
        if !spec.discussion.isEmpty {
            for paragraph in spec.discussion.split(separator: "\n") { text += "\n" + wrap(String(paragraph), width: width, indent: 0) }
        }
        text += "\n" + usage(spec, width: width)
        if !spec.arguments.isEmpty {
            text += "\nARGUMENTS:\n"
            for a in spec.arguments { text += row(a.name, a.help, width: width) }
        }
        text += "\nOPTIONS:\n"
        for o in spec.options + [.help] { text += row(label(o), o.fullHelp, width: width) }
        return text
    }

    /// The help screen of `nvfp4` itself.
    static func mainHelp(overview: String, commands: [CommandSpec], width: Int) -> String {
        var text = wrap("OVERVIEW: " + overview, width: width, indent: 2)
        text += "\nUSAGE: nvfp4 <command> [<options>]\n"
        text += "\nOPTIONS:\n"
        for o in [OptionSpec.version, .help] { text += row(label(o), o.fullHelp, width: width) }
        text += "\nCOMMANDS:\n"
        for c in commands { text += row(c.name, c.overview, width: width) }
        text += "\n" + wrap("  See 'nvfp4 help <command>' for detailed help.", width: width, indent: 2)
        text += "\nEXIT STATUS:\n" + wrap("  " + exitStatus, width: width, indent: 2)
        return text
    }

    /// The exit statuses, in one line.
    static let exitStatus = "0 success, 1 a check failed (verify, check), 2 usage or input error."

    /// `USAGE: nvfp4 quantize <input> [--output <output>] …`, continuation lines aligned after the command.
    static func usage(_ spec: CommandSpec, width: Int) -> String {
        let words = spec.usageWords
        let lead = "USAGE: " + words[0] + " " + words[1]
        let indent = lead.count + 1 <= width / 2 ? lead.count + 1 : 4
        return fill(Array(words.dropFirst(2)), first: lead, width: width, indent: indent)
    }

    /// `-o, --output <output>`: short spellings first.
    static func label(_ option: OptionSpec) -> String {
        let short = option.names.filter { !$0.hasPrefix("--") }
        let long = option.names.filter { $0.hasPrefix("--") }
        return (short + long).joined(separator: ", ") + (option.valueName.map { " \($0)" } ?? "")
    }

    /// `  label   help`, the help wrapped at `labelWidth`; a long label gets a line of its own.
    static func row(_ label: String, _ help: String, width: Int) -> String {
        let padded = "  " + label
        let words = help.split(separator: " ").map(String.init)
        if padded.count + 1 < labelWidth {
            return fill(words, first: padded + String(repeating: " ", count: labelWidth - padded.count - 1), width: width, indent: labelWidth)
        }
        return padded + "\n" + fill(words, first: String(repeating: " ", count: labelWidth - 1), width: width, indent: labelWidth)
    }

    /// `text` wrapped at `width`, continuation lines indented by `indent`.
    static func wrap(_ text: String, width: Int, indent: Int) -> String {
        let leading = String(text.prefix(while: { $0 == " " }))
        var words = text.dropFirst(leading.count).split(separator: " ").map(String.init)
        guard !words.isEmpty else { return "\n" }
        let first = leading + words.removeFirst()
        return fill(words, first: first, width: width, indent: indent)
    }

    /// Lines starting with `first`, adding `words` separated by one space while they fit in `width`;
    /// a word wider than a line gets a line of its own.
    static func fill(_ words: [String], first: String, width: Int, indent: Int) -> String {
        var lines: [String] = []
        var line = first
        let pad = String(repeating: " ", count: indent)
        for word in words {
            if line.allSatisfy({ $0 == " " }) || line.count + 1 + word.count <= width {
                line += " " + word
            } else {
                lines.append(line)
                line = pad + word
            }
        }
        lines.append(line)
        lines = lines.map { line in String(line.reversed().drop(while: { $0 == " " }).reversed()) }
        return lines.joined(separator: "\n") + "\n"
    }
}
