/// A calibration file: a JSON object mapping module names (`model.layers.0.self_attn.q_proj`) to
/// the observed max |input| of that module over the calibration data (an absolute max, as
/// llm-compressor's `static_minmax` and ModelOpt's `max` calibration record it).
public enum CalibrationFile {
    /// Reads and validates `path`: an object of finite, positive numbers.
    public static func read(_ path: String) throws -> [String: Float] {
        let text: String
        do { text = try ModelFolder.readText(path) } catch { throw FileError(path: path, cause: CalibrationError.malformed(reason: error.reason)) }
        return try parse(text, path: path)
    }

    /// Parses calibration JSON text.
    public static func parse(_ text: String, path: String) throws(FileError) -> [String: Float] {
        let json: JSONValue
        do { json = try JSONParser.parse(text) } catch {
            throw FileError(path: path, cause: CalibrationError.malformed(reason: "invalid JSON: \(error)"))
        }
        guard let members = json.objectValue else {
            throw FileError(path: path, cause: CalibrationError.malformed(reason: "expected a JSON object of module name -> max |input|"))
        }
        var result: [String: Float] = [:]
        for (module, value) in members {
            guard let number = value.doubleValue else {
                throw FileError(path: path, cause: CalibrationError.malformed(reason: "value of \"\(module)\" is not a number"))
            }
            let amax = Float(number)
            guard amax.isFinite, amax > 0 else { throw FileError(path: path, cause: CalibrationError.invalidAmax(module: module, amax: amax)) }
            result[module.hasSuffix(".weight") ? String(module.dropLast(7)) : module] = amax
        }
        return result
    }
}
