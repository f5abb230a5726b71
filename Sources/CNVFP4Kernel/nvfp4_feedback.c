// The numerical kernels of the error-feedback solver (`--method gptq`): the lazy block update
// (a register-blocked matrix product), forward substitution and the small Cholesky factor that
// nvfp4_factor.c builds the blocked factor from. See feedback_ops.h for the arithmetic contract:
// each element is a chain of fused multiply-adds in increasing k, so the bytes never depend on
// the vector width. The same source is compiled twice: with AVX2+FMA (vfmadd), and portable
// (each lane's fma is a call to the correctly rounded fmaf, same results, slower).
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "feedback_ops.h"
#include "nvfp4_kernel.h"

#pragma clang fp contract(off)
// The vector helpers are always inlined; their by-value ABI never applies.
#pragma clang diagnostic ignored "-Wpsabi"

typedef float f32x8 __attribute__((ext_vector_type(8)));
#define INLINE static inline __attribute__((always_inline))

INLINE f32x8 load8(const float *p) { f32x8 v; memcpy(&v, p, sizeof v); return v; }
INLINE void store8(float *p, f32x8 v) { memcpy(p, &v, sizeof v); }
/// x − a·b, rounded once.
INLINE f32x8 fnma8(f32x8 a, f32x8 b, f32x8 x) { return __builtin_elementwise_fma(-a, b, x); }
INLINE float fnma1(float a, float b, float x) { return __builtin_fmaf(-a, b, x); }

// Register tile of the product: MR rows × NR columns (12 accumulators of 8 lanes).
#define MR 6
#define NR 16
// Cache blocking: a packed panel of b is KC × NC floats (256 KiB, in L2).
#define KC 256
#define NC 256

