// The NVIDIA skinny-GEMM core, shared by the 16-bit and fp8 families.
//
// out[n, m] = round( sum_k x[n, k] * w[m, k] * sx[n or 0] * sw[m or 0] + bias ), fp32 products and sums.
// A warp owns 16 weight rows (MT tiles of them per block) and feeds tensor-core mma.sync with each
// thread's own 16-byte weight slices as A and the matching token slices as B, in the same k order,
// so no operand shuffles are needed. K is split over the block's WK warps and, on sm_90, over the
// SK blocks of a cluster; partial sums are added in a fixed order (warps, then cluster blocks).
// The order a row's K terms are summed in depends on (WK, U, SK) only, never on N.
// Tokens beyond one block's 8*NT take more blocks (moderate N, up to 128 and beyond): the same kernel
// then works as a small GEMM, K still split over warps and cluster blocks (jg_block_origin says how).
//
// An operand policy P says what a 16-byte weight slice holds and how to multiply it:
//   P::KW      k elements in one 16-byte weight slice (8 for 16-bit weights, 16 for fp8)
//   P::WB/XB   bytes per weight / token element
//   P::XFrag   the token registers matching one weight slice; P::load_x(ptr, ok, xinv) fills it
//   P::mma     acc += A(rows g, g+8 of the slice) * B(tokens of the slice)
//   P::Out     output type tag (jg_f16 / jg_bf16)
#pragma once
#include "jg_platform.h"

// mma.sync m16n8k16 (16-bit inputs) and m16n8k32 (fp8 e4m3 inputs), fp32 accumulators.
// Fragment layout (g = lane/4, t = lane%4): A regs a0 (row g), a1 (row g+8), a2 (row g, upper k half),
// a3 (row g+8, upper k half); B regs b0, b1 (token g, lower/upper k half); C c0,c1 (row g, tokens
// 2t, 2t+1), c2,c3 (row g+8).
template <class T>
JG_DEVICE void jg_mma_k16(float (&c)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0,
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

#if __CUDA_ARCH__ >= 890
JG_DEVICE void jg_mma_e4m3_k32(float (&c)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0,
                               unsigned b1) {
  asm("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// two e4m3 (the low and high byte of v) -> two 16-bit values of type T, exactly
template <class T>
JG_DEVICE unsigned jg_e4m3x2_to(unsigned short v) {
  unsigned h;
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h) : "h"(v));
  if constexpr (T::id == jg_f16::id) {
    return h;
  } else {  // every e4m3 value is exact in fp16, and every fp16 one in bf16 range: go through f32
    float lo, hi;
    asm("cvt.f32.f16 %0, %1;" : "=f"(lo) : "h"((unsigned short)(h & 0xffffu)));
    asm("cvt.f32.f16 %0, %1;" : "=f"(hi) : "h"((unsigned short)(h >> 16)));
    unsigned b;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(b) : "f"(hi), "f"(lo));
    return b;
  }
}

// four 16-bit values (two regs) times `inv`, rounded to e4m3 with saturation to +-448: four bytes
template <class T>
JG_DEVICE unsigned jg_quant4(unsigned r0, unsigned r1, float inv) {
  float f[4];
  f[0] = jg_to_f32<T>((jg_u16)(r0 & 0xffffu)) * inv;
  f[1] = jg_to_f32<T>((jg_u16)(r0 >> 16)) * inv;
  f[2] = jg_to_f32<T>((jg_u16)(r1 & 0xffffu)) * inv;
  f[3] = jg_to_f32<T>((jg_u16)(r1 >> 16)) * inv;
  unsigned short lo, hi;  // cvt puts its first operand in the upper byte
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(lo) : "f"(f[1]), "f"(f[0]));
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(hi) : "f"(f[3]), "f"(f[2]));
  return (unsigned)lo | ((unsigned)hi << 16);
}
#endif

// zero accumulators of MI x NJ fragments of 4 registers each (the mma.sync C layout)
template <int MI, int NJ>
JG_DEVICE void jg_zero(float (&acc)[MI][NJ][4]) {
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NJ; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;
}

