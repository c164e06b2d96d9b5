// AMD body of the skinny family (skinny.hip): the wvSplitK organisation.
#pragma once
#include "amd/common.h"

typedef _Float16 jg_h2 __attribute__((ext_vector_type(2)));

// acc + the products of one 32-bit word (two 16-bit elements, low one first) of w and x
template <class T>
JG_DEVICE float jg_dot2(unsigned w, unsigned x, float acc) {
  if constexpr (T::id == jg_f16::id) {
    // v_dot2_f32_f16 (gfx90a, gfx942, gfx950): both fp16 products summed into the fp32 accumulator
    return __builtin_amdgcn_fdot2(__builtin_bit_cast(jg_h2, w), __builtin_bit_cast(jg_h2, x), acc, false);
  } else {
    // a bf16 is the top half of an fp32: shifting or masking converts exactly
    acc = __builtin_fmaf(__uint_as_float(w << 16), __uint_as_float(x << 16), acc);
    return __builtin_fmaf(__uint_as_float(w & 0xffff0000u), __uint_as_float(x & 0xffff0000u), acc);
  }
}

template <class T>
JG_DEVICE float jg_dot8(const jg_u32x4& w, const jg_u32x4& x, float acc) {
  acc = jg_dot2<T>(w.x, x.x, acc);
  acc = jg_dot2<T>(w.y, x.y, acc);
  acc = jg_dot2<T>(w.z, x.z, acc);
  return jg_dot2<T>(w.w, x.w, acc);
}

JG_DEVICE unsigned jg_word(const jg_u32x4& v, int q) { return q == 0 ? v.x : q == 1 ? v.y : q == 2 ? v.z : v.w; }

// An empty asm that "changes" v once `dep` is known: code using v cannot be scheduled above the
// product that computed dep. No instruction, and not volatile, so nothing else is held back.
template <class V>
JG_DEVICE void jg_after(V& v, float dep) { asm("" : "+v"(v) : "v"(dep)); }
JG_DEVICE void jg_after(jg_u32x4& v, float dep) { asm("" : "+v"(v.x), "+v"(v.y), "+v"(v.z), "+v"(v.w) : "v"(dep)); }
// ... once all of a token's YT row products are known (YT <= 4)
template <class V, int YT>
JG_DEVICE void jg_after(V& v, const float (&d)[YT]) {
  static_assert(YT >= 1 && YT <= 4, "rows per wave");
  if constexpr (YT == 1) asm("" : "+v"(v) : "v"(d[0]));
  if constexpr (YT == 2) asm("" : "+v"(v) : "v"(d[0]), "v"(d[1]));
  if constexpr (YT == 3) asm("" : "+v"(v) : "v"(d[0]), "v"(d[1]), "v"(d[2]));
  if constexpr (YT == 4) asm("" : "+v"(v) : "v"(d[0]), "v"(d[1]), "v"(d[2]), "v"(d[3]));
}

// fp16: acc[n][y] += w[y] . x[n], token by token (v_dot2 reads packed halves, nothing to convert)
template <class T, int N, int YT>
JG_DEVICE void jg_mac_f16(float (&acc)[N][YT], const jg_u32x4 (&w)[YT], const jg_u32x4* xs, int kc16) {
#pragma unroll
  for (int n = 0; n < N; ++n) {
    const jg_u32x4 xv = xs[n * kc16];
#pragma unroll
    for (int y = 0; y < YT; ++y) acc[n][y] = jg_dot8<T>(w[y], xv, acc[n][y]);
  }
}

// bf16 -> fp32 costs a register per element, and left to itself the compiler converted every
// weight and token vector of an iteration at once and spilled from N*YT = 8 on. The two bf16 paths
// below compute the same sums as jg_dot8 (each accumulator takes its products in k order) but use
// jg_after to convert each operand only once the products before it are done.

// bf16, one row per wave (N up to 16): token by token. The row's 8 weights are converted once;
// a token is converted after the previous token's product, and its LDS read waits for the product
// two tokens back (two reads in flight). The read offset is stepped, not recomputed: N distinct
// offsets would be hoisted into N SGPRs.
template <class T, int N>
JG_DEVICE void jg_mac_bf16_tokens(float (&acc)[N][1], const jg_u32x4& w, const jg_u32x4* xs, int kc16) {
  int at = 0;
#pragma unroll
  for (int n = 0; n < N; ++n) {
    if (n >= 2) jg_after(at, acc[n - 2][0]);
    jg_u32x4 xv = xs[at];
    if (n >= 1) jg_after(xv, acc[n - 1][0]);
    acc[n][0] = jg_dot8<T>(w, xv, acc[n][0]);
    at += kc16;
  }
}