/// The MR×NR tile at c (row stride cs) minus Σ_k a_r[k]·bp[k][0..<NR], k < inner (bp packed, NR a row).
INLINE void tile_body(float *c, size_t cs, const float *const a[MR], const float *bp, size_t inner) {
    f32x8 acc[MR][2];
    for (int r = 0; r < MR; r++) { acc[r][0] = load8(c + r * cs); acc[r][1] = load8(c + r * cs + 8); }
    for (size_t k = 0; k < inner; k++) {
        const f32x8 b0 = load8(bp + k * NR), b1 = load8(bp + k * NR + 8);
        for (int r = 0; r < MR; r++) {
            const f32x8 x = a[r][k];
            acc[r][0] = fnma8(x, b0, acc[r][0]);
            acc[r][1] = fnma8(x, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < MR; r++) { store8(c + r * cs, acc[r][0]); store8(c + r * cs + 8, acc[r][1]); }
}

/// dst[r][0..<cols] = src[r][0..<cols], r < rows, cols ≤ NR (inline: these copies are tiny).
INLINE void copy_rows(float *dst, size_t ds, const float *src, size_t ss, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        if (cols == NR) {
            store8(dst + r * ds, load8(src + r * ss));
            store8(dst + r * ds + 8, load8(src + r * ss + 8));
        } else {
#pragma clang loop vectorize(disable) unroll(disable)
            for (size_t j = 0; j < cols; j++) dst[r * ds + j] = src[r * ss + j];
        }
    }
}

/// A tile with `rows` ≤ MR and `cols` ≤ NR valid: partial tiles go through a local copy (the
/// missing rows repeat row 0 of a, and are discarded).
INLINE void tile_edge(float *c, size_t cs, const float *a, size_t as, const float *bp, size_t rows, size_t inner, size_t cols) {
    const float *ar[MR];
    for (size_t r = 0; r < MR; r++) ar[r] = a + (r < rows ? r : 0) * as;
    if (rows == MR && cols == NR) { tile_body(c, cs, ar, bp, inner); return; }
    float local[MR * NR] = {0};
    copy_rows(local, NR, c, cs, rows, cols);
    tile_body(local, NR, ar, bp, inner);
    copy_rows(c, cs, local, NR, rows, cols);
}

INLINE void gemm_body(float *c, size_t cs, const float *a, size_t as, const float *b, size_t bs,
                      size_t rows, size_t inner, size_t cols) {
    if (rows == 0 || inner == 0 || cols == 0) return;
    if (inner == 1 && cols < NR) {
        // One column's error onto the rest of its 16-block: too small to pack.
        for (size_t r = 0; r < rows; r++)
            for (size_t j = 0; j < cols; j++) c[r * cs + j] = fnma1(a[r * as], b[j], c[r * cs + j]);
        return;
    }
    const size_t kc_max = inner < KC ? inner : KC, nc_max = cols < NC ? cols : NC;
    const size_t strips_max = (nc_max + NR - 1) / NR;
    float *pack = malloc(kc_max * strips_max * NR * sizeof(float));
    if (!pack) abort();
    for (size_t c0 = 0; c0 < cols; c0 += NC) {
        const size_t nc = cols - c0 < NC ? cols - c0 : NC, strips = (nc + NR - 1) / NR;
        for (size_t k0 = 0; k0 < inner; k0 += KC) {
            const size_t kc = inner - k0 < KC ? inner - k0 : KC;
            // Pack b[k0..<k0+kc][c0..<c0+nc] as strips of NR columns (zero beyond cols).
            for (size_t s = 0; s < strips; s++) {
                float *dst = pack + s * kc * NR;
                const size_t j0 = s * NR, valid = nc - j0 < NR ? nc - j0 : NR;
                if (valid < NR) memset(dst, 0, kc * NR * sizeof(float));
                for (size_t k = 0; k < kc; k++) copy_rows(dst + k * NR, NR, b + (k0 + k) * bs + c0 + j0, bs, 1, valid);
            }
            for (size_t s = 0; s < strips; s++) {
                const size_t j0 = s * NR, valid = nc - j0 < NR ? nc - j0 : NR;
                for (size_t r0 = 0; r0 < rows; r0 += MR) {
                    const size_t mr = rows - r0 < MR ? rows - r0 : MR;
                    tile_edge(c + r0 * cs + c0 + j0, cs, a + r0 * as + k0, as, pack + s * kc * NR, mr, kc, valid);
                }
            }
        }
    }
    free(pack);
}

// Forward substitution: SW columns (8 vectors) at a time keep 8 independent fma chains.
#define SW 64

INLINE void lower_solve_body(float *x, size_t xs, const float *l, size_t ls, size_t w, size_t c0, size_t c1) {
    size_t c = c0;
    for (; c + SW <= c1; c += SW) {
        for (size_t j = 0; j < w; j++) {
            f32x8 acc[SW / 8];
            for (int v = 0; v < SW / 8; v++) acc[v] = load8(x + j * xs + c + 8 * v);
            for (size_t k = 0; k < j; k++) {
                const f32x8 lk = l[j * ls + k];
                for (int v = 0; v < SW / 8; v++) acc[v] = fnma8(lk, load8(x + k * xs + c + 8 * v), acc[v]);
            }
            const f32x8 d = l[j * ls + j];
            for (int v = 0; v < SW / 8; v++) store8(x + j * xs + c + 8 * v, acc[v] / d);
        }
    }
    for (; c + 8 <= c1; c += 8) {
        for (size_t j = 0; j < w; j++) {
            f32x8 acc = load8(x + j * xs + c);
            for (size_t k = 0; k < j; k++) acc = fnma8(l[j * ls + k], load8(x + k * xs + c), acc);
            store8(x + j * xs + c, acc / l[j * ls + j]);
        }
    }
    for (; c < c1; c++) {
        for (size_t j = 0; j < w; j++) {
            float acc = x[j * xs + c];
            for (size_t k = 0; k < j; k++) acc = fnma1(l[j * ls + k], x[k * xs + c], acc);
            x[j * xs + c] = acc / l[j * ls + j];
        }
    }
}

INLINE long cholesky_body(float *a, size_t as, size_t w) {
    for (size_t i = 0; i < w; i++) {
        float *ri = a + i * as;
        for (size_t j = 0; j < i; j++) {
            const float *rj = a + j * as;
            float acc = ri[j];
            for (size_t k = 0; k < j; k++) acc = fnma1(ri[k], rj[k], acc);
            ri[j] = acc / rj[j];
        }
        float d = ri[i];
        for (size_t k = 0; k < i; k++) d = fnma1(ri[k], ri[k], d);
        if (!(d > 0) || !isfinite(d)) return (long)i;
        ri[i] = sqrtf(d);
    }
    return -1;
}

/// E2M1.encode(min(|x|·reciprocal, 6)) with x's sign bit (bit 3), as NVFP4Codec.e2m1Code.
static inline uint8_t e2m1_code(float x, float reciprocal) {
    float a = fabsf(x) * reciprocal;
    a = 6.0f < a ? 6.0f : a;
    const uint8_t code = (uint8_t)((a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) + (a >= 3.5f) + (a > 5.0f));
    return code | (signbit(x) ? 0x8 : 0);
}

static const float e2m1_magnitudes[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};

/// One 16-block of `rows` rows (see nvfp4_feedback_block): each row's values in a local copy.
typedef int32_t i32x8 __attribute__((ext_vector_type(8)));

/// Where `mask` is set, `v`, else `m`.
INLINE f32x8 blend8(i32x8 mask, f32x8 v, f32x8 m) { return (f32x8)(((i32x8)v & mask) | ((i32x8)m & ~mask)); }

/// block_body for 8 rows at once, one row a lane (the same operations as the scalar loop per lane).
INLINE void block8(float *w, size_t ws, const float *u, size_t us, const float *reciprocals, const float *factors,
                   size_t ss, float *errors, size_t es, size_t cols) {
    f32x8 x[16];
    for (size_t c = 0; c < cols; c++)
        for (int l = 0; l < 8; l++) x[c][l] = w[l * ws + c];
    const i32x8 sign = (i32x8)0x80000000;
    for (size_t j = 0; j < cols; j++) {
        const f32x8 rec = load8(reciprocals + j * ss), fac = load8(factors + j * ss);
        f32x8 a = (f32x8)((i32x8)x[j] & ~sign) * rec;
        a = blend8(a > 6.0f, (f32x8)6.0f, a);
        f32x8 m = 0;
        m = blend8(a > 0.25f, (f32x8)0.5f, m);
        m = blend8(a >= 0.75f, (f32x8)1.0f, m);
        m = blend8(a > 1.25f, (f32x8)1.5f, m);
        m = blend8(a >= 1.75f, (f32x8)2.0f, m);
        m = blend8(a > 2.5f, (f32x8)3.0f, m);
        m = blend8(a >= 3.5f, (f32x8)4.0f, m);
        m = blend8(a > 5.0f, (f32x8)6.0f, m);
        const f32x8 q = (f32x8)((i32x8)m | ((i32x8)x[j] & sign)) * fac;
        const f32x8 e = (x[j] - q) / u[j * us + j];
        for (int l = 0; l < 8; l++) errors[l * es + j] = e[l];
        for (size_t c = j + 1; c < cols; c++) x[c] = fnma8(e, u[j * us + c], x[c]);
    }
    for (size_t c = 0; c < cols; c++)
        for (int l = 0; l < 8; l++) w[l * ws + c] = x[c][l];
}

INLINE void block_body(float *w, size_t ws, const float *u, size_t us, const float *reciprocals, const float *factors,
                       size_t ss, float *errors, size_t es, size_t rows, size_t cols) {
    size_t r = 0;
    for (; r + 8 <= rows; r += 8) block8(w + r * ws, ws, u, us, reciprocals + r, factors + r, ss, errors + r * es, es, cols);
    for (; r < rows; r++) {
        float x[16];
        for (size_t c = 0; c < cols; c++) x[c] = w[r * ws + c];
        for (size_t j = 0; j < cols; j++) {
            const uint8_t code = e2m1_code(x[j], reciprocals[j * ss + r]);
            const float m = e2m1_magnitudes[code & 7];
            const float e = (x[j] - (code & 8 ? -m : m) * factors[j * ss + r]) / u[j * us + j];
            errors[r * es + j] = e;
            for (size_t c = j + 1; c < cols; c++) x[c] = fnma1(e, u[j * us + c], x[c]);
        }
        for (size_t c = 0; c < cols; c++) w[r * ws + c] = x[c];
    }
}

#define FEEDBACK_VARIANT(suffix, attributes)                                                                   \
    attributes static void gemm_##suffix(float *c, size_t cs, const float *a, size_t as, const float *b,      \
                                         size_t bs, size_t rows, size_t inner, size_t cols) {                  \
        gemm_body(c, cs, a, as, b, bs, rows, inner, cols);                                                     \
    }                                                                                                          \
    attributes static void lower_solve_##suffix(float *x, size_t xs, const float *l, size_t ls, size_t w,     \
                                                size_t c0, size_t c1) {                                        \
        lower_solve_body(x, xs, l, ls, w, c0, c1);                                                             \
    }                                                                                                          \
    attributes static long cholesky_##suffix(float *a, size_t as, size_t w) { return cholesky_body(a, as, w); } \
    attributes static void block_##suffix(float *w, size_t ws, const float *u, size_t us, const float *rec,      \
                                          const float *fac, size_t ss, float *e, size_t es, size_t rows,          \
                                          size_t cols) {                                                         \
        block_body(w, ws, u, us, rec, fac, ss, e, es, rows, cols);                                             \
    }                                                                                                          \
    static const feedback_ops ops_##suffix = {#suffix, gemm_##suffix, lower_solve_##suffix, cholesky_##suffix,  \
                                              block_##suffix};

