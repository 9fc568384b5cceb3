// Every GPU backend's ops against the CPU reference backend (the oracle), through the Backend
// interface only, so the CUDA and Metal backends share this one suite. Each case names its shapes
// and tolerance. Exact cases use small-integer activations and power-of-two scales/biases
// (test/helpers.ts exactQ1), whose sums are exact in f32 in any order: there the GPU must match
// bit for bit. A backend that is not available here skips with its reason printed once.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { AttnShape, Backend, Buf, RopeSpec } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu/index.ts";
import type { CudaBackend } from "../src/backend/cuda/index.ts";
import { createBackend, unavailableReason } from "../src/backend/select.ts";
import { sampleHost, type SamplingParams } from "../src/backend/gpu-sample.ts";
import { parseConfig } from "../src/io/config.ts";
import { configJson, PRESETS } from "../src/model/make.ts";
import { ropeSpec } from "../src/model/rope.ts";
import type { Q1Host } from "../src/quant/q1.ts";
import { f32ToF16Bits } from "../src/quant/f16.ts";
import { quantizeX16 } from "../src/quant/x16.ts";
import { Rng } from "../src/util/rng.ts";
import { exactQ1, maxAbsDiff, smallInts } from "./helpers.ts";

const GPUS = ["cuda", "metal"] as const;
const reasons = Object.fromEntries(await Promise.all(GPUS.map(async (n) => [n, await unavailableReason(n)] as const)));

const floats = (rng: Rng, n: number, scale = 1) => Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);
const rope = (preset: string): RopeSpec => ropeSpec(parseConfig(configJson(PRESETS[preset]!)));