// ---- operand policies -----------------------------------------------------------------------------
// tokens as they are stored: one 16-byte load per weight slice, zeros past the last token
struct jg_x_as_stored {
  struct XFrag { jg_u32x4 v; };
  static JG_DEVICE XFrag load_x(const unsigned char* p, bool ok, float) {
    return XFrag{ok ? jg_load_cached(p) : jg_u32x4{0, 0, 0, 0}};
  }
};

template <class T>
struct jg_op_16 : jg_x_as_stored {  // 16-bit weights and tokens
  using Out = T;
  static constexpr int KW = 8, WB = 2, XB = 2;
  static JG_DEVICE void mma(float (&c)[4], const jg_u32x4& a, const jg_u32x4& b, const XFrag& x) {
    jg_mma_k16<T>(c, a.x, b.x, a.y, b.y, x.v.x, x.v.y);  // k elements 0..3 of the slice
    jg_mma_k16<T>(c, a.z, b.z, a.w, b.w, x.v.z, x.v.w);  // k elements 4..7
  }
};

#if __CUDA_ARCH__ >= 890
template <class T>
struct jg_op_w8a8 : jg_x_as_stored {  // e4m3 weights and e4m3 tokens; T is only the output type
  using Out = T;
  static constexpr int KW = 16, WB = 1, XB = 1;
  static JG_DEVICE void mma(float (&c)[4], const jg_u32x4& a, const jg_u32x4& b, const XFrag& x) {
    jg_mma_e4m3_k32(c, a.x, b.x, a.y, b.y, x.v.x, x.v.y);  // k elements 0..7
    jg_mma_e4m3_k32(c, a.z, b.z, a.w, b.w, x.v.z, x.v.w);  // k elements 8..15
  }
};

template <class T>
struct jg_op_w8a16 {  // e4m3 weights widened to T in registers, T tokens (no token quantization)
  using Out = T;
  static constexpr int KW = 16, WB = 1, XB = 2;
  struct XFrag { jg_u32x4 lo, hi; };
  static JG_DEVICE XFrag load_x(const unsigned char* p, bool ok, float) {
    if (!ok) return XFrag{{0, 0, 0, 0}, {0, 0, 0, 0}};
    return XFrag{jg_load_cached(p), jg_load_cached(p + 16)};
  }
  static JG_DEVICE void mma4(float (&c)[4], unsigned a, unsigned b, const jg_u32x4& x0, int half) {
    // 4 weight bytes of rows g (a) and g+8 (b) -> 4 T values each -> one m16n8k16 with 4 tokens' k
    const unsigned a01 = jg_e4m3x2_to<T>((unsigned short)(a & 0xffffu)), a23 = jg_e4m3x2_to<T>((unsigned short)(a >> 16));
    const unsigned b01 = jg_e4m3x2_to<T>((unsigned short)(b & 0xffffu)), b23 = jg_e4m3x2_to<T>((unsigned short)(b >> 16));
    const unsigned x01 = half ? x0.z : x0.x, x23 = half ? x0.w : x0.y;
    jg_mma_k16<T>(c, a01, b01, a23, b23, x01, x23);
  }
  static JG_DEVICE void mma(float (&c)[4], const jg_u32x4& a, const jg_u32x4& b, const XFrag& x) {
    mma4(c, a.x, b.x, x.lo, 0);  // k elements 0..3
    mma4(c, a.y, b.y, x.lo, 1);  // 4..7
    mma4(c, a.z, b.z, x.hi, 0);  // 8..11
    mma4(c, a.w, b.w, x.hi, 1);  // 12..15
  }
};

template <class T>
struct jg_op_w8q : jg_op_w8a8<T> {  // T tokens quantized to e4m3 in registers with a given scale
  static constexpr int XB = 2;
  using XFrag = typename jg_op_w8a8<T>::XFrag;
  static JG_DEVICE XFrag load_x(const unsigned char* p, bool ok, float inv) {
    if (!ok) return XFrag{{0, 0, 0, 0}};
    const jg_u32x4 lo = jg_load_cached(p), hi = jg_load_cached(p + 16);
    return XFrag{{jg_quant4<T>(lo.x, lo.y, inv), jg_quant4<T>(lo.z, lo.w, inv), jg_quant4<T>(hi.x, hi.y, inv),
                  jg_quant4<T>(hi.z, hi.w, inv)}};
  }
};
#endif

