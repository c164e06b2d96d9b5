// Hopper warpgroup MMA (wgmma.mma_async, sm_90a only): D[64 x N] += A[64 x 16] * B[16 x N]^T with both
// operands read from shared memory through matrix descriptors, fp32 accumulators in registers.
// Both operands are K-major (rows of 64 16-bit elements = 128 bytes) in the 128-byte swizzle: within
// each 1024-byte group of 8 rows, 16-byte chunk c of row r sits at chunk c ^ (r & 7). That is
// jg_swz's layout (nv/moderate.h), so cp.async fills the tiles wgmma reads, with no TMA.
// Accumulator layout (PTX ISA, "wgmma .m64nNk16 D fragment"): warp w of the warpgroup, g = lane / 4,
// t = lane % 4; register i holds row 16 w + g + 8 ((i % 4) / 2), column 8 (i / 4) + 2 t + (i % 2).
#pragma once
#include "jg_platform.h"

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define JG_WGMMA 1

// Matrix descriptor of a K-major, 128-byte-swizzled tile at shared address `addr` (its 8-row group
// 1024-byte aligned; a k step inside the 128-byte row moves the start by 32 bytes): start >> 4 in
// bits 0-13, leading byte offset (unused with this swizzle; 1 by convention) in 16-29, stride between
// 8-row groups (1024 B) >> 4 in 32-45, swizzle mode 1 (128 B) in bits 62-63.
JG_DEVICE unsigned long long jg_wg_desc(unsigned addr) {
  return (unsigned long long)((addr & 0x3FFFF) >> 4) | (1ull << 16) | ((unsigned long long)(1024 >> 4) << 32) |
         (1ull << 62);
}

// cp.async writes through the generic proxy, wgmma reads through the async proxy: each writer fences
// before the barrier that hands the stage to the warpgroups.
JG_DEVICE void jg_fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
JG_DEVICE void jg_wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
JG_DEVICE void jg_wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int P>
JG_DEVICE void jg_wg_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(P) : "memory"); }

// Keeps the compiler from moving accumulator reads or writes across the asynchronous MMA
template <int R>
JG_DEVICE void jg_wg_pin(float (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

template <int N>
struct jg_wgmma;  // m64nNk16, both operands K-major, D += A * B

// One wgmma: SHAPE "m64nNk16", TY "bf16"/"f16", REGS the "%0, ..." list of the N/2 accumulators,
// A/B/P the operand numbers of the two descriptors and of the scale-d flag (1: D += A*B), then the
// "+f" accumulator operands. bf16 and fp16 differ only in TY.
#define JG_WG_MMA(SHAPE, TY, REGS, A, B, P, ...)                                                       \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" P ", 0;\n"                                         \
               "wgmma.mma_async.sync.aligned." SHAPE ".f32." TY "." TY " {" REGS "}, %" A ", %" B \
               ", p, 1, 1, 0, 0;\n}\n"                                                                  \
               : __VA_ARGS__                                                                           \
               : "l"(a), "l"(b), "r"(1))

// jg_wgmma<N>: N/2 accumulators per thread, the descriptors and flag are operands N/2 .. N/2 + 2
#define JG_WG_STR(v) #v
#define JG_WG_CALL(...) JG_WG_MMA(__VA_ARGS__)  // expands the OPS / OUTS lists before JG_WG_MMA counts them
#define JG_WG_SPEC(N)                                                                                   \
  template <>                                                                                           \
  struct jg_wgmma<N> {                                                                                  \
    template <class T>                                                                                  \
    static JG_DEVICE void mma(float (&d)[N / 2], unsigned long long a, unsigned long long b) {         \
      if constexpr (T::id == jg_bf16::id)                                                               \
        JG_WG_CALL("m64n" JG_WG_STR(N) "k16", "bf16", JG_WG_REGS_##N, JG_WG_OPS_##N, JG_WG_OUTS_##N(d)); \
      else                                                                                              \
        JG_WG_CALL("m64n" JG_WG_STR(N) "k16", "f16", JG_WG_REGS_##N, JG_WG_OPS_##N, JG_WG_OUTS_##N(d));  \
    }                                                                                                   \
  };

// The accumulator lists grow by appending: N = 2 n holds N = n's registers and then as many again.
#define JG_WG_OUT8(d, i)                                                       \
    "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), \
    "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])

#define JG_WG_REGS_16 "%0, %1, %2, %3, %4, %5, %6, %7"
#define JG_WG_OUTS_16(d) JG_WG_OUT8(d, 0)
#define JG_WG_OPS_16 "8", "9", "10"
JG_WG_SPEC(16)

#define JG_WG_REGS_32 JG_WG_REGS_16 ", %8, %9, %10, %11, %12, %13, %14, %15"
#define JG_WG_OUTS_32(d) JG_WG_OUTS_16(d), JG_WG_OUT8(d, 8)
#define JG_WG_OPS_32 "16", "17", "18"
JG_WG_SPEC(32)

#define JG_WG_REGS_64 JG_WG_REGS_32 ", %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define JG_WG_OUTS_64(d) JG_WG_OUTS_32(d), JG_WG_OUT8(d, 16), JG_WG_OUT8(d, 24)
#define JG_WG_OPS_64 "32", "33", "34"
JG_WG_SPEC(64)

#define JG_WG_REGS_128 \
    JG_WG_REGS_64 ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
                  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define JG_WG_OUTS_128(d) \
    JG_WG_OUTS_64(d), JG_WG_OUT8(d, 32), JG_WG_OUT8(d, 40), JG_WG_OUT8(d, 48), JG_WG_OUT8(d, 56)
#define JG_WG_OPS_128 "64", "65", "66"
JG_WG_SPEC(128)

#endif  // __CUDA_ARCH_FEAT_SM90_ALL
