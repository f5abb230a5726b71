// See include/nvfp4_kernel.h. The arithmetic mirrors NVFP4Codec's scalar definition (see
// Sources/NVFP4Kit/Codec/NVFP4Codec.swift and docs/format.md); CodecTests and
// TorchAOBitExactTests check every byte against torchao's own output.
#include "nvfp4_kernel.h"

#include <string.h>

#include "kernel_vectors.h"

// RN32(1/6) = 0x3E2AAAAB, the reciprocal CUDA multiplies by.
#define SIX_RECIPROCAL_BITS 0x3E2AAAABu
// e4m3's smallest normal (2^-6) and largest finite value (448), as fp32 bit patterns.
#define E4M3_SMALLEST_NORMAL_BITS 0x3C800000u
#define E4M3_MAX_BITS 0x43E00000u

INLINE f32x16 as_f32(u32x16 v) { return (f32x16)v; }
INLINE u32x16 as_u32(f32x16 v) { return (u32x16)v; }

/// Lane-wise `mask ? a : b` (mask lanes all ones or all zeros).
INLINE u32x16 select_u32(i32x16 mask, u32x16 a, u32x16 b) {
    u32x16 m = (u32x16)mask;
    return (a & m) | (b & ~m);
}
INLINE f32x16 select_f32(i32x16 mask, f32x16 a, f32x16 b) { return as_f32(select_u32(mask, as_u32(a), as_u32(b))); }

INLINE u16x16 load_u16x16(const uint8_t *p) { u16x16 v; memcpy(&v, p, sizeof v); return v; }
INLINE u16x32 load_u16x32(const uint8_t *p) { u16x32 v; memcpy(&v, p, sizeof v); return v; }
INLINE u32x16 load_u32x16(const uint8_t *p) { u32x16 v; memcpy(&v, p, sizeof v); return v; }
INLINE f64x16 load_f64x16(const double *p) { f64x16 v; memcpy(&v, p, sizeof v); return v; }
INLINE f32x16 load_f32x16(const float *p) { f32x16 v; memcpy(&v, p, sizeof v); return v; }

// MARK: Block maxima

// The maxima of 16 blocks by a transpose-fold: each level merges pairs of vectors, keeping the
// larger of matching halves, until lane i holds block i's maximum (about 2 shuffles and one max
// per block instead of a 4-level horizontal reduction per block).
#define FOLD1(T, a, b) __builtin_elementwise_max( \
    __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23), \
    __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31))
#define FOLD2(T, a, b) __builtin_elementwise_max( \
    __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27), \
    __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31))
#define FOLD3(T, a, b) __builtin_elementwise_max( \
    __builtin_shufflevector(a, b, 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29), \
    __builtin_shufflevector(a, b, 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31))
#define FOLD4(T, a, b) __builtin_elementwise_max( \
    __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), \
    __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31))

#define FOLD_ALL(T, v, out) do { \
    T c0 = FOLD1(T, v[0], v[1]), c1 = FOLD1(T, v[2], v[3]), c2 = FOLD1(T, v[4], v[5]), c3 = FOLD1(T, v[6], v[7]); \
    T c4 = FOLD1(T, v[8], v[9]), c5 = FOLD1(T, v[10], v[11]), c6 = FOLD1(T, v[12], v[13]), c7 = FOLD1(T, v[14], v[15]); \
    T d0 = FOLD2(T, c0, c1), d1 = FOLD2(T, c2, c3), d2 = FOLD2(T, c4, c5), d3 = FOLD2(T, c6, c7); \
    T e0 = FOLD3(T, d0, d1), e1 = FOLD3(T, d2, d3); \
    out = FOLD4(T, e0, e1); \
} while (0)

/// fp32 bit patterns of the magnitudes' maxima of the 16 bf16 blocks at `p`.
INLINE u32x16 block_maxima_bf16(const uint8_t *p) {
    u16x16 v[16];
    for (int i = 0; i < 16; i++) v[i] = load_u16x16(p + 32 * i) & (uint16_t)0x7FFF;
    u16x16 m;
    FOLD_ALL(u16x16, v, m);
    return __builtin_convertvector(m, u32x16) << 16;
}