for (const name of GPUS) {
  const reason = reasons[name] ?? null;
  if (reason !== null) console.log(`kernels.test: ${name} backend skipped: ${reason}`);
  const t = test.skipIf(reason !== null);

  describe(`${name} kernels vs CPU`, () => {
    let gpu: Backend;
    const cpu = new CpuBackend();
    // the first run on a machine compiles every kernel with NVRTC (seconds): allow it
    beforeAll(async () => { if (reason === null) gpu = await createBackend(name); }, 120_000);
    afterAll(() => gpu?.dispose());

    /** Runs `f` on both backends and returns [gpu, cpu] reads of the buffer it returns. */
    async function both(f: (b: Backend) => Buf): Promise<[Float32Array, Float32Array]> {
      const g = await gpu.read(f(gpu));
      const c = await cpu.read(f(cpu));
      return [g, c];
    }

    // ---- matvec (M = 1): exact, every variant ---------------------------------------------------
    const mv: { N: number; K: number; affine?: boolean; why: string }[] = [
      { N: 64, K: 640, why: "K < 2048, one partial lane pass" },
      { N: 131, K: 1152, affine: true, why: "K = 1024 + 128, N % 4 = 3, affine biases" },
      { N: 4098, K: 4096, why: "K = 4096, N % 4 = 2 (the LM-head tail)" },
      { N: 258, K: 12288, affine: true, why: "K = 12288 (down projection), lanes loop 3 groups" },
      { N: 151669, K: 4096, why: "LM head rows" },
      { N: 133, K: 8192, why: "K = 8192: two table slabs" },
      { N: 67, K: 8320, affine: true, why: "K = 8320: three slabs, the last partial" },
      { N: 37, K: 49152, affine: true, why: "K past the table limit: legacy fallback" },
      { N: 50, K: 2048, why: "K = 2048 (1.7B hidden): bmma one group pair per warp" },
      { N: 301, K: 6144, affine: true, why: "K = 6144 (1.7B down), N % 16 = 13" },
      { N: 20, K: 9728, why: "K = 9728 (4B down): 76 groups, bmma five pairs per warp" },
    ];
    const variants = () => gpu?.kernelVariants?.matvec ?? ["default"];
    for (const c of mv) {
      t(`matvec ${c.N}x${c.K} (${c.why}): exact, all variants`, async () => {
        const rng = new Rng(c.N * 7 + c.K);
        const w: Q1Host = exactQ1(rng, c.N, c.K, c.affine);
        const x = smallInts(rng, c.K);
        const cw = cpu.uploadQ1(w), co = cpu.alloc(c.N);
        cpu.matmul(co, cpu.upload(x), cw, 1);
        const want = await cpu.read(co);
        const gw = gpu.uploadQ1(w), gx = gpu.upload(x), go = gpu.alloc(c.N);
        for (const v of variants()) {
          gpu.setKernelVariant?.("matvec", v);
          gpu.matmul(go, gx, gw, 1);
          const got = await gpu.read(go);
          expect([v, maxAbsDiff(got, want)]).toEqual([v, 0]);
        }
        gpu.setKernelVariant?.("matvec", variants()[0]!);
      });
    }

    // Random f32 x. "bmma" quantizes x to 16 bits per group (src/quant/x16.ts): it must match the
    // CPU on the quantized x to f32 rounding, and the quantization itself must stay <= 1e-4 of scale.
    t("matvec 1000x4096 with random f32 x and Bonsai-style weights: rel error <= 1e-5 (bmma: on x16(x))", async () => {
      const rng = new Rng(5), N = 1000, K = 4096;
      const w = exactQ1(rng, N, K), x = floats(rng, K);
      const want = async (xs: Float32Array) => { const o = cpu.alloc(N); cpu.matmul(o, cpu.upload(xs), cpu.uploadQ1(w), 1); return cpu.read(o); };
      const [exact, quant] = [await want(x), await want(quantizeX16(x))];
      const scale = Math.max(...Array.from(exact, Math.abs));
      const gw = gpu.uploadQ1(w), gx = gpu.upload(x), go = gpu.alloc(N);
      for (const v of variants()) {
        gpu.setKernelVariant?.("matvec", v);
        gpu.matmul(go, gx, gw, 1);
        const got = await gpu.read(go);
        expect([v, maxAbsDiff(got, v === "bmma" ? quant : exact) / scale <= 1e-5]).toEqual([v, true]);
        expect([v, maxAbsDiff(got, exact) / scale <= 1e-4]).toEqual([v, true]);
      }
      gpu.setKernelVariant?.("matvec", variants()[0]!);
    });

    // A bmma launch that follows another kernel and streams >= 40 KB per block runs "solo" (more
    // than half an SM's shared memory, so one block per SM); right after another bmma launch it does not.
    t("matvec 4100x12288 (bmma): a solo launch after x's quantization, then a back-to-back one, both exact", async () => {
      if (!variants().includes("bmma")) return void console.log("kernels.test: no bmma variant on this GPU");
      const cu = gpu as CudaBackend; // only the CUDA backend has the bmma variant
      const rng = new Rng(12288), N = 4100, K = 12288;
      const w = exactQ1(rng, N, K, true), x = smallInts(rng, K);
      const co = cpu.alloc(N);
      cpu.matmul(co, cpu.upload(x), cpu.uploadQ1(w), 1);
      const want = await cpu.read(co);
      const gw = gpu.uploadQ1(w), gx = gpu.upload(x);
      gpu.setKernelVariant?.("matvec", "bmma");
      for (const solo of [true, false]) {
        const go = gpu.upload(new Float32Array(N).fill(NaN)), before = cu.soloLaunches; // a row never written stays NaN
        gpu.matmul(go, gx, gw, 1); // the first quantizes x (another kernel) first; the second reuses it
        expect([solo, cu.soloLaunches - before, maxAbsDiff(await gpu.read(go), want)]).toEqual([solo, solo ? 1 : 0, 0]);
      }
      gpu.setKernelVariant?.("matvec", variants()[0]!);
    });

    // K > 6144 (more than 3 group pairs per warp: tiles one at a time) with several row tiles per
    // block, sized from the GPU's SM count: all tiles queued at entry (2, 3 per block), and more
    // tiles than stages (9728 x 5: the refilling loop); whole group pairs and an odd group count.
    // 4096 x 9: past 8 tiles an SM the host launches two blocks per SM (~4.5 tiles each).
    t("matvec bmma, K > 6144 with 2-5 row tiles per block, and two blocks per SM at K = 4096: exact", async () => {
      if (!variants().includes("bmma")) return void console.log("kernels.test: no bmma variant on this GPU");
      const sms = (gpu as CudaBackend).info.sms;
      for (const [K, per] of [[12288, 3], [9728, 2], [9728, 5], [8320, 3], [4096, 9]] as const) {
        const N = 16 * sms * per - 5, rng = new Rng(K + per);
        const w = exactQ1(rng, N, K, true), x = smallInts(rng, K);
        const co = cpu.alloc(N);
        cpu.matmul(co, cpu.upload(x), cpu.uploadQ1(w), 1);
        const want = await cpu.read(co);
        const go = gpu.upload(new Float32Array(N).fill(NaN));
        gpu.setKernelVariant?.("matvec", "bmma");
        gpu.matmul(go, gpu.upload(x), gpu.uploadQ1(w), 1);
        expect([K, per, maxAbsDiff(await gpu.read(go), want)]).toEqual([K, per, 0]);
      }
      gpu.setKernelVariant?.("matvec", variants()[0]!);
    });

    // The plane weighting at its extremes: one group of x nonzero (the rest 0), at q = -32768 (the sign
    // plane alone), q = 32767 (planes 0-14), or mixed, against all-ones, all-zero, alternating and
    // random rows. Each y is s * d * I with |I| <= 2^22, exact in f32: a lost low bit of I (a tensor-core
    // sum that rounded), a wrong plane weight or sign, or a group slot mixed up within a batch shows.
    t("matvec bmma: extreme popcounts and x at q = -32768 / 32767, one group at a time, K = 4096 / 12288: exact", async () => {
      if (!variants().includes("bmma")) return void console.log("kernels.test: no bmma variant on this GPU");
      const rng = new Rng(32768), N = 40, near2 = 2 - 2 ** -16; // |x| / 2^-14 = 32767.75: q = -32768 or 32767
      gpu.setKernelVariant?.("matvec", "bmma");
      for (const K of [4096, 12288]) {
        const G = K / 128, W = K / 32;
        const words = new Uint32Array(N * W), scales = new Uint16Array(N * G), biases = new Uint16Array(N * G);
        for (let r = 0; r < N; r++) {
          const pat = [0xffffffff, 0, 0xaaaaaaaa, 0x55555555, -1][r % 5]!;
          for (let i = 0; i < W; i++) words[r * W + i] = pat === -1 ? rng.u32() : pat;
          scales.fill(f32ToF16Bits(2 ** -(r % 3)), r * G, (r + 1) * G); // biases stay 0
        }
        const w: Q1Host = { rows: N, cols: K, words, scales, biases };
        const gw = gpu.uploadQ1(w), cw = cpu.uploadQ1(w);
        for (const g of [0, 5, G - 1]) {
          for (const kind of ["neg", "pos", "mixed"] as const) {
            const x = new Float32Array(K);
            for (let k = 0; k < 128; k++) x[128 * g + k] = kind === "neg" ? -near2 : kind === "pos" ? near2 : k % 3 === 0 ? -near2 : ((k % 5) - 2) / 2;
            const o = cpu.alloc(N);
            cpu.matmul(o, cpu.upload(quantizeX16(x)), cw, 1);
            const want = await cpu.read(o), go = gpu.alloc(N);
            gpu.matmul(go, gpu.upload(x), gw, 1);
            expect([K, g, kind, maxAbsDiff(await gpu.read(go), want)]).toEqual([K, g, kind, 0]);
          }
        }
      }
      gpu.setKernelVariant?.("matvec", variants()[0]!);
    });

    t("matvec x quantization (bmma): outliers, zeros, huge and tiny groups, odd K/128, 300x1152: rel error <= 1e-5 vs x16(x)", async () => {
      if (!variants().includes("bmma")) return void console.log("kernels.test: no bmma variant on this GPU");
      const rng = new Rng(11), N = 300, K = 1152;
      const w = exactQ1(rng, N, K, true), x = floats(rng, K);
      x[5] = 1000; // one outlier coarsens its group's step
      for (let k = 128; k < 256; k++) x[k] = 0; // an all-zero group
      for (let k = 256; k < 384; k++) x[k] = x[k]! * 3e6; // huge values: the step is > 1
      for (let k = 384; k < 512; k++) x[k] = x[k]! * 1e-30; // tiny values
      x[640] = 65535.5; x[641] = -65535.5; // 65535.5 / 2 rounds to 32768: clamped to 32767
      const o = cpu.alloc(N);
      cpu.matmul(o, cpu.upload(quantizeX16(x)), cpu.uploadQ1(w), 1);
      const want = await cpu.read(o);
      gpu.setKernelVariant?.("matvec", "bmma");
      const go = gpu.alloc(N);
      gpu.matmul(go, gpu.upload(x), gpu.uploadQ1(w), 1);
      const got = await gpu.read(go);
      const scale = Math.max(...Array.from(want, Math.abs));
      expect(maxAbsDiff(got, want) / scale).toBeLessThanOrEqual(1e-5);
      gpu.setKernelVariant?.("matvec", variants()[0]!);
    });

    // ---- bmma: the norms and SwiGLU that also quantize x for the next matvec (cuda/x16_fused.ts) --
    // With variant bmma, a one-row rmsnorm / addRmsnorm / swiglu leaves x16(out) for the matvec
    // that follows; the matvec must equal the CPU on x16(out) whether it used that or its own prep.
    for (const [kind, n] of [["rmsnorm", 4096], ["addRmsnorm", 2048], ["swiglu", 12288], ["swiglu", 6144]] as const) {
      t(`bmma after a fused ${kind} (n = ${n}): out abs error <= 1e-5, matvec rel error <= 1e-5 vs CPU on x16(out)`, async () => {
        if (!variants().includes("bmma")) return void console.log("kernels.test: no bmma variant on this GPU");
        const rng = new Rng(n + kind.length), N = 300;
        const a = floats(rng, n, 3), bv = floats(rng, n, 3), w = floats(rng, n), q = exactQ1(rng, N, n, true);
        const produce = (b: Backend, o: Buf) => {
          if (kind === "rmsnorm") b.rmsnorm(o, b.upload(a), b.upload(w), 1, n, 1e-6);
          else if (kind === "addRmsnorm") b.addRmsnorm(b.upload(a), b.upload(bv), b.upload(w), o, 1, n, 1e-6);
          else b.swiglu(o, b.upload(a), b.upload(bv), n);
        };
        const co = cpu.alloc(n);
        produce(cpu, co);
        const cOut = await cpu.read(co), cy = cpu.alloc(N);
        cpu.matmul(cy, cpu.upload(quantizeX16(cOut)), cpu.uploadQ1(q), 1);
        const want = await cpu.read(cy), scale = Math.max(...Array.from(want, Math.abs));
        gpu.setKernelVariant?.("matvec", "bmma");
        const go = gpu.alloc(n), gw = gpu.uploadQ1(q), gy = gpu.alloc(N);
        produce(gpu, go);
        gpu.matmul(gy, go, gw, 1); // uses the fused quantization
        const gOut = await gpu.read(go), got = await gpu.read(gy);
        expect(maxAbsDiff(gOut, cOut)).toBeLessThanOrEqual(1e-5);
        // against x16 of the GPU's own out (f32 rounding of the norm may move a value across a step)
        const cy2 = cpu.alloc(N);
        cpu.matmul(cy2, cpu.upload(quantizeX16(gOut)), cpu.uploadQ1(q), 1);
        const want2 = await cpu.read(cy2);
        expect(maxAbsDiff(got, want2) / scale).toBeLessThanOrEqual(1e-5);
        expect(maxAbsDiff(got, want) / scale).toBeLessThanOrEqual(1e-4);
        // an op that rewrites out in between: the matvec must quantize the new out itself
        gpu.add(go, go, go, n); // out *= 2
        gpu.matmul(gy, go, gw, 1);
        const doubled = await gpu.read(gy);
        const cy3 = cpu.alloc(N);
        cpu.matmul(cy3, cpu.upload(quantizeX16(gOut.map((v) => 2 * v))), cpu.uploadQ1(q), 1);
        expect(maxAbsDiff(doubled, await cpu.read(cy3)) / (2 * scale)).toBeLessThanOrEqual(1e-5);
        // a prefill matmul (qmm, M = 21) that writes into out: the matvec must not reuse the old x16
        const qm = exactQ1(rng, 64, 128), xm = smallInts(rng, 21 * 128);
        gpu.matmul(go, gpu.upload(xm), gpu.uploadQ1(qm), 21); // out[0 .. 21*64) = new values
        const rewritten = await gpu.read(go);
        gpu.matmul(gy, go, gw, 1);
        const cy4 = cpu.alloc(N);
        cpu.matmul(cy4, cpu.upload(quantizeX16(rewritten)), cpu.uploadQ1(q), 1);
        const want4 = await cpu.read(cy4);
        expect(maxAbsDiff(await gpu.read(gy), want4) / Math.max(1, ...Array.from(want4, Math.abs))).toBeLessThanOrEqual(1e-5);
        gpu.setKernelVariant?.("matvec", variants()[0]!);
      });
    }

    // A decode step's attention with head_dim 128 leaves x16(out) too (attention_combine_x16_f32):
    // the o projection that follows launches no prep of its own and equals the CPU on x16(out).
    t("bmma after a decode step's attention (head_dim 128): no prep launch, matvec rel error <= 1e-5 vs CPU on x16(out)", async () => {
      if (!variants().includes("bmma")) return void console.log("kernels.test: no bmma variant on this GPU");
      const cu = gpu as CudaBackend;
      const shape = { nHeads: 8, nKvHeads: 2, headDim: 128 }, { nHeads, nKvHeads, headDim: D } = shape, r = rope("8b");
      const rng = new Rng(1281), pos = 40, N = 300, n = nHeads * D;
      const k = floats(rng, (pos + 1) * nKvHeads * D, 2), v = floats(rng, (pos + 1) * nKvHeads * D, 2), q = floats(rng, (pos + 1) * nHeads * D, 2);
      const ones = new Float32Array(D).fill(1), w = exactQ1(rng, N, n, true);
      gpu.setKernelVariant?.("matvec", "bmma");
      const cache = gpu.allocKV(1, 64, nKvHeads, D), qb = gpu.upload(q.subarray(pos * nHeads * D)), o = gpu.alloc(n);
      gpu.setStep(0, new Int32Array(pos));
      gpu.qkNormRopeAppend(gpu.upload(q.subarray(0, pos * nHeads * D)), gpu.upload(k.subarray(0, pos * nKvHeads * D)), gpu.upload(v.subarray(0, pos * nKvHeads * D)), gpu.upload(ones), gpu.upload(ones), 1e-6, r, shape, cache, 0, pos);
      gpu.setStep(pos, new Int32Array(1));
      gpu.qkNormRopeAppend(qb, gpu.upload(k.subarray(pos * nKvHeads * D)), gpu.upload(v.subarray(pos * nKvHeads * D)), gpu.upload(ones), gpu.upload(ones), 1e-6, r, shape, cache, 0, 1);
      gpu.attention(o, qb, shape, cache, 0, 1);
      const preps = cu.x16Preps, y = gpu.alloc(N);
      gpu.matmul(y, o, gpu.uploadQ1(w), 1);
      const got = await gpu.read(y), out = await gpu.read(o);
      expect(cu.x16Preps).toBe(preps); // the merge quantized out
      const cy = cpu.alloc(N);
      cpu.matmul(cy, cpu.upload(quantizeX16(out)), cpu.uploadQ1(w), 1);
      const want = await cpu.read(cy);
      expect(maxAbsDiff(got, want) / Math.max(...Array.from(want, Math.abs))).toBeLessThanOrEqual(1e-5);
      gpu.setKernelVariant?.("matvec", variants()[0]!);
    });

    // ---- prefill matmul (M > 1): exact ---------------------------------------------------------
    // M <= 20 runs one matvec per row; above, qmm (K = 128: one group, fewer than its 3 stages;
    // K = 4096: 32 groups through the stage ring)
    // every matmul variant (how qmm takes x: "hilo" = two f16 halves, "f16"): small integers are
    // exact in f16, so both must match the CPU bit for bit
    const mmVariants = () => gpu?.kernelVariants?.matmul ?? ["default"];
    const eachMatmulVariant = async (f: (v: string) => Promise<void>) => {
      for (const v of mmVariants()) { gpu.setKernelVariant?.("matmul", v); await f(v); }
      gpu.setKernelVariant?.("matmul", mmVariants()[0]!);
    };
    for (const [M, N, K] of [[2, 130, 640], [17, 67, 1152], [100, 300, 1152], [512, 130, 640], [33, 260, 128], [40, 257, 4096]] as const) {
      t(`matmul M=${M} N=${N} K=${K} (tails in M and N): exact, every variant`, async () => {
        const rng = new Rng(M * 1000 + N);
        const w = exactQ1(rng, N, K, true), x = smallInts(rng, M * K);
        await eachMatmulVariant(async (v) => {
          const [g, c] = await both((b) => { const o = b.alloc(M * N); b.matmul(o, b.upload(x), b.uploadQ1(w), M); return o; });
          expect([v, maxAbsDiff(g, c)]).toEqual([v, 0]);
        });
      });
    }

    t("matmul M=37 N=70 K=384 with x starting 1 float into its buffer (unaligned rows): exact, every variant", async () => {
      const rng = new Rng(37), M = 37, N = 70, K = 384;
      const w = exactQ1(rng, N, K, true), x = smallInts(rng, M * K + 1);
      await eachMatmulVariant(async (v) => {
        const [g, c] = await both((b) => { const o = b.alloc(M * N); b.matmul(o, b.slice(b.upload(x), 1, M * K), b.uploadQ1(w), M); return o; });
        expect([v, maxAbsDiff(g, c)]).toEqual([v, 0]);
      });
    });

    // random f32 x: the hi/lo split keeps ~22 bits of x (rel error <= 1e-5 of the largest output);
    // f16 x keeps 11 (f16's unit roundoff 2^-11 ~ 4.9e-4 per element; <= 1e-3 here), and must be
    // coarser than hilo by a clear margin, which shows x_lo really is left out
    t("matmul M=200 N=300 K=1152 with random f32 x: rel error <= 1e-5 (hilo), <= 1e-3 (f16)", async () => {
      const rng = new Rng(77), M = 200, N = 300, K = 1152;
      const w = exactQ1(rng, N, K, true), x = floats(rng, M * K);
      const err: Record<string, number> = {};
      await eachMatmulVariant(async (v) => {
        const [g, c] = await both((b) => { const o = b.alloc(M * N); b.matmul(o, b.upload(x), b.uploadQ1(w), M); return o; });
        err[v] = maxAbsDiff(g, c) / Math.max(...Array.from(c, Math.abs));
        expect([v, err[v]! <= (v === "f16" ? 1e-3 : 1e-5)]).toEqual([v, true]);
      });
      if (err.f16 !== undefined && err.hilo !== undefined) expect(err.f16).toBeGreaterThan(10 * err.hilo);
    });

    // ---- embedding, norms, elementwise ---------------------------------------------------------
    t("embed 4 tokens from a 1000x640 table: exact", async () => {
      const rng = new Rng(9), w = exactQ1(rng, 1000, 640, true), ids = Int32Array.from([0, 999, 5, 5]);
      const [g, c] = await both((b) => { b.setStep(0, ids); const o = b.alloc(4 * 640); b.embed(o, b.uploadQ1(w)); return o; });
      expect(maxAbsDiff(g, c)).toBe(0);
    });

    for (const dim of [640, 4096]) {
      t(`rmsnorm 3x${dim}, in place: abs error <= 1e-5`, async () => {
        const rng = new Rng(dim), x = floats(rng, 3 * dim, 3), w = floats(rng, dim);
        const [g, c] = await both((b) => { const xb = b.upload(x); b.rmsnorm(xb, xb, b.upload(w), 3, dim, 1e-6); return xb; });
        expect(maxAbsDiff(g, c)).toBeLessThanOrEqual(1e-5);
      });
    }

    for (const [rows, dim] of [[1, 4096], [3, 640], [2, 8320]] as const) {
      t(`addRmsnorm ${rows}x${dim} (x += delta; out = norm(x)): sum exact, norm abs error <= 1e-5`, async () => {
        const rng = new Rng(dim + rows), x = floats(rng, rows * dim, 3), d = floats(rng, rows * dim, 3), w = floats(rng, dim);
        const run = async (b: Backend) => {
          const xb = b.upload(x), o = b.alloc(rows * dim);
          b.addRmsnorm(xb, b.upload(d), b.upload(w), o, rows, dim, 1e-6);
          return [await b.read(xb), await b.read(o)];
        };
        const [gx, go] = await run(gpu), [cx, co] = await run(cpu);
        expect(maxAbsDiff(gx!, cx!)).toBe(0);
        expect(maxAbsDiff(go!, co!)).toBeLessThanOrEqual(1e-5);
      });
    }

    t("attention refuses a head_dim its kernel has no case for (192) before any launch", () => {
      const shape = { nHeads: 2, nKvHeads: 1, headDim: 192 }, cache = gpu.allocKV(1, 8, 1, 192);
      gpu.setStep(0, new Int32Array(1));
      expect(() => gpu.attention(gpu.alloc(384), gpu.alloc(384), shape, cache, 0, 1)).toThrow(/headDim 192 must be 64, 128 or 256/);
      gpu.freeKV(cache);
    });

    t("qkNormRopeAppend and attention refuse positions past the cache (context full)", () => {
      const shape = { nHeads: 4, nKvHeads: 2, headDim: 64 }, cache = gpu.allocKV(1, 8, 2, 64), r = rope("tiny");
      gpu.setStep(8, new Int32Array(1));
      const q = gpu.alloc(256), kv = gpu.alloc(128), n = gpu.upload(new Float32Array(64).fill(1));
      expect(() => gpu.qkNormRopeAppend(q, kv, gpu.alloc(128), n, n, 1e-6, r, shape, cache, 0, 1)).toThrow(/context full: positions up to 9 but the KV cache holds 8/);
      expect(() => gpu.attention(gpu.alloc(256), q, shape, cache, 0, 1)).toThrow(/context full/);
      gpu.freeKV(cache);
    });

    t("copy2d: a column block of a [17, 6144] row-major buffer, exact; bad strides refused", async () => {
      const rng = new Rng(4), src = floats(rng, 17 * 6144);
      const [g, c] = await both((b) => { const d = b.alloc(17 * 1024); b.copy2d(d, 1024, b.slice(b.upload(src), 4096, 17 * 6144 - 4096), 6144, 17, 1024); return d; });
      expect(maxAbsDiff(g, c)).toBe(0);
      expect(() => gpu.copy2d(gpu.alloc(10), 5, gpu.alloc(10), 4, 2, 5)).toThrow(/exceed a stride/);
      expect(() => gpu.copy2d(gpu.alloc(9), 5, gpu.alloc(10), 5, 2, 5)).toThrow(/dst holds 9 values but 10 are needed/);
    });

    t("swigluRows of a stacked [gate | up] output (abs error <= 1e-5): 5 rows x 1027, and a slice's offset", async () => {
      const rng = new Rng(1028), rows = 5, n = 1027, gu = floats(rng, 3 + rows * 2 * n, 8);
      const [g, c] = await both((b) => { const o = b.alloc(rows * n + 1); b.swigluRows(b.slice(o, 1, rows * n), b.slice(b.upload(gu), 3, rows * 2 * n), rows, n); return o; });
      expect(maxAbsDiff(g, c)).toBeLessThanOrEqual(1e-5);
      expect(c[0]).toBe(0); // nothing written before the slice
      expect(() => gpu.swigluRows(gpu.alloc(rows * n), gpu.alloc(rows * 2 * n - 1), rows, n)).toThrow(/gu/);
    });
    t("swiglu (abs error <= 1e-5) and add (exact), n = 1027", async () => {
      const rng = new Rng(3), n = 1027, a = floats(rng, n, 8), u = floats(rng, n, 2);
      const [g, c] = await both((b) => { const o = b.alloc(n); b.swiglu(o, b.upload(a), b.upload(u), n); return o; });
      expect(maxAbsDiff(g, c)).toBeLessThanOrEqual(1e-5);
      const [g2, c2] = await both((b) => { const o = b.upload(a); b.add(o, o, b.upload(u), n); return o; });
      expect(maxAbsDiff(g2, c2)).toBe(0);
    });

    // ---- q/k norm + RoPE + KV append, attention --------------------------------------------------
    // The GPU cache is f16 (the CPU's is f32), so attention outputs agree to ~1e-3: tolerance 5e-3 abs.
    // q after norm + RoPE is f32 on both: tolerance 2e-5 abs (accurate cosf/sinf vs Math.cos/sin).
    interface AttCase { name: string; shape: AttnShape; rope: RopeSpec; pos: number; T: number; ctx: number; fill?: number }
    const small = { nHeads: 4, nKvHeads: 2, headDim: 64 }, big = { nHeads: 8, nKvHeads: 2, headDim: 128 };
    const wide = { nHeads: 2, nKvHeads: 2, headDim: 256 };
    // 8 query heads per kv head (Qwen3-32B's group): the kernel's largest register case, which spills
    // under attention_partial_f32's register cap
    const group8 = { nHeads: 16, nKvHeads: 2, headDim: 128 };
    const att: AttCase[] = [
      { name: "decode, length 1", shape: small, rope: rope("tiny"), pos: 0, T: 1, ctx: 16 },
      { name: "decode, length 7", shape: small, rope: rope("tiny"), pos: 6, T: 1, ctx: 16, fill: 6 },
      { name: "decode, length 128", shape: big, rope: rope("1.7b"), pos: 127, T: 1, ctx: 256, fill: 127 },
      { name: "decode, length 4097 (17 splits)", shape: big, rope: rope("1.7b"), pos: 4096, T: 1, ctx: 4200, fill: 4096 },
      { name: "decode, length 100, head_dim 256, no GQA", shape: wide, rope: { headDim: 256, invFreq: Float32Array.from({ length: 128 }, (_, i) => 1e6 ** (-i / 128)), attentionFactor: 1 }, pos: 99, T: 1, ctx: 128, fill: 99 },
      { name: "prefill T=7 at 0 (causal)", shape: small, rope: rope("tiny"), pos: 0, T: 7, ctx: 16 },
      { name: "prefill T=128 at 0 (causal)", shape: big, rope: rope("1.7b"), pos: 0, T: 128, ctx: 300 },
      { name: "prefill T=17 after 100", shape: big, rope: rope("8b"), pos: 100, T: 17, ctx: 300, fill: 100 },
      { name: "YaRN decode at position 20004 (> 16384)", shape: big, rope: rope("8b"), pos: 20004, T: 1, ctx: 20010 },
      { name: "YaRN prefill T=5 at 20000", shape: big, rope: rope("8b"), pos: 20000, T: 5, ctx: 20010 },
      { name: "GQA group of 8: prefill T=40 after 30", shape: group8, rope: rope("8b"), pos: 30, T: 40, ctx: 80, fill: 30 },
      // the tiled prefill kernel's tiles: query tiles of 64 / G with a tail, key tiles of 64 with a
      // tail, several key tiles per block, a pass that starts mid-tile, and no GQA (G = 1)
      { name: "prefill T=200 after 70 (tiled: 13 query tiles, the last partial; 5 key tiles)", shape: big, rope: rope("8b"), pos: 70, T: 200, ctx: 300, fill: 70 },
      { name: "prefill T=130 at 0, head_dim 64 (tiled: 32 queries per tile)", shape: small, rope: rope("tiny"), pos: 0, T: 130, ctx: 140 },
      { name: "prefill T=65 after 63, no GQA (tiled: 64 queries per tile)", shape: { nHeads: 2, nKvHeads: 2, headDim: 128 }, rope: rope("1.7b"), pos: 63, T: 65, ctx: 140, fill: 63 },
      { name: "GQA group of 8 and head_dim 256: decode, length 65", shape: { nHeads: 8, nKvHeads: 1, headDim: 256 }, rope: { headDim: 256, invFreq: Float32Array.from({ length: 128 }, (_, i) => 1e6 ** (-i / 128)), attentionFactor: 1 }, pos: 64, T: 1, ctx: 80, fill: 64 },
    ];
    for (const c of att) {
      t(`qkNormRopeAppend + attention: ${c.name}`, async () => {
        const rng = new Rng(c.pos * 31 + c.T), { nHeads, nKvHeads, headDim: D } = c.shape;
        const qn = floats(rng, D, 1).map((v) => 1 + 0.25 * v), kn = floats(rng, D, 1).map((v) => 1 + 0.25 * v);
        const steps: { pos: number; T: number; q: Float32Array; k: Float32Array; v: Float32Array }[] = [];
        if (c.fill) steps.push({ pos: c.pos - c.fill, T: c.fill, q: floats(rng, c.fill * nHeads * D, 2), k: floats(rng, c.fill * nKvHeads * D, 2), v: floats(rng, c.fill * nKvHeads * D, 2) });
        steps.push({ pos: c.pos, T: c.T, q: floats(rng, c.T * nHeads * D, 2), k: floats(rng, c.T * nKvHeads * D, 2), v: floats(rng, c.T * nKvHeads * D, 2) });
        const run = async (b: Backend) => {
          const cache = b.allocKV(1, c.ctx, nKvHeads, D), qnb = b.upload(qn), knb = b.upload(kn);
          let qOut: Float32Array = new Float32Array(0), out: Float32Array = new Float32Array(0);
          for (const s of steps) {
            b.setStep(s.pos, new Int32Array(s.T));
            const q = b.upload(s.q), o = b.alloc(s.T * nHeads * D);
            b.qkNormRopeAppend(q, b.upload(s.k), b.upload(s.v), qnb, knb, 1e-6, c.rope, c.shape, cache, 0, s.T);
            if (s !== steps[steps.length - 1]) continue; // the fill only writes the cache
            b.attention(o, q, c.shape, cache, 0, s.T);
            qOut = await b.read(q);
            out = await b.read(o);
          }
          return { qOut, out };
        };
        const cp = await run(cpu);
        // every kernel choice (the split kernels with either merge of the partials, the tiled
        // prefill kernel, and the host's choice between them) at every length
        for (const v of gpu.kernelVariants?.attention ?? ["default"]) {
          gpu.setKernelVariant?.("attention", v);
          const g = await run(gpu);
          expect([v, maxAbsDiff(g.qOut, cp.qOut) <= 2e-5]).toEqual([v, true]);
          expect([v, maxAbsDiff(g.out, cp.out) <= 5e-3]).toEqual([v, true]);
        }
        gpu.setKernelVariant?.("attention", "auto");
      });
    }

    // The tiled kernel's last query tile runs rows past T on zero queries: none may be written.
    t("tiled prefill attention writes exactly its T rows (a partial last query tile; sentinels after out stay)", async () => {
      if (!gpu.kernelVariants?.attention?.includes("tiled")) return void console.log("kernels.test: this backend has no tiled attention");
      const shape = { nHeads: 8, nKvHeads: 2, headDim: 128 }, D = 128, T = 20, rng = new Rng(2020);
      const q = floats(rng, T * 8 * D, 2), k = floats(rng, T * 2 * D, 2), v = floats(rng, T * 2 * D, 2);
      const qn = new Float32Array(D).fill(1), kn = new Float32Array(D).fill(1), tail = 8 * 4 * D;
      const run = async (b: Backend) => {
        const cache = b.allocKV(1, T, 2, D), qb = b.upload(q), big = b.upload(new Float32Array(T * 8 * D + tail).fill(-7));
        b.setStep(0, new Int32Array(T));
        b.qkNormRopeAppend(qb, b.upload(k), b.upload(v), b.upload(qn), b.upload(kn), 1e-6, rope("8b"), shape, cache, 0, T);
        b.attention(b.slice(big, 0, T * 8 * D), qb, shape, cache, 0, T);
        return b.read(big);
      };
      const want = await run(cpu);
      gpu.setKernelVariant?.("attention", "tiled");
      try {
        const got = await run(gpu);
        expect(maxAbsDiff(got.subarray(0, T * 8 * D), want.subarray(0, T * 8 * D))).toBeLessThanOrEqual(5e-3);
        expect(got.subarray(T * 8 * D).every((x) => x === -7)).toBe(true);
      } finally {
        gpu.setKernelVariant?.("attention", "auto");
      }
    });

    // A prefill pass whose partials would exceed the backend's budget runs its queries in
    // sub-batches (t0 offsets); here a budget of ~3 queries' partials for a 40-query pass.
    t("attention in sub-batches of queries (a tiny partials budget): equals the CPU, and the one-batch run", async () => {
      const shape = { nHeads: 8, nKvHeads: 2, headDim: 128 }, { nHeads, nKvHeads, headDim: D } = shape, r = rope("8b");
      const rng = new Rng(4030), fill = 30, T = 40, ctx = 80;
      const qn = floats(rng, D, 1).map((v) => 1 + 0.25 * v), kn = floats(rng, D, 1).map((v) => 1 + 0.25 * v);
      const fq = floats(rng, fill * nHeads * D, 2), fk = floats(rng, fill * nKvHeads * D, 2), fv = floats(rng, fill * nKvHeads * D, 2);
      const q = floats(rng, T * nHeads * D, 2), k = floats(rng, T * nKvHeads * D, 2), v = floats(rng, T * nKvHeads * D, 2);
      const run = async (b: Backend) => {
        const cache = b.allocKV(1, ctx, nKvHeads, D), qnb = b.upload(qn), knb = b.upload(kn);
        b.setStep(0, new Int32Array(fill));
        b.qkNormRopeAppend(b.upload(fq), b.upload(fk), b.upload(fv), qnb, knb, 1e-6, r, shape, cache, 0, fill);
        b.setStep(fill, new Int32Array(T));
        const qb = b.upload(q), o = b.alloc(T * nHeads * D);
        b.qkNormRopeAppend(qb, b.upload(k), b.upload(v), qnb, knb, 1e-6, r, shape, cache, 0, T);
        b.attention(o, qb, shape, cache, 0, T);
        return b.read(o);
      };
      const budgeted = gpu as Backend & { attPartialsMax?: number };
      if (budgeted.attPartialsMax === undefined) return void console.log("kernels.test: this backend has no partials budget");
      const want = await run(cpu), whole = await run(gpu);
      const keep = budgeted.attPartialsMax;
      budgeted.attPartialsMax = 3 * 4 * nHeads * Math.ceil((fill + T) / 32) * (D + 2); // 3 queries per batch
      try {
        const got = await run(gpu);
        expect(maxAbsDiff(got, want)).toBeLessThanOrEqual(5e-3);
        expect(maxAbsDiff(got, whole)).toBe(0); // the same math per query
      } finally {
        budgeted.attPartialsMax = keep;
      }
    });

    // ---- sampling on the device ----------------------------------------------------------------
    const sampling: [SamplingParams, number][] = [
      [{ temperature: 0, topK: 0, topP: 1 }, 0],
      [{ temperature: 0.8, topK: 40, topP: 0.9 }, 0.3],
      [{ temperature: 1, topK: 0, topP: 0.95 }, 0.77],
      [{ temperature: 0.5, topK: 1, topP: 1 }, 0.5],
      [{ temperature: 1.2, topK: 5000, topP: 1 }, 0.999],
    ];
    t("sampleToken equals the host definition (greedy, top-k, top-p), vocab 151669", async () => {
      if (!gpu.sampleToken) return console.log(`${name}: no sampleToken; skipped`);
      const rng = new Rng(11), V = 151669, logits = floats(rng, V, 6);
      const lb = gpu.upload(logits);
      for (const [p, r] of sampling) expect([p, r, await gpu.sampleToken(lb, V, p, r)]).toEqual([p, r, sampleHost(logits, p, r)]);
    });

    // ---- captured step replay ------------------------------------------------------------------
    t("replayable: a captured step replays with new setStep values", async () => {
      if (!gpu.replayable) return console.log(`${name}: no replayable; skipped`);
      const rng = new Rng(12), w = exactQ1(rng, 500, 640), m = exactQ1(rng, 300, 640), nw = smallInts(rng, 640);
      const mk = (b: Backend) => ({ w: b.uploadQ1(w), m: b.uploadQ1(m), nw: b.upload(nw), x: b.alloc(640), h: b.alloc(640), o: b.alloc(300) });
      const G = mk(gpu), C = mk(cpu), key = {};
      for (const id of [3, 17, 499]) {
        const step = (b: Backend, r: typeof G) => { b.embed(r.x, r.w); b.rmsnorm(r.h, r.x, r.nw, 1, 640, 1e-6); b.matmul(r.o, r.h, r.m, 1); };
        gpu.setStep(id, Int32Array.of(id));
        gpu.replayable(key, () => step(gpu, G));
        cpu.setStep(id, Int32Array.of(id));
        step(cpu, C);
        const g = await gpu.read(G.o), c = await cpu.read(C.o);
        // 1e-4: the bmma matvec quantizes its normed input to 16 bits per group (src/quant/x16.ts)
        expect(maxAbsDiff(g, c) / Math.max(1, ...Array.from(c, Math.abs))).toBeLessThanOrEqual(1e-4);
      }
    });

    // ---- validation happens before the device is touched ---------------------------------------
    t("a foreign or short buffer throws instead of reaching the device", () => {
      const w = gpu.uploadQ1(exactQ1(new Rng(1), 64, 128));
      expect(() => gpu.matmul(gpu.alloc(64), cpu.alloc(128), w, 1)).toThrow(/another backend/);
      expect(() => gpu.matmul(gpu.alloc(63), gpu.alloc(128), w, 1)).toThrow(/needed/);
      expect(() => gpu.setStep(-1, Int32Array.of(0))).toThrow();
    });
  });
}
