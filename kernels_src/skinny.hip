// Skinny GEMM, 16-bit: out[n, m] = sum_k x[n, k] * w[m, k] (+ bias), fp32 accumulation, one rounding.
// x: [N, K] row pitch ldx; w: [M, K] row pitch ldw; out: [N, M] row pitch ldo; all in elements.
// bias: null, or rows of M elements with pitch bias_ld; bias_rows = 1 broadcasts one row to all n.
// Requirements checked on the host: K % 8 == 0, pitches % 8 == 0, 16-byte aligned bases.
//
// Two bodies, because the fastest algorithm differs per vendor:
//  * NVIDIA: tensor-core mma.sync m16n8k16 on 16-row weight tiles; each thread feeds its own
//    16-byte slices as A (weights) and B (tokens) in the same k order, so no operand shuffles;
//    K is split across the block's warps and reduced through shared memory in a fixed order.
//  * AMD: the wvSplitK algorithm: persistent workgroups, a wave owns YT rows over all of K,
//    lanes split K in 8-element slices, tokens staged in LDS (whole, or in chunks when they do
//    not fit), fp32 dot products, a fixed-order cross-lane reduction.
#include "jg_platform.h"

#if defined(JG_NV)

template <class T>
JG_DEVICE void jg_mma16816(float (&c)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0,
                           unsigned b1) {
  if constexpr (T::id == jg_bf16::id) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
}

#if __CUDA_ARCH__ >= 900
#define JG_CLUSTER_K(sk) __cluster_dims__(1, sk, 1)
#else
#define JG_CLUSTER_K(sk)
#endif

JG_DEVICE void jg_cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

// NT: 8-token tiles (1 for N <= 8, 2 for N <= 16); MT: 16-row weight tiles per block;
// WK: warps splitting K; U: 32-element K steps per warp iteration (bytes in flight);
// SK: blocks of one cluster splitting K further (sm_90), reduced through distributed shared
// memory in a fixed order: short-M shapes fill the GPU with no workspace and no atomics.
// The K order a row is summed in depends on (WK, U, SK) only, never on N: the dispatcher keeps
// those fixed per (M, K), so a token's bits do not depend on the batch it came in.
template <class T, int NT, int MT, int WK, int U, int SK>
__global__ void __launch_bounds__(32 * WK) JG_CLUSTER_K(SK) jg_skinny_nv(
    jg_u16* __restrict__ out, jg_i64 ldo, const jg_u16* __restrict__ x, jg_i64 ldx,
    const jg_u16* __restrict__ w, jg_i64 ldw, const jg_u16* __restrict__ bias, jg_i64 bias_ld, int bias_rows,
    int N, int M, int K, int pf_bytes) {
  constexpr int ROWS = 16 * MT, COLS = 8 * NT;
  __shared__ float partial[WK][COLS][ROWS];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const jg_i64 m0 = (jg_i64)blockIdx.x * ROWS;

  const jg_u16* wrow[MT][2];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      jg_i64 r = m0 + 16 * i + 8 * h + g;
      wrow[i][h] = w + (r < M ? r : (jg_i64)M - 1) * ldw;  // clamp: tail rows read a real row, never stored
    }
  const jg_u16* xrow[NT];
  bool xok[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    int n = 8 * j + g;
    xok[j] = n < N;
    xrow[j] = x + (jg_i64)(xok[j] ? n : 0) * ldx;
  }

