import NVFP4Kit

/// `nvfp4 verify`.
enum VerifyCommand {
    static let spec = CommandSpec(
        name: "verify",
        overview: "Compare an NVFP4 checkpoint with its original.",
        arguments: [
            ArgumentSpec(name: "<original>", help: "The source .safetensors file (.zst, '-' for stdin), model folder, or model id in the local Hub cache (org/name[@revision])."),
            ArgumentSpec(name: "<quantized>", help: "The NVFP4 checkpoint in any layout (torchao, compressed-tensors, ModelOpt): a file (.zst, '-' for stdin), model folder, or model id in the local Hub cache."),
        ],
        options: [.tolerance, .manifest.defaulting("the one quantize wrote beside <quantized>, if any"), .compareMethod, .fp8BlockSize, .threads, .json, .quiet, .progress],
        discussion: """
            Dequantizes every NVFP4 weight and measures relative RMSE, SQNR and max abs error against the \
            original; checks that kept tensors are byte-identical, nothing is missing or extra, and block scales \
            are valid e4m3 codes. An FP8 original is compared through its dequantization, the weights quantize \
            read. Exit 0 if all checks pass, 1 if any fails, 2 if the files cannot be compared.
            """)

    static func run(_ parsed: ParsedArguments, _ invocation: [String]) throws -> Int32 {
        let paths = try modelArguments(parsed, ["original", "quantized"], command: spec.name)
        if paths[0] == "-" && paths[1] == "-" { throw UsageError(message: "only one of <original> and <quantized> can be '-'") }
        var given: Double?
        if let text = parsed.value("--tolerance") {
            guard let t = Double(text), t.isFinite, t >= 0 else {
                throw UsageError(message: "invalid value '\(text)' for --tolerance; expected a non-negative number such as 0.1")
            }
            given = t
        }
        let manifestPath = parsed.value("--manifest")
        if manifestPath == "-" && paths.contains("-") { throw UsageError(message: "only one of <original>, <quantized> and --manifest can be '-'") }
        let comparison: ComparableMethod? = try parsed.value("--compare-method").map {
            try choice($0, option: "--compare-method", ["rtn": ComparableMethod.rtn, "mse": .mse], default: .rtn)
        }
        let manifest = try VerifyManifest.locate(quantized: paths[1], isFolder: isFolder(paths[1]), given: manifestPath)
        if manifestPath != nil && isFolder(paths[0]) != isFolder(paths[1]) {
            throw UsageError(message: "--manifest needs <original> and <quantized> of one kind (two files or two folders)")
        }
        // Single files are hashed on the way when a manifest is to be checked.
        func open(_ path: String) throws -> CheckpointSource {
            guard manifest != nil, !isFolder(path) else { return try CheckpointSource(path: path) }
            return try CheckpointSource(singleFile: try SafetensorsReader.randomAccess(path: path, hashing: true), path: path)
        }
        let byMethod = VerifyTolerance.forMethod(manifest?.method)
        let tolerance = given ?? byMethod.value
        let original = try open(paths[0])
        let quantized = try open(paths[1])
        let display = ProgressDisplay(label: "verify", parsed: parsed)
        let progress = display.job(fileCount: 1, bytesTotal: original.allTensors.reduce(0) { $0 + UInt64($1.info.byteCount) })
        progress?.startFile(paths[1], bytes: 0)
        var report = try VerifyJob.run(
            original: original, quantized: quantized, tolerance: tolerance, comparisonMethod: comparison, blockRule: manifest?.blockRule,
            fp8BlockSize: try QuantizeCommand.fp8BlockSize(parsed) ?? manifest?.fp8BlockSize, threads: try QuantizeCommand.threadCount(parsed), progress: progress)
        progress?.finishFile()
        display.finish()
        if given == nil { report.toleranceReason = byMethod.reason }
        if let manifest {
            report.manifest = ManifestUse(path: manifest.path, discovered: manifest.discovered, blockMethod: manifest.blockRule?.method, method: manifest.method)
            do {
                report.manifestFailures = try quantized.isFolder
                    ? ManifestCheck.folderFailures(manifest: manifest.document, folder: quantized)
                    : ManifestCheck.failures(
                        manifest: manifest.document, original: original.isFolder ? nil : try original.shards[0].reader.finish(), quantized: try quantized.shards[0].reader.finish(),
                        paths: (original.shards[0].reader.displayPath, quantized.shards[0].reader.displayPath))
                        .map { "\(manifest.path): \($0)" }
            } catch let error as ManifestCheck.InvalidManifest {
                throw FileError(path: manifest.path, cause: error)
            }
        }
        let displayPaths = (original: original.shards.count == 1 && !original.isFolder ? original.shards[0].reader.displayPath : paths[0],
                            quantized: quantized.shards.count == 1 && !quantized.isFolder ? quantized.shards[0].reader.displayPath : paths[1])
        let status = report.passed ? ExitStatus.success : report.comparable ? ExitStatus.checkFailed : ExitStatus.usageOrInputError
        if parsed.flag("--json") {
            Terminal.out(json(report).serialized(.pretty))
        } else {
            write(report, quiet: parsed.flag("--quiet"), to: Terminal.out)
        }
        if !report.comparable {
            Terminal.err("error: \(displayPaths.quantized) does not match \(displayPaths.original): \(report.mismatches[0])" + (report.mismatches.count > 1 ? " (and \(report.mismatches.count - 1) more)" : "") + "\n")
        }
        return status
    }

