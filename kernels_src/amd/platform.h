// AMD's side of jg_platform.h (hiprtc / clang): the wave size, fp16 conversions, the cross-lane
// shuffle and the 16-byte loads.
#pragma once

#ifndef JG_WAVE
#define JG_WAVE 64
#endif

JG_DEVICE float jg_f16_to_f32(jg_u16 h) { return (float)__builtin_bit_cast(_Float16, h); }
JG_DEVICE jg_u16 jg_f32_to_f16(float f) { return __builtin_bit_cast(jg_u16, (_Float16)f); }

// cross-lane exchange within a wave (32 or 64 lanes)
JG_DEVICE float jg_shfl_xor(float v, int lane_mask, int width) { return __shfl_xor(v, lane_mask, width); }

// 16-byte loads. Weights are read exactly once: the non-temporal hint. Activations are re-read by
// every wave: cache them.
typedef unsigned jg_u32x4_v __attribute__((ext_vector_type(4)));
JG_DEVICE jg_u32x4 jg_load_stream(const void* p) {
  jg_u32x4_v v = __builtin_nontemporal_load((const jg_u32x4_v*)p);
  return jg_u32x4{v.x, v.y, v.z, v.w};
}
JG_DEVICE jg_u32x4 jg_load_cached(const void* p) {
  jg_u32x4_v v = *(const jg_u32x4_v*)p;
  return jg_u32x4{v.x, v.y, v.z, v.w};
}
