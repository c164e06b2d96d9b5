// jitgemm portable layer: types and conversions both vendors share; what differs between NVIDIA (NVRTC)
// and AMD (hiprtc/clang) is in nv/platform.h and amd/platform.h, included below under the vendor's
// macro. The backend defines exactly one of JG_NV / JG_AMD; JG_WAVE is the AMD wave size.
#pragma once

#if defined(JG_NV) || defined(JG_AMD)
#define JG_DEVICE __device__ __forceinline__
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
#include "nv/platform.h"
#else
#include "amd/platform.h"
#endif

template <class T> JG_DEVICE float jg_to_f32(jg_u16 v);
template <> JG_DEVICE float jg_to_f32<jg_f16>(jg_u16 v) { return jg_f16_to_f32(v); }
template <> JG_DEVICE float jg_to_f32<jg_bf16>(jg_u16 v) { return jg_bf16_to_f32(v); }
template <class T> JG_DEVICE jg_u16 jg_from_f32(float v);
template <> JG_DEVICE jg_u16 jg_from_f32<jg_f16>(float v) { return jg_f32_to_f16(v); }
template <> JG_DEVICE jg_u16 jg_from_f32<jg_bf16>(float v) { return jg_f32_to_bf16(v); }

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
