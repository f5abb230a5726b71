// FP8 (E4M3FN) dequantization as DeepSeek's `weight_dequant` and compressed-tensors' `dequantize`
// compute it: each code widened exactly to fp32, one fp32 multiply by its scale (round to
// nearest even), then one rounding of the product to bf16 or f16 (round to nearest even).
#include "nvfp4_kernel.h"
#include "kernel_vectors.h"

#include <string.h>

// E4M3FN → fp32, exactly: the 7 magnitude bits placed at fp32's exponent/mantissa boundary form
// a value 2^-120 times the code's (normal or subnormal alike), so one exact multiply by 2^120
// finishes it. 0x7F is NaN (E4M3FN has no infinity).
INLINE f32x16 e4m3_to_f32(u8x16 codes) {
    u32x16 c = __builtin_convertvector(codes, u32x16);
    u32x16 magnitude = c & 0x7F;
    f32x16 value = (f32x16)(magnitude << 20) * 0x1p120f;
    u32x16 bits = (u32x16)value | ((c & 0x80) << 24);
    i32x16 nan = (i32x16)(magnitude == 0x7F);
    bits = (bits & ~(u32x16)nan) | ((u32x16)nan & 0x7FC00000u);
    return (f32x16)bits;
}

// fp32 → bf16, round to nearest even; NaN stays NaN (quiet).
INLINE u16x16 f32_to_bf16(f32x16 v) {
    u32x16 bits = (u32x16)v;
    u32x16 rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
    i32x16 nan = (i32x16)((bits & 0x7FFFFFFFu) > 0x7F800000u);
    rounded = (rounded & ~(u32x16)nan) | ((u32x16)nan & ((bits >> 16) | 0x40u));
    return __builtin_convertvector(rounded, u16x16);
}

// Stores 16 products in the target's encoding at `out` (32 or 64 bytes; fixed sizes, so the
// copies compile to vector stores).
INLINE void store16(f32x16 product, int target, uint8_t *out) {
    if (target == NVFP4_FP8_TARGET_BF16) {
        u16x16 h = f32_to_bf16(product);
        memcpy(out, &h, 32);
    } else if (target == NVFP4_FP8_TARGET_F16) {
        _Float16 h[16];
        for (int k = 0; k < 16; k++) h[k] = (_Float16)product[k];
        memcpy(out, h, 32);
    } else {
        memcpy(out, &product, 64);
    }
}

// Returns the largest |product| as fp32 bits (NaN above 0x7F800000): rounding to the target is
// monotonic, so the target's amax is this value rounded.
INLINE uint32_t dequantize_body(const uint8_t *codes, size_t count, float scale, int target, void *out) {
    size_t width = target == NVFP4_FP8_TARGET_F32 ? 4 : 2;
    uint8_t *bytes = (uint8_t *)out;
    u32x16 largest = 0;
    size_t i = 0;
    for (; i + 16 <= count; i += 16) {
        u8x16 c;
        memcpy(&c, codes + i, 16);
        f32x16 product = e4m3_to_f32(c) * scale;
        u32x16 magnitude = (u32x16)product & 0x7FFFFFFFu;
        largest = largest > magnitude ? largest : magnitude;
        store16(product, target, bytes + i * width);
    }
    if (i < count) {
        uint8_t tail[16] = {0};
        uint8_t staged[64];
        memcpy(tail, codes + i, count - i);
        u8x16 c;
        memcpy(&c, tail, 16);
        f32x16 product = e4m3_to_f32(c) * scale;  // padding codes are 0: products 0
        u32x16 magnitude = (u32x16)product & 0x7FFFFFFFu;
        largest = largest > magnitude ? largest : magnitude;
        store16(product, target, staged);
        memcpy(bytes + i * width, staged, (count - i) * width);
    }
    uint32_t result = 0;
    for (int k = 0; k < 16; k++) result = largest[k] > result ? largest[k] : result;
    return result;
}

// fp32 products rounded to the target and widened back to fp32.
INLINE f32x16 round_to_target(f32x16 product, int target) {
    if (target == NVFP4_FP8_TARGET_BF16) {
        u32x16 bits = (u32x16)product;
        u32x16 rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
        i32x16 nan = (i32x16)((bits & 0x7FFFFFFFu) > 0x7F800000u);
        rounded = (rounded & ~(u32x16)nan) | ((u32x16)nan & ((bits | 0x400000u) & 0xFFFF0000u));
        return (f32x16)rounded;
    }
    if (target == NVFP4_FP8_TARGET_F16) {
        f32x16 widened;
        for (int k = 0; k < 16; k++) widened[k] = (float)(_Float16)product[k];
        return widened;
    }
    return product;
}

// 16 values rounded to the target, stored as the codec reads them: bf16 bits for a bf16 target
// (exact: the value is a bf16), else fp32.
INLINE void store_rounded(f32x16 v, int target, uint8_t *out) {
    if (target == NVFP4_FP8_TARGET_BF16) {
        u16x16 h = __builtin_convertvector((u32x16)v >> 16, u16x16);
        memcpy(out, &h, 32);
    } else {
        memcpy(out, &v, 64);
    }
}