// bf16, YT >= 2 rows per wave (N <= 8 then): all N token vectors are read (at most 32 registers;
// a later step's reads wait for the previous step's last product), then the sums advance one
// 32-bit word (two elements) at a time across all (token, row) pairs, so only 2*YT weight floats
// and two token floats are converted at any time.
template <class T, int N, int YT>
JG_DEVICE void jg_mac_bf16_words(float (&acc)[N][YT], const jg_u32x4 (&w)[YT], const jg_u32x4* xs, int kc16,
                                 bool first) {
  int at = 0;
  if (!first) jg_after(at, acc[N - 1]);
  jg_u32x4 xv[N];
#pragma unroll
  for (int n = 0; n < N; ++n) xv[n] = xs[at + n * kc16];
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    unsigned wq[YT];
#pragma unroll
    for (int y = 0; y < YT; ++y) {
      wq[y] = jg_word(w[y], q);
      if (!first || q > 0) jg_after(wq[y], acc[N - 1]);
    }
#pragma unroll
    for (int n = 0; n < N; ++n) {
      unsigned xq = jg_word(xv[n], q);
      if (q > 0 || n > 0) jg_after(xq, acc[(n + N - 1) % N]);
#pragma unroll
      for (int y = 0; y < YT; ++y) acc[n][y] = jg_dot2<T>(wq[y], xq, acc[n][y]);
    }
  }
}

// acc[n][y] += w[u][y] . x[n] over the UNRL 512-element steps of one iteration (lanes past the
// chunk's end skip a step)
template <class T, int N, int YT, int UNRL>
JG_DEVICE void jg_mac_iteration(float (&acc)[N][YT], const jg_u32x4 (&wv)[UNRL][YT], const jg_u32x4* xs,
                                int kc16, int k0, int kend) {
#pragma unroll
  for (int u = 0; u < UNRL; ++u) {
    const int k = k0 + 512 * u;
    if (k >= kend) continue;
    if constexpr (T::id == jg_f16::id) {
      jg_mac_f16<T, N, YT>(acc, wv[u], xs + k / 8, kc16);
    } else if constexpr (YT == 1) {
      jg_mac_bf16_tokens<T, N>(acc, wv[u][0], xs + k / 8, kc16);
    } else {
      jg_mac_bf16_words<T, N, YT>(acc, wv[u], xs + k / 8, kc16, u == 0);
    }
  }
}

// The N x YT row sums of one wave, finished and stored. Each sum is reduced across the wave and
// written into lane n*YT + y (v_writelane: no per-lane compare masks), which stores it: one store
// per lane with a lane-computed address, rather than N*YT wave-uniform stores whose N token
// offsets would all sit in SGPRs (the SGPR spills of N >= 11).
template <class T, int N, int YT>
JG_DEVICE void jg_store_rows(const float (&acc)[N][YT], jg_u16* __restrict__ out, jg_i64 ldo,
                             const jg_u16* __restrict__ bias, jg_i64 bias_ld, int bias_rows, int n_tokens,
                             jg_i64 m, int M, int lane) {
  static_assert(N * YT <= JG_WAVE, "one lane per (token, row)");
  int mine = 0;
#pragma unroll
  for (int n = 0; n < N; ++n)
#pragma unroll
    for (int y = 0; y < YT; ++y) {
      const int s = __builtin_amdgcn_readfirstlane(__float_as_int(jg_wave_sum<JG_WAVE>(acc[n][y])));  // uniform
      // clang has no writelane builtin (the LLVM intrinsic exists); the lane is an inline constant
      asm volatile("v_writelane_b32 %0, %1, %2" : "+v"(mine) : "s"(s), "i"(n * YT + y));
    }
  const int n = lane / YT, y = lane % YT;
  if (lane < N * YT && n < n_tokens && m + y < M) {
    out[(jg_i64)n * ldo + m + y] = jg_finish<T>(__int_as_float(mine), bias, bias_ld, bias_rows, n, m + y);
  }
}

