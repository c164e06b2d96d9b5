// AMD body of the moderate-N family, included by moderate.hip under JG_AMD: the contract, the argument
// list and RED 0 / RED 2 are the ones moderate.hip's header describes. RED 1 (clusters) has no AMD form.
//
// A workgroup of WM x WN waves (64 lanes) computes BM weight rows x BN tokens over K slice blockIdx.z,
// in 64-element K blocks. Each block's weights (non-temporal: only this slice's workgroups read them)
// and tokens (cached: every M tile re-reads them) are loaded as 16-byte chunks into registers while
// the waves multiply the previous block out of LDS, then written to the other of two LDS buffers
// (ST = 2): one barrier per K block, and the global latency hides behind the MFMAs.
//
// LDS rows are 64 + 8 elements (144 bytes, 36 banks): the 16 rows that one operand read touches start
// 4 banks apart, so its 16-byte lane reads are conflict-free; the 8 lanes storing a row's 128 bytes
// write consecutive banks. Both operands are re-laid-out this way: loaded coalesced (8 lanes a row),
// read back in the MFMA operand layout.
//
// MFMA operand layouts (AMD Matrix Instruction Calculator, gfx9 rule for 16x16xKK with one block):
// A is 16 x KK, B is KK x 16, each lane holds KK/4 consecutive k:
//   A[i][k] in lane i + 16 * (k / (KK/4)), element k % (KK/4); B[k][j] in lane j + 16 * (k / (KK/4));
//   D[i][j] in lane j + 16 * (i / 4), register i % 4.
// A = 16 weight rows, B = 16 tokens. For each 32-wide K step lane l reads 8 elements, k = 8*(l/16)..+7,
// of weight row l%16 and of token l%16 (one 16-byte LDS read per operand):
//  * gfx950: v_mfma_f32_16x16x32_{f16,bf16} takes exactly these (KK/4 = 8 elements a lane).
//  * gfx90a / gfx942: v_mfma_f32_16x16x16{f16,bf16_1k} take 4 elements a lane. The first gets
//    elements 0-3 of every lane, the second 4-7: each multiplies over a 16-element subset of the
//    step's K (the same subset for A and B), so the two together sum all 32.
// Lane l ends with out[token 16*nj + l%16][row 16*mi + 4*(l/16) + r], r = 0..3: four consecutive rows
// of one token, one 16-byte store into the fp32 tile [BN][BM + 4] (+4 floats: the 16 lanes of one row
// group, consecutive tokens, start 4 banks apart).
#pragma once
#include "amd/common.h"

typedef float jg_acc4 __attribute__((ext_vector_type(4)));

// acc + the product over one 32-wide K step; a: 8 elements of a weight row, b: 8 of a token, both
// packed as 16-bit pairs, lower k first
template <class T>
JG_DEVICE jg_acc4 jg_mfma_k32(jg_u32x4_v a, jg_u32x4_v b, jg_acc4 acc) {
#if defined(__gfx950__)
  // clang 22 takes __bf16 vectors for the gfx950 bf16 MFMA (hiprtc 5.2 has no __bf16, and no gfx950)
  typedef _Float16 h8 __attribute__((ext_vector_type(8)));
  typedef __bf16 b8 __attribute__((ext_vector_type(8)));
  if constexpr (T::id == jg_f16::id)
    return __builtin_amdgcn_mfma_f32_16x16x32_f16(__builtin_bit_cast(h8, a), __builtin_bit_cast(h8, b), acc, 0, 0, 0);
  else
    return __builtin_amdgcn_mfma_f32_16x16x32_bf16(__builtin_bit_cast(b8, a), __builtin_bit_cast(b8, b), acc, 0, 0, 0);
#else
  // short vectors for bf16_1k: what hiprtc 5.2 (gfx90a) requires and clang 22 (gfx942) accepts
  typedef unsigned u2 __attribute__((ext_vector_type(2)));
  typedef _Float16 h4 __attribute__((ext_vector_type(4)));
  typedef short s4 __attribute__((ext_vector_type(4)));
  const u2 alo = {a.x, a.y}, ahi = {a.z, a.w}, blo = {b.x, b.y}, bhi = {b.z, b.w};
  if constexpr (T::id == jg_f16::id) {
    acc = __builtin_amdgcn_mfma_f32_16x16x16f16(__builtin_bit_cast(h4, alo), __builtin_bit_cast(h4, blo), acc, 0, 0, 0);
    return __builtin_amdgcn_mfma_f32_16x16x16f16(__builtin_bit_cast(h4, ahi), __builtin_bit_cast(h4, bhi), acc, 0, 0, 0);
  } else {
    acc = __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(__builtin_bit_cast(s4, alo), __builtin_bit_cast(s4, blo), acc, 0, 0, 0);
    return __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(__builtin_bit_cast(s4, ahi), __builtin_bit_cast(s4, bhi), acc, 0, 0, 0);
  }
#endif
}

