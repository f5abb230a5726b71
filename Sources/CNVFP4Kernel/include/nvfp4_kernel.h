// The innermost loops of the NVFP4 codec, in C so that one portable build can use the CPU's
// full vector width (AVX-512 / AVX2 clones picked at load time on x86-64; the compiler's
// baseline elsewhere). Swift cannot multiversion a function, and Swift's SIMD types compile
// to the baseline (SSE2 on x86-64) unless the whole package is built for one CPU.
//
// Every function is exact: the same IEEE-754 fp32 operations in the same order whatever vector
// width runs them (no FMA contraction; the error-feedback functions use explicit fused multiply-adds),
// so bytes and error sums never depend on the machine.
#ifndef NVFP4_KERNEL_H
#define NVFP4_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Blocks of 16 elements handled per group.
#define NVFP4_GROUP_BLOCKS 16

/// Per-call constants of the block-scale computation.
typedef struct {
    /// Non-zero: two-level scaling, block scales are relative to `pts`.
    int two_level;
    /// Non-zero: torchao's CPU numerics (`amax / 6` is a true division), else CUDA's (`amax * RN(1/6)`).
    int cpu_division;
    /// The fp32 per-tensor scale (1 when single-level).
    float pts;
    /// RN(1 / pts) (1 when single-level).
    float rpts;
} nvfp4_scale_params;

/// Error sums, one lane per element position of a block pair (see the Swift `QuantizationError`).
typedef struct {
    double signal[16];
    double error[16];
    float max_abs[16];
} nvfp4_error_lanes;

/// Quantizes `groups` groups of 16 contiguous blocks (256 elements each).
///
/// The values must be finite (the Swift caller rejects NaN and infinity first, as torchao's
/// result for them is not a valid checkpoint); a NaN block would get a meaningless scale code.
///
/// - `source`: bf16 (`element_bytes` 2) or fp32 (`element_bytes` 4) little-endian values, any alignment.
/// - `packed`: receives 128 bytes per group (two e2m1 codes a byte, even element low).
/// - `codes`: receives 16 e4m3 scale codes per group, in block order.
/// - `lanes`: error sums, accumulated.
void nvfp4_quantize_groups(
    const void *source, int element_bytes, size_t groups, nvfp4_scale_params params,
    uint8_t *packed, uint8_t *codes, nvfp4_error_lanes *lanes);

/// Measures `groups` groups of 16 contiguous original blocks against their NVFP4 encoding:
/// `packed` (128 bytes per group), `codes` (16 e4m3 codes per group, block order) and the
/// per-tensor scale in `params` (`two_level`, `pts`; other fields unused). Accumulates into `lanes`
/// exactly as `nvfp4_quantize_groups` does, so our own output reproduces the quantizer's sums.
void nvfp4_compare_groups(
    const void *source, int element_bytes, size_t groups, const uint8_t *packed, const uint8_t *codes,
    nvfp4_scale_params params, nvfp4_error_lanes *lanes);

/// The largest magnitude's bit pattern among `count` bf16 values (sign cleared).
uint16_t nvfp4_bf16_magnitude_max(const void *source, size_t count);

/// The largest magnitude's bit pattern among `count` fp32 values (sign cleared).
uint32_t nvfp4_f32_magnitude_max(const void *source, size_t count);

/// Name of the code path the loader picked ("avx512", "avx2" or "baseline"), for benchmarks.
const char *nvfp4_kernel_isa(void);

/// Every compiled variant (0 = the baseline, then wider vector sets), for tests and benchmarks:
/// their count, names, whether this CPU runs them, and entry points that use one explicitly
/// (returning -1 when this CPU cannot run it).
int nvfp4_kernel_variant_count(void);
const char *nvfp4_kernel_variant_name(int variant);
int nvfp4_kernel_variant_supported(int variant);
int nvfp4_quantize_groups_variant(
    int variant, const void *source, int element_bytes, size_t groups, nvfp4_scale_params params,
    uint8_t *packed, uint8_t *codes, nvfp4_error_lanes *lanes);
int nvfp4_compare_groups_variant(
    int variant, const void *source, int element_bytes, size_t groups, const uint8_t *packed, const uint8_t *codes,
    nvfp4_scale_params params, nvfp4_error_lanes *lanes);
int nvfp4_magnitude_max_variant(int variant, const void *source, int element_bytes, size_t count, uint32_t *result);

