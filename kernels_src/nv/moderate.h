// NVIDIA body of the moderate-N family (moderate.hip): mma.sync and wgmma cores over cp.async stages.
#pragma once
#include "nv/core.h"
#include "nv/wgmma.h"

#if __CUDA_ARCH__ >= 900
#define JG_CLUSTER_Z(cs) __cluster_dims__(1, 1, cs)
#else
#define JG_CLUSTER_Z(cs)
#endif

JG_DEVICE unsigned jg_smem(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }

template <bool C, class A, class B>
struct jg_pick { using type = A; };  // std::conditional without <type_traits> (NVRTC has no std headers)
template <class A, class B>
struct jg_pick<false, A, B> { using type = B; };

// 16 bytes global -> shared without registers; src-size 0 writes zeros and reads nothing. The L2
// fetches 256-byte sectors groups: the next K blocks of a row are on their way before they are asked for.
JG_DEVICE void jg_cp16(unsigned dst, const void* src, bool ok) {
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(ok ? 16 : 0)
               : "memory");
}
JG_DEVICE void jg_cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int P>
JG_DEVICE void jg_cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(P) : "memory"); }

JG_DEVICE void jg_ldsm4(unsigned (&r)[4], unsigned addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

// Byte offset of 16-byte chunk c (0..7) of row r in a [rows][64] 16-bit tile. The chunk index is
// XORed with the row's low 3 bits: the 8 rows one ldmatrix reads (and the 8 chunks cp.async writes
// for one row) land in 8 different 16-byte bank groups.
JG_DEVICE unsigned jg_swz(int r, int c) { return (unsigned)(r * 128 + ((c ^ (r & 7)) << 4)); }

// ROWS x 64 elements of a row-major [rows, K] matrix (rows row0.., K from k0) into a swizzled tile
template <int ROWS, int THREADS>
JG_DEVICE void jg_stage(unsigned dst, const jg_u16* base, jg_i64 ld, jg_i64 row0, jg_i64 rows, jg_i64 k0, int K) {
  constexpr int CH = ROWS * 8;
#pragma unroll
  for (int it = 0; it < (CH + THREADS - 1) / THREADS; ++it) {
    const int i = it * THREADS + (int)threadIdx.x;
    if (CH % THREADS != 0 && i >= CH) break;
    const int r = i >> 3, c = i & 7;
    const jg_i64 k = k0 + 8 * c;
    const bool ok = row0 + r < rows && k < K;
    jg_cp16(dst + jg_swz(r, c), ok ? base + (row0 + r) * ld + k : base, ok);
  }
}

// Pipeline stage at `st`: KS 64-element K blocks from K block kb, weights then tokens
// ([KS][BM][64], then [KS][BN][64], each swizzled), chunks at or past kend zero-filled
template <int BM, int BN, int THREADS, int KS>
JG_DEVICE void jg_load_stage(unsigned st, const jg_u16* w, jg_i64 ldw, jg_i64 m0, int M, const jg_u16* x, jg_i64 ldx,
                             int n0, int N, int kb, int kend) {
#pragma unroll
  for (int j = 0; j < KS; ++j) {
    const jg_i64 k0 = (jg_i64)(kb + j) * 64;
    jg_stage<BM, THREADS>(st + j * BM * 128, w, ldw, m0, M, k0, kend);
    jg_stage<BN, THREADS>(st + KS * BM * 128 + j * BN * 128, x, ldx, n0, N, k0, kend);
  }
}

JG_DEVICE void jg_ld4_cluster(float (&v)[4], unsigned addr) {
  asm volatile("ld.shared::cluster.v4.f32 {%0,%1,%2,%3}, [%4];" : "=f"(v[0]), "=f"(v[1]), "=f"(v[2]), "=f"(v[3])
               : "r"(addr) : "memory");
}
JG_DEVICE void jg_ld4_global_cg(float (&v)[4], const float* p) {  // L2 only: other SMs wrote it
  asm volatile("ld.global.cg.v4.f32 {%0,%1,%2,%3}, [%4];" : "=f"(v[0]), "=f"(v[1]), "=f"(v[2]), "=f"(v[3])
               : "l"(p) : "memory");
}
JG_DEVICE void jg_st4_global_cg(float* p, const float* v) {
  asm volatile("st.global.cg.v4.f32 [%0], {%1,%2,%3,%4};" ::"l"(p), "f"(v[0]), "f"(v[1]), "f"(v[2]), "f"(v[3])
               : "memory");
}

// Four finished sums of token n, rows m..m+3: epilogue (bias), rounding, masked stores
template <class T>
JG_DEVICE void jg_store4(jg_u16* out, jg_i64 ldo, const jg_epilogue& e, const float (&v)[4], int n, jg_i64 m, int N,
                         int M) {
  if (n >= N) return;
#pragma unroll
  for (int q = 0; q < 4; ++q)
    if (m + q < M) jg_store<jg_op_16<T>>(nullptr, out, ldo, e, v[q], n, m + q);
}

// The fp32 tile [BN][BM + 4] a product leaves in shared memory (reusing the pipeline's PIPE bytes,
// a flag in its last 16), and the three ways it leaves: stored (no other slice), through the workspace
// (reduce_pieces), or summed over a cluster (in the kernel).
template <class T, int BM, int BN, int THREADS_, int PIPE>
struct jg_tile_out {
  static constexpr int THREADS = THREADS_;
  static constexpr int TP = BM + 4;              // fp32 tile pitch: +4 floats keeps accumulator stores conflict-free
  static constexpr int Q = BM / 4, V = BN * Q;  // float4 units of the fp32 tile
  static_assert(PIPE >= BN * TP * 4 + 16, "the fp32 tile (and a flag) reuse the pipeline's shared memory");

  // float4 unit u of the fp32 tile: token c, rows r..r+3
  static JG_DEVICE void unit(int u, int& c, int& r) { c = u / Q; r = 4 * (u % Q); }

  // accumulator pair (rows r, r + 8) x (tokens c, c + 1) of an m16n8 fragment into the fp32 tile
  static JG_DEVICE void put(float* tile, int r, int c, const float* a) {
    tile[c * TP + r] = a[0];
    tile[(c + 1) * TP + r] = a[1];
    tile[c * TP + r + 8] = a[2];
    tile[(c + 1) * TP + r + 8] = a[3];
  }

  // the tile finished here (no other slice): epilogue and stores of float4 units u0 .. u0 + V - 1 (u0 = 0)
  static JG_DEVICE void store_tile(const unsigned char* smem, jg_u16* out, jg_i64 ldo, const jg_epilogue& e,
                                   int n0, jg_i64 m0, int N, int M, int u0 = 0) {
    const float* tile = reinterpret_cast<const float*>(smem);
    for (int u = u0 + threadIdx.x; u < min(V, u0 + V); u += THREADS) {
      int c, r;
      unit(u, c, r);
      float s[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) s[j] = tile[c * TP + r + j];
      jg_store4<T>(out, ldo, e, s, n0 + c, m0 + r, N, M);
    }
  }

  // RED 2: write this block's partial as piece p of `parts` ([pieces][BN][BM]), count it on
  // `counter`; the block that brings the count to `pieces` sums the pieces in order 0..pieces-1,
  // stores, and resets the counter to 0. Which block that is depends on timing; the order does not.
  static JG_DEVICE void reduce_pieces(unsigned char* smem, float* parts, int p, int pieces, unsigned* counter,
                                      jg_u16* out, jg_i64 ldo, const jg_epilogue& e, int n0, jg_i64 m0, int N,
                                      int M) {
    const float* tile = reinterpret_cast<const float*>(smem);
    for (int u = threadIdx.x; u < V; u += THREADS) {
      int c, r;
      unit(u, c, r);
      jg_st4_global_cg(parts + (jg_i64)p * BN * BM + 4 * u, &tile[c * TP + r]);
    }
    __threadfence();  // this block's partial is visible device-wide before it is counted
    __syncthreads();
    // the flag lives in dynamic shared memory past the tile: with any static shared memory, a launch
    // of exactly 48 KiB dynamic is refused (CUDA_ERROR_INVALID_VALUE on an H100) even when opted in
    int* last = reinterpret_cast<int*>(smem + PIPE - 16);
    if (threadIdx.x == 0) *last = atomicAdd(counter, 1u) == (unsigned)(pieces - 1);
    __syncthreads();
    if (*last) {
      __threadfence();  // see the other blocks' partials (they fenced before counting)
      for (int u = threadIdx.x; u < V; u += THREADS) {
        int c, r;
        unit(u, c, r);
        float s[4];
        jg_ld4_global_cg(s, parts + 4 * u);
        for (int q = 1; q < pieces; ++q) {  // piece order, whichever block arrived last
          float v[4];
          jg_ld4_global_cg(v, parts + (jg_i64)q * BN * BM + 4 * u);
#pragma unroll
          for (int j = 0; j < 4; ++j) s[j] += v[j];
        }
        jg_store4<T>(out, ldo, e, s, n0 + c, m0 + r, N, M);
      }
      if (threadIdx.x == 0) *counter = 0u;  // every piece of this tile has counted: ready for the next call
    }
  }
};

// mma.sync core: WM x WN warps (a warp owns (BM/WM) x (BN/WN) of the tile in m16n8k16 pieces), operands
// through ldmatrix. product(): the tile over K blocks [kb0, kb0 + kbn), left in shared memory as the
// fp32 tile; ends with a barrier, so the tile is complete for every thread.
template <class T, int BM, int BN, int WM, int WN, int ST>
struct jg_moderate_tile : jg_tile_out<T, BM, BN, 32 * WM * WN, ST * (BM + BN) * 128> {
  using Base = jg_tile_out<T, BM, BN, 32 * WM * WN, ST * (BM + BN) * 128>;
  static constexpr int THREADS = Base::THREADS, TP = Base::TP;
  static constexpr int MI = BM / WM / 16, NJ = BN / WN / 8;
  static_assert(MI >= 1 && NJ >= 2 && NJ % 2 == 0, "warp tile: 16-row pieces, pairs of 8-token pieces");
  static constexpr int STAGE = (BM + BN) * 128;  // bytes of one pipeline stage

  static JG_DEVICE void product(unsigned char* smem, const jg_u16* __restrict__ x, jg_i64 ldx,
                                const jg_u16* __restrict__ w, jg_i64 ldw, jg_i64 m0, int n0, int N, int M, int K,
                                int kb0, int kbn) {
    const unsigned sbase = jg_smem(smem);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wm = warp % WM, wn = warp / WM;
    auto load = [&](int i) {
      jg_load_stage<BM, BN, THREADS, 1>(sbase + (i % ST) * STAGE, w, ldw, m0, M, x, ldx, n0, N, kb0 + i, K);
    };
    float acc[MI][NJ][4];
    jg_zero(acc);
#pragma unroll
    for (int s = 0; s < ST - 1; ++s) {
      if (s < kbn) load(s);
      jg_cp_commit();
    }
    const int mat = lane >> 3, rin = lane & 7;  // ldmatrix: which 8x8 matrix this lane addresses, which row
    for (int i = 0; i < kbn; ++i) {
      jg_cp_wait<ST - 2>();
      __syncthreads();  // block i is in shared memory for all; block i-1's stage is free again
      if (i + ST - 1 < kbn) load(i + ST - 1);
      jg_cp_commit();
      const unsigned sw = sbase + (i % ST) * STAGE, sx = sw + BM * 128;
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {  // 16-element k steps
        unsigned a[MI][4], b[NJ][2];
#pragma unroll
        for (int mi = 0; mi < MI; ++mi)  // matrices: rows 0-7 / 8-15 (mat & 1) x k 0-7 / 8-15 (mat >> 1)
          jg_ldsm4(a[mi], sw + jg_swz(wm * (BM / WM) + 16 * mi + rin + 8 * (mat & 1), 2 * kk + (mat >> 1)));
#pragma unroll
        for (int nj = 0; nj < NJ; nj += 2) {  // matrices: k 0-7 / 8-15 (mat & 1) x tokens 0-7 / 8-15 (mat >> 1)
          unsigned r4[4];
          jg_ldsm4(r4, sx + jg_swz(wn * (BN / WN) + 8 * nj + rin + 8 * (mat >> 1), 2 * kk + (mat & 1)));
          b[nj][0] = r4[0];
          b[nj][1] = r4[1];
          b[nj + 1][0] = r4[2];
          b[nj + 1][1] = r4[3];
        }
#pragma unroll
        for (int mi = 0; mi < MI; ++mi)
#pragma unroll
          for (int nj = 0; nj < NJ; ++nj)
            jg_mma_k16<T>(acc[mi][nj], a[mi][0], a[mi][1], a[mi][2], a[mi][3], b[nj][0], b[nj][1]);
      }
    }
    jg_cp_wait<0>();
    __syncthreads();  // the pipeline's shared memory becomes the fp32 tile [BN][TP]
    float* tile = reinterpret_cast<float*>(smem);
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int mi = 0; mi < MI; ++mi)
#pragma unroll
      for (int nj = 0; nj < NJ; ++nj)
        Base::put(tile, wm * (BM / WM) + 16 * mi + g, wn * (BN / WN) + 8 * nj + 2 * t, acc[mi][nj]);
    __syncthreads();
  }
};

