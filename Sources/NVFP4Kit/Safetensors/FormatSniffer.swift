/// What a file that is not safetensors most likely is, from its first bytes, so that an error can
/// say "this is JSON" instead of "header length 8243107567896 exceeds the limit".
public enum FormatSniffer {
    /// Whether `bytes` start like a safetensors file: a little-endian header length that fits in
    /// them, then `{`. (No JSON, GGUF or llama.cpp `.dat` file does: their first 8 bytes read as
    /// a length far beyond the file, or byte 8 is not `{`.)
    public static func looksLikeSafetensors(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count > 8 else { return false }
        let length = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        return length >= 2 && length <= UInt64(bytes.count - 8) && bytes[8] == UInt8(ascii: "{")
    }

    /// A description and a hint for the first bytes of a file, or `nil` when they match no known format.
    public static func recognize(prefix bytes: [UInt8]) -> String? {
        func starts(_ magic: [UInt8]) -> Bool { bytes.count >= magic.count && Array(bytes.prefix(magic.count)) == magic }
        if starts(Array("GGUF".utf8)) { return "this is a GGUF file (llama.cpp), not safetensors; start from the Hugging Face safetensors checkpoint" }
        if starts([0x28, 0xB5, 0x2F, 0xFD]) { return "this is zstd-compressed; name it *.zst or pipe it through 'zstd -dc'" }
        if starts([0x1F, 0x8B]) { return "this is gzip-compressed; decompress it first ('gzip -dc')" }
        if starts(Array("PK\u{3}\u{4}".utf8)) { return "this is a zip archive (a PyTorch .bin/.pt checkpoint?); convert it with transformers' save_pretrained(safe_serialization=True)" }
        if bytes.count >= 2, bytes[0] == 0x80, (2...5).contains(bytes[1]) { return "this is a Python pickle (a PyTorch .bin/.pt checkpoint?); convert it with transformers' save_pretrained(safe_serialization=True)" }
        if starts(Array("version https://git-lfs".utf8.prefix(bytes.count))) && bytes.count >= 8 { return "this is a Git LFS pointer, not the file; fetch the file ('git lfs pull' or 'hf download')" }
        let text = bytes.drop { [0x20, 0x09, 0x0A, 0x0D, 0xEF, 0xBB, 0xBF].contains($0) }
        if let first = text.first, first == UInt8(ascii: "{") || first == UInt8(ascii: "[") { return "this is a JSON file, not safetensors" }
        return nil
    }
}
