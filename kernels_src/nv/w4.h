// NVIDIA body of the 4-bit family (w4.hip): the skinny core's organisation (a warp owns 16 weight rows, MT
// tiles of them a block; K split over WK warps and SK cluster blocks; tokens in 8-token tiles, NT a block,
// more take more blocks: jg_block_origin), with each lane's 16-byte weight slice holding 32 k of each of
// four consecutive 32-k groups. Per group its codes are widened to T exactly in registers, two mma.sync
// m16n8k16 sum them against the tokens in fp32, and the group's scale multiplies that partial sum into the
// accumulators. The
// order a row's terms are summed in depends on (WK, U, SK) only, never on N: a token's bits do not depend
// on the batch.
#pragma once
#include "nv/core.h"

template <class T>
struct jg_w4_out { using Out = T; };  // what jg_reduce_store needs of an operand policy

// both halves of h minus those of `sub`, as T: exact, every value is a small integer
template <class T>
JG_DEVICE unsigned jg_w4_sub(unsigned h, unsigned sub) {
  unsigned r;
  if constexpr (T::id == jg_f16::id) {
    asm("sub.f16x2 %0, %1, %2;" : "=r"(r) : "r"(h), "r"(sub));
  } else {  // sub.bf16x2 needs sm_90; h * 1 + (-sub) is the same on sm_80
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(h), "r"(0x3f803f80u), "r"(sub ^ 0x80008000u));
  }
  return r;
}

// The four registers (e0 e1), (e2 e3), (e4 e5), (e6 e7) of a word's eight values v (w4.hip), as T pairs.
// A code c placed under the exponent of MAGIC (1024 in fp16, 128 in bf16: one unit per mantissa step)
// reads MAGIC + c; subtracting MAGIC + zero leaves c - zero exactly. MXFP4 first maps each magnitude to
// 2|v| with a byte permute (the table JG_E2M1_X2 as bytes), then takes the same path and puts the sign
// bits (bit 3 of nibbles p and p + 4) on bits 15 and 31.
template <class T, int FMT>
JG_DEVICE void jg_w4_widen(unsigned w, unsigned zero, unsigned (&p)[4]) {
  constexpr unsigned MAGIC = T::id == jg_f16::id ? 0x64006400u : 0x43004300u;
  if constexpr (FMT == JG_MXFP4) {
    unsigned lo, hi;  // bytes 2|v| of nibbles 0..3, of nibbles 4..7
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(lo) : "r"(0x03020100u), "r"(0x0c080604u), "r"(w & 0x7777u));
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(hi) : "r"(0x03020100u), "r"(0x0c080604u), "r"((w >> 16) & 0x7777u));
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      unsigned b;  // byte j of lo in byte 0, byte j of hi in byte 2 (bytes 1 and 3 masked off below)
      asm("prmt.b32 %0, %1, %2, %3;" : "=r"(b) : "r"(lo), "r"(hi), "r"((unsigned)(j | ((4 + j) << 8))));
      p[j] = jg_w4_sub<T>((b & 0x00ff00ffu) | MAGIC, MAGIC) ^ ((w << (12 - 4 * j)) & 0x80008000u);
    }
  } else {
    const unsigned sub = MAGIC + zero * 0x00010001u;
#pragma unroll
    for (int j = 0; j < 4; ++j) p[j] = jg_w4_sub<T>(((w >> (4 * j)) & 0x000f000fu) | MAGIC, sub);
  }
}

JG_DEVICE unsigned jg_word(const jg_u32x4& v, int q) { return q == 0 ? v.x : q == 1 ? v.y : q == 2 ? v.z : v.w; }