#if __CUDA_ARCH__ >= 900
#define JG_CLUSTER_K(sk) __cluster_dims__(1, sk, 1)
#else
#define JG_CLUSTER_K(sk)
#endif

JG_DEVICE void jg_cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

struct jg_epilogue {  // what is applied to a finished fp32 sum
  const float* sx;   // token scales [N] (sx_per_token) or one value; null: the value sx_val
  const float* sw;   // weight scales [M] (sw_per_row) or one value; null: the value sw_val
  float sx_val, sw_val;
  const jg_u16* bias;  // null: none
  jg_i64 bias_ld;
  int sx_per_token, sw_per_row, bias_rows;

  JG_DEVICE float token_scale(int n) const { return sx ? sx[sx_per_token ? n : 0] : sx_val; }
  JG_DEVICE float row_scale(jg_i64 m) const { return sw ? sw[sw_per_row ? m : 0] : sw_val; }
};

template <class P>
JG_DEVICE void jg_store(typename P::Out*, jg_u16* out, jg_i64 ldo, const jg_epilogue& e, float s, int n, jg_i64 m) {
  using T = typename P::Out;
  s = s * e.token_scale(n) * e.row_scale(m);
  if (e.bias) s += jg_to_f32<T>(e.bias[(e.bias_rows == 1 ? 0 : (jg_i64)n * e.bias_ld) + m]);
  out[(jg_i64)n * ldo + m] = jg_from_f32<T>(s);
}

// The end of a block's work (the skinny and 4-bit cores): each warp's MT x NT accumulator fragments
// into shared memory, summed over the block's warps in a fixed order, then (SK > 1) over the cluster's
// blocks in rank order through distributed shared memory, and stored through the epilogue.
template <class P, int NT, int MT, int WK, int SK>
JG_DEVICE void jg_reduce_store(float (&acc)[MT][NT][4], jg_u16* __restrict__ out, jg_i64 ldo, const jg_epilogue& epi,
                               int N, int M, jg_i64 m0, int n0, unsigned split) {
  constexpr int ROWS = 16 * MT, COLS = 8 * NT;
  __shared__ float partial[WK][COLS][ROWS];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
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
  for (int e = threadIdx.x; e < ROWS * COLS; e += 32 * WK) {
    const int c = e / ROWS, r = e % ROWS;  // c: token within this block's tile
    const jg_i64 m = m0 + r;
    if (n0 + c >= N || m >= M) continue;
    float s = partial[0][c][r];
#pragma unroll
    for (int q = 1; q < WK; ++q) s += partial[q][c][r];
    if constexpr (SK > 1) {
      partial[0][c][r] = s;  // this block's share, read by the cluster's first block
    } else {
      jg_store<P>(nullptr, out, ldo, epi, s, n0 + c, m);
    }
  }
  if constexpr (SK > 1) {
    jg_cluster_sync();
    if (split == 0) {
      for (int e = threadIdx.x; e < ROWS * COLS; e += 32 * WK) {
        const int c = e / ROWS, r = e % ROWS;
        const jg_i64 m = m0 + r;
        if (n0 + c >= N || m >= M) continue;
        float s = partial[0][c][r];
        const unsigned local = (unsigned)__cvta_generic_to_shared(&partial[0][c][r]);
#pragma unroll
        for (int q = 1; q < SK; ++q) {
          unsigned remote;
          float v;
          asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(local), "r"(q));
          asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(remote) : "memory");
          s += v;
        }
        jg_store<P>(nullptr, out, ldo, epi, s, n0 + c, m);
      }
    }
    jg_cluster_sync();  // the other blocks' shared memory must outlive the first block's reads
  }
}

// The first weight row and first token of this block. blockIdx.x walks the row blocks with the token
// tiles fastest: the tiles of one row block are neighbours in the launch order, so they run side by side
// and its weight rows come from DRAM once and from L2 for the other tiles. (With the tiles over blockIdx.z,
// launched last, each tile swept the whole weight again: at N = 64 an fp8 step read its weights four
// times, 0.25-0.5x cuBLASLt on an H100.) One tile (N <= 8 * NT): blockIdx.x is the row block, as before.
// 32-bit division (grid.x < 2^31): a 64-bit one is a subroutine that cost registers (sm_89 fp8 spilled).
template <int ROWS, int COLS>
JG_DEVICE void jg_block_origin(int N, jg_i64& m0, int& n0) {
  const unsigned tiles = (unsigned)(N + COLS - 1) / COLS, b = blockIdx.x;
  m0 = (jg_i64)(b / tiles) * ROWS;
  n0 = (int)(b % tiles) * COLS;
}

