// NVIDIA's side of jg_platform.h (NVRTC): fp16 conversions, the warp shuffle and the 16-byte loads.
#pragma once

JG_DEVICE float jg_f16_to_f32(jg_u16 h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
JG_DEVICE jg_u16 jg_f32_to_f16(float f) { jg_u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }

// cross-lane exchange within a warp (32 lanes)
JG_DEVICE float jg_shfl_xor(float v, int lane_mask, int width) { return __shfl_xor_sync(0xffffffffu, v, lane_mask, width); }

// 16-byte loads. Weights are read exactly once: stream them past L1 (no L1 allocation, 256-byte L2
// prefetch). Activations are re-read by every warp: cache them.
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