/// fp32 bit patterns of the magnitudes' maxima of the 16 fp32 blocks at `p`.
INLINE u32x16 block_maxima_f32(const uint8_t *p) {
    u32x16 v[16];
    for (int i = 0; i < 16; i++) v[i] = load_u32x16(p + 64 * i) & 0x7FFFFFFFu;
    u32x16 m;
    FOLD_ALL(u32x16, v, m);
    return m;
}

// MARK: Scales

/// e4m3 codes, element multipliers `RN(RN(1/pts)/s)` (or `RN(1/s)`) and dequantization factors
/// `RN(pts·s)` (or `s`) of 16 blocks, with torchao's fp32 operations lane by lane.
INLINE void block_scales(u32x16 maxima, nvfp4_scale_params p, u32x16 *codes, f32x16 *reciprocals, f32x16 *factors) {
    f32x16 amax = as_f32(maxima);
    f32x16 block_value = p.cpu_division ? amax / 6.0f : amax * as_f32((u32x16)SIX_RECIPROCAL_BITS);
    f32x16 v = p.two_level ? block_value / p.pts : block_value;
    // E4M3.encodeClamped: min(max(v, 2^-6), 448), then round to nearest even on 3 mantissa bits.
    f32x16 low = as_f32((u32x16)E4M3_SMALLEST_NORMAL_BITS);
    f32x16 high = as_f32((u32x16)E4M3_MAX_BITS);
    f32x16 clamped = select_f32(low >= v, low, v);
    clamped = select_f32(high < clamped, high, clamped);
    u32x16 bits = as_u32(clamped);
    u32x16 rounded = (bits + 0x7FFFFu + ((bits >> 20) & 1u)) >> 20;
    u32x16 c = (rounded - 960u) & 0xFFu;
    // E4M3.decode of the normal codes 0x08…0x7E that a clamped value gives.
    f32x16 decoded = as_f32((((c & 0x7Fu) + 960u) << 20) | ((c & 0x80u) << 24));
    *codes = c;
    if (p.two_level) {
        *reciprocals = p.rpts / decoded;
        *factors = p.pts * decoded;
    } else {
        *reciprocals = 1.0f / decoded;
        *factors = decoded;
    }
}

// MARK: Elements

/// Rounds 16 magnitudes (already multiplied by the reciprocal) to e2m1: codes 0…7 and values.
///
/// Adding M = 2^22, 2^23 or 2^24 (chosen from the value's binade) makes the FPU round onto the
/// e2m1 grid with ties to even, without compares: `t − M` is the e2m1 value and
/// `bits(t) − bits(M)` plus a binade offset is the code.
INLINE void round_e2m1(f32x16 y, u32x16 *codes, f32x16 *values) {
    f32x16 six = 6.0f;
    f32x16 a = select_f32(y > six, six, y);  // torchao clamps to ±6 first
    u32x16 e = as_u32(a) & 0x7F800000u;
    u32x16 one = 0x3F800000u;
    u32x16 m_bits = select_u32(e < one, one, e) + 0x0B000000u;
    f32x16 m = as_f32(m_bits);
    f32x16 t = a + m;
    // Steps above M, plus 2 codes per binade above [1, 2): (m_bits >> 22) − 298 is 0, 2 or 4.
    *codes = (as_u32(t) - (m_bits - (m_bits >> 22) + 298u)) & 7u;
    *values = t - m;
}

/// One group's running error sums (fp32 within a group). Squares are taken of values multiplied by
/// `scale`, a power of two that brings the group's largest magnitude into [1, 2), so they neither
/// overflow (weights near the fp32 maximum) nor lose precision to subnormals; the flush into the
/// fp64 lanes multiplies by 1/scale² again, exactly.
typedef struct {
    f32x16 signal, error, max_abs;
    float scale;
    double unscale_squared;
} group_error;

/// A group's square-sum scale from its blocks' maxima (fp32 bit patterns of magnitudes).
INLINE group_error group_error_start(u32x16 maxima, f32x16 max_abs) {
    uint32_t top = __builtin_reduce_max(maxima);
    int k = (int)((top >> 23) & 0xFF) - 127;  // the unbiased exponent of the largest magnitude
    if (k < -126) k = -126;
    if (k > 126) k = 126;
    uint32_t scale_bits = (uint32_t)(127 - k) << 23;
    uint64_t unscale_bits = (uint64_t)(1023 + 2 * k) << 52;
    float scale;
    double unscale_squared;
    memcpy(&scale, &scale_bits, sizeof scale);
    memcpy(&unscale_squared, &unscale_bits, sizeof unscale_squared);
    group_error g = {0.0f, 0.0f, max_abs, scale, unscale_squared};
    return g;
}