#if __CUDA_ARCH__ >= 900
  // Weights never depend on the kernel before this one (only x does): pull the head of this block's
  // rows into L2 now, let the next kernel launch, and only then wait for the previous kernel's
  // results. With programmatic dependent launch this hides the launch gap and the tail of the
  // previous kernel; without it griddepcontrol is a no-op. pf_bytes is sized on the host so the
  // prefetches of all resident blocks fit in half of L2.
  if (pf_bytes > 0 && threadIdx.x < ROWS) {
    const jg_i64 r = m0 + threadIdx.x;
    if (r < M) asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(w + r * ldw), "r"(pf_bytes) : "memory");
  }
  asm volatile("griddepcontrol.launch_dependents;");
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif

  float acc[MT][NT][4];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;

  constexpr int STEP = 32 * U;
  unsigned split = 0;
  if constexpr (SK > 1) asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(split));
  for (jg_i64 k0 = ((jg_i64)split * WK + warp) * STEP; k0 < K; k0 += (jg_i64)SK * WK * STEP) {
    jg_u32x4 wv[U][MT][2], xv[U][NT];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const jg_i64 k = k0 + 32 * u + 8 * t;
      const bool kok = k < K;  // K % 8 == 0: a slice is wholly inside or wholly outside
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) wv[u][i][h] = kok ? jg_load_stream(wrow[i][h] + k) : jg_u32x4{0, 0, 0, 0};
#pragma unroll
      for (int j = 0; j < NT; ++j) xv[u][j] = (kok && xok[j]) ? jg_load_cached(xrow[j] + k) : jg_u32x4{0, 0, 0, 0};
    }
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j) {
          // elements 0..3 of each slice feed one mma, 4..7 the next; A and B use the same k order
          jg_mma16816<T>(acc[i][j], wv[u][i][0].x, wv[u][i][1].x, wv[u][i][0].y, wv[u][i][1].y, xv[u][j].x,
                         xv[u][j].y);
          jg_mma16816<T>(acc[i][j], wv[u][i][0].z, wv[u][i][1].z, wv[u][i][0].w, wv[u][i][1].w, xv[u][j].z,
                         xv[u][j].w);
        }
  }

  // accumulator layout: c0 (row g, col 2t), c1 (row g, col 2t+1), c2 (row g+8, col 2t), c3 (row g+8, col 2t+1)
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      partial[warp][8 * j + 2 * t][16 * i + g] = acc[i][j][0];
      partial[warp][8 * j + 2 * t + 1][16 * i + g] = acc[i][j][1];
      partial[warp][8 * j + 2 * t][16 * i + g + 8] = acc[i][j][2];
      partial[warp][8 * j + 2 * t + 1][16 * i + g + 8] = acc[i][j][3];
    }
  __syncthreads();
  // fixed-order sums (warps, then cluster blocks): the same bits on every run
  for (int e = threadIdx.x; e < ROWS * COLS; e += 32 * WK) {
    const int n = e / ROWS, r = e % ROWS;
    const jg_i64 m = m0 + r;
    if (n >= N || m >= M) continue;
    float s = partial[0][n][r];
#pragma unroll
    for (int q = 1; q < WK; ++q) s += partial[q][n][r];
    if constexpr (SK > 1) {
      partial[0][n][r] = s;  // this block's share, read by the cluster's first block
    } else {
      if (bias) s += jg_to_f32<T>(bias[(bias_rows == 1 ? 0 : (jg_i64)n * bias_ld) + m]);
      out[(jg_i64)n * ldo + m] = jg_from_f32<T>(s);
    }
  }
  if constexpr (SK > 1) {
    jg_cluster_sync();
    if (split == 0) {
      for (int e = threadIdx.x; e < ROWS * COLS; e += 32 * WK) {
        const int n = e / ROWS, r = e % ROWS;
        const jg_i64 m = m0 + r;
        if (n >= N || m >= M) continue;
        float s = partial[0][n][r];
        const unsigned local = (unsigned)__cvta_generic_to_shared(&partial[0][n][r]);
#pragma unroll
        for (int q = 1; q < SK; ++q) {
          unsigned remote;
          float v;
          asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(local), "r"(q));
          asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(remote) : "memory");
          s += v;
        }
        if (bias) s += jg_to_f32<T>(bias[(bias_rows == 1 ? 0 : (jg_i64)n * bias_ld) + m]);
        out[(jg_i64)n * ldo + m] = jg_from_f32<T>(s);
      }
    }
    jg_cluster_sync();  // the other blocks' shared memory must outlive the first block's reads
  }
}

#else  // JG_AMD

template <class T>
JG_DEVICE float jg_dot8(const jg_u32x4& a, const jg_u32x4& b, float acc) {
  const unsigned av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    if constexpr (T::id == jg_f16::id) {
      typedef _Float16 h2 __attribute__((ext_vector_type(2)));
      // v_dot2_f32_f16: two fp16 products summed into an fp32 accumulator
      acc = __builtin_amdgcn_fdot2(__builtin_bit_cast(h2, av[q]), __builtin_bit_cast(h2, bv[q]), acc, false);
    } else {
      acc = __builtin_fmaf(__uint_as_float(av[q] << 16), __uint_as_float(bv[q] << 16), acc);
      acc = __builtin_fmaf(__uint_as_float(av[q] & 0xffff0000u), __uint_as_float(bv[q] & 0xffff0000u), acc);
    }
  }
  return acc;
}

