// The vector types and helpers of the C kernels (nvfp4_kernel.c, fp8_dequantize.c).
#ifndef NVFP4_KERNEL_VECTORS_H
#define NVFP4_KERNEL_VECTORS_H

#include <stdint.h>

// IEEE operations only: a fused multiply-add would change rounding (and the error sums).
#pragma clang fp contract(off)
// Vector values cross only always-inline helpers, never a real call: no ABI concern.
#pragma clang diagnostic ignored "-Wpsabi"

typedef float f32x16 __attribute__((ext_vector_type(16)));
typedef double f64x16 __attribute__((ext_vector_type(16)));
typedef uint32_t u32x16 __attribute__((ext_vector_type(16)));
typedef int32_t i32x16 __attribute__((ext_vector_type(16)));
typedef uint16_t u16x16 __attribute__((ext_vector_type(16)));
typedef uint16_t u16x32 __attribute__((ext_vector_type(32)));
typedef uint8_t u8x16 __attribute__((ext_vector_type(16)));

#define INLINE static inline __attribute__((always_inline))

#endif