/// Adds a finished group to the fp64 lanes.
INLINE void group_error_flush(const group_error *g, f64x16 *signal_sum, f64x16 *error_sum, f32x16 *max_abs) {
    *max_abs = g->max_abs;
    *signal_sum += __builtin_convertvector(g->signal, f64x16) * g->unscale_squared;
    *error_sum += __builtin_convertvector(g->error, f64x16) * g->unscale_squared;
}

/// Accumulates the scaled squares of one block pair's magnitudes `ae`, `ao` and errors `de`, `dodd`.
INLINE void group_error_add(group_error *g, f32x16 ae, f32x16 ao, f32x16 de, f32x16 dodd) {
    f32x16 se = ae * g->scale, so = ao * g->scale, te = de * g->scale, to = dodd * g->scale;
    g->signal += se * se;
    g->signal += so * so;
    g->error += te * te;
    g->error += to * to;
    f32x16 me = as_f32(as_u32(de) & 0x7FFFFFFFu);
    f32x16 mo = as_f32(as_u32(dodd) & 0x7FFFFFFFu);
    g->max_abs = select_f32(me > g->max_abs, me, g->max_abs);
    g->max_abs = select_f32(mo > g->max_abs, mo, g->max_abs);
}

/// Quantizes blocks 2j and 2j+1 given as even and odd elements (fp32 bit patterns; lanes 0–7 from
/// the first block, 8–15 from the second); stores the 16 packed bytes at `out`.
INLINE void block_pair(u32x16 evens, u32x16 odds, f32x16 reciprocal, f32x16 factor, uint8_t *out, group_error *g) {
    f32x16 ae = as_f32(evens & 0x7FFFFFFFu);
    f32x16 ao = as_f32(odds & 0x7FFFFFFFu);
    u32x16 ce, co;
    f32x16 qe, qo;
    round_e2m1(ae * reciprocal, &ce, &qe);
    round_e2m1(ao * reciprocal, &co, &qo);
    // Even element → low nibble, odd → high nibble; the sign of x is bit 3 of its nibble.
    u32x16 bytes = ce | ((evens >> 28) & 0x08u) | (co << 4) | ((odds >> 24) & 0x80u);
    u8x16 narrow = __builtin_convertvector(bytes, u8x16);
    memcpy(out, &narrow, sizeof narrow);
    // |x − x̂| = | |x| − q·factor |, since x̂ has the sign of x.
    f32x16 de = ae - qe * factor;
    f32x16 dodd = ao - qo * factor;
    group_error_add(g, ae, ao, de, dodd);
}

/// Blocks 2j and 2j+1 of the group at `p` as even and odd elements (fp32 bit patterns; lanes 0–7
/// from block 2j, 8–15 from block 2j+1).
INLINE void load_pair(const uint8_t *p, int j, int bf16, u32x16 *evens, u32x16 *odds) {
    if (bf16) {
        // Each 32-bit word holds an even element (low half) and an odd one (high half).
        u32x16 w = load_u32x16(p + 64 * j);
        *evens = w << 16;
        *odds = w & 0xFFFF0000u;
    } else {
        u32x16 a = load_u32x16(p + 128 * j), b = load_u32x16(p + 128 * j + 64);
        *evens = __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        *odds = __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    }
}

/// Lanes 0–7 from `v[2j]`, lanes 8–15 from `v[2j + 1]`.
INLINE f32x16 pair_broadcast(f32x16 v, int j) {
    float a = v[2 * j], b = v[2 * j + 1];
    f32x16 r = {a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b};
    return r;
}