template <class T, int FMT, int GROUP, int NT, int MT, int WK, int U, int SK>
__global__ void __launch_bounds__(32 * WK, 1) JG_CLUSTER_K(SK) jg_w4_nv(
    jg_u16* __restrict__ out, jg_i64 ldo, const jg_u16* __restrict__ x, jg_i64 ldx,
    const unsigned char* __restrict__ w, jg_i64 ldw, const void* __restrict__ scales, jg_i64 lds,
    const void* __restrict__ aux, jg_i64 lda, const jg_u16* __restrict__ bias, jg_i64 bias_ld, int bias_rows,
    int N, int M, int K) {
  constexpr int ROWS = 16 * MT, COLS = 8 * NT, STEP = 128 * U;  // STEP: k a warp covers an iteration
  constexpr unsigned ONE = T::id == jg_f16::id ? 0x3c003c00u : 0x3f803f80u;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  jg_i64 m0;
  int n0;
  jg_block_origin<ROWS, COLS>(N, m0, n0);

  jg_i64 row[MT][2];  // weight rows g and g + 8 of each tile; tail rows read a real row, never stored
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const jg_i64 r = m0 + 16 * i + 8 * h + g;
      row[i][h] = r < M ? r : (jg_i64)M - 1;
    }
  const jg_u16* xrow[NT];
  bool xok[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    const int n = n0 + 8 * j + g;
    xok[j] = n < N;
    xrow[j] = x + (jg_i64)(xok[j] ? n : 0) * ldx + 8 * t;
  }

  float acc[MT][NT][4];
  jg_zero(acc);
  unsigned split = 0;
  if constexpr (SK > 1) asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(split));
  for (jg_i64 k0 = ((jg_i64)split * WK + warp) * STEP; k0 < K; k0 += (jg_i64)SK * WK * STEP) {
    jg_u32x4 wv[U][MT][2];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const jg_i64 kb = k0 + 128 * u;  // a 128-k block: 64 bytes of each row, this lane's 16 at 16 t
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          wv[u][i][h] = kb < K ? jg_load_stream(w + row[i][h] * ldw + kb / 2 + 16 * t) : jg_u32x4{0, 0, 0, 0};
    }
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const jg_i64 ks = k0 + 128 * u + 32 * q;  // the group's first k; the same for the whole warp
        if (ks >= K) continue;
        const jg_i64 gi = ks / GROUP;
        jg_u32x4 xv[NT];
#pragma unroll
        for (int j = 0; j < NT; ++j) xv[j] = xok[j] ? jg_load_cached(xrow[j] + ks) : jg_u32x4{0, 0, 0, 0};
        float ts[NT][4];  // q4_min: each token's sum over the group (an mma with all-ones weights)
        if constexpr (FMT == JG_Q4_MIN) {
#pragma unroll
          for (int j = 0; j < NT; ++j) {
            ts[j][0] = ts[j][1] = ts[j][2] = ts[j][3] = 0.f;
            jg_mma_k16<T>(ts[j], ONE, ONE, ONE, ONE, xv[j].x, xv[j].y);
            jg_mma_k16<T>(ts[j], ONE, ONE, ONE, ONE, xv[j].z, xv[j].w);
          }
        }
#pragma unroll
        for (int i = 0; i < MT; ++i) {
          float s[2], o[2] = {0.f, 0.f};
          unsigned z[2] = {FMT == JG_Q4_SYM ? 8u : 0u, FMT == JG_Q4_SYM ? 8u : 0u};
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            s[h] = jg_w4_scale<FMT>(scales, row[i][h] * lds + gi);
            if constexpr (FMT == JG_Q4_ZP) z[h] = ((const unsigned char*)aux)[row[i][h] * lda + gi];
            if constexpr (FMT == JG_Q4_MIN) o[h] = jg_f16_to_f32(((const jg_u16*)aux)[row[i][h] * lda + gi]);
          }
          unsigned a[4], b[4];  // rows g and g + 8
          jg_w4_widen<T, FMT>(jg_word(wv[u][i][0], q), z[0], a);
          jg_w4_widen<T, FMT>(jg_word(wv[u][i][1], q), z[1], b);
#pragma unroll
          for (int j = 0; j < NT; ++j) {
            float c[4] = {0.f, 0.f, 0.f, 0.f};
            jg_mma_k16<T>(c, a[0], b[0], a[1], b[1], xv[j].x, xv[j].y);  // k elements 0..3 of each lane
            jg_mma_k16<T>(c, a[2], b[2], a[3], b[3], xv[j].z, xv[j].w);  // 4..7
#pragma unroll
            for (int r = 0; r < 4; ++r) {
              acc[i][j][r] = __fmaf_rn(c[r], s[r / 2], acc[i][j][r]);  // c0, c1: row g; c2, c3: row g + 8
              if constexpr (FMT == JG_Q4_MIN) acc[i][j][r] = __fmaf_rn(ts[j][r], o[r / 2], acc[i][j][r]);
            }
          }
        }
      }
  }
  const jg_epilogue e{nullptr, nullptr, 1.f, 1.f, bias, bias_ld, 0, 0, bias_rows};
  jg_reduce_store<jg_w4_out<T>, NT, MT, WK, SK>(acc, out, ldo, e, N, M, m0, n0, split);
}
