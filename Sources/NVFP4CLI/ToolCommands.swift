/// `nvfp4 help`, `nvfp4 completions` and `nvfp4 man`: the commands about the tool itself, all
/// printed from the command specs and the option table.
enum ToolCommands {
    static let help = CommandSpec(
        name: "help",
        overview: "Show help for a command, or the list of commands.",
        arguments: [ArgumentSpec(name: "<command>", help: "The command to describe.", completion: .commands, isOptional: true)],
        options: [])

    static let shells = ["bash", "zsh", "fish"]

    static let completions = CommandSpec(
        name: "completions",
        overview: "Print a shell completion script for nvfp4 (bash, zsh or fish).",
        arguments: [ArgumentSpec(name: "<shell>", help: "bash, zsh or fish.", completion: .words(shells))],
        options: [],
        discussion: """
            bash: add 'source <(nvfp4 completions bash)' to ~/.bashrc.
            zsh: 'nvfp4 completions zsh > ~/.zfunc/_nvfp4' with ~/.zfunc on fpath before compinit, or \
            'source <(nvfp4 completions zsh)' after compinit in ~/.zshrc.
            fish: 'nvfp4 completions fish > ~/.config/fish/completions/nvfp4.fish'.
            """)

    static let man = CommandSpec(
        name: "man",
        overview: "Print the nvfp4(1) manual page (roff) on stdout.",
        arguments: [],
        options: [],
        discussion: "Read it with 'nvfp4 man | man -l -'; docs/nvfp4.1 in the repository is this output.")

    static func runHelp(_ parsed: ParsedArguments, _ invocation: [String]) throws -> Int32 {
        guard let name = parsed.positionals.first else {
            Terminal.out(CommandLineTool.mainHelp)
            return ExitStatus.success
        }
        guard let spec = CommandLineTool.specs.first(where: { $0.name == name }) else {
            throw UsageError(message: CommandLineTool.unknownCommand(name))
        }
        Terminal.out(HelpFormatter.render(spec, width: Terminal.width))
        return ExitStatus.success
    }

    static func runCompletions(_ parsed: ParsedArguments, _ invocation: [String]) throws -> Int32 {
        let shell = parsed.positionals[0]
        let commands = CommandLineTool.specs
        switch shell {
        case "bash": Terminal.out(Completions.bash(commands))
        case "zsh": Terminal.out(Completions.zsh(commands))
        case "fish": Terminal.out(Completions.fish(commands))
        default:
            let hint = Suggestion.didYouMean(shell, among: shells).map { "; \($0)" } ?? ""
            throw UsageError(message: "unknown shell '\(shell)'; expected one of: \(shells.joined(separator: ", "))\(hint)")
        }
        return ExitStatus.success
    }

    static func runMan(_ parsed: ParsedArguments, _ invocation: [String]) throws -> Int32 {
        Terminal.out(ManPage.render(overview: CommandLineTool.overview, commands: CommandLineTool.specs))
        return ExitStatus.success
    }
}