INLINE void quantize_body(
    const void *source, int element_bytes, size_t groups, nvfp4_scale_params params,
    uint8_t *packed, uint8_t *codes_out, nvfp4_error_lanes *lanes)
{
    const uint8_t *p = (const uint8_t *)source;
    f64x16 signal_sum = load_f64x16(lanes->signal);
    f64x16 error_sum = load_f64x16(lanes->error);
    f32x16 max_abs = load_f32x16(lanes->max_abs);
    const int bf16 = element_bytes == 2;
    const size_t group_bytes = (size_t)256 * (size_t)element_bytes;
    for (size_t g = 0; g < groups; g++, p += group_bytes, packed += 128, codes_out += 16) {
        u32x16 maxima = bf16 ? block_maxima_bf16(p) : block_maxima_f32(p);
        u32x16 codes;
        f32x16 reciprocals, factors;
        block_scales(maxima, params, &codes, &reciprocals, &factors);
        u8x16 narrow = __builtin_convertvector(codes, u8x16);
        memcpy(codes_out, &narrow, sizeof narrow);
        group_error ge = group_error_start(maxima, max_abs);
#pragma clang loop unroll(full)
        for (int j = 0; j < 8; j++) {
            u32x16 evens, odds;
            load_pair(p, j, bf16, &evens, &odds);
            block_pair(evens, odds, pair_broadcast(reciprocals, j), pair_broadcast(factors, j), packed + 16 * j, &ge);
        }
        group_error_flush(&ge, &signal_sum, &error_sum, &max_abs);
    }
    memcpy(lanes->signal, &signal_sum, sizeof signal_sum);
    memcpy(lanes->error, &error_sum, sizeof error_sum);
    memcpy(lanes->max_abs, &max_abs, sizeof max_abs);
}

// MARK: Comparison (verify)

/// e2m1 magnitudes of codes 0…7: {0, 0.5, 1, 1.5, 2, 3, 4, 6}, without a table.
INLINE f32x16 e2m1_magnitude(u32x16 c) {
    u32x16 normal = (((c >> 1) + 126u) << 23) | ((c & 1u) << 22);
    u32x16 small = select_u32(c == 1u, (u32x16)0x3F000000u, (u32x16)0u);
    return as_f32(select_u32(c >= 2u, normal, small));
}

/// Decodes 16 e4m3 codes exactly (subnormals included; 0x7F/0xFF give NaN).
INLINE f32x16 e4m3_decode(u32x16 c) {
    u32x16 e = (c >> 3) & 15u, m = c & 7u;
    u32x16 normal = ((e + 120u) << 23) | (m << 20);
    f32x16 subnormal = __builtin_convertvector(m, f32x16) * 0.001953125f;  // m × 2^-9, exact
    u32x16 magnitude = select_u32(e == 0u, as_u32(subnormal), normal);
    magnitude = select_u32((c & 0x7Fu) == 0x7Fu, (u32x16)0x7FC00000u, magnitude);
    return as_f32(magnitude | ((c & 0x80u) << 24));
}

/// The error of blocks 2j and 2j+1 against their packed bytes: the same lanes and the same
/// operation order as `block_pair`, so a file we wrote gives the sums recorded while quantizing.
INLINE void compare_pair(u32x16 evens, u32x16 odds, const uint8_t *packed, f32x16 factor, group_error *g) {
    u8x16 narrow;
    memcpy(&narrow, packed, sizeof narrow);
    u32x16 bytes = __builtin_convertvector(narrow, u32x16);
    u32x16 ne = bytes & 0x0Fu, no = bytes >> 4;
    // x̂ = ±q·factor with the nibble's sign; x − x̂ equals ±(|x| − q·factor) when the signs agree,
    // so its square is the quantizer's bit for bit.
    f32x16 qe = as_f32(as_u32(e2m1_magnitude(ne & 7u) * factor) | ((ne & 8u) << 28));
    f32x16 qo = as_f32(as_u32(e2m1_magnitude(no & 7u) * factor) | ((no & 8u) << 28));
    f32x16 xe = as_f32(evens), xo = as_f32(odds);
    f32x16 de = xe - qe;
    f32x16 dodd = xo - qo;
    f32x16 ae = as_f32(evens & 0x7FFFFFFFu), ao = as_f32(odds & 0x7FFFFFFFu);
    group_error_add(g, ae, ao, de, dodd);
}

