// qmv_q1_f32: the fast 1-bit decode matvec, y[N] = W[N, K] x[K], through a nibble lookup table.
// f32 activations, f32 sums, f16 scales/biases; w = s*bit + b, so per row and 128-column group g:
//   sum_k x_k w_k = s_g * sum_{bit k set} x_k + b_g * sx_g,   sx_g = sum of x over group g.
//
// Why a table: a select-add costs ~3 ALU ops per weight bit, which caps the kernel near 30 % of
// HBM bandwidth even when perfectly fed. With a table of all 16 subset sums of every 4 consecutive
// x values, 4 bits cost one shift, one and-or (LOP3), one shared load and one add.
//
// Shared memory (dynamic, qmvSharedBytes(K)); the table starts at the first 2048-byte aligned
// address (up to 2048 bytes skipped), so that OR-ing into a lane's base equals adding.
// - Table, built once per block (the grid is persistent: min(#SMs, ceil(N/16)) blocks of 512):
//   word c of a row (columns 32c..32c+31) is word i = c % 4 of group g = c / 4; write
//   g = 32*it + l (l = g % 32 is the lane that reads it, it = g / 32). Nibble j (bits 4j..4j+3,
//   columns 32c+4j..+3) with value v has the entry T = sum of x[32c + 4j + t] over the set bits t
//   of v (0 for v = 0), stored at byte 65536*it + 2048*(8*i + j) + 128*v + 4*l.
//   ITS = ceil(G / 32) slabs of 65536 bytes, G = K / 128; entries of groups >= G are zeros.
//   The 32 lanes of a warp read 32 different groups at the same (it, i, j): address 4*l plus bits
//   7 and up, so 32 different banks whatever their v.
//   Build: thread q (q < 1024*ITS, strided by 512) owns l = q % 32, (it, i, j) from q / 32; it
//   loads x[32c + 4j .. +3] (one float4) and writes the 16 sums.
// - Then sx[g] = sum of x over group g, for g < 32*ITS (zeros past G); one warp per group.
// - Then, when ITS = 1 only, the weight ring: warp w, slot d, lane l at byte
//   65536 + 128 + 512*(QMV_RING*w + d) + 16*l after the table's start.
// - Lookup: lane base = table + 4*l + 65536*it (bits 7..10 clear); nibble j of word i is read at
//   (base | ((word >> (4j - 7)) & 0x780)) + 2048*(8i + j) (a left shift for j < 2): SHF, LOP3, LDS.
//
// Thread -> data mapping (main loop). 16 warps per block; warp w of block b takes rows
// r = 16b + w, r + S, r + 2S, ... with S = 16*gridDim. In a row, lane l takes the groups
// g = 32*it + l (it < ITS): one 16-byte load of the group's 4 words, its scale and its bias, and
// part = sum of the 32 table entries of those words (four add chains); the lane's share of the row
// is s*part + b*sx[g], summed over its groups, then over the warp (shuffle xor); lane 0 writes y[r].
// Lanes with g >= G load nothing (zeros). Rows past N are never written.
// - K <= 4096 (ITS = 1): each lane copies its 16 bytes of each row with cp.async into its own slot
//   of a QMV_RING-row ring in shared memory, QMV_RING - QMV_RING_STEP rows ahead (scale and bias
//   into a register ring), issued before the table is built; a lane reads back only what it copied
//   itself, so cp.async.wait_group alone orders it. Rows go QMV_RING_STEP at a time in
//   straight-line code, so their table loads and warp sums overlap.
// - 4096 < K <= 12288 (ITS = 2, 3): the 16-byte loads go to registers, 2 rows (ITS = 2) or 1 row
//   (ITS = 3) per batch, the next batch loaded before the math of the current one.
// Limits: K a multiple of 128 (format) and K <= QMV_MAX_K (the table must fit in shared memory);
// x 16-byte aligned. Otherwise the host uses qmv_q1_f32_legacy.
// Exactness: every table entry, part and product is exact for small-integer x with power-of-two
// scales/biases, so the result is bit-identical to the CPU oracle there in any summation order.

import { COMMON, type KernelFile } from "./common.ts";