FEEDBACK_VARIANT(portable, )

static atomic_int force_portable;

int nvfp4_feedback_force_portable(int on) { return atomic_exchange(&force_portable, on ? 1 : 0); }

#if defined(__x86_64__) && defined(__clang__)
FEEDBACK_VARIANT(avx2_fma, __attribute__((target("avx2,fma"))))
static int has_avx2_fma(void) {
    static atomic_int cached = -1;
    int c = atomic_load_explicit(&cached, memory_order_relaxed);
    if (c < 0) {
        __builtin_cpu_init();
        c = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
        atomic_store_explicit(&cached, c, memory_order_relaxed);
    }
    return c;
}
const feedback_ops *nvfp4_feedback_ops(void) {
    return !atomic_load(&force_portable) && has_avx2_fma() ? &ops_avx2_fma : &ops_portable;
}
#else
const feedback_ops *nvfp4_feedback_ops(void) { return &ops_portable; }
#endif

const char *nvfp4_feedback_isa(void) { return nvfp4_feedback_ops()->name; }

void nvfp4_feedback_subtract(
    float *w, size_t w_stride, const float *e, size_t e_stride, const float *u, size_t u_stride,
    size_t rows, size_t inner, size_t columns) {
    nvfp4_feedback_ops()->gemm(w, w_stride, e, e_stride, u, u_stride, rows, inner, columns);
}

void nvfp4_feedback_block(
    float *w, size_t w_stride, const float *u, size_t u_stride, const float *reciprocals, const float *factors,
    size_t scale_stride, float *errors, size_t e_stride, size_t rows, size_t columns) {
    if (columns > 16) abort();
    nvfp4_feedback_ops()->block(w, w_stride, u, u_stride, reciprocals, factors, scale_stride, errors, e_stride, rows, columns);
}

void nvfp4_feedback_pack(const float *x, const float *reciprocals, size_t blocks, uint8_t *out) {
    for (size_t b = 0; b < blocks; b++)
        for (size_t i = 0; i < 16; i += 2)
            out[(b * 16 + i) / 2] = e2m1_code(x[b * 16 + i], reciprocals[b]) | (uint8_t)(e2m1_code(x[b * 16 + i + 1], reciprocals[b]) << 4);
}