// wgmma core (sm_90a): BM / 64 warpgroups, each owns 64 rows x all BN tokens, one m64nBNk16 per
// 16-element k step, both operands straight from the swizzled stages (no ldmatrix, no registers
// for operands). A stage holds KS 64-element K blocks side by side ([KS][BM][64] weights, then
// [KS][BN][64] tokens), so each weight row is read KS * 128 contiguous bytes at a time.
// smem must be 1024-byte aligned (the swizzle repeats every 1024 bytes).
template <class T, int BM, int BN, int ST, int KS>
struct jg_moderate_wgtile : jg_tile_out<T, BM, BN, 128 * (BM / 64), ST * KS * (BM + BN) * 128> {
  using Base = jg_tile_out<T, BM, BN, 128 * (BM / 64), ST * KS * (BM + BN) * 128>;
  static constexpr int THREADS = Base::THREADS;
  static constexpr int STAGE = KS * (BM + BN) * 128;
  static_assert(BM % 64 == 0 && BN % 16 == 0 && BN <= 128, "64-row warpgroups; token tiles of 16..128");

  static JG_DEVICE void product(unsigned char* smem, const jg_u16* __restrict__ x, jg_i64 ldx,
                                const jg_u16* __restrict__ w, jg_i64 ldw, jg_i64 m0, int n0, int N, int M, int K,
                                int kb0, int kbn) {
#if defined(JG_WGMMA)
    const unsigned sbase = jg_smem(smem);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, wg = warp >> 2;
    // this slice's K ends at kend: a stage's later blocks past it are zero-filled, not read twice
    const int kend = min(K, (kb0 + kbn) * 64), stages = (kbn + KS - 1) / KS;
    auto load = [&](int i) {
      jg_load_stage<BM, BN, THREADS, KS>(sbase + (i % ST) * STAGE, w, ldw, m0, M, x, ldx, n0, N, kb0 + i * KS, kend);
    };
    float acc[BN / 2];
#pragma unroll
    for (int r = 0; r < BN / 2; ++r) acc[r] = 0.f;
#pragma unroll
    for (int s = 0; s < ST - 1; ++s) {
      if (s < stages) load(s);
      jg_cp_commit();
    }
    for (int i = 0; i < stages; ++i) {
      jg_cp_wait<ST - 2>();
      jg_fence_proxy_async();  // this thread's copies into stage i, made visible to wgmma's reads
      __syncthreads();         // ... everyone's; and stage i-1's MMAs are done, so its buffer is free
      const unsigned st = sbase + (i % ST) * STAGE;
      jg_wg_pin(acc);
      jg_wg_fence();
#pragma unroll
      for (int j = 0; j < KS; ++j)
#pragma unroll
        for (int kk = 0; kk < 4; ++kk)  // 16-element k steps: 32 bytes along the swizzled 128-byte rows
          jg_wgmma<BN>::template mma<T>(acc, jg_wg_desc(st + j * BM * 128 + wg * 64 * 128 + 32 * kk),
                                        jg_wg_desc(st + KS * BM * 128 + j * BN * 128 + 32 * kk));
      jg_wg_commit();
      if (i + ST - 1 < stages) load(i + ST - 1);  // into stage i-1's buffer, while the MMAs run
      jg_cp_commit();
      jg_wg_wait<0>();
      jg_wg_pin(acc);
    }
    jg_cp_wait<0>();
    __syncthreads();  // the pipeline's shared memory becomes the fp32 tile [BN][TP]
    float* tile = reinterpret_cast<float*>(smem);
    const int g = lane >> 2, t = lane & 3, r0 = wg * 64 + (warp & 3) * 16 + g;
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) Base::put(tile, r0, 8 * j + 2 * t, &acc[4 * j]);
    __syncthreads();
#else
    __trap();  // wgmma tiles exist for sm_90a only; the dispatcher never chooses one elsewhere
#endif
  }
};

