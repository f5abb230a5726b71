/// The relative-RMSE tolerance `verify` applies to a quantized weight when `--tolerance` is not
/// given: the one rule, chosen by the method that wrote the output (from its manifest).
public enum VerifyTolerance {
    /// For `rtn` and `mse` outputs, and when the method is not known: their weight error is at or
    /// below round-to-nearest's (≈ 0.09–0.10 relative RMS on real weights).
    public static let standard = 0.15
    /// For `gptq` outputs. Error feedback minimizes the layer's *output* error over the
    /// calibration inputs and deliberately raises the plain weight error to do so (SmolLM2: up
    /// to 0.155 on a `down_proj`); every byte is still covered by the manifest's SHA-256.
    public static let errorFeedback = 0.25

    /// The tolerance for an output written with `method`, and why it is not ``standard``.
    public static func forMethod(_ method: QuantizationMethod?) -> (value: Double, reason: String?) {
        guard method == .gptq else { return (standard, nil) }
        return (errorFeedback, "gptq output (from its manifest): error feedback trades weight error for output error, so the default is \(errorFeedback) instead of \(standard)")
    }
}
