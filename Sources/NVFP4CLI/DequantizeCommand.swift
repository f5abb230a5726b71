import NVFP4Kit

/// `nvfp4 dequantize`.
enum DequantizeCommand {
    static let spec = CommandSpec(
        name: "dequantize",
        overview: "Expand NVFP4 weights back to the dense checkpoint they came from.",
        arguments: [ArgumentSpec(name: "<quantized>", help: "An NVFP4 checkpoint in any layout (torchao, compressed-tensors, ModelOpt): a .safetensors or .safetensors.zst file, '-' for stdin, a model folder (then -o names the output folder), or a model id in the local Hub cache (org/name[@revision]).")],
        options: [.output.required(), .dtype, .io, .threads, .force, .quiet, .progress],
        discussion: """
            Every NVFP4 module becomes its original tensor (<m>.weight; torchao's stacked experts their [E, N, K] \
            tensor) with values code x block scale x per-tensor scale, equal to torchao's NVFP4Tensor.dequantize(dtype) \
            bit for bit; other tensors are copied byte for byte; no scale tensor is left. A folder gets its shards, \
            a rewritten index, config.json without quantization_config and the other files (not hf_quant_config.json \
            or the quantize manifest). See docs/commands-by-layout.md.
            """,
        binaryOutput: .output)

    static func run(_ parsed: ParsedArguments, _ invocation: [String]) throws -> Int32 {
        let started = JobProgress.now()
        let input = try modelArguments(parsed, ["quantized"], command: spec.name)[0]
        guard let output = parsed.value("--output") else { throw UsageError(message: "missing -o <output>; see 'nvfp4 dequantize --help'") }
        let dtype: DType? = try choice(parsed.value("--dtype"), option: "--dtype", ["bf16": .bf16, "f32": .f32], default: nil)
        let force = parsed.flag("--force")
        let folderInput = input != "-" && isFolder(input)
        if folderInput && output == "-" { throw UsageError(message: "a model folder needs -o <output folder>") }
        try refuseOverwritingInput(input: input, outputs: [output])
        try refuseExistingOutputs([output], force: force, singleFile: !folderInput)
        removeCrashLeftovers(near: [output], quiet: parsed.flag("--quiet"))
        let threads = try QuantizeCommand.threadCount(parsed)
        let io = try QuantizeCommand.outputIO(parsed)
        let source = try CheckpointSource(path: input)
        let result: DequantizeJob.Result
        let display = ProgressDisplay(label: "dequantize", parsed: parsed)
        let total = source.allTensors.reduce(UInt64(0)) { $0 + UInt64($1.info.byteCount) }
        let progress = display.job(fileCount: source.shards.count, bytesTotal: total)
        if folderInput {
            result = try DequantizeJob.runFolder(source: source, output: output, replace: force, dtype: dtype, threads: threads, io: io, progress: progress)
        } else {
            let sink = try OutputCompression.parse(nil, output: output).makeSink(path: output, replace: force, threads: threads, io: io)
            progress?.startFile(output == "-" ? "stdout" : output, bytes: total)
            result = try DequantizeJob.run(source: source, sink: sink, dtype: dtype, threads: threads, progress: progress)
            progress?.finishFile()
        }
        display.finish()
        if !parsed.flag("--quiet") {
            let seconds = JobProgress.now() - started
            let bytesIn = source.shards.reduce(UInt64(0)) { $0 + (fileSize($1.path) ?? 0) }
            let bytesOut = output == "-" ? nil : result.files.reduce(UInt64(0)) { $0 + (fileSize($1) ?? 0) }
            var line = "dequantized \(result.dequantized.count) NVFP4 weights"
            line += output == "-" ? " to stdout" : ": wrote \(result.files.count == 1 ? "" : "\(result.files.count) files, ")\(Format.bytes(bytesIn)) -> \(Format.bytes(bytesOut ?? 0)) in \(output)"
            line += " in \(Format.fixed(seconds, 1)) s"
            Terminal.err(line + "\n")
        }
        return ExitStatus.success
    }
}