// ldx, ldw, ldo are row pitches in elements. xinv_* give the reciprocal token scales for policies
// that quantize tokens in registers (jg_op_w8q); others ignore them. TRIGGER (sm_90, the kernels that
// support programmatic dependent launch): where the next kernel in the stream may launch. JG_TRIGGER_LOOP:
// once this block's loads are done, so its launch and prologue overlap this block's reduction and store
// (not its main loop: a dependent launched earlier holds SM slots this grid's later blocks need);
// JG_TRIGGER_END: after the store, which overlaps only the grid's completion and the launch itself. Measured
// (session 21, H100, whole steps): the 16-bit kernels faster with the end at every N (with the loop's, the
// 8B step at N = 1 1 % slower than plain launches), the fp8 and 4-bit kernels with the loop's; session 22: fp8
// W8A16 with the end (nv/fp8.h).
#define JG_TRIGGER_NONE 0
#define JG_TRIGGER_LOOP 1
#define JG_TRIGGER_END 2
template <class P, int NT, int MT, int WK, int U, int SK, int TRIGGER = JG_TRIGGER_NONE>
JG_DEVICE void jg_skinny_core(jg_u16* __restrict__ out, jg_i64 ldo, const unsigned char* __restrict__ x, jg_i64 ldx,
                              const unsigned char* __restrict__ w, jg_i64 ldw, const jg_epilogue& epi, int N, int M,
                              int K) {
  constexpr int ROWS = 16 * MT, COLS = 8 * NT;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  jg_i64 m0;
  int n0;
  jg_block_origin<ROWS, COLS>(N, m0, n0);

  const unsigned char* wrow[MT][2];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      jg_i64 r = m0 + 16 * i + 8 * h + g;
      wrow[i][h] = w + (r < M ? r : (jg_i64)M - 1) * ldw * P::WB;  // tail rows read a real row, never stored
    }
  const unsigned char* xrow[NT];
  bool xok[NT];
  float xinv[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    int n = n0 + 8 * j + g;
    xok[j] = n < N;
    xrow[j] = x + (jg_i64)(xok[j] ? n : 0) * ldx * P::XB;
    xinv[j] = 1.0f / epi.token_scale(xok[j] ? n : 0);
  }

  float acc[MT][NT][4];
  jg_zero(acc);

  constexpr int STEP = 4 * P::KW * U;  // k elements a warp covers per iteration
  unsigned split = 0;
  if constexpr (SK > 1) asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(split));
  for (jg_i64 k0 = ((jg_i64)split * WK + warp) * STEP; k0 < K; k0 += (jg_i64)SK * WK * STEP) {
    jg_u32x4 wv[U][MT][2];
    typename P::XFrag xv[U][NT];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const jg_i64 k = k0 + 4 * P::KW * u + P::KW * t;
      const bool kok = k < K;  // K % KW == 0: a slice is wholly inside or wholly outside
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) wv[u][i][h] = kok ? jg_load_stream(wrow[i][h] + k * P::WB) : jg_u32x4{0, 0, 0, 0};
#pragma unroll
      for (int j = 0; j < NT; ++j) xv[u][j] = P::load_x(xrow[j] + k * P::XB, kok && xok[j], xinv[j]);
    }
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j) P::mma(acc[i][j], wv[u][i][0], wv[u][i][1], xv[u][j]);
  }
#if __CUDA_ARCH__ >= 900
  if constexpr (TRIGGER == JG_TRIGGER_LOOP) asm volatile("griddepcontrol.launch_dependents;");
#endif

  jg_reduce_store<P, NT, MT, WK, SK>(acc, out, ldo, epi, N, M, m0, n0, split);
#if __CUDA_ARCH__ >= 900
  if constexpr (TRIGGER == JG_TRIGGER_END) asm volatile("griddepcontrol.launch_dependents;");
#endif
}
