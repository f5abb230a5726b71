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

    static var commands: [(spec: CommandSpec, run: (ParsedArguments, [String]) throws -> Int32)] {
        [
        (QuantizeCommand.spec, QuantizeCommand.run),
        (InspectCommand.spec, InspectCommand.run),
        (VerifyCommand.spec, VerifyCommand.run),
        (CheckCommand.spec, CheckCommand.run),
        (DequantizeCommand.spec, DequantizeCommand.run),
        (MergeCommand.spec, MergeCommand.run),
        ]
    }

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
        switch first {
        case "-h", "--help":
            Terminal.out(mainHelp)
            return ExitStatus.success
        case "--version":
            Terminal.out(nvfp4Version + "\n")
            return ExitStatus.success
        case "help":
            guard args.count > 1 else {
                Terminal.out(mainHelp)
                return ExitStatus.success
            }
            guard let command = commands.first(where: { $0.spec.name == args[1] }) else {
                return fail("unknown command '\(args[1])'; see 'nvfp4 --help'", status: ExitStatus.usageOrInputError)
            }
            Terminal.out(HelpFormatter.render(command.spec))
            return ExitStatus.success
        default:
            break
        }
        guard let command = commands.first(where: { $0.spec.name == first }) else {
            if first.hasPrefix("-") { return fail("unknown option '\(first)'; see 'nvfp4 --help'", status: ExitStatus.usageOrInputError) }
            return fail("unknown command '\(first)'; see 'nvfp4 --help'", status: ExitStatus.usageOrInputError)
        }
        let rest = Array(args.dropFirst())
        if rest.contains(where: { $0 == "-h" || $0 == "--help" }) && !rest.contains("--") {
            Terminal.out(HelpFormatter.render(command.spec))
            return ExitStatus.success
        }
        do {
            let parsed = try ParsedArguments(rest, spec: command.spec)
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

    /// Prints `error: message` as one line on stderr and returns `status`.
    static func fail(_ message: String, status: Int32) -> Int32 {
        let oneLine = message.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).joined(separator: " ")
        Terminal.err("error: \(oneLine)\n")
        return status
    }

    static var mainHelp: String {
        var text = "OVERVIEW: \(overview)\n\n"
        text += "USAGE: nvfp4 <command> [<options>]\n\n"
        text += "OPTIONS:\n"
        text += HelpFormatter.row("--version", "Show the version.")
        text += HelpFormatter.row("-h, --help", "Show help information.")
        text += "\nCOMMANDS:\n"
        for c in commands { text += HelpFormatter.row(c.spec.name, c.spec.overview) }
        text += "\n  See 'nvfp4 help <command>' for detailed help.\n"
        text += "\nEXIT STATUS:\n  0 success, 1 a check failed (verify, check), 2 usage or input error.\n"
        return text
    }
}

/// Parses a choice among `values`.
func choice<T>(_ text: String?, option: String, _ values: [String: T], default fallback: T) throws(UsageError) -> T {
    guard let text else { return fallback }
    guard let value = values[text] else {
        throw UsageError(message: "invalid value '\(text)' for \(option); expected one of: \(values.keys.sorted().joined(separator: ", "))")
    }
    return value
}

/// Requires exactly `count` positional arguments.
func positionals(_ parsed: ParsedArguments, _ names: [String], command: String) throws(UsageError) -> [String] {
    if parsed.positionals.count < names.count {
        throw UsageError(message: "missing argument <\(names[parsed.positionals.count])>; see 'nvfp4 \(command) --help'")
    }
    if parsed.positionals.count > names.count {
        throw UsageError(message: "unexpected argument '\(parsed.positionals[names.count])'; see 'nvfp4 \(command) --help'")
    }
    return parsed.positionals
}