INLINE void compare_body(
    const void *source, int element_bytes, size_t groups, const uint8_t *packed, const uint8_t *codes,
    nvfp4_scale_params params, nvfp4_error_lanes *lanes)
{
    const uint8_t *p = (const uint8_t *)source;
    f64x16 signal_sum = load_f64x16(lanes->signal);
    f64x16 error_sum = load_f64x16(lanes->error);
    f32x16 max_abs = load_f32x16(lanes->max_abs);
    const int bf16 = element_bytes == 2;
    const size_t group_bytes = (size_t)256 * (size_t)element_bytes;
    for (size_t g = 0; g < groups; g++, p += group_bytes, packed += 128, codes += 16) {
        u8x16 code_bytes;
        memcpy(&code_bytes, codes, sizeof code_bytes);
        f32x16 scales = e4m3_decode(__builtin_convertvector(code_bytes, u32x16));
        f32x16 factors = params.two_level ? params.pts * scales : scales;
        // The same maxima as the quantizer's, for the same square-sum scale.
        u32x16 maxima = bf16 ? block_maxima_bf16(p) : block_maxima_f32(p);
        group_error ge = group_error_start(maxima, max_abs);
#pragma clang loop unroll(full)
        for (int j = 0; j < 8; j++) {
            u32x16 evens, odds;
            load_pair(p, j, bf16, &evens, &odds);
            compare_pair(evens, odds, packed + 16 * j, pair_broadcast(factors, j), &ge);
        }
        group_error_flush(&ge, &signal_sum, &error_sum, &max_abs);
    }
    memcpy(lanes->signal, &signal_sum, sizeof signal_sum);
    memcpy(lanes->error, &error_sum, sizeof error_sum);
    memcpy(lanes->max_abs, &max_abs, sizeof max_abs);
}

INLINE uint16_t bf16_max_body(const void *source, size_t count) {
    const uint8_t *p = (const uint8_t *)source;
    u16x32 m0 = 0, m1 = 0, m2 = 0, m3 = 0;
    size_t i = 0;
    for (; i + 128 <= count; i += 128) {
        m0 = __builtin_elementwise_max(m0, load_u16x32(p + 2 * i) & (uint16_t)0x7FFF);
        m1 = __builtin_elementwise_max(m1, load_u16x32(p + 2 * i + 64) & (uint16_t)0x7FFF);
        m2 = __builtin_elementwise_max(m2, load_u16x32(p + 2 * i + 128) & (uint16_t)0x7FFF);
        m3 = __builtin_elementwise_max(m3, load_u16x32(p + 2 * i + 192) & (uint16_t)0x7FFF);
    }
    uint16_t m = __builtin_reduce_max(__builtin_elementwise_max(__builtin_elementwise_max(m0, m1), __builtin_elementwise_max(m2, m3)));
    for (; i < count; i++) {
        uint16_t v;
        memcpy(&v, p + 2 * i, 2);
        v &= 0x7FFF;
        if (v > m) m = v;
    }
    return m;
}

INLINE uint32_t f32_max_body(const void *source, size_t count) {
    const uint8_t *p = (const uint8_t *)source;
    u32x16 m0 = 0, m1 = 0, m2 = 0, m3 = 0;
    size_t i = 0;
    for (; i + 64 <= count; i += 64) {
        m0 = __builtin_elementwise_max(m0, load_u32x16(p + 4 * i) & 0x7FFFFFFFu);
        m1 = __builtin_elementwise_max(m1, load_u32x16(p + 4 * i + 64) & 0x7FFFFFFFu);
        m2 = __builtin_elementwise_max(m2, load_u32x16(p + 4 * i + 128) & 0x7FFFFFFFu);
        m3 = __builtin_elementwise_max(m3, load_u32x16(p + 4 * i + 192) & 0x7FFFFFFFu);
    }
    uint32_t m = __builtin_reduce_max(__builtin_elementwise_max(__builtin_elementwise_max(m0, m1), __builtin_elementwise_max(m2, m3)));
    for (; i < count; i++) {
        uint32_t v;
        memcpy(&v, p + 4 * i, 4);
        v &= 0x7FFFFFFFu;
        if (v > m) m = v;
    }
    return m;
}

// MARK: Dispatch

#define QUANTIZE_ARGS const void *source, int element_bytes, size_t groups, nvfp4_scale_params params, \
    uint8_t *packed, uint8_t *codes, nvfp4_error_lanes *lanes
#define QUANTIZE_CALL source, element_bytes, groups, params, packed, codes, lanes
#define COMPARE_ARGS const void *source, int element_bytes, size_t groups, const uint8_t *packed,     const uint8_t *codes, nvfp4_scale_params params, nvfp4_error_lanes *lanes
#define COMPARE_CALL source, element_bytes, groups, packed, codes, params, lanes

