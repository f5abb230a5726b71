import NVFP4Kit

/// Requires exactly `names.count` positional arguments naming models or checkpoints, and resolves
/// each that is a Hugging Face model id (`org/name[@revision]`) and not a local path to its
/// snapshot folder in the local cache (``HubCache``), offline. `-` stays stdin.
///
/// - Throws: ``UsageError`` for a wrong count; ``HubCacheError`` for an id that is not cached (its
///   message gives the `hf download` command).
func modelArguments(_ parsed: ParsedArguments, _ names: [String], command: String) throws -> [String] {
    try positionals(parsed, names, command: command).map { argument in
        argument == "-" ? argument : try HubCache.resolve(argument) ?? argument
    }
}
