// AMD body of the fp8 family (fp8.hip): software decode for every arch, and the MFMA kernel of
// gfx942 / gfx950.
#pragma once
#include "amd/common.h"

// AMD: the wvSplitK organisation (a wave owns YT weight rows over all of K, lanes take 16-byte
// slices), weights decoded exactly in registers for the device's native format (FNUZ: gfx942;
// OCP: gfx950), fp32 products and a fixed-order cross-lane sum. Tokens are read from global memory
// (they are at most 16 x K bytes and stay in L2/L1 while every wave walks them).
template <class T, int MODE, bool FNUZ>
JG_DEVICE float jg_fp8_dot16(const jg_u32x4& wv, const unsigned char* xp, float inv, float acc) {
  const unsigned wr[4] = {wv.x, wv.y, wv.z, wv.w};
  if constexpr (MODE == JG_W8A8) {
    const jg_u32x4 xv = jg_load_cached(xp);
    const unsigned xr[4] = {xv.x, xv.y, xv.z, xv.w};
#pragma unroll
    for (int q = 0; q < 16; ++q)
      acc = __builtin_fmaf(jg_e4m3_to_f32(wr[q / 4] >> (8 * (q % 4)), FNUZ), jg_e4m3_to_f32(xr[q / 4] >> (8 * (q % 4)), FNUZ), acc);
  } else {
    const jg_u32x4 a = jg_load_cached(xp), b = jg_load_cached(xp + 16);
    const unsigned xr[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
    for (int q = 0; q < 16; ++q) {
      float xf = jg_to_f32<T>((jg_u16)(xr[q / 2] >> (16 * (q % 2))));
      if constexpr (MODE == JG_W8Q) xf = jg_e4m3_to_f32(jg_f32_to_e4m3(xf * inv, FNUZ), FNUZ);
      acc = __builtin_fmaf(jg_e4m3_to_f32(wr[q / 4] >> (8 * (q % 4)), FNUZ), xf, acc);
    }
  }
  return acc;
}

template <class T, int MODE, bool FNUZ, int NMAX, int YT, int WAVES>
__global__ void __launch_bounds__(JG_WAVE * WAVES) jg_fp8_amd(
    jg_u16* __restrict__ out, jg_i64 ldo, const unsigned char* __restrict__ x, jg_i64 ldx,
    const unsigned char* __restrict__ w, jg_i64 ldw, const float* __restrict__ sx, int sx_per_token, float sx_val,
    const float* __restrict__ sw, int sw_per_row, float sw_val, const jg_u16* __restrict__ bias, jg_i64 bias_ld,
    int bias_rows, int N, int M, int K, int /*unused: the MFMA kernel's LDS size*/) {
  constexpr int XB = MODE == JG_W8A8 ? 1 : 2;
  const int lane = threadIdx.x, wave = threadIdx.y;
  // tokens in groups of NMAX (<= 4) over blockIdx.z: more accumulators than that spill
  const int n0 = blockIdx.z * NMAX;
  x += (jg_i64)n0 * ldx * XB;
  out += (jg_i64)n0 * ldo;
  N = (N - n0) < NMAX ? N - n0 : NMAX;
  if (sx && sx_per_token) sx += n0;
  if (bias && bias_rows != 1) bias += (jg_i64)n0 * bias_ld;
  const jg_i64 stride = (jg_i64)gridDim.x * blockDim.y * YT;
  for (jg_i64 m = ((jg_i64)blockIdx.x * blockDim.y + wave) * YT; m < M; m += stride) {
    float acc[NMAX][YT];
#pragma unroll
    for (int n = 0; n < NMAX; ++n)
#pragma unroll
      for (int y = 0; y < YT; ++y) acc[n][y] = 0.f;
    for (jg_i64 k = 16 * (jg_i64)lane; k < K; k += 16 * JG_WAVE) {
      jg_u32x4 wv[YT];
#pragma unroll
      for (int y = 0; y < YT; ++y) wv[y] = jg_load_stream(w + ((m + y) < M ? (m + y) : (jg_i64)M - 1) * ldw + k);
#pragma unroll
      for (int n = 0; n < NMAX; ++n) {
        if (n < N) {  // predicated, not `break`, so the loop unrolls and acc stays in registers
          const float inv = MODE == JG_W8Q ? 1.f / (sx ? sx[sx_per_token ? n : 0] : sx_val) : 1.f;
#pragma unroll
          for (int y = 0; y < YT; ++y)
            acc[n][y] = jg_fp8_dot16<T, MODE, FNUZ>(wv[y], x + (jg_i64)n * ldx * XB + k * XB, inv, acc[n][y]);
        }
      }
    }
#pragma unroll
    for (int n = 0; n < NMAX; ++n)
#pragma unroll
      for (int y = 0; y < YT; ++y) {
        const float s = jg_wave_sum<JG_WAVE>(acc[n][y]);
        if (lane == 0 && n < N && m + y < M)
          out[(jg_i64)n * ldo + m + y] = jg_finish<T>(s * (sx ? sx[sx_per_token ? n : 0] : sx_val) *
                                                      (sw ? sw[sw_per_row ? m + y : 0] : sw_val),
                                                      bias, bias_ld, bias_rows, n, m + y);
      }
  }
}

// ---- W8A8 on the MFMA units (gfx942: e4m3fnuz, gfx950: OCP e4m3fn), the seed's post-#34100 algorithm ----
// Each lane hands its own 8 token bytes as A and its own 8 weight bytes as B to one
// v_mfma_f32_16x16x32_fp8_fp8. Lane l feeds A row l%16 and B column l%16 of K-group l/16, so
// D[i][j] = sum_g dot8(tokens of lane 16g+i, weights of lane 16g+j) and the diagonal sum
// sum_i D[i][i] is the sum of every lane's own 8-byte dot product: the wanted partial, with no
// operand shuffles. D[i][i] sits in lane 16*(i/4)+i, register i%4 (output register r of lane l is
// D[4*(l/16)+r][l%16]); row_shl 1/2/3 gather each quadruple into lanes 0, 20, 40, 60 and two
// shuffles fold those into lane 0. MF = 32 builds the pre-#34100 32x32x16 variant instead (16
// accumulator registers, D[8*(r/4)+4*(l/32)+r%4][l%32]), reduced by selecting the diagonal and a
// butterfly: kept to compare register pressure (`aot --report`), never dispatched.
#if defined(__gfx942__) || defined(__gfx950__)
typedef float jg_f4 __attribute__((ext_vector_type(4)));
typedef float jg_f16v __attribute__((ext_vector_type(16)));

template <int MF>
struct jg_mfma_fp8;

template <>
struct jg_mfma_fp8<16> {
  using Acc = jg_f4;
  static JG_DEVICE Acc zero() { return Acc{0.f, 0.f, 0.f, 0.f}; }
  static JG_DEVICE Acc mac(long a, long b, Acc c) { return __builtin_amdgcn_mfma_f32_16x16x32_fp8_fp8(a, b, c, 0, 0, 0); }
  static JG_DEVICE float reduce(Acc c) {  // total in lane 0
    const int r1 = __builtin_amdgcn_mov_dpp(__float_as_int(c[1]), 0x101, 0xf, 0xf, true);  // row_shl:1
    const int r2 = __builtin_amdgcn_mov_dpp(__float_as_int(c[2]), 0x102, 0xf, 0xf, true);  // row_shl:2
    const int r3 = __builtin_amdgcn_mov_dpp(__float_as_int(c[3]), 0x103, 0xf, 0xf, true);  // row_shl:3
    float acc = c[0] + __int_as_float(r1) + __int_as_float(r2) + __int_as_float(r3);
    acc += __shfl_down(acc, 20, 64);
    acc += __shfl_down(acc, 40, 64);
    return acc;
  }
};

template <>
struct jg_mfma_fp8<32> {
  using Acc = jg_f16v;
  static JG_DEVICE Acc zero() { Acc z; for (int r = 0; r < 16; ++r) z[r] = 0.f; return z; }
  static JG_DEVICE Acc mac(long a, long b, Acc c) { return __builtin_amdgcn_mfma_f32_32x32x16_fp8_fp8(a, b, c, 0, 0, 0); }
  static JG_DEVICE float reduce(Acc c) {
    const int l = threadIdx.x;
    float s = 0.f;
#pragma unroll
    for (int r = 0; r < 16; ++r)
      if (8 * (r / 4) + 4 * (l / 32) + (r % 4) == l % 32) s += c[r];
    return jg_wave_sum<64>(s);
  }
};

// NMAX (<= 4) tokens a group, YT weight rows per wave, UNRL 1024-byte K steps in flight, WAVES per
// workgroup.
// Whole tokens are staged in LDS with a pitch of K bytes (as many as lds_bytes holds); the others are
// read from global memory. The choice is per token, uniform across the wave: a per-lane choice costs
// a 64-bit lane mask per token and ran the scalar registers out from N = 8 on.
template <class T, int NMAX, int YT, int UNRL, int WAVES, int MF>
__global__ void __launch_bounds__(64 * WAVES) jg_fp8q_amd(
    jg_u16* __restrict__ out, jg_i64 ldo, const unsigned char* __restrict__ x, jg_i64 ldx,
    const unsigned char* __restrict__ w, jg_i64 ldw, const float* __restrict__ sx, int sx_per_token, float sx_val,
    const float* __restrict__ sw, int sw_per_row, float sw_val, const jg_u16* __restrict__ bias, jg_i64 bias_ld,
    int bias_rows, int N, int M, int K, int lds_bytes) {
  using F = jg_mfma_fp8<MF>;
  extern __shared__ __attribute__((aligned(16))) unsigned char lds[];
  const int lane = threadIdx.x, wave = threadIdx.y, waves = blockDim.y;
  // tokens come in groups of NMAX over blockIdx.z (NMAX <= 4 keeps every accumulator in registers)
  const int n0 = blockIdx.z * NMAX;
  x += (jg_i64)n0 * ldx;
  out += (jg_i64)n0 * ldo;
  N = (N - n0) < NMAX ? N - n0 : NMAX;
  if (sx && sx_per_token) sx += n0;
  if (bias && bias_rows != 1) bias += (jg_i64)n0 * bias_ld;
  const int n_lds = (lds_bytes / K) < N ? lds_bytes / K : N;  // tokens held whole in LDS (never past N)
  for (jg_i64 e = ((jg_i64)wave * 64 + lane) * 16; e < (jg_i64)n_lds * K; e += (jg_i64)waves * 64 * 16) {
    const jg_i64 n = e / K, k = e % K;  // K % 16 == 0: a 16-byte chunk never straddles two tokens
    *(jg_u32x4*)(lds + e) = jg_load_cached(x + n * ldx + k);
  }
  __syncthreads();
  const jg_i64 stride = (jg_i64)gridDim.x * waves * YT;
  for (jg_i64 m = ((jg_i64)blockIdx.x * waves + wave) * YT; m < M; m += stride) {
    typename F::Acc acc[NMAX][YT];
#pragma unroll
    for (int n = 0; n < NMAX; ++n)
#pragma unroll
      for (int y = 0; y < YT; ++y) acc[n][y] = F::zero();
    for (jg_i64 k1 = 0; k1 < K; k1 += 1024 * UNRL) {
      jg_u32x4 wv[UNRL][YT];
#pragma unroll
      for (int u = 0; u < UNRL; ++u) {
        const jg_i64 k = k1 + 1024 * u + 16 * lane;
        const jg_i64 kc = k < K ? k : K - 16;  // clamped, not branched: lanes past K multiply zeros
#pragma unroll
        for (int y = 0; y < YT; ++y) wv[u][y] = jg_load_stream(w + ((m + y) < M ? (m + y) : (jg_i64)M - 1) * ldw + kc);
      }
      // K and the token pitch copied into vector registers inside the loop: otherwise the compiler
      // hoists n*K and n*ldx for every token into scalar registers and spills them from N = 8 on
      int kv = K;
      jg_i64 ldxv = ldx;
      asm volatile("" : "+v"(kv), "+v"(ldxv));
#pragma unroll
      for (int u = 0; u < UNRL; ++u) {
        const jg_i64 k = k1 + 1024 * u + 16 * lane;
        jg_i64 at = k, xat = k;  // offsets of token n's slice in LDS and in x, stepped token by token
#pragma unroll
        for (int n = 0; n < NMAX; ++n, at += kv, xat += ldxv) {
          // predicated, not `break`: a loop with an exit is not fully unrolled, and then the
          // accumulators are indexed at run time and land in scratch memory
          jg_u32x4 xv = {0, 0, 0, 0};
          if (n < N && k < K) xv = n < n_lds ? *(const jg_u32x4*)(lds + at) : jg_load_cached(x + xat);
          const long xlo = (long)xv.x | ((long)xv.y << 32), xhi = (long)xv.z | ((long)xv.w << 32);
#pragma unroll
          for (int y = 0; y < YT; ++y) {
            const long wlo = (long)wv[u][y].x | ((long)wv[u][y].y << 32), whi = (long)wv[u][y].z | ((long)wv[u][y].w << 32);
            acc[n][y] = F::mac(xlo, wlo, acc[n][y]);
            acc[n][y] = F::mac(xhi, whi, acc[n][y]);
          }
        }
      }
    }
    // per-token offsets stepped in vector registers (same reason as kv/ldxv above)
    jg_i64 boff = 0, ooff = 0, bstep = bias_rows == 1 ? 0 : bias_ld, ostep = ldo;
    int tok = 0, tstep = sx_per_token ? 1 : 0;
    asm volatile("" : "+v"(boff), "+v"(ooff), "+v"(bstep), "+v"(ostep), "+v"(tok), "+v"(tstep));
#pragma unroll
    for (int n = 0; n < NMAX; ++n, boff += bstep, ooff += ostep, tok += tstep) {
#pragma unroll
      for (int y = 0; y < YT; ++y) {
        const float s = F::reduce(acc[n][y]);
        if (lane == 0 && n < N && m + y < M)
          out[ooff + m + y] = jg_finish_at<T>(s * (sx ? sx[tok] : sx_val) * (sw ? sw[sw_per_row ? m + y : 0] : sw_val),
                                              bias, boff + m + y);
      }
    }
  }
}
#endif

