// AMD body of the 4-bit family (w4.hip): the organisation of the fp8 software kernel (a wave owns YT weight
// rows over all of K, lanes take 16-byte slices, tokens in groups of NMAX over blockIdx.z), each code widened
// to an fp32 value v exactly in registers, each 32-k group's fp32 partial multiplied by its scale once, and
// the wave's fixed-order sum. For every AMD arch (no 4-bit MFMA is used yet).
#pragma once
#include "amd/common.h"

// v (w4.hip) of the code in nibble p of word w, in fp32: an exact small integer
template <int FMT>
JG_DEVICE float jg_w4_value(unsigned w, int p, float zero) {
  const unsigned c = FMT == JG_MXFP4 ? jg_mx_code(w, p) : (w >> (4 * p)) & 15u;
  if constexpr (FMT == JG_MXFP4) {
    const float m = (float)((JG_E2M1_X2 >> (4 * (c & 7u))) & 15u);
    return (c & 8u) ? -m : m;
  } else {
    return (float)c - zero;
  }
}

// The kernels' body (jg_w4_amd: one weight; jg_w4_experts_amd: a group of tokens a weight of a stack).
template <class T, int FMT, int GROUP, int NMAX, int YT, int WAVES>
JG_DEVICE void jg_w4_amd_body(
    jg_u16* __restrict__ out, jg_i64 ldo, const jg_u16* __restrict__ x, jg_i64 ldx,
    const unsigned char* __restrict__ w, jg_i64 ldw, const void* __restrict__ scales, jg_i64 lds,
    const void* __restrict__ aux, jg_i64 lda, const jg_u16* __restrict__ bias, jg_i64 bias_ld, int bias_rows,
    int N, int M, int K) {
  const int lane = threadIdx.x, wave = threadIdx.y;
  const int n0 = blockIdx.z * NMAX;  // tokens in groups of NMAX: more accumulators than that spill
  x += (jg_i64)n0 * ldx;
  out += (jg_i64)n0 * ldo;
  N = (N - n0) < NMAX ? N - n0 : NMAX;
  if (bias && bias_rows != 1) bias += (jg_i64)n0 * bias_ld;
  const jg_i64 slices = ((jg_i64)K + 127) / 128 * 4;  // 16-byte slices of a (block-padded) row
  const jg_i64 stride = (jg_i64)gridDim.x * blockDim.y * YT;
  for (jg_i64 m = ((jg_i64)blockIdx.x * blockDim.y + wave) * YT; m < M; m += stride) {
    jg_i64 row[YT];
#pragma unroll
    for (int y = 0; y < YT; ++y) row[y] = (m + y) < M ? (m + y) : (jg_i64)M - 1;  // tail rows: read, never stored
    float acc[NMAX][YT];
#pragma unroll
    for (int n = 0; n < NMAX; ++n)
#pragma unroll
      for (int y = 0; y < YT; ++y) acc[n][y] = 0.f;
    for (jg_i64 sl = lane; sl < slices; sl += JG_WAVE) {
      jg_u32x4 wv[YT];
#pragma unroll
      for (int y = 0; y < YT; ++y) wv[y] = jg_load_stream(w + row[y] * ldw + 16 * sl);
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const jg_i64 ks = 128 * (sl / 4) + 32 * q;  // the group's first k
        if (ks < K) {
          const jg_i64 gi = ks / GROUP;
          const jg_i64 kx = ks + 8 * (sl % 4);  // k of this lane's first value in the group
          float v[YT][8], s[YT], o[YT];
#pragma unroll
          for (int y = 0; y < YT; ++y) {
            const unsigned word = q == 0 ? wv[y].x : q == 1 ? wv[y].y : q == 2 ? wv[y].z : wv[y].w;
            float zero = FMT == JG_Q4_SYM ? 8.f : 0.f;
            if constexpr (FMT == JG_Q4_ZP) zero = (float)((const unsigned char*)aux)[row[y] * lda + gi];
            // q4_min: a 128-k block's scales then its minima (w4.hip), so group gi sits at 2 GPB (gi / GPB) + gi % GPB
            constexpr int GPB = 128 / GROUP;
            const jg_i64 si = FMT == JG_Q4_MIN ? 2 * GPB * (gi / GPB) + gi % GPB : gi;
            o[y] = FMT == JG_Q4_MIN ? jg_f16_to_f32(((const jg_u16*)scales)[row[y] * lds + si + GPB]) : 0.f;
            s[y] = jg_w4_scale<FMT>(scales, row[y] * lds + si);
#pragma unroll
            for (int e = 0; e < 8; ++e) v[y][e] = jg_w4_value<FMT>(word, e / 2 + 4 * (e % 2), zero);
          }
#pragma unroll
          for (int n = 0; n < NMAX; ++n) {
            if (n < N) {  // predicated, not `break`, so the loop unrolls and acc stays in registers
              const jg_u32x4 xv = jg_load_cached(x + (jg_i64)n * ldx + kx);
              const unsigned xr[4] = {xv.x, xv.y, xv.z, xv.w};
              float xf[8], xsum = 0.f;
#pragma unroll
              for (int e = 0; e < 8; ++e) {
                xf[e] = jg_to_f32<T>((jg_u16)(xr[e / 2] >> (16 * (e % 2))));
                if constexpr (FMT == JG_Q4_MIN) xsum += xf[e];
              }
#pragma unroll
              for (int y = 0; y < YT; ++y) {
                float d = 0.f;
#pragma unroll
                for (int e = 0; e < 8; ++e) d = __builtin_fmaf(v[y][e], xf[e], d);
                acc[n][y] = __builtin_fmaf(d, s[y], acc[n][y]);
                if constexpr (FMT == JG_Q4_MIN) acc[n][y] = __builtin_fmaf(xsum, o[y], acc[n][y]);
              }
            }
          }
        }
      }
    }
#pragma unroll
    for (int n = 0; n < NMAX; ++n)
#pragma unroll
      for (int y = 0; y < YT; ++y) {
        const float s = jg_wave_sum<JG_WAVE>(acc[n][y]);
        if (lane == 0 && n < N && m + y < M) out[(jg_i64)n * ldo + m + y] = jg_finish<T>(s, bias, bias_ld, bias_rows, n, m + y);
      }
  }
}

