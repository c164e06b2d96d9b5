// jitgemm portable layer: the few things that differ between NVIDIA (NVRTC) and AMD (hiprtc/clang).
// The backend defines exactly one of JG_NV / JG_AMD; JG_WAVE is the AMD wave size.
#pragma once

#if defined(JG_NV)
#define JG_DEVICE __device__ __forceinline__
#elif defined(JG_AMD)
#define JG_DEVICE __device__ __forceinline__
#ifndef JG_WAVE
#define JG_WAVE 64
#endif
#else
#error "compile with -DJG_NV=1 or -DJG_AMD=1 (jitgemm's backends do this)"
#endif

typedef long long jg_i64;
typedef unsigned short jg_u16;

struct jg_u32x4 { unsigned x, y, z, w; };

// Type tags: kernels take 16-bit storage (jg_u16) and convert explicitly, so no vendor fp16/bf16
// header is needed and both compilers see the same code.
struct jg_f16 { static constexpr int id = 0; };
struct jg_bf16 { static constexpr int id = 1; };
struct jg_f32 { static constexpr int id = 2; };

JG_DEVICE float jg_bits_to_f32(unsigned u) { return __uint_as_float(u); }

JG_DEVICE float jg_bf16_to_f32(jg_u16 h) { return __uint_as_float(((unsigned)h) << 16); }

// round to nearest even; NaN stays NaN (quiet), infinities and overflow round as IEEE says
JG_DEVICE jg_u16 jg_f32_to_bf16(float f) {
  unsigned u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (jg_u16)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (jg_u16)(u >> 16);
}

#if defined(JG_NV)
JG_DEVICE float jg_f16_to_f32(jg_u16 h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
JG_DEVICE jg_u16 jg_f32_to_f16(float f) { jg_u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
#else
JG_DEVICE float jg_f16_to_f32(jg_u16 h) { return (float)__builtin_bit_cast(_Float16, h); }
JG_DEVICE jg_u16 jg_f32_to_f16(float f) { return __builtin_bit_cast(jg_u16, (_Float16)f); }
#endif

template <class T> JG_DEVICE float jg_to_f32(jg_u16 v);
template <> JG_DEVICE float jg_to_f32<jg_f16>(jg_u16 v) { return jg_f16_to_f32(v); }
template <> JG_DEVICE float jg_to_f32<jg_bf16>(jg_u16 v) { return jg_bf16_to_f32(v); }
template <class T> JG_DEVICE jg_u16 jg_from_f32(float v);
template <> JG_DEVICE jg_u16 jg_from_f32<jg_f16>(float v) { return jg_f32_to_f16(v); }
template <> JG_DEVICE jg_u16 jg_from_f32<jg_bf16>(float v) { return jg_f32_to_bf16(v); }

// 16-byte loads. Weights are read exactly once: stream them past L1 (NVIDIA: no L1 allocation,
// 256-byte L2 prefetch; AMD: the non-temporal hint). Activations are re-read by every warp: cache them.
#if defined(JG_NV)
JG_DEVICE jg_u32x4 jg_load_stream(const void* p) {
  jg_u32x4 r;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
  return r;
}
JG_DEVICE jg_u32x4 jg_load_cached(const void* p) {
  jg_u32x4 r;
  asm("ld.global.nc.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
  return r;
}
#else
typedef unsigned jg_u32x4_v __attribute__((ext_vector_type(4)));
JG_DEVICE jg_u32x4 jg_load_stream(const void* p) {
  jg_u32x4_v v = __builtin_nontemporal_load((const jg_u32x4_v*)p);
  return jg_u32x4{v.x, v.y, v.z, v.w};
}
JG_DEVICE jg_u32x4 jg_load_cached(const void* p) {
  jg_u32x4_v v = *(const jg_u32x4_v*)p;
  return jg_u32x4{v.x, v.y, v.z, v.w};
}
#endif
