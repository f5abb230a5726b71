import Glibc
import NVFP4Kit

/// Exit statuses: 0 success, 1 a check failed, 2 usage or input error.
public enum ExitStatus {
    public static let success: Int32 = 0
    public static let checkFailed: Int32 = 1
    public static let usageOrInputError: Int32 = 2
    /// stdout's reader closed the pipe (128 + SIGPIPE, what the shell reports for a SIGPIPE death).
    public static let brokenPipe: Int32 = 141
}

/// Whether `error` is a write to a pipe whose reader has gone (`EPIPE`).
func isBrokenPipe(_ error: any Error) -> Bool {
    if let e = error as? SystemError { return e.code == EPIPE }
    if let e = error as? FileError { return isBrokenPipe(e.cause) }
    return false
}

/// The `nvfp4` command line: parses arguments, runs a subcommand, prints, and returns the exit status.
public enum CommandLineTool {
    static let overview = "Quantize safetensors checkpoints to NVIDIA NVFP4, bit-exact with torchao."

    /// Every command, in the order help lists them.
    static var commands: [(spec: CommandSpec, run: (ParsedArguments, [String]) throws -> Int32)] {
        [
        (QuantizeCommand.spec, QuantizeCommand.run),
        (InspectCommand.spec, InspectCommand.run),
        (VerifyCommand.spec, VerifyCommand.run),
        (CheckCommand.spec, CheckCommand.run),
        (DequantizeCommand.spec, DequantizeCommand.run),
        (MergeCommand.spec, MergeCommand.run),
        (ToolCommands.help, ToolCommands.runHelp),
        (ToolCommands.completions, ToolCommands.runCompletions),
        (ToolCommands.man, ToolCommands.runMan),
        ]
    }

    static var specs: [CommandSpec] { commands.map(\.spec) }

    /// Runs the tool.
    ///
    /// - Parameter arguments: `CommandLine.arguments`, program name first.
    /// - Returns: The exit status.
    public static func main(_ arguments: [String]) -> Int32 {
        TemporaryFileRegistry.installSignalHandlers()
        let args = Array(arguments.dropFirst())
        guard let first = args.first else {
            Terminal.out(mainHelp)
            return ExitStatus.success
        }
        if OptionSpec.help.names.contains(first) {
            Terminal.out(mainHelp)
            return ExitStatus.success
        }
        if OptionSpec.version.names.contains(first) {
            Terminal.out(nvfp4Version + "\n")
            return ExitStatus.success
        }
        guard let command = commands.first(where: { $0.spec.name == first }) else {
            if first.hasPrefix("-") {
                let hint = Suggestion.didYouMean(first, among: OptionSpec.version.names + OptionSpec.help.names) ?? "see 'nvfp4 --help'"
                return fail("unknown option '\(first)'; \(hint)", status: ExitStatus.usageOrInputError)
            }
            return fail(unknownCommand(first), status: ExitStatus.usageOrInputError)
        }
        let rest = Array(args.dropFirst())
        if rest.contains(where: { OptionSpec.help.names.contains($0) }) && !rest.contains("--") {
            Terminal.out(HelpFormatter.render(command.spec, width: Terminal.width))
            return ExitStatus.success
        }
        do {
            let parsed = try ParsedArguments(rest, spec: command.spec)
            try parsed.refuseBinaryOutputToTerminal(command.spec, stdoutIsTerminal: Terminal.stdoutIsTerminal)
            return try command.run(parsed, arguments)
        } catch let error as UsageError {
            return fail(error.message, status: ExitStatus.usageOrInputError)
        } catch where isBrokenPipe(error) {
            // The reader of stdout went away (with SIGPIPE ignored): end quietly, as SIGPIPE would.
            return ExitStatus.brokenPipe
        } catch {
            return fail("\(error)", status: ExitStatus.usageOrInputError)
        }
    }

    /// `unknown command 'quantise'; did you mean 'quantize'?`
    static func unknownCommand(_ name: String) -> String {
        "unknown command '\(name)'; " + (Suggestion.didYouMean(name, among: specs.map(\.name)) ?? "see 'nvfp4 --help'")
    }

    /// Prints `error: message` as one line on stderr and returns `status`.
    static func fail(_ message: String, status: Int32) -> Int32 {
        let oneLine = message.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).joined(separator: " ")
        Terminal.err("error: \(oneLine)\n")
        return status
    }

    static var mainHelp: String { HelpFormatter.mainHelp(overview: overview, commands: specs, width: Terminal.width) }
}

/// Parses a choice among `values` (the parser has already checked options from the table).
func choice<T>(_ text: String?, option: String, _ values: [String: T], default fallback: T) throws(UsageError) -> T {
    guard let text else { return fallback }
    guard let value = values[text] else { throw UsageError.invalidChoice(text, for: option, expected: Array(values.keys)) }
    return value
}

/// The positional arguments, exactly `names.count` of them (the parser checks the count against the spec too).
func positionals(_ parsed: ParsedArguments, _ names: [String], command: String) throws(UsageError) -> [String] {
    try UsageError.checkCount(parsed.positionals, required: names.map { "<\($0)>" }, allowed: names.count, command: command)
    return parsed.positionals
}