JG_DEVICE float jg_wave_sum(float v) {
  // butterfly over the wave: a fixed tree, so the order of additions never changes
#pragma unroll
  for (int s = JG_WAVE / 2; s > 0; s >>= 1) v += __shfl_xor(v, s, JG_WAVE);
  return v;
}

// N tokens (1..16), YT rows per wave, UNRL 512-element steps in flight, WAVES per workgroup.
// kc: tokens' K-chunk held in LDS (a multiple of 512*UNRL, or >= K when the whole row fits).
template <class T, int N, int YT, int UNRL, int WAVES>
__global__ void __launch_bounds__(JG_WAVE * WAVES) jg_skinny_amd(
    jg_u16* __restrict__ out, jg_i64 ldo, const jg_u16* __restrict__ x, jg_i64 ldx,
    const jg_u16* __restrict__ w, jg_i64 ldw, const jg_u16* __restrict__ bias, jg_i64 bias_ld, int bias_rows,
    int n_tokens, int M, int K, int kc) {
  extern __shared__ __attribute__((aligned(16))) jg_u16 lds[];  // [N][kc]
  const int lane = threadIdx.x, wave = threadIdx.y, waves = blockDim.y;
  const jg_i64 row_stride = (jg_i64)gridDim.x * waves * YT;
  const bool whole = kc >= K;
  // every wave runs the same number of row rounds: the chunked path has barriers inside
  const jg_i64 rounds = ((jg_i64)M + row_stride - 1) / row_stride;

  auto stage = [&](jg_i64 kbase) {
    const int len = (int)((K - kbase) < kc ? (K - kbase) : kc);
    for (int e = (wave * JG_WAVE + lane) * 8; e < N * len; e += waves * JG_WAVE * 8) {
      const int n = e / len, k = e % len;
      jg_u32x4 v = n < n_tokens ? jg_load_cached(x + (jg_i64)n * ldx + kbase + k) : jg_u32x4{0, 0, 0, 0};
      *(jg_u32x4*)(lds + (jg_i64)n * kc + k) = v;
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
      const jg_i64 kend = (K - kbase) < kc ? K - kbase : kc;
      if (m < M) {
        for (jg_i64 k1 = 0; k1 < kend; k1 += 512 * UNRL) {
          jg_u32x4 wv[UNRL][YT];
#pragma unroll
          for (int u = 0; u < UNRL; ++u) {
            const jg_i64 k = k1 + 512 * u + 8 * lane;
#pragma unroll
            for (int y = 0; y < YT; ++y) wv[u][y] = k < kend ? jg_load_stream(wrow[y] + kbase + k) : jg_u32x4{0, 0, 0, 0};
          }
#pragma unroll
          for (int u = 0; u < UNRL; ++u) {
            const jg_i64 k = k1 + 512 * u + 8 * lane;
            if (k >= kend) continue;
#pragma unroll
            for (int n = 0; n < N; ++n) {
              const jg_u32x4 xv = *(const jg_u32x4*)(lds + (jg_i64)n * kc + k);
#pragma unroll
              for (int y = 0; y < YT; ++y) acc[n][y] = jg_dot8<T>(wv[u][y], xv, acc[n][y]);
            }
          }
        }
      }
    }
    if (m < M) {
#pragma unroll
      for (int n = 0; n < N; ++n)
#pragma unroll
        for (int y = 0; y < YT; ++y) {
          const float s = jg_wave_sum(acc[n][y]);
          if (lane == 0 && n < n_tokens && m + y < M) {
            float v = s;
            if (bias) v += jg_to_f32<T>(bias[(bias_rows == 1 ? 0 : (jg_i64)n * bias_ld) + m + y]);
            out[(jg_i64)n * ldo + m + y] = jg_from_f32<T>(v);
          }
        }
    }
  }
}

#endif