/// Starts the kernel's writeback of a written file range without waiting for it
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)` on Linux; nothing elsewhere). Advisory.
int nvfp4_start_writeback(int fd, long long offset, long long length);

/// The number of CPUs in this process's affinity mask (`taskset`, container CPU sets), or 0 when
/// it cannot be read.
int nvfp4_affinity_cpu_count(void);

/// Turns direct I/O (`O_DIRECT`: writes go from the caller's buffer to the device, bypassing the
/// page cache) on or off for `fd`. Returns 0, or -1 where the file system or OS does not support it.
int nvfp4_set_direct_io(int fd, int on);

/// Targets of nvfp4_fp8_e4m3_dequantize.
#define NVFP4_FP8_TARGET_BF16 0
#define NVFP4_FP8_TARGET_F16 1
#define NVFP4_FP8_TARGET_F32 2

/// Dequantizes `count` FP8 E4M3FN codes that share `scale` into bf16, f16 or f32 (`target`) at `out`:
/// each code widened exactly to fp32, one fp32 multiply by `scale` (round to nearest even), one
/// rounding to a 16-bit target (round to nearest even), as DeepSeek's `weight_dequant` and
/// compressed-tensors' `dequantize` compute it. Code 0x7F/0xFF gives NaN. Returns the largest
/// |fp32 product| as fp32 bits (above 0x7F800000 when a product is NaN).
uint32_t nvfp4_fp8_e4m3_dequantize(const uint8_t *codes, size_t count, float scale, int target, void *out);

/// Dequantizes `rows` rows of `columns` FP8 E4M3FN codes (row-major) into the rows the codec reads,
/// in one pass: each value exactly what nvfp4_fp8_e4m3_dequantize stores in `target`, stored as bf16
/// for a bf16 target and as fp32 otherwise (an f16 value widened exactly: the codec's fast dtypes).
/// `scales` is the matrix's scale grid (row-major, ⌈columns / block_columns⌉ a grid row;
/// `block_rows` × `block_columns` elements a scale) and `first_row` the matrix row of the first row.
void nvfp4_fp8_e4m3_dequantize_rows(
    const uint8_t *codes, size_t rows, size_t columns, const float *scales, size_t first_row, size_t block_rows,
    size_t block_columns, int target, void *out);

/// nvfp4_fp8_e4m3_dequantize_rows with one compiled variant (see nvfp4_kernel_variant_count), for
/// tests and benchmarks; returns -1 when this CPU cannot run it.
int nvfp4_fp8_e4m3_dequantize_rows_variant(
    int variant, const uint8_t *codes, size_t rows, size_t columns, const float *scales, size_t first_row, size_t block_rows,
    size_t block_columns, int target, void *out);

/// The largest magnitude code (`code & 0x7F`) of `count` E4M3FN codes: E4M3FN magnitudes order as
/// their bits, and 0x7F is NaN.
uint8_t nvfp4_fp8_e4m3_max_magnitude_code(const uint8_t *codes, size_t count);

/// Error feedback (`nvfp4_feedback.c`, `nvfp4_factor.c`), row-major fp32. Every element is a
/// chain of fused multiply-adds in increasing k (then at most one division or square root), so
/// the results do not depend on the vector width (AVX2+FMA or the portable `fmaf` copy) or on
/// `threads`.
///
/// In-place lower Cholesky factor of the symmetric positive definite `n`×`n` matrix `a` (the
/// lower triangle is read; the upper is set to zero) on up to `threads` threads. Returns -1, or
/// the index of the first pivot that is not positive and finite (then `a` is partly overwritten).
long nvfp4_cholesky_lower(float *a, size_t n, int threads);

/// `x` = the inverse of the lower-triangular `n`×`n` matrix `l` (lower triangular; `x` ≠ `l`),
/// on up to `threads` threads.
void nvfp4_invert_lower(const float *l, float *x, size_t n, int threads);

/// `w[r][c] = fma(−e[r][k], u[k][c], w[r][c])` for `k = 0, 1, … < inner` in that order, for
/// `r < rows`, `c < columns` (strides in floats). Single-threaded.
void nvfp4_feedback_subtract(
    float *w, size_t w_stride, const float *e, size_t e_stride, const float *u, size_t u_stride,
    size_t rows, size_t inner, size_t columns);

/// The column loop of one block of `columns` ≤ 16 columns, for `r < rows` (each row on its
/// own): for `j < columns` in order, with `x = w[r][j]` (already corrected) and `q` the value of
/// its e2m1 code under `reciprocals[j·scale_stride + r]` (`min(|x|·reciprocal, 6)` rounded to
/// nearest, ties to even, x's sign) times `factors[j·scale_stride + r]`: `e = (x − q) / u[j][j]`
/// is stored in `errors[r][j]` and `w[r][c] = fma(−e, u[j][c], w[r][c])` for `j < c < columns`.
/// On return `w[r][j]` holds the value column `j` was quantized from. Strides in floats;
/// `scale_stride` 0 gives every column of a row the same scale (one e4m3 block in natural order),
/// `rows` gives each column its own (columns of different blocks, as in act-order).
void nvfp4_feedback_block(
    float *w, size_t w_stride, const float *u, size_t u_stride, const float *reciprocals, const float *factors,
    size_t scale_stride, float *errors, size_t e_stride, size_t rows, size_t columns);

/// Packs `blocks` 16-element blocks of `x` into e2m1 nibbles (low nibble first), block `b`
/// rounded under `reciprocals[b]` as in nvfp4_feedback_block.
void nvfp4_feedback_pack(const float *x, const float *reciprocals, size_t blocks, uint8_t *out);

/// Returns the free pages of glibc's malloc arenas to the system (malloc_trim(0)); does nothing
/// and returns 0 with another C library.
int nvfp4_release_freed_memory(void);

/// Tests: non-zero makes the functions above use their portable copy (`fmaf`), zero restores
/// the CPU's; returns the previous setting. Results are the same either way.
int nvfp4_feedback_force_portable(int on);

/// The copy the functions above run with now ("avx2_fma" or "portable").
const char *nvfp4_feedback_isa(void);

#ifdef __cplusplus
}
#endif


#endif
