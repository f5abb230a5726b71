/// The rules of `nvfp4 check`. Each is documented in `docs/check.md` with the engine behaviour
/// it guards against.
public enum CheckRule: String, Sendable, CaseIterable {
    // Layout and structure
    case noNVFP4Weights = "no-nvfp4-weights"
    case mixedLayouts = "mixed-layouts"
    case badPackedTensor = "bad-packed-tensor"
    case missingBlockScales = "missing-block-scales"
    case badBlockScales = "bad-block-scales"
    case missingGlobalScale = "missing-global-scale"
    case badScaleTensor = "bad-scale-tensor"
    case orphanScale = "orphan-scale"
    case torchaoMetadataInvalid = "torchao-metadata-invalid"
    case kNotMultipleOf16 = "k-not-multiple-of-16"
    // Values
    case blockScaleNaN = "block-scale-nan"
    case blockScaleNegative = "block-scale-negative"
    case blockScaleZero = "block-scale-zero"
    case globalScaleInvalid = "global-scale-invalid"
    case globalScaleImplausible = "global-scale-implausible"
    case inputScaleInvalid = "input-scale-invalid"
    case inputScaleMissing = "input-scale-missing"
    case inputScaleUnexpected = "input-scale-unexpected"
    // Fused groups
    case fusedGlobalScaleMismatch = "fused-global-scale-mismatch"
    case fusedInputScaleMismatch = "fused-input-scale-mismatch"
    case fusedPartiallyQuantized = "fused-partially-quantized"
    // Config
    case configMissing = "config-missing"
    case configLayoutMismatch = "config-layout-mismatch"
    case configInvalid = "config-invalid"
    case configDisagreement = "config-disagreement"
    case ignoredButQuantized = "ignored-but-quantized"
    case excludeSubstringMatch = "exclude-substring-match"
    case keptNotIgnored = "kept-not-ignored"
    case quantizedNotTargeted = "quantized-not-targeted"
    case shapeConfigMismatch = "shape-config-mismatch"
    case keptByRuleQuantized = "kept-by-rule-quantized"
    // Shards
    case duplicateTensor = "duplicate-tensor"
    case indexTensorMissing = "index-tensor-missing"
    case indexWrongShard = "index-wrong-shard"
    case indexTensorUnlisted = "index-tensor-unlisted"
    case unreferencedShard = "unreferenced-shard"
}

/// One problem `nvfp4 check` found: where, in what, and what to do.
public struct CheckFinding: Sendable, Equatable, CustomStringConvertible {
    /// The rule that fired.
    public var rule: CheckRule
    /// The file the problem is in (a shard, `config.json`, the index).
    public var path: String
    /// The tensor, module, fused group or config key concerned.
    public var subject: String
    /// What is wrong, what an engine does with it, and what to do.
    public var message: String

    public init(_ rule: CheckRule, path: String, subject: String, _ message: String) {
        self.rule = rule
        self.path = path
        self.subject = subject
        self.message = message
    }

    /// `path: subject: message [rule]`, one line.
    public var description: String { "\(path): \(subject): \(message) [\(rule.rawValue)]" }

    /// The JSON object `nvfp4 check --json` prints.
    public var json: JSONValue {
        .object([("code", .string(rule.rawValue)), ("path", .string(path)), ("module", .string(subject)), ("message", .string(message))])
    }
}