// token n, rows m..m+3: one 8-byte store when all four rows exist (m % 4 == 0, ldo % 8 == 0 and the
// 16-byte aligned base make it aligned), else element by element
template <class T>
JG_DEVICE void jg_mod_store4(jg_u16* out, jg_i64 ldo, const jg_u16* bias, jg_i64 bias_ld, int bias_rows,
                             jg_acc4 v, int n, jg_i64 m, int N, int M) {
  if (n >= N) return;
  jg_u16* p = out + (jg_i64)n * ldo + m;
  if (m + 3 < M) {
    jg_u16 h[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) h[q] = jg_finish<T>(v[q], bias, bias_ld, bias_rows, n, m + q);
    typedef unsigned u2 __attribute__((ext_vector_type(2)));
    *(u2*)p = u2{h[0] | ((unsigned)h[1] << 16), h[2] | ((unsigned)h[3] << 16)};
  } else {
#pragma unroll
    for (int q = 0; q < 4; ++q)
      if (m + q < M) p[q] = jg_finish<T>(v[q], bias, bias_ld, bias_rows, n, m + q);
  }
}

template <class T, int BM, int BN, int WM, int WN, int ST, int RED, int CS>
__global__ void __launch_bounds__(JG_WAVE * WM * WN) jg_moderate_amd(
    jg_u16* __restrict__ out, jg_i64 ldo, const jg_u16* __restrict__ x, jg_i64 ldx,
    const jg_u16* __restrict__ w, jg_i64 ldw, const jg_u16* __restrict__ bias, jg_i64 bias_ld, int bias_rows,
    int N, int M, int K, int kb_per_split, float* __restrict__ ws, unsigned* __restrict__ counters) {
  static_assert(JG_WAVE == 64, "the MFMA layouts above are wave64's");
  static_assert(ST == 2 && CS == 1 && (RED == 0 || RED == 2), "two LDS buffers; no clusters on AMD");
  constexpr int THREADS = JG_WAVE * WM * WN;
  constexpr int MI = BM / WM / 16, NJ = BN / WN / 16;  // 16 x 16 MFMA tiles of a wave
  static_assert(MI >= 1 && NJ >= 1 && MI * WM * 16 == BM && NJ * WN * 16 == BN, "wave tiles of 16-row/16-token pieces");
  // every thread loads whole rounds of chunks: its chunks' column (tid % 8) never changes
  static_assert(BM * 8 % THREADS == 0 && BN * 8 % THREADS == 0, "16-byte chunks of a K block: a multiple of the threads");
  constexpr int PU = 9;                 // LDS row pitch in 16-byte units: 64 elements + 8 of skew
  constexpr int BUF = (BM + BN) * PU;   // units of one buffer: BM weight rows, then BN token rows
  constexpr int RW = BM * 8 / THREADS, RX = BN * 8 / THREADS, RSTEP = THREADS / 8;  // chunks a thread, row step
  constexpr int TP = BM + 4;            // fp32 tile pitch
  static_assert(ST * BUF * 16 >= BN * TP * 4, "the fp32 tile reuses the LDS buffers");
  extern __shared__ __attribute__((aligned(16))) unsigned char jg_lds[];
  jg_u32x4_v* const lds = (jg_u32x4_v*)jg_lds;  // 16-byte units: offsets the compiler knows are aligned

  const int tid = threadIdx.x, lane = tid & 63;
  const int wave = __builtin_amdgcn_readfirstlane(tid >> 6);  // uniform: scalar operand offsets
  const int wm = wave % WM, wn = wave / WM;
  const jg_i64 m0 = (jg_i64)blockIdx.x * BM;
  const int n0 = blockIdx.y * BN;
  const int split = blockIdx.z, S = gridDim.z;
  const int nkb = (K + 63) / 64, kb0 = split * kb_per_split;
  const int kend = nkb < kb0 + kb_per_split ? nkb : kb0 + kb_per_split;
  const int kbn = kend > kb0 ? kend - kb0 : 0;  // this slice's K blocks (0 for an empty slice)

  // This thread's chunks: rows (tid / 8) + j * RSTEP, column 8 * (tid % 8). Rows past M / N read row 0
  // (a valid address) and keep zeros; so do chunks past K, read at k = 0.
  const int c8 = 8 * (tid & 7), r0 = tid >> 3;
  const jg_u16* wrow[RW];
  const jg_u16* xrow[RX];
  bool wok[RW], xok[RX];
#pragma unroll
  for (int j = 0; j < RW; ++j) {
    const jg_i64 m = m0 + r0 + j * RSTEP;
    wok[j] = m < M;
    wrow[j] = w + (wok[j] ? m * ldw : 0);
  }
#pragma unroll
  for (int j = 0; j < RX; ++j) {
    const jg_i64 n = (jg_i64)n0 + r0 + j * RSTEP;
    xok[j] = n < N;
    xrow[j] = x + (xok[j] ? n * ldx : 0);
  }
  jg_u32x4_v rw[RW], rx[RX];  // the next K block, in flight
  const jg_u32x4_v zero = {0u, 0u, 0u, 0u};
  auto fetch = [&](int i) {
    const int k = (kb0 + i) * 64 + c8;
    const bool kok = k < K;  // K % 8 == 0: a chunk is wholly in or out
    const int kk = kok ? k : 0;
#pragma unroll
    for (int j = 0; j < RW; ++j) {
      const jg_u32x4_v v = __builtin_nontemporal_load((const jg_u32x4_v*)(wrow[j] + kk));
      rw[j] = wok[j] && kok ? v : zero;
    }
#pragma unroll
    for (int j = 0; j < RX; ++j) {
      const jg_u32x4_v v = *(const jg_u32x4_v*)(xrow[j] + kk);
      rx[j] = xok[j] && kok ? v : zero;
    }
  };
  auto stash = [&](int b) {
    jg_u32x4_v* d = lds + b * BUF + r0 * PU + (tid & 7);
#pragma unroll
    for (int j = 0; j < RW; ++j) d[j * RSTEP * PU] = rw[j];
#pragma unroll
    for (int j = 0; j < RX; ++j) d[(BM + j * RSTEP) * PU] = rx[j];
  };

  jg_acc4 acc[MI][NJ];
#pragma unroll
  for (int mi = 0; mi < MI; ++mi)
#pragma unroll
    for (int nj = 0; nj < NJ; ++nj) acc[mi][nj] = jg_acc4{0.f, 0.f, 0.f, 0.f};
  // operand reads: row (or token) l % 16 of the wave's piece, K chunk l / 16 of the 32-wide step
  const int ra = (wm * (BM / WM) + (lane & 15)) * PU + (lane >> 4);
  const int rb = (BM + wn * (BN / WN) + (lane & 15)) * PU + (lane >> 4);
  auto multiply = [&](int b) {
    const jg_u32x4_v* sa = lds + b * BUF + ra;
    const jg_u32x4_v* sb = lds + b * BUF + rb;
#pragma unroll
    for (int s = 0; s < 2; ++s) {  // two 32-wide steps per K block
      jg_u32x4_v a[MI], bt[NJ];
#pragma unroll
      for (int mi = 0; mi < MI; ++mi) a[mi] = sa[16 * mi * PU + 4 * s];
#pragma unroll
      for (int nj = 0; nj < NJ; ++nj) bt[nj] = sb[16 * nj * PU + 4 * s];
#pragma unroll
      for (int mi = 0; mi < MI; ++mi)
#pragma unroll
        for (int nj = 0; nj < NJ; ++nj) acc[mi][nj] = jg_mfma_k32<T>(a[mi], bt[nj], acc[mi][nj]);
    }
  };

  if (kbn > 0) {
    fetch(0);
    stash(0);
  }
  __syncthreads();
  for (int i = 0; i < kbn; ++i) {
    if (i + 1 < kbn) fetch(i + 1);        // global loads in flight during this block's MFMAs
    multiply(i & 1);
    if (i + 1 < kbn) stash((i + 1) & 1);  // the buffer block i-1 used: every wave left it at the last barrier
    __syncthreads();                      // block i+1 in LDS for all, block i's buffer free again
  }

  // the LDS buffers become the fp32 tile [BN][TP] (the last barrier: no wave still reads them)
  float* tile = (float*)jg_lds;
#pragma unroll
  for (int mi = 0; mi < MI; ++mi)
#pragma unroll
    for (int nj = 0; nj < NJ; ++nj) {
      const int m = wm * (BM / WM) + 16 * mi + 4 * (lane >> 4), n = wn * (BN / WN) + 16 * nj + (lane & 15);
      *(jg_acc4*)&tile[n * TP + m] = acc[mi][nj];
    }
  __syncthreads();

  constexpr int Q = BM / 4, V = BN * Q;  // float4 units of the tile: whole rounds of the threads
  static_assert(V % THREADS == 0 && BN * BM % THREADS == 0, "whole rounds over the fp32 tile");
  if constexpr (RED == 0) {
#pragma unroll
    for (int it = 0; it < V / THREADS; ++it) {
      const int u = it * THREADS + tid, c = u / Q, r = 4 * (u % Q);
      jg_mod_store4<T>(out, ldo, bias, bias_ld, bias_rows, *(const jg_acc4*)&tile[c * TP + r], n0 + c, m0 + r, N, M);
    }
  } else {
    constexpr int E = BN * BM, EPT = E / THREADS;  // floats of a partial tile, per thread
    const jg_i64 tile_id = (jg_i64)blockIdx.y * gridDim.x + blockIdx.x;
    float* parts = ws + tile_id * S * (jg_i64)E;  // [S][BN][BM] for this tile
#pragma unroll
    for (int it = 0; it < V / THREADS; ++it) {
      const int u = it * THREADS + tid, c = u / Q, r = 4 * (u % Q);
      *(jg_acc4*)(parts + (jg_i64)split * E + 4 * u) = *(const jg_acc4*)&tile[c * TP + r];
    }
    __threadfence();  // release: this thread's partial stores reach device (agent) scope before the count
    __syncthreads();  // ... for every thread of the block, and nobody reads the tile any more
    int* last = (int*)jg_lds;
    if (tid == 0) *last = atomicAdd(&counters[tile_id], 1u) == (unsigned)(S - 1);
    __syncthreads();
    if (!*last) return;
    __threadfence();  // acquire: the other workgroups' partials (they released before counting)
    // Partials are read with relaxed agent-scope atomic loads: by the memory model they see what
    // another workgroup made visible at agent scope (glc on gfx90a skips the CU's L1; sc1 on gfx942 /
    // gfx950 stays coherent across the XCDs' separate L2s), with no wait after each. A plain load
    // relies on the fence's cache invalidation; __builtin_nontemporal_load is only a streaming hint
    // with no coherence promise; volatile adds a vmcnt(0) wait after every load. They are 4-byte loads
    // (no 16-byte atomics), so lanes take consecutive floats: each load instruction is coalesced.
    float s[EPT];
#pragma unroll
    for (int j = 0; j < EPT; ++j) s[j] = __hip_atomic_load(parts + j * THREADS + tid, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_AGENT);
    for (int q = 1; q < S; ++q) {  // slice order, whichever workgroup arrived last
      const float* p = parts + (jg_i64)q * E + tid;
#pragma unroll
      for (int j = 0; j < EPT; ++j) s[j] += __hip_atomic_load(p + j * THREADS, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_AGENT);
    }
#pragma unroll
    for (int j = 0; j < EPT; ++j) {
      const int e = j * THREADS + tid, c = e / BM, r = e % BM;
      const int n = n0 + c;
      const jg_i64 m = m0 + r;
      if (n < N && m < M) out[(jg_i64)n * ldo + m] = jg_finish<T>(s[j], bias, bias_ld, bias_rows, n, m);
    }
    // every workgroup of this tile has counted: ready for the next call, no zeroing launch
    if (tid == 0) __hip_atomic_store(&counters[tile_id], 0u, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_AGENT);
  }
}
