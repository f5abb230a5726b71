import Glibc

/// Text output on stdout and stderr, written with `write(2)` so it never interleaves with
/// buffered stdio.
enum Terminal {
    /// Writes `text` to stdout.
    static func out(_ text: String) { writeAll(1, text) }

    /// Writes `text` to stderr.
    static func err(_ text: String) { writeAll(2, text) }

    /// Whether stderr is an interactive terminal (progress is shown only then).
    static var stderrIsTerminal: Bool { isatty(2) == 1 }

    /// Whether stdout is an interactive terminal (a binary checkpoint is never written there).
    static var stdoutIsTerminal: Bool { isatty(1) == 1 }

    /// The width help is wrapped to: `COLUMNS` if set, else the terminal's of stdout or stderr
    /// (`TIOCGWINSZ`), else 80; never below 40.
    static var width: Int {
        if let text = getenv("COLUMNS").map({ String(cString: $0) }), let n = Int(text), n > 0 { return max(40, n) }
        for fd: Int32 in [1, 2] {
            var size = winsize()
            if ioctl(fd, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 { return max(40, Int(size.ws_col)) }
        }
        return 80
    }

    private static func writeAll(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                // stdout's reader is gone and SIGPIPE is ignored: stop quietly, non-zero, as SIGPIPE would.
                if errno == EPIPE && fd == 1 { exit(ExitStatus.brokenPipe) }
                return
            }
            offset += n
        }
        bytes.removeAll()
    }
}

/// Number formatting without Foundation.
enum Format {
    /// `value` with `decimals` digits after the point (`0.0934`).
    static func fixed(_ value: Double, _ decimals: Int) -> String {
        guard value.isFinite else { return value > 0 ? "inf" : value < 0 ? "-inf" : "nan" }
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let negative = value < 0
        let scaled = (value.magnitude * scale).rounded()
        let whole = UInt64(scaled / scale)
        let fraction = UInt64(scaled - Double(whole) * scale)
        var text = String(whole)
        if decimals > 0 {
            let digits = String(fraction)
            text += "." + String(repeating: "0", count: decimals - digits.count) + digits
        }
        return negative && scaled != 0 ? "-" + text : text
    }

    /// A byte count for people (`1.5 MiB`).
    static func bytes(_ count: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(count) B" : "\(fixed(value, 1)) \(units[unit])"
    }

    /// Columns padded to their widest cell.
    static func table(_ rows: [[String]]) -> String {
        var text = ""
        writeTable(rowCount: rows.count, row: { rows[$0] }) { text += $0 }
        return text
    }

    /// ``table(_:)`` for rows made on demand: one pass measures the columns, a second hands the
    /// lines to `write` about a megabyte at a time, so a million rows are never held.
    static func writeTable(rowCount: Int, row: (Int) -> [String], to write: (String) -> Void) {
        guard rowCount > 0 else { return }
        var widths = [Int](repeating: 0, count: row(0).count)
        for r in 0..<rowCount { for (i, cell) in row(r).enumerated() { widths[i] = max(widths[i], cell.count) } }
        var text = ""
        for r in 0..<rowCount {
            let cells = row(r)
            var line = ""
            for (i, cell) in cells.enumerated() {
                line += i == cells.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count + 2)
            }
            while line.hasSuffix(" ") { line.removeLast() }
            text += line + "\n"
            if text.utf8.count >= 1 << 20 {
                write(text)
                text = ""
            }
        }
        if !text.isEmpty { write(text) }
    }
}