// Rows of codes, each `block_columns` run times its scale from the grid row of its row.
INLINE void dequantize_rows_body(
    const uint8_t *codes, size_t rows, size_t columns, const float *scales, size_t first_row, size_t block_rows,
    size_t block_columns, int target, void *out) {
    size_t grid_columns = (columns + block_columns - 1) / block_columns;
    size_t width = target == NVFP4_FP8_TARGET_BF16 ? 2 : 4;
    for (size_t r = 0; r < rows; r++) {
        const float *row_scales = scales + ((first_row + r) / block_rows) * grid_columns;
        const uint8_t *row_codes = codes + r * columns;
        uint8_t *row_out = (uint8_t *)out + r * columns * width;
        size_t g = 0;
        for (size_t start = 0; start < columns; start += block_columns, g++) {
            size_t count = columns - start < block_columns ? columns - start : block_columns;
            float scale = row_scales[g];
            size_t i = 0;
            for (; i + 16 <= count; i += 16) {
                u8x16 c;
                memcpy(&c, row_codes + start + i, 16);
                store_rounded(round_to_target(e4m3_to_f32(c) * scale, target), target, row_out + (start + i) * width);
            }
            if (i < count) {
                uint8_t tail[16] = {0};
                uint8_t staged[64];
                memcpy(tail, row_codes + start + i, count - i);
                u8x16 c;
                memcpy(&c, tail, 16);
                store_rounded(round_to_target(e4m3_to_f32(c) * scale, target), target, staged);
                memcpy(row_out + (start + i) * width, staged, (count - i) * width);
            }
        }
    }
}

#define ROWS_ARGS const uint8_t *c, size_t n, size_t k, const float *s, size_t r0, size_t br, size_t bc, int t, void *o
#define ROWS_CALL c, n, k, s, r0, br, bc, t, o
static void rows_baseline(ROWS_ARGS) { dequantize_rows_body(ROWS_CALL); }
static uint32_t dequantize_baseline(const uint8_t *c, size_t n, float s, int t, void *o) { return dequantize_body(c, n, s, t, o); }
#if defined(__x86_64__) && defined(__clang__)
__attribute__((target("avx2,f16c,fma")))
static uint32_t dequantize_avx2(const uint8_t *c, size_t n, float s, int t, void *o) { return dequantize_body(c, n, s, t, o); }
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,f16c")))
static uint32_t dequantize_avx512(const uint8_t *c, size_t n, float s, int t, void *o) { return dequantize_body(c, n, s, t, o); }
__attribute__((target("avx2,f16c,fma")))
static void rows_avx2(ROWS_ARGS) { dequantize_rows_body(ROWS_CALL); }
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,f16c")))
static void rows_avx512(ROWS_ARGS) { dequantize_rows_body(ROWS_CALL); }
#endif

// The row kernels by variant (0 baseline, then wider), as nvfp4_kernel_variant_* numbers them.
typedef void (*rows_fn)(ROWS_ARGS);
static rows_fn rows_variant(int variant) {
    if (variant == 0) return rows_baseline;
#if defined(__x86_64__) && defined(__clang__)
    __builtin_cpu_init();
    if (variant == 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")) return rows_avx2;
    if (variant == 2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512dq")) return rows_avx512;
#endif
    return 0;
}

static rows_fn rows_chosen = 0;

void nvfp4_fp8_e4m3_dequantize_rows(ROWS_ARGS) {
    rows_fn f = __atomic_load_n(&rows_chosen, __ATOMIC_RELAXED);
    if (!f) {
        f = rows_variant(2);
        if (!f) f = rows_variant(1);
        if (!f) f = rows_baseline;
        __atomic_store_n(&rows_chosen, f, __ATOMIC_RELAXED);
    }
    f(ROWS_CALL);
}

int nvfp4_fp8_e4m3_dequantize_rows_variant(int variant, ROWS_ARGS) {
    rows_fn f = rows_variant(variant);
    if (!f) return -1;
    f(ROWS_CALL);
    return 0;
}

typedef uint32_t (*dequantize_fn)(const uint8_t *, size_t, float, int, void *);
static dequantize_fn chosen = 0;

uint32_t nvfp4_fp8_e4m3_dequantize(const uint8_t *codes, size_t count, float scale, int target, void *out) {
    dequantize_fn f = __atomic_load_n(&chosen, __ATOMIC_RELAXED);
    if (!f) {
        f = dequantize_baseline;
#if defined(__x86_64__) && defined(__clang__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
            && __builtin_cpu_supports("avx512dq")) {
            f = dequantize_avx512;
        } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")) {
            f = dequantize_avx2;
        }
#endif
        __atomic_store_n(&chosen, f, __ATOMIC_RELAXED);
    }
    return f(codes, count, scale, target, out);
}

uint8_t nvfp4_fp8_e4m3_max_magnitude_code(const uint8_t *codes, size_t count) {
    uint8_t largest = 0;
    for (size_t i = 0; i < count; i++) {
        uint8_t m = codes[i] & 0x7F;
        largest = m > largest ? m : largest;
    }
    return largest;
}