template <class T, int FMT, int GROUP, int NMAX, int YT, int WAVES>
__global__ void __launch_bounds__(JG_WAVE * WAVES) jg_w4_amd(
    jg_u16* __restrict__ out, jg_i64 ldo, const jg_u16* __restrict__ x, jg_i64 ldx,
    const unsigned char* __restrict__ w, jg_i64 ldw, const void* __restrict__ scales, jg_i64 lds,
    const void* __restrict__ aux, jg_i64 lda, const jg_u16* __restrict__ bias, jg_i64 bias_ld, int bias_rows,
    int N, int M, int K) {
  jg_w4_amd_body<T, FMT, GROUP, NMAX, YT, WAVES>(out, ldo, x, ldx, w, ldw, scales, lds, aux, lda, bias, bias_ld,
                                                 bias_rows, N, M, K);
}

// A mixture-of-experts layer's experts in one launch, as jg_w4_experts_nv (nv/w4.h) says, with the group on grid y
// (z holds the token groups here).
template <class T, int FMT, int GROUP, int NMAX, int YT, int WAVES>
__global__ void __launch_bounds__(JG_WAVE * WAVES) jg_w4_experts_amd(
    jg_u16* __restrict__ out, jg_i64 ldo, const jg_u16* __restrict__ x, jg_i64 ldx,
    const unsigned char* __restrict__ w, jg_i64 ldw, const void* __restrict__ scales, jg_i64 lds,
    const void* __restrict__ aux, jg_i64 lda, const jg_u16* __restrict__ bias, jg_i64 bias_ld, int bias_rows,
    int N, int M, int K, const int* __restrict__ experts, int E, jg_i64 gx, jg_i64 go, jg_i64 ew, jg_i64 es,
    jg_i64 ea, jg_i64 eb) {
  const jg_i64 z = blockIdx.y;
  const int e = experts[z];
  out += z * go;
  if (e < 0 || e >= E) {
    const int n0 = blockIdx.z * NMAX, wave = threadIdx.y;
    const jg_u16 nan = T::id == jg_bf16::id ? 0x7fc0 : 0x7e00;
    const jg_i64 stride = (jg_i64)gridDim.x * blockDim.y * YT;
    for (jg_i64 m = ((jg_i64)blockIdx.x * blockDim.y + wave) * YT; m < M; m += stride)
      for (int i = threadIdx.x; i < YT * NMAX; i += JG_WAVE)
        if (m + i % YT < M && n0 + i / YT < N) out[(jg_i64)(n0 + i / YT) * ldo + m + i % YT] = nan;
    return;
  }
  jg_w4_amd_body<T, FMT, GROUP, NMAX, YT, WAVES>(
      out, ldo, x + z * gx, ldx, w + e * ew, ldw, (const unsigned char*)scales + e * es, lds,
      aux ? (const unsigned char*)aux + e * ea : nullptr, lda, bias ? bias + e * eb : nullptr, bias_ld, bias_rows,
      N, M, K);
}
