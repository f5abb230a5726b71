import Glibc
import NVFP4Kit

/// Shows a job's progress on stderr. On a terminal: one line redrawn in place at most ten times a
/// second — files done of all, percent, bytes, rate, a smoothed time left, and the tensor at work —
/// fitted to the terminal's width. With `--progress` off a terminal (CI logs): one line per file
/// when it is done. Otherwise, and with `--quiet`, nothing.
final class ProgressDisplay {
    enum Mode { case off, terminal, lines }

    let label: String
    let mode: Mode
    private var lastDraw = -1.0
    private var drewSomething = false
    private var sample: (time: Double, bytes: UInt64)?
    /// Bytes per second, an exponential moving average over samples at least half a second apart,
    /// so the time left does not jump with each tensor's size.
    private var smoothedRate: Double?

    init(label: String, parsed: ParsedArguments) {
        self.label = label
        if parsed.flag("--quiet") {
            mode = .off
        } else if Terminal.stderrIsTerminal {
            mode = .terminal
        } else {
            mode = parsed.flag("--progress") ? .lines : .off
        }
    }

    /// A progress for a job over `fileCount` files and `bytesTotal` bytes, or `nil` when nothing is shown.
    func job(fileCount: Int, bytesTotal: UInt64) -> JobProgress? {
        guard mode != .off else { return nil }
        return JobProgress(fileCount: fileCount, bytesTotal: bytesTotal) { [self] snapshot in show(snapshot) }
    }

    /// Clears the redrawn line (the summary follows).
    func finish() {
        if mode == .terminal && drewSomething { Terminal.err("\r\u{1B}[K") }
    }

    private func show(_ s: JobProgress.Snapshot) {
        switch mode {
        case .off: return
        case .lines:
            guard s.event == .fileFinished else { return }
            let rate = s.fileElapsed > 0 ? Double(s.fileBytesDone) / s.fileElapsed : 0
            Terminal.err("\(label) \(s.fileIndex + 1)/\(s.fileCount) \(s.file): \(Format.bytes(s.fileBytesDone)) in \(Format.fixed(s.fileElapsed, 1)) s (\(Format.bytes(UInt64(rate)))/s)\n")
        case .terminal:
            updateRate(s)
            guard s.event != .advanced || s.elapsed - lastDraw >= 0.1 else { return }
            lastDraw = s.elapsed
            drewSomething = true
            Terminal.err("\r\u{1B}[K" + ProgressDisplay.fit(line(s), width: ProgressDisplay.terminalWidth() - 1))
        }
    }

    private func updateRate(_ s: JobProgress.Snapshot) {
        guard let previous = sample else {
            sample = (s.elapsed, s.bytesDone)
            return
        }
        let dt = s.elapsed - previous.time
        guard dt >= 0.5 else { return }
        let rate = Double(s.bytesDone - previous.bytes) / dt
        smoothedRate = smoothedRate.map { 0.7 * $0 + 0.3 * rate } ?? rate
        sample = (s.elapsed, s.bytesDone)
    }

    /// `quantize 2/3 model-00002-of-00003.safetensors  41%  1.2 GiB/2.9 GiB  310 MiB/s  ETA 0:05  model.layers.3.mlp.up_proj.weight`
    func line(_ s: JobProgress.Snapshot) -> String {
        let percent = s.bytesTotal > 0 ? Int(s.bytesDone * 100 / s.bytesTotal) : 100
        var parts = [label]
        if s.fileCount > 1 { parts.append("\(s.fileIndex + 1)/\(s.fileCount) \(s.file)") }
        parts.append("\(percent)%")
        parts.append("\(Format.bytes(s.bytesDone))/\(Format.bytes(s.bytesTotal))")
        if let rate = smoothedRate, rate > 0 {
            parts.append("\(Format.bytes(UInt64(rate)))/s")
            parts.append("ETA " + ProgressDisplay.duration(Double(s.bytesTotal - min(s.bytesTotal, s.bytesDone)) / rate))
        }
        if !s.item.isEmpty { parts.append(s.item) }
        return parts.joined(separator: "  ")
    }

    /// `0:05`, `12:30`, `1:02:03`.
    static func duration(_ seconds: Double) -> String {
        let total = Int(seconds.rounded(.up))
        let (h, m, sec) = (total / 3600, total / 60 % 60, total % 60)
        let two: (Int) -> String = { $0 < 10 ? "0\($0)" : "\($0)" }
        return h > 0 ? "\(h):\(two(m)):\(two(sec))" : "\(m):\(two(sec))"
    }

    /// `text` cut to `width` characters (the tensor name goes first).
    static func fit(_ text: String, width: Int) -> String {
        text.count <= width ? text : String(text.prefix(max(0, width - 1))) + "…"
    }

    /// stderr's terminal width, else `COLUMNS`, else 80.
    static func terminalWidth() -> Int {
        var size = winsize()
        if ioctl(2, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        if let columns = getenv("COLUMNS").flatMap({ Int(String(cString: $0)) }), columns > 0 { return columns }
        return 80
    }
}