/** Threads per block (16 warps); one block per SM, persistent over rows. */
export const QMV_THREADS = 512;
/** Largest K the table fits for: 3 slabs of 64 KiB (+ sx) in shared memory. */
export const QMV_MAX_K = 12288;
/** Ring slots (rows) per warp when K <= 4096 (cp.async ring in shared memory). */
export const QMV_RING = 12;
/** Dynamic shared memory for in-features K: 2048 (alignment) + ceil(K/4096) table slabs of 64 KiB
 *  + sx, + the ring (16 warps x QMV_RING rows x 512 bytes) when K <= 4096. */
export const qmvSharedBytes = (K: number): number => {
  const its = Math.ceil(K / 4096);
  return 2048 + its * 65536 + its * 32 * 4 + (its === 1 ? (QMV_THREADS / 32) * QMV_RING * 512 : 0);
};
/** Rows per step of the ring loop (their loads and warp sums overlap); divides QMV_RING. */
export const QMV_RING_STEP = 2;
/** The most any K <= QMV_MAX_K needs (the kernel's dynamic shared memory limit). */
export const qmvMaxSharedBytes = Math.max(qmvSharedBytes(4096), qmvSharedBytes(QMV_MAX_K));

export const qmv_q1_f32: KernelFile = {
  file: "qmv_q1_f32",
  kernels: ["qmv_q1_f32"],
  source: COMMON + /* cuda */ `
#define THREADS ${QMV_THREADS}
#define WARPS (THREADS / 32)

// Nibble J of w moved to bits 7..10 (the table's v field), other bits masked off.
template <int J> __device__ __forceinline__ u32 nib(u32 w) {
  return (J * 4 >= 7 ? (w >> (J * 4 - 7)) : (w << (7 - J * 4))) & 0x780u;
}
// Table entry at shared address a + IMM (a: base | nib, so the load needs no add).
#define LUT(acc, a, IMM) { float v_; asm("ld.shared.f32 %0, [%1+%2];" : "=f"(v_) : "r"(a), "n"(IMM)); acc += v_; }

// Sum of x over the set bits of word I of a group; base = table + 4*lane + 65536*it (bits 7..10 clear).
template <int I> __device__ __forceinline__ void word_part(u32 wi, u32 base, float (&a)[4]) {
  LUT(a[0], base | nib<0>(wi), 2048 * (8 * I + 0));
  LUT(a[1], base | nib<1>(wi), 2048 * (8 * I + 1));
  LUT(a[2], base | nib<2>(wi), 2048 * (8 * I + 2));
  LUT(a[3], base | nib<3>(wi), 2048 * (8 * I + 3));
  LUT(a[0], base | nib<4>(wi), 2048 * (8 * I + 4));
  LUT(a[1], base | nib<5>(wi), 2048 * (8 * I + 5));
  LUT(a[2], base | nib<6>(wi), 2048 * (8 * I + 6));
  LUT(a[3], base | nib<7>(wi), 2048 * (8 * I + 7));
}
__device__ __forceinline__ float group_part(const uint4 w, u32 base) {
  float a[4] = {0.f, 0.f, 0.f, 0.f};
  word_part<0>(w.x, base, a); word_part<1>(w.y, base, a); word_part<2>(w.z, base, a); word_part<3>(w.w, base, a);
  return (a[0] + a[1]) + (a[2] + a[3]);
}

// Table and sx for ITS slabs; all x loads are issued before any math.
template <int ITS>
__device__ __forceinline__ void build_table(const float* __restrict__ x, int G, float* lut, float* sx) {
  const float4* x4 = reinterpret_cast<const float4*>(x);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  constexpr int NP = ITS * 1024 / THREADS, NG = ITS * 32 / WARPS; // positions per thread, groups per warp
  float4 xv[NP], xg[NG];
  #pragma unroll
  for (int k = 0; k < NP; k++) { // position q: l = q % 32, rest = q / 32 = (it*4 + i)*8 + j
    const int q = threadIdx.x + k * THREADS, rest = q >> 5, g = (rest >> 5) * 32 + (q & 31);
    xv[k] = g < G ? x4[(4 * g + ((rest >> 3) & 3)) * 8 + (rest & 7)] : make_float4(0.f, 0.f, 0.f, 0.f);
  }
  #pragma unroll
  for (int k = 0; k < NG; k++) {
    const int g = warp + k * WARPS;
    xg[k] = g < G ? x4[g * 32 + lane] : make_float4(0.f, 0.f, 0.f, 0.f);
  }
  #pragma unroll
  for (int k = 0; k < NP; k++) {
    const int q = threadIdx.x + k * THREADS;
    const float4 v = xv[k];
    float* t = lut + (q >> 5) * 512 + (q & 31); // entry v at t[32 * v]: consecutive threads, consecutive banks
    const float x01 = v.x + v.y, x23 = v.z + v.w;
    const float lo[4] = {0.f, v.x, v.y, x01};
    #pragma unroll
    for (int a = 0; a < 4; a++) {
      t[32 * (a + 0)] = lo[a];
      t[32 * (a + 4)] = lo[a] + v.z;
      t[32 * (a + 8)] = lo[a] + v.w;
      t[32 * (a + 12)] = lo[a] + x23;
    }
  }
  #pragma unroll
  for (int k = 0; k < NG; k++) {
    const float4 v = xg[k];
    const float s = warp_sum((v.x + v.y) + (v.z + v.w));
    if (lane == 0) sx[warp + k * WARPS] = s;
  }
}

// Main loop for ITS items per row, RB rows per batch (ITS*RB 16-byte loads per lane per batch,
// the next batch in flight during the math). Warp-uniform control flow throughout.
template <int ITS, int RB>
__device__ __forceinline__ void qmv_rows(const uint4* __restrict__ w, const u16* __restrict__ sc, const u16* __restrict__ bi,
                                         const float* __restrict__ x, float* __restrict__ y, int N, int G,
                                         u32 tbase, float* lut, float* sx) {
  const int lane = threadIdx.x & 31, S = gridDim.x * WARPS;
  uint4 wa[RB][ITS], wb[RB][ITS];
  float sa[RB][ITS], ba[RB][ITS], sb[RB][ITS], bb[RB][ITS];
  auto load = [&](int r0, uint4 (&wv)[RB][ITS], float (&s)[RB][ITS], float (&b)[RB][ITS]) {
    #pragma unroll
    for (int rb = 0; rb < RB; rb++) {
      const int r = r0 + rb * S;
      #pragma unroll
      for (int it = 0; it < ITS; it++) {
        const int g = it * 32 + lane;
        wv[rb][it] = make_uint4(0u, 0u, 0u, 0u); s[rb][it] = 0.f; b[rb][it] = 0.f;
        if (r < N && g < G) {
          const size_t o = (size_t)r * G + g;
          wv[rb][it] = w[o]; s[rb][it] = h2f(sc[o]); b[rb][it] = h2f(bi[o]);
        }
      }
    }
  };
  int r0 = blockIdx.x * WARPS + (threadIdx.x >> 5);
  load(r0, wa, sa, ba); // first weights in flight while the table is built
  PDL_WAIT(); PDL_LAUNCH(); // x comes from the previous kernel; the weights did not
  build_table<ITS>(x, G, lut, sx);
  __syncthreads();
  float sxl[ITS];
  #pragma unroll
  for (int it = 0; it < ITS; it++) sxl[it] = sx[it * 32 + lane];
  for (; r0 < N; r0 += RB * S) {
    load(r0 + RB * S, wb, sb, bb);
    #pragma unroll
    for (int rb = 0; rb < RB; rb++) {
      const int r = r0 + rb * S;
      float acc = 0.f;
      if (r < N) {
        #pragma unroll
        for (int it = 0; it < ITS; it++)
          acc += sa[rb][it] * group_part(wa[rb][it], tbase + (u32)(lane * 4 + it * 65536)) + ba[rb][it] * sxl[it];
      }
      acc = warp_sum(acc);
      if (lane == 0 && r < N) y[r] = acc;
    }
    #pragma unroll
    for (int rb = 0; rb < RB; rb++)
      #pragma unroll
      for (int it = 0; it < ITS; it++) { wa[rb][it] = wb[rb][it]; sa[rb][it] = sb[rb][it]; ba[rb][it] = bb[rb][it]; }
  }
}

// K <= 4096 (one item per row): each lane streams its 16 bytes of each of the warp's rows into its
// own slot of a D-row ring in shared memory with cp.async (no registers held per row in flight),
// D - RB rows ahead; scale and bias go to a D-entry register ring. A lane reads back only what it
// copied itself, so cp.async.wait_group alone orders it: no barrier. Rows go RB at a time in
// straight-line code so their table loads and their warp sums overlap.
template <int D, int RB>
__device__ __forceinline__ void qmv_rows_ring(const uint4* __restrict__ w, const u16* __restrict__ sc, const u16* __restrict__ bi,
                                              const float* __restrict__ x, float* __restrict__ y, int N, int G,
                                              u32 tbase, float* lut, float* sx) {
  constexpr int T = D / RB; // steps per round; one cp.async group per step
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, S = gridDim.x * WARPS;
  const u32 ring = tbase + 65536u + 128u + (u32)(warp * D * 512 + lane * 16);
  const bool lane_ok = lane < G;
  float sr[D], br[D];
  int r0 = blockIdx.x * WARPS + warp; // slot d of a round holds row r0 + d*S
  auto issue = [&](int rs, int t) { // rows rs + k*S, k < RB, into slots t*RB + k
    #pragma unroll
    for (int k = 0; k < RB; k++) {
      const int r = rs + k * S, d = t * RB + k;
      const bool ok = r < N && lane_ok;
      const uint4* src = ok ? w + (size_t)r * G + lane : w; // zero-filled when !ok
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(ring + d * 512), "l"(src), "r"(ok ? 16 : 0) : "memory");
      sr[d] = 0.f; br[d] = 0.f;
      if (ok) { const size_t o = (size_t)r * G + lane; sr[d] = h2f(sc[o]); br[d] = h2f(bi[o]); }
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
  };
  #pragma unroll
  for (int t = 0; t < T - 1; t++) issue(r0 + t * RB * S, t);
  PDL_WAIT(); PDL_LAUNCH(); // x comes from the previous kernel; the weights did not
  build_table<1>(x, G, lut, sx);
  __syncthreads();
  const float sxl = sx[lane];
  for (; r0 < N; r0 += D * S) {
    #pragma unroll
    for (int t = 0; t < T; t++) {
      const int rs = r0 + t * RB * S;
      if (rs >= N) break; // rows only grow from here
      issue(rs + (D - RB) * S, (t + T - 1) % T);
      asm volatile("cp.async.wait_group %0;" :: "n"(T - 1) : "memory");
      float a[RB];
      #pragma unroll
      for (int k = 0; k < RB; k++) {
        const int d = t * RB + k;
        uint4 wv;
        asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(wv.x), "=r"(wv.y), "=r"(wv.z), "=r"(wv.w) : "r"(ring + d * 512) : "memory");
        a[k] = sr[d] * group_part(wv, tbase + (u32)(lane * 4)) + br[d] * sxl;
      }
      #pragma unroll
      for (int o = 16; o > 0; o >>= 1)
        #pragma unroll
        for (int k = 0; k < RB; k++) a[k] += __shfl_xor_sync(FULL_MASK, a[k], o);
      if (lane == 0) {
        #pragma unroll
        for (int k = 0; k < RB; k++) if (rs + k * S < N) y[rs + k * S] = a[k];
      }
    }
  }
  asm volatile("cp.async.wait_all;" ::: "memory");
}

extern "C" __global__ void __launch_bounds__(THREADS, 1) qmv_q1_f32(
    const uint4* __restrict__ w, const u16* __restrict__ sc, const u16* __restrict__ bi,
    const float* __restrict__ x, float* __restrict__ y, int N, int K) {
  // PDL_WAIT comes after the weight prefetch, in qmv_rows / qmv_rows_ring
  extern __shared__ __align__(16) float smem[];
  const int G = K >> 7, ITS = (G + 31) >> 5;
  // the table starts at a 2048-byte aligned shared address, so base | nib == base + nib
  const u32 sbase = (u32)__cvta_generic_to_shared(smem);
  const u32 tbase = (sbase + 2047u) & ~2047u;
  float* lut = smem + ((tbase - sbase) >> 2);
  float* sx = lut + ITS * 16384;
  if (ITS == 1) qmv_rows_ring<${QMV_RING}, ${QMV_RING_STEP}>(w, sc, bi, x, y, N, G, tbase, lut, sx);
  else if (ITS == 2) qmv_rows<2, 2>(w, sc, bi, x, y, N, G, tbase, lut, sx);
  else qmv_rows<3, 1>(w, sc, bi, x, y, N, G, tbase, lut, sx);
}
`,
};
