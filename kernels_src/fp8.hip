// fp8 skinny GEMM (the wvSplitKQ capability and beyond):
//   out[n, m] = round( (sum_k x[n, k] * w[m, k]) * sx[n or 0] * sw[m or 0] + bias )
// with e4m3 weights and, per MODE, e4m3 tokens (W8A8), 16-bit tokens (W8A16: weights widened, no
// token quantization) or 16-bit tokens quantized to e4m3 in registers with a given scale (W8Q: one
// launch instead of quantize + GEMM). sx/sw: a pointer to one value or to per-token / per-row values,
// or null and the value passed by value (sx_val / sw_val), so scalar scales need no device memory.
// Pitches in elements; K % 16 == 0; 16-byte aligned rows (checked on the host).
// Plus jg_quantize_fp8: dynamic per-token or per-tensor quantization of 16-bit tokens.
#include "jg_platform.h"

#define JG_W8A8 0
#define JG_W8A16 1
#define JG_W8Q 2

#if defined(JG_NV)
#include "nv/fp8.h"
#else
#include "amd/fp8.h"
#endif

// ---- dynamic quantization: x8 = sat(rne(x / s)), s = amax / fp8_max (1 when amax is 0) -----------------
// One block per token (PER_TOKEN) or one block for the whole tensor. amax is a max: its value does
// not depend on the order it is reduced in.
template <class T, bool PER_TOKEN, bool FNUZ>
__global__ void __launch_bounds__(1024) jg_quantize_fp8(unsigned char* __restrict__ q, jg_i64 ldq,
                                                        float* __restrict__ scales, const jg_u16* __restrict__ x,
                                                        jg_i64 ldx, int N, int K) {
  __shared__ float red[32];
  const int n0 = PER_TOKEN ? blockIdx.x : 0, n1 = PER_TOKEN ? blockIdx.x + 1 : N;
  float amax = 0.f;
  for (int n = n0; n < n1; ++n)
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
      const float v = jg_to_f32<T>(x[(jg_i64)n * ldx + k]);
      amax = (v != v) ? amax : (fabsf(v) > amax ? fabsf(v) : amax);  // NaN does not poison the scale
    }
  // block max: lanes, then warps/waves through shared memory
  const int wsize = warpSize;
  for (int s = wsize / 2; s > 0; s >>= 1) {
    const float o = jg_shfl_xor(amax, s, wsize);
    amax = o > amax ? o : amax;
  }
  if (threadIdx.x % wsize == 0) red[threadIdx.x / wsize] = amax;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int i = 1; i < (int)((blockDim.x + wsize - 1) / wsize); ++i) amax = red[i] > amax ? red[i] : amax;
    amax = red[0] > amax ? red[0] : amax;
    red[0] = amax > 0.f ? amax / (FNUZ ? 240.f : 448.f) : 1.f;
    scales[PER_TOKEN ? blockIdx.x : 0] = red[0];
  }
  __syncthreads();
  const float inv = 1.f / red[0];
  for (int n = n0; n < n1; ++n)
    for (int k = threadIdx.x; k < K; k += blockDim.x)
      q[(jg_i64)n * ldq + k] = (unsigned char)jg_f32_to_e4m3(jg_to_f32<T>(x[(jg_i64)n * ldx + k]) * inv, FNUZ);
}

// ---- the cuBLASLt route's epilogue: out[n, m] = round(acc[n, m] * sx[n or 0] * sw[m or 0] + bias) -----------
// cuBLASLt (jitgemm.runtime.blaslt) leaves the fp32 sums of x . w^T in acc (row n at n * lda); this applies the
// scales and the bias in the fp8 kernels' order (jg_store's: sum * token scale * row scale + bias) and rounds
// once, so every scale form and a bias reach cuBLASLt's tensor cores. blockIdx.y is the token, x the columns.
template <class T>
__global__ void __launch_bounds__(256) jg_fp8_epilogue(jg_u16* __restrict__ out, jg_i64 ldo,
                                                       const float* __restrict__ acc, jg_i64 lda,
                                                       const float* __restrict__ sx, int sx_per_token, float sx_val,
                                                       const float* __restrict__ sw, int sw_per_row, float sw_val,
                                                       const jg_u16* __restrict__ bias, jg_i64 bias_ld, int bias_rows,
                                                       int M) {
  const int n = blockIdx.y;
  const jg_i64 m = (jg_i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (m >= M) return;
  float s = acc[(jg_i64)n * lda + m];
  s = s * (sx ? sx[sx_per_token ? n : 0] : sx_val) * (sw ? sw[sw_per_row ? m : 0] : sw_val);
  if (bias) s += jg_to_f32<T>(bias[(bias_rows == 1 ? 0 : (jg_i64)n * bias_ld) + m]);
  out[(jg_i64)n * ldo + m] = jg_from_f32<T>(s);
}
