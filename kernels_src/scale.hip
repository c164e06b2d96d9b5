// y[i] = a * x[i]: the smallest real kernel, proving compile -> cache -> load -> launch end to end.
#include "jg_platform.h"

template <class T>
__global__ void jg_scale(jg_u16* __restrict__ y, const jg_u16* __restrict__ x, float a, jg_i64 n) {
  jg_i64 i = (jg_i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = jg_from_f32<T>(a * jg_to_f32<T>(x[i]));
}

// float32 needs no conversion; a separate kernel keeps the 16-bit one simple
__global__ void jg_scale_f32(float* __restrict__ y, const float* __restrict__ x, float a, jg_i64 n) {
  jg_i64 i = (jg_i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i];
}
