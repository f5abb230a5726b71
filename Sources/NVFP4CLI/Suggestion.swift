/// "did you mean …?" for a mistyped command, option or choice.
enum Suggestion {
    /// `did you mean 'quantize'?` for the candidate nearest to `word`, or `nil` when none is near.
    ///
    /// Near: an edit distance (insertions, deletions, substitutions and swaps of neighbours) of at
    /// most a third of the word's length (at least 1, at most 3), or the word is the start of exactly
    /// one candidate (`--thr` → `--threads`).
    static func didYouMean(_ word: String, among candidates: [String]) -> String? {
        nearest(word, among: candidates).map { "did you mean '\($0)'?" }
    }

    /// The candidate nearest to `word` (the first of equals, in the order given), if any is near.
    static func nearest(_ word: String, among candidates: [String]) -> String? {
        let stem = word.drop(while: { $0 == "-" })
        let limit = min(3, max(1, stem.count / 3))
        var best: (candidate: String, distance: Int)?
        for candidate in candidates where candidate != word {
            let d = editDistance(word, candidate)
            if d <= limit && d < (best?.distance ?? .max) { best = (candidate, d) }
        }
        if let best { return best.candidate }
        let prefixed = candidates.filter { $0.hasPrefix(word) && stem.count >= 2 }
        return prefixed.count == 1 ? prefixed[0] : nil
    }

    /// The optimal-string-alignment distance: insertions, deletions, substitutions and swaps of
    /// adjacent characters each cost 1 (`fromat` → `format` is 1).
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous2 = [Int](repeating: 0, count: b.count + 1)
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    current[j] = min(current[j], previous2[j - 2] + 1)
                }
            }
            (previous2, previous, current) = (previous, current, previous2)
        }
        return previous[b.count]
    }
}