// One copy of each loop per instruction set; the always-inline bodies are compiled with the
// copy's target features.
#define DEFINE_VARIANT(suffix, attributes) \
    attributes static void quantize_##suffix(QUANTIZE_ARGS) { quantize_body(QUANTIZE_CALL); } \
    attributes static void compare_##suffix(COMPARE_ARGS) { compare_body(COMPARE_CALL); } \
    attributes static uint16_t bf16_max_##suffix(const void *s, size_t n) { return bf16_max_body(s, n); } \
    attributes static uint32_t f32_max_##suffix(const void *s, size_t n) { return f32_max_body(s, n); }

DEFINE_VARIANT(baseline, )

typedef struct {
    void (*quantize)(QUANTIZE_ARGS);
    void (*compare)(COMPARE_ARGS);
    uint16_t (*bf16_max)(const void *, size_t);
    uint32_t (*f32_max)(const void *, size_t);
    const char *name;
} kernel_table;

#if defined(__x86_64__) && defined(__clang__)
DEFINE_VARIANT(avx2, __attribute__((target("avx2,bmi2,popcnt"))))
DEFINE_VARIANT(avx512, __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,bmi2,popcnt"))))

static const kernel_table variants[] = {
    {quantize_baseline, compare_baseline, bf16_max_baseline, f32_max_baseline, "baseline"},
    {quantize_avx2, compare_avx2, bf16_max_avx2, f32_max_avx2, "avx2"},
    {quantize_avx512, compare_avx512, bf16_max_avx512, f32_max_avx512, "avx512"},
};

static int supported(int variant) {
    __builtin_cpu_init();
    switch (variant) {
    case 0: return 1;
    case 1: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2");
    case 2: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    default: return 0;
    }
}
#else
static const kernel_table variants[] = {
    {quantize_baseline, compare_baseline, bf16_max_baseline, f32_max_baseline, "baseline"},
};
static int supported(int variant) { return variant == 0; }
#endif

#define VARIANT_COUNT ((int)(sizeof variants / sizeof variants[0]))

// The best supported variant, picked on first use (a benign race: every thread stores the same value).
static int best = -1;

static inline const kernel_table *table(void) {
    int b = __atomic_load_n(&best, __ATOMIC_RELAXED);
    if (b < 0) {
        b = 0;
        for (int v = VARIANT_COUNT - 1; v > 0; v--) {
            if (supported(v)) { b = v; break; }
        }
        __atomic_store_n(&best, b, __ATOMIC_RELAXED);
    }
    return &variants[b];
}

void nvfp4_quantize_groups(QUANTIZE_ARGS) { table()->quantize(QUANTIZE_CALL); }
void nvfp4_compare_groups(COMPARE_ARGS) { table()->compare(COMPARE_CALL); }
uint16_t nvfp4_bf16_magnitude_max(const void *source, size_t count) { return table()->bf16_max(source, count); }
uint32_t nvfp4_f32_magnitude_max(const void *source, size_t count) { return table()->f32_max(source, count); }
const char *nvfp4_kernel_isa(void) { return table()->name; }

int nvfp4_kernel_variant_count(void) { return VARIANT_COUNT; }
const char *nvfp4_kernel_variant_name(int variant) {
    return variant >= 0 && variant < VARIANT_COUNT ? variants[variant].name : 0;
}
int nvfp4_kernel_variant_supported(int variant) { return variant >= 0 && variant < VARIANT_COUNT && supported(variant); }

int nvfp4_quantize_groups_variant(int variant, QUANTIZE_ARGS) {
    if (!nvfp4_kernel_variant_supported(variant)) return -1;
    variants[variant].quantize(QUANTIZE_CALL);
    return 0;
}
int nvfp4_compare_groups_variant(int variant, COMPARE_ARGS) {
    if (!nvfp4_kernel_variant_supported(variant)) return -1;
    variants[variant].compare(COMPARE_CALL);
    return 0;
}
int nvfp4_magnitude_max_variant(int variant, const void *source, int element_bytes, size_t count, uint32_t *result) {
    if (!nvfp4_kernel_variant_supported(variant)) return -1;
    *result = element_bytes == 2 ? (uint32_t)variants[variant].bf16_max(source, count) : variants[variant].f32_max(source, count);
    return 0;
}