    /// The text report, handed to `write` in pieces: the table of a million tensors is never held.
    static func write(_ report: VerifyReport, quiet: Bool, to output: (String) -> Void) {
        let method = report.comparisonMethod
        var header = ["TENSOR", "KIND", "REL RMSE", "SQNR dB", "MAX ABS ERR"]
        if let method { header += ["\(method.rawValue.uppercased()) SQNR dB", "MSE VS \(method.rawValue.uppercased())"] }
        header.append("STATUS")
        let shown = report.tensors.indices.filter { !quiet || !report.tensors[$0].failures.isEmpty }
        func row(_ r: Int) -> [String] {
            guard r > 0 else { return header }
            let t = report.tensors[shown[r - 1]]
            let e = t.error
            var row = [
                t.name, t.kind.rawValue,
                e.map { Format.fixed($0.relativeRMSE, 5) } ?? "-",
                e.map { Format.fixed($0.sqnrDB, 2) } ?? "-",
                e.map { "\($0.maxAbsoluteError)" } ?? "-",
            ]
            if method != nil {
                let c = t.comparisonError
                row.append(c.map { Format.fixed($0.sqnrDB, 2) } ?? "-")
                row.append(e.flatMap { e in c.map { mseChange(e, $0) } } ?? "-")
            }
            return row + [t.failures.isEmpty ? "ok" : "FAIL: " + t.failures.joined(separator: "; ")]
        }
        if !shown.isEmpty { Format.writeTable(rowCount: shown.count + 1, row: row, to: output) }
        var text = ""
        if let method {
            var ours = QuantizationError()
            var theirs = QuantizationError()
            for t in report.tensors { if let e = t.error, let c = t.comparisonError { ours.merge(e); theirs.merge(c) } }
            text += "all NVFP4 weights: SQNR \(Format.fixed(ours.sqnrDB, 2)) dB vs \(Format.fixed(theirs.sqnrDB, 2)) dB with \(method.rawValue); total squared error \(mseChange(ours, theirs)) vs \(method.rawValue)\n"
        }
        if let manifest = report.manifest {
            text += manifest.summary + "\n"
        } else if !quiet {
            text += "manifest: none given or found beside the output: SHA-256 not checked, blocks checked against the tolerance only\n"
        }
        for m in report.mismatches { text += "MISMATCH: \(m)\n" }
        for m in report.manifestFailures { text += "MANIFEST: \(m)\n" }
        if let reason = report.toleranceReason, !quiet { text += "tolerance: \(report.tolerance), \(reason)\n" }
        let failed = report.tensors.filter { !$0.failures.isEmpty }.count
        let quantized = report.tensors.filter { $0.kind == .quantized }.count
        text += report.passed
            ? "ok: \(quantized) NVFP4 weights within tolerance \(report.tolerance), \(report.tensors.count - quantized) kept tensors identical\n"
            : "FAILED: \(failed) tensors failed, \(report.mismatches.count) mismatches" + (report.manifestFailures.isEmpty ? "" : ", manifest SHA-256 mismatch") + " (tolerance \(report.tolerance))\n"
        output(text)
    }

    static func json(_ report: VerifyReport) -> JSONValue {
        JSONReport.document([
            ("passed", .bool(report.passed)),
            ("tolerance", .number(report.tolerance)),
            ("tolerance_reason", report.toleranceReason.map { .string($0) } ?? .null),
            ("mismatches", .array(report.mismatches.map { .string($0) })),
            ("manifest_failures", .array(report.manifestFailures.map { .string($0) })),
            ("manifest", report.manifest.map { .object([
                ("path", .string($0.path)), ("found", .bool($0.discovered)), ("block_check", $0.blockMethod.map { .string($0.rawValue) } ?? .null),
            ]) } ?? .null),
            ("tensors", .array(report.tensors.map { t in
                var members: [(key: String, value: JSONValue)] = [
                    ("name", .string(t.name)), ("kind", .string(t.kind.rawValue)), ("shape", .array(t.shape.map { .int($0) })),
                ]
                if let e = t.error {
                    members.append(("relative_rmse", .finite(e.relativeRMSE)))
                    members.append(("sqnr_db", .finite(e.sqnrDB)))
                    members.append(("max_abs_error", .finite(e.maxAbsoluteError)))
                }
                if let method = report.comparisonMethod, let c = t.comparisonError {
                    members.append(("comparison", .object([
                        ("method", .string(method.rawValue)),
                        ("relative_rmse", .finite(c.relativeRMSE)),
                        ("sqnr_db", .finite(c.sqnrDB)),
                        ("max_abs_error", .finite(c.maxAbsoluteError)),
                        ("error_square_sum_ratio", .finite(t.error.map { $0.errorSquareSum / c.errorSquareSum } ?? .nan)),
                    ])))
                }
                members.append(("passed", .bool(t.failures.isEmpty)))
                members.append(("failures", .array(t.failures.map { .string($0) })))
                return .object(members)
            })),
        ])
    }

    /// The change of the total squared error against the comparison, as a signed percentage.
    static func mseChange(_ ours: QuantizationError, _ theirs: QuantizationError) -> String {
        guard theirs.errorSquareSum > 0 else { return ours.errorSquareSum == 0 ? "+0.0%" : "-" }
        let change = (ours.errorSquareSum / theirs.errorSquareSum - 1) * 100
        return (change >= 0 ? "+" : "") + Format.fixed(change, 1) + "%"
    }
}