// N tokens (1..16), YT rows per wave, UNRL 512-element steps in flight, WAVES per workgroup.
// kc: tokens' K-chunk held in LDS: a multiple of 512*UNRL, or K itself when the whole row fits
// (a multiple of 8 either way, so every token row in LDS starts 16-byte aligned).
template <class T, int N, int YT, int UNRL, int WAVES>
__global__ void __launch_bounds__(JG_WAVE * WAVES) jg_skinny_amd(
    jg_u16* __restrict__ out, jg_i64 ldo, const jg_u16* __restrict__ x, jg_i64 ldx,
    const jg_u16* __restrict__ w, jg_i64 ldw, const jg_u16* __restrict__ bias, jg_i64 bias_ld, int bias_rows,
    int n_tokens, int M, int K, int kc) {
  extern __shared__ __attribute__((aligned(16))) jg_u16 lds[];  // [N][kc]
  // read as 16-byte vectors: with element offsets the compiler cannot prove a token row aligned
  // and splits reads into ds_read2_b32 pairs
  const jg_u32x4* lds16 = (const jg_u32x4*)lds;
  const int kc16 = kc / 8;
  // blockDim.x == JG_WAVE, so threadIdx.y is the same in every lane of a wave; saying so makes the
  // row index, the row pointers and the row tests scalar (SGPRs and branches, not VGPRs and masks)
  const int lane = threadIdx.x, wave = __builtin_amdgcn_readfirstlane(threadIdx.y), waves = blockDim.y;
  const jg_i64 row_stride = (jg_i64)gridDim.x * waves * YT;
  const bool whole = kc >= K;
  // every wave runs the same number of row rounds: the chunked path has barriers inside
  const jg_i64 rounds = ((jg_i64)M + row_stride - 1) / row_stride;

  auto stage = [&](jg_i64 kbase) {
    const int len = (int)((K - kbase) < kc ? (K - kbase) : kc);
    for (int e = (wave * JG_WAVE + lane) * 8; e < N * len; e += waves * JG_WAVE * 8) {
      const int n = e / len, k = e % len;
      jg_u32x4 v = n < n_tokens ? jg_load_cached(x + (jg_i64)n * ldx + kbase + k) : jg_u32x4{0, 0, 0, 0};
      *(jg_u32x4*)(lds + n * kc + k) = v;
    }
  };
  if (whole) { stage(0); __syncthreads(); }

  for (jg_i64 rd = 0; rd < rounds; ++rd) {
    const jg_i64 m = ((jg_i64)blockIdx.x * waves + wave) * YT + rd * row_stride;
    float acc[N][YT];
#pragma unroll
    for (int n = 0; n < N; ++n)
#pragma unroll
      for (int y = 0; y < YT; ++y) acc[n][y] = 0.f;
    const jg_u16* wrow[YT];
#pragma unroll
    for (int y = 0; y < YT; ++y) wrow[y] = w + ((m + y) < M ? (m + y) : (jg_i64)M - 1) * ldw;

    for (jg_i64 kbase = 0; kbase < K; kbase += kc) {
      if (!whole) { __syncthreads(); stage(kbase); __syncthreads(); }
      const int kend = (int)((K - kbase) < kc ? K - kbase : kc);
      if (m < M) {
        for (int k1 = 0; k1 < kend; k1 += 512 * UNRL) {
          // All UNRL*YT loads in flight at once. A lane past the chunk's end reads the chunk's last
          // slice instead (a valid address; kend >= 8) and its products are skipped: no branch per
          // load, so no wait after each one.
          int kl = k1 + 8 * lane;
          // opaque to the compiler: otherwise it derives a stepped pointer per row and per step from
          // k1 and keeps them all in SGPRs (SGPR spills at YT = 4, UNRL = 2 with clang 22 on gfx90a)
          asm("" : "+v"(kl));
          jg_u32x4 wv[UNRL][YT];
#pragma unroll
          for (int u = 0; u < UNRL; ++u) {
            const int k = kl + 512 * u;
            const jg_i64 kk = kbase + (k < kend ? k : kend - 8);
#pragma unroll
            for (int y = 0; y < YT; ++y) wv[u][y] = jg_load_stream(wrow[y] + kk);
          }
          jg_mac_iteration<T, N, YT, UNRL>(acc, wv, lds16, kc16, kl, kend);
        }
      }
    }
    if (m < M) jg_store_rows<T, N, YT>(acc, out, ldo, bias, bias_ld, bias_rows, n_tokens, m, M, lane);
  }
}

