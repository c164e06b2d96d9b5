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

// cross-lane exchange within a warp (NVIDIA, 32 lanes) or wave (AMD, 32 or 64 lanes)
#if defined(JG_NV)
JG_DEVICE float jg_shfl_xor(float v, int lane_mask, int width) { return __shfl_xor_sync(0xffffffffu, v, lane_mask, width); }
#else
JG_DEVICE float jg_shfl_xor(float v, int lane_mask, int width) { return __shfl_xor(v, lane_mask, width); }
#endif

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

// ---- fp8 e4m3 in software (both vendors): exact decode, saturating round-to-nearest-even encode.
// e4m3fn (OCP): bias 7, max 448, 0x7f/0xff NaN, -0 exists. e4m3fnuz: bias 8, max 240, 0x80 the only
// NaN, no -0. The bytes of one format are never read as the other.
JG_DEVICE float jg_e4m3_to_f32(unsigned b, bool fnuz) {
  b &= 0xffu;
  const unsigned e = (b >> 3) & 0xfu, m = b & 7u;
  const float sign = (b & 0x80u) ? -1.f : 1.f;
  if (fnuz ? b == 0x80u : (b & 0x7fu) == 0x7fu) return __uint_as_float(0x7fc00000u);
  const int bias = fnuz ? 8 : 7;
  // value = (e ? 8 + m : m) * 2^(max(e,1) - bias - 3), built exactly from exponent bits
  const float mant = (float)(e ? 8u + m : m);
  const unsigned scale_bits = (unsigned)((int)(e ? e : 1u) - bias - 3 + 127) << 23;
  if (fnuz && b == 0u) return 0.f;
  return sign * mant * __uint_as_float(scale_bits);
}

JG_DEVICE unsigned jg_f32_to_e4m3(float f, bool fnuz) {
  const unsigned u = __float_as_uint(f);
  const unsigned sign = (u >> 24) & 0x80u;
  if ((u & 0x7fffffffu) > 0x7f800000u) return fnuz ? 0x80u : (0x7fu | sign);
  const int bias = fnuz ? 8 : 7;
  const float maxv = fnuz ? 240.f : 448.f;
  float a = __uint_as_float(u & 0x7fffffffu);
  a = a < maxv ? a : maxv;  // saturate (inf too)
  // quantum of the binade a lives in (subnormal binade below 2^(1-bias)), then round to even
  int ex = (int)((__float_as_uint(a) >> 23) & 0xffu) - 127;
  if (ex < 1 - bias) ex = 1 - bias;
  const float q = __uint_as_float((unsigned)(ex - 3 + 127) << 23);
  float r = rintf(a / q) * q;  // exact: q is a power of two
  if (r == 0.f) return fnuz ? 0u : sign;
  int er = (int)((__float_as_uint(r) >> 23) & 0xffu) - 127;
  unsigned code;
  if (er < 1 - bias) {
    code = (unsigned)(r / __uint_as_float((unsigned)(1 - bias - 3 + 127) << 23));  // subnormal: mantissa only
  } else {
    const unsigned mant = (unsigned)(r / __uint_as_float((unsigned)(er - 3 + 127) << 23)) - 8u;
    code = ((unsigned)(er + bias) << 3) | mant;
  }
  return code | sign;
}