// WN = 0 selects the wgmma core (WM = BM / 64 warpgroups), else the mma.sync core of WM x WN warps
template <class T, int BM, int BN, int WM, int WN, int ST, int KS>
using jg_moderate_core = typename jg_pick<WN == 0, jg_moderate_wgtile<T, BM, BN, ST, KS>,
                                          jg_moderate_tile<T, BM, BN, WM, WN, ST>>::type;

template <class T, int BM, int BN, int WM, int WN, int ST, int KS, int RED, int CS>
__global__ void __launch_bounds__(WN == 0 ? 128 * WM : 32 * WM * WN) JG_CLUSTER_Z(CS) jg_moderate_nv(
    jg_u16* __restrict__ out, jg_i64 ldo, const jg_u16* __restrict__ x, jg_i64 ldx,
    const jg_u16* __restrict__ w, jg_i64 ldw, const jg_u16* __restrict__ bias, jg_i64 bias_ld, int bias_rows,
    int N, int M, int K, int kb_per_split, float* __restrict__ ws, unsigned* __restrict__ counters) {
  using Tile = jg_moderate_core<T, BM, BN, WM, WN, ST, KS>;
  static_assert(WN != 0 || WM * 64 == BM, "wgmma tiles: one warpgroup per 64 rows");
  static_assert(WN == 0 || KS == 1, "the mma.sync core stages one K block at a time");
  static_assert(RED != 1 || CS > 1, "a cluster reduction needs a cluster");
  static_assert(RED == 1 || CS == 1, "only the cluster reduction runs in clusters");
  extern __shared__ __attribute__((aligned(128))) unsigned char smem_raw[];
  // wgmma's swizzle repeats every 1024 bytes: its tiles start at the next 1024-byte boundary (the
  // host asks for 1 KiB more); every block of a cluster has the same offset, so DSMEM addresses match
  unsigned char* smem = smem_raw + (WN == 0 ? (1024 - (jg_smem(smem_raw) & 1023)) & 1023 : 0);
  const jg_epilogue e{nullptr, nullptr, 1.f, 1.f, bias, bias_ld, 0, 0, bias_rows};
  const int nkb = (K + 63) / 64;
  const jg_i64 m0 = (jg_i64)blockIdx.x * BM;
  const int n0 = blockIdx.y * BN;
  const int split = blockIdx.z, S = gridDim.z;
  const int kb0 = split * kb_per_split;
  const int kbn = max(0, min(nkb, kb0 + kb_per_split) - kb0);  // this slice's K blocks (may be 0)
  Tile::product(smem, x, ldx, w, ldw, m0, n0, N, M, K, kb0, kbn);
  if constexpr (RED == 0) {
    // split is 0 here; a bound ptxas cannot fold avoids an 8-byte stack spill it otherwise makes in
    // this loop for some tiles (32x32 fp16, NVRTC 13.5)
    Tile::store_tile(smem, out, ldo, e, n0, m0, N, M, split * Tile::V);
  } else if constexpr (RED == 1) {
    jg_cluster_sync();  // every block's partial tile is complete
    const float* tile = reinterpret_cast<const float*>(smem);
    const int per = (Tile::V + CS - 1) / CS;
    for (int u = split * per + threadIdx.x; u < min(Tile::V, (split + 1) * per); u += Tile::THREADS) {
      int c, r;
      Tile::unit(u, c, r);
      const unsigned local = jg_smem(&tile[c * Tile::TP + r]);
      float s[4];
#pragma unroll
      for (int q = 0; q < CS; ++q) {  // rank order, the same for every element
        unsigned remote;
        asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(local), "r"(q));
        float v[4];
        jg_ld4_cluster(v, remote);
#pragma unroll
        for (int j = 0; j < 4; ++j) s[j] = q == 0 ? v[j] : s[j] + v[j];
      }
      jg_store4<T>(out, ldo, e, s, n0 + c, m0 + r, N, M);
    }
    jg_cluster_sync();  // the other blocks' shared memory must outlive these reads
  } else {
    const jg_i64 tile_id = (jg_i64)blockIdx.y * gridDim.x + blockIdx.x;
    Tile::reduce_pieces(smem, ws + tile_id * S * (jg_i64)(BN * BM), split, S, &counters[tile_id], out, ldo, e, n0,
                        m0, N, M);
  }
}

