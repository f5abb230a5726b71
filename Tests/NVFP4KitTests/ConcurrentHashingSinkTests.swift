import Crypto
import NVFP4Kit
import Testing

/// The output hash computed beside the writing equals a one-shot SHA-256 of what was written, for
/// any mix of small (copied) and large (waited-for) writes.
@Suite struct ConcurrentHashingSinkTests {
    @Test func digestAndBytesMatchAOneShotHash() throws {
        var rng = SystemRandomNumberGenerator()
        let sizes = [0, 1, 7, ConcurrentHashingSinkTests.limit, ConcurrentHashingSinkTests.limit + 1, 3 << 20, 12, 1 << 20, 5]
        var expected: [UInt8] = []
        let memory = MemorySink()
        let sink = ConcurrentHashingSink(wrapping: memory)
        for size in sizes {
            // A buffer reused (and overwritten) after every write, as the wave buffers are.
            var buffer = [UInt8](repeating: 0, count: size)
            for i in 0..<size { buffer[i] = UInt8.random(in: 0...255, using: &rng) }
            expected += buffer
            try buffer.withUnsafeBytes { try sink.write($0) }
            for i in 0..<size { buffer[i] = 0xEE }
        }
        let sealed = try sink.seal()
        try sink.publish()
        #expect(memory.bytes == expected)
        #expect(sealed.byteCount == UInt64(expected.count))
        let oneShot = SHA256.hash(data: expected).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        #expect(sealed.sha256 == oneShot)
    }

    static let limit = 1 << 16
}
