// The Metal backend's TypeScript on Linux: MetalBackend driven through a fake shim
// (metal/stub/fake_shim.ts) whose "kernels" are reference semantics run at commit time. This checks
// the host side (validation, buffer offsets, step and KV layouts, one command buffer per step, the
// step-buffer hazard, launch geometry against each kernel's mapping, freeing) against the CPU
// oracle. It does NOT run a line of MSL: test/kernels.test.ts does that on a Mac.

import { afterAll, describe, expect, test } from "bun:test";
import type { AttnShape, Backend, Buf } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu/index.ts";
import { MetalBackend } from "../src/backend/metal/backend.ts";
import { argmax, sampleHost } from "../src/backend/gpu-sample.ts";
import { loadCheckpoint } from "../src/io/checkpoint.ts";
import { parseConfig } from "../src/io/config.ts";
import { configJson, PRESETS } from "../src/model/make.ts";
import { Qwen3 } from "../src/model/qwen3.ts";
import { ropeSpec } from "../src/model/rope.ts";
import { Rng } from "../src/util/rng.ts";
import { PREFILL_TILED_ROWS } from "../src/backend/checks.ts";
import { fakeMetalLib } from "../metal/stub/fake_shim.ts";
import { exactQ1, maxAbsDiff, smallInts, testModel } from "./helpers.ts";

const floats = (rng: Rng, n: number, scale = 1) => Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);

describe("metal backend host code (fake shim) vs CPU", () => {
  const fake = fakeMetalLib();
  const gpu = new MetalBackend(fake.lib), cpu = new CpuBackend();
  afterAll(() => gpu.dispose());

  async function both(f: (b: Backend) => Buf): Promise<[Float32Array, Float32Array]> {
    return [await gpu.read(f(gpu)), await cpu.read(f(cpu))];
  }

  // the fast kernel's table fills 32 KiB at K = QMV_MAX_K = 2048 (metal/qmv_q1_f32.ts)
  for (const [N, K, affine] of [[131, 1152, true], [4098, 2048, false], [5, 128, true]] as const) {
    test(`matvec ${N}x${K}: exact, fast and legacy, each picked as asked`, async () => {
      const rng = new Rng(N + K), w = exactQ1(rng, N, K, affine), x = smallInts(rng, K);
      const co = cpu.alloc(N);
      cpu.matmul(co, cpu.upload(x), cpu.uploadQ1(w), 1);
      const want = await cpu.read(co), gw = gpu.uploadQ1(w), gx = gpu.upload(x), go = gpu.alloc(N);
      for (const v of ["fast", "legacy"]) {
        gpu.setKernelVariant("matvec", v);
        gpu.matmul(go, gx, gw, 1);
        expect([v, maxAbsDiff(await gpu.read(go), want)]).toEqual([v, 0]);
        expect(fake.stats.perCommit.at(-1)).toEqual([v === "fast" ? "qmv_q1_f32" : "qmv_q1_f32_legacy"]);
      }
      gpu.setKernelVariant("matvec", "fast");
    });
  }

  test("matvec on an x that is not 16-byte aligned falls back to the legacy kernel", async () => {
    const rng = new Rng(2), w = exactQ1(rng, 64, 256), x = smallInts(rng, 257);
    const [g, c] = await both((b) => { const o = b.alloc(64); b.matmul(o, b.slice(b.upload(x), 1, 256), b.uploadQ1(w), 1); return o; });
    expect(maxAbsDiff(g, c)).toBe(0);
    expect(fake.stats.perCommit.at(-1)).toEqual(["qmv_q1_f32_legacy"]);
  });

  for (const K of [2176, 4096, 12288]) {
    test(`matvec with K = ${K} > QMV_MAX_K (the table does not fit 32 KiB) uses the legacy kernel`, async () => {
      const rng = new Rng(K), w = exactQ1(rng, 40, K), x = smallInts(rng, K);
      const [g, c] = await both((b) => { const o = b.alloc(40); b.matmul(o, b.upload(x), b.uploadQ1(w), 1); return o; });
      expect(maxAbsDiff(g, c)).toBe(0);
      expect(fake.stats.perCommit.at(-1)).toEqual(["qmv_q1_f32_legacy"]);
    });
  }

  test("matmul M=17 N=67 K=1152 (tails): exact, both matmul variants", async () => {
    const rng = new Rng(17), w = exactQ1(rng, 67, 1152, true), x = smallInts(rng, 17 * 1152);
    for (const v of gpu.kernelVariants.matmul) {
      gpu.setKernelVariant("matmul", v);
      const [g, c] = await both((b) => { const o = b.alloc(17 * 67); b.matmul(o, b.upload(x), b.uploadQ1(w), 17); return o; });
      expect([v, maxAbsDiff(g, c)]).toEqual([v, 0]);
    }
    gpu.setKernelVariant("matmul", "hilo");
  });

  test("matmul with random x: the host passes lo, so f16 drops x_lo and hilo keeps it", async () => {
    const rng = new Rng(18), w = exactQ1(rng, 40, 256, true), x = floats(rng, 24 * 256);
    const err = (v: string) => async () => {
      gpu.setKernelVariant("matmul", v);
      const [g, c] = await both((b) => { const o = b.alloc(24 * 40); b.matmul(o, b.upload(x), b.uploadQ1(w), 24); return o; });
      return maxAbsDiff(g, c) / Math.max(...Array.from(c, Math.abs));
    };
    const hilo = await err("hilo")(), f16 = await err("f16")();
    gpu.setKernelVariant("matmul", "hilo");
    expect(hilo).toBeLessThanOrEqual(1e-5);
    expect(f16).toBeGreaterThan(10 * hilo);
    expect(f16).toBeLessThanOrEqual(1e-3);
    expect(() => gpu.setKernelVariant("matmul", "int8")).toThrow(/matmul=hilo\|f16/);
  });

  test("embed, rmsnorm in place, swiglu, swigluRows, add", async () => {
    const rng = new Rng(9), w = exactQ1(rng, 1000, 640, true), ids = Int32Array.from([0, 999, 5, 5]);
    const [e1, e2] = await both((b) => { b.setStep(0, ids); const o = b.alloc(4 * 640); b.embed(o, b.uploadQ1(w)); return o; });
    expect(maxAbsDiff(e1, e2)).toBe(0);
    const x = floats(rng, 3 * 640, 3), nw = floats(rng, 640);
    const [r1, r2] = await both((b) => { const xb = b.upload(x); b.rmsnorm(xb, xb, b.upload(nw), 3, 640, 1e-6); return xb; });
    expect(maxAbsDiff(r1, r2)).toBeLessThanOrEqual(1e-5);
    const a = floats(rng, 1027, 8), u = floats(rng, 1027, 2);
    const [s1, s2] = await both((b) => { const o = b.alloc(1027); b.swiglu(o, b.upload(a), b.upload(u), 1027); return o; });
    const gu = floats(rng, 3 * 2 * 129, 8);
    const [w1, w2] = await both((b) => { const o = b.alloc(3 * 129); b.swigluRows(o, b.upload(gu), 3, 129); return o; });
    expect(maxAbsDiff(w1, w2)).toBeLessThanOrEqual(1e-5);
    expect(maxAbsDiff(s1, s2)).toBeLessThanOrEqual(1e-5);
    const [a1, a2] = await both((b) => { const o = b.upload(a); b.add(o, o, b.upload(u), 1027); return o; });
    expect(maxAbsDiff(a1, a2)).toBe(0);
  });

  // dim 640: float4 path; 642: scalar path; a slice at 1 float: not 16-byte aligned, scalar path
  for (const [rows, dim, off] of [[3, 640, 0], [2, 642, 0], [2, 640, 1]] as const) {
    test(`addRmsnorm ${rows}x${dim}${off ? " (unaligned)" : ""}: x += delta exact, out within 1e-5; one add_rmsnorm_f32`, async () => {
      const rng = new Rng(rows * dim + off), x = floats(rng, rows * dim + off, 3), dl = floats(rng, rows * dim, 3), nw = floats(rng, dim);
      const run = async (b: Backend) => {
        const xb = b.slice(b.upload(x), off, rows * dim), o = b.alloc(rows * dim);
        b.addRmsnorm(xb, b.upload(dl), b.upload(nw), o, rows, dim, 1e-6);
        return { x: await b.read(xb), o: await b.read(o) };
      };
      const g = await run(gpu), c = await run(cpu);
      expect(fake.stats.perCommit.at(-1)).toEqual(["add_rmsnorm_f32"]);
      expect(maxAbsDiff(g.x, c.x)).toBe(0);
      expect(maxAbsDiff(g.o, c.o)).toBeLessThanOrEqual(1e-5);
    });
  }

  test("addRmsnorm in place (out = x), rmsnorm on an unaligned slice; overlaps with delta throw", async () => {
    const rng = new Rng(21), x = floats(rng, 2 * 512 + 1, 3), dl = floats(rng, 2 * 512, 3), nw = floats(rng, 512);
    const [a1, a2] = await both((b) => { const xb = b.upload(x.subarray(0, 1024)); b.addRmsnorm(xb, b.upload(dl), b.upload(nw), xb, 2, 512, 1e-6); return xb; });
    expect(maxAbsDiff(a1, a2)).toBeLessThanOrEqual(1e-5);
    const [r1, r2] = await both((b) => { const xb = b.slice(b.upload(x), 1, 1024); b.rmsnorm(xb, xb, b.upload(nw), 2, 512, 1e-6); return xb; });
    expect(maxAbsDiff(r1, r2)).toBeLessThanOrEqual(1e-5);
    const buf = gpu.alloc(2048), w = gpu.upload(nw);
    expect(() => gpu.addRmsnorm(gpu.slice(buf, 0, 1024), gpu.slice(buf, 512, 1024), w, gpu.alloc(1024), 2, 512, 1e-6)).toThrow(/overlaps/);
    expect(() => gpu.addRmsnorm(gpu.alloc(1024), gpu.slice(buf, 0, 1024), w, gpu.slice(buf, 1000, 1024), 2, 512, 1e-6)).toThrow(/overlaps/);
  });

  test("copy2d: strided rows, exact; empty is a no-op; bad strides throw", async () => {
    const rng = new Rng(8), src = floats(rng, 7 * 96);
    const [c1, c2] = await both((b) => { const d = b.alloc(7 * 40 + 3); b.copy2d(b.slice(d, 3, 7 * 40), 40, b.upload(src), 96, 7, 33); return d; });
    expect(maxAbsDiff(c1, c2)).toBe(0);
    expect(fake.stats.perCommit.at(-1)).toEqual(["copy2d_f32"]);
    const n = fake.stats.dispatches;
    gpu.copy2d(gpu.alloc(4), 4, gpu.alloc(4), 4, 0, 4);
    expect(() => gpu.copy2d(gpu.alloc(64), 8, gpu.alloc(64), 8, 8, 9)).toThrow(/exceed/);
    gpu.sync();
    expect(fake.stats.dispatches).toBe(n);
  });

  const shape: AttnShape = { nHeads: 4, nKvHeads: 2, headDim: 64 };
  const rope = ropeSpec(parseConfig(configJson(PRESETS.tiny!)));
  type Step = { pos: number; T: number; q: Float32Array; k: Float32Array; v: Float32Array };
  /** Random q/k/v of each step (pos, T) for shape sh, and the q/k norm weights. */
  const attSteps = (rng: Rng, sh: AttnShape, at: { pos: number; T: number }[]) => {
    const D = sh.headDim, qn = floats(rng, D).map((v) => 1 + 0.25 * v), kn = floats(rng, D).map((v) => 1 + 0.25 * v);
    const steps: Step[] = at.filter((s) => s.T > 0).map((s) => ({ ...s, q: floats(rng, s.T * sh.nHeads * D, 2), k: floats(rng, s.T * sh.nKvHeads * D, 2), v: floats(rng, s.T * sh.nKvHeads * D, 2) }));
    return { qn, kn, steps };
  };
  /** Runs qkNormRopeAppend for every step into a fresh cache (`layers` deep, written at `layer`);
   *  returns the cache and the last step's q (normed, roped) and an out buffer for it. */
  const appendSteps = (b: Backend, sh: AttnShape, s: ReturnType<typeof attSteps>, ctx: number, layers: number, layer: number) => {
    const cache = b.allocKV(layers, ctx, sh.nKvHeads, sh.headDim), qnb = b.upload(s.qn), knb = b.upload(s.kn);
    let q: Buf | null = null, o: Buf | null = null;
    for (const st of s.steps) {
      b.setStep(st.pos, new Int32Array(st.T));
      q = b.upload(st.q); o = b.alloc(st.T * sh.nHeads * sh.headDim);
      b.qkNormRopeAppend(q, b.upload(st.k), b.upload(st.v), qnb, knb, 1e-6, rope, sh, cache, layer, st.T);
    }
    return { cache, q: q!, o: o! };
  };
  for (const c of [{ pos: 6, T: 1, fill: 6, ctx: 16 }, { pos: 0, T: 7, fill: 0, ctx: 16 }, { pos: 300, T: 1, fill: 300, ctx: 600 }, { pos: 60, T: 5, fill: 60, ctx: 70 }]) {
    test(`qkNormRopeAppend + attention at ${c.pos}, T=${c.T} (f16 cache: 5e-3)`, async () => {
      const s = attSteps(new Rng(c.pos + c.T), shape, [{ pos: 0, T: c.fill }, { pos: c.pos, T: c.T }]);
      const run = async (b: Backend) => {
        const { cache, q, o } = appendSteps(b, shape, s, c.ctx, 2, 1);
        b.attention(o, q, shape, cache, 1, c.T);
        return { q: await b.read(q), o: await b.read(o) };
      };
      const g = await run(gpu), cp = await run(cpu);
      expect(maxAbsDiff(g.q, cp.q)).toBeLessThanOrEqual(2e-5);
      expect(maxAbsDiff(g.o, cp.o)).toBeLessThanOrEqual(5e-3);
    });
  }

  test("attention in sub-batches of queries (a partials budget of 2 queries): equals the CPU; a partial and a merge per sub-batch", async () => {
    const D = 64, fill = 20, T = 9, ctx = 40;
    const s = attSteps(new Rng(2024), shape, [{ pos: 0, T: fill }, { pos: fill, T }]);
    const run = async (b: Backend) => {
      const { cache, q, o } = appendSteps(b, shape, s, ctx, 1, 0);
      if (b === gpu) gpu.sync(); // the fake counts dispatches as their command buffer runs
      const before = fake.stats.dispatches;
      b.attention(o, q, shape, cache, 0, T);
      if (b === gpu) { gpu.sync(); launches = fake.stats.dispatches - before; }
      return b.read(o);
    };
    let launches = 0;
    const keep = gpu.attPartialsMax;
    gpu.attPartialsMax = 2 * 4 * 4 * Math.ceil((fill + T) / 32) * (D + 2); // two queries' partials
    try {
      const got = await run(gpu), want = await run(cpu);
      expect(maxAbsDiff(got, want)).toBeLessThanOrEqual(5e-3);
      expect(launches).toBe(2 * Math.ceil(T / 2)); // a partial and a merge per sub-batch of 2
    } finally {
      gpu.attPartialsMax = keep;
    }
  });

  // A prefill pass takes the tiled attention_prefill_f32 under "tiled", and under "auto" from
  // PREFILL_TILED_ROWS (query, head) rows: one dispatch, no partials; the split kernels otherwise.
  test("prefill attention: the tiled kernel under tiled / auto (from PREFILL_TILED_ROWS rows), the split kernels under serial: each equals the CPU", async () => {
    const g8: AttnShape = { nHeads: 16, nKvHeads: 2, headDim: 64 }, fill = 10, T = PREFILL_TILED_ROWS / 16;
    const s = attSteps(new Rng(77), g8, [{ pos: 0, T: fill }, { pos: fill, T }]);
    const run = async (b: Backend, variant: string) => {
      const { cache, q, o } = appendSteps(b, g8, s, fill + T, 1, 0);
      if (b !== gpu) { b.attention(o, q, g8, cache, 0, T); return { out: await b.read(o), kernels: [] as string[] }; }
      gpu.setKernelVariant("attention", variant);
      gpu.sync();
      gpu.attention(o, q, g8, cache, 0, T);
      gpu.sync();
      gpu.setKernelVariant("attention", "auto");
      return { out: await gpu.read(o), kernels: fake.stats.perCommit.at(-1)! };
    };
    const want = (await run(cpu, "")).out;
    for (const [v, kernels] of [["tiled", ["attention_prefill_f32"]], ["auto", ["attention_prefill_f32"]], ["serial", ["attention_partial_f32", "attention_combine_f32"]]] as const) {
      const got = await run(gpu, v);
      expect([v, got.kernels]).toEqual([v, [...kernels]]);
      expect([v, maxAbsDiff(got.out, want) <= 5e-3]).toEqual([v, true]);
    }
  }, 60_000);

  test("sampleToken: greedy and top-k/top-p equal the host definition", async () => {
    const rng = new Rng(11), V = 5000, logits = floats(rng, V, 6), lb = gpu.upload(logits);
    for (const [p, r] of [[{ temperature: 0, topK: 0, topP: 1 }, 0], [{ temperature: 0.8, topK: 40, topP: 0.9 }, 0.3]] as const) {
      expect(await gpu.sampleToken(lb, V, p, r)).toBe(sampleHost(logits, p, r));
    }
  });

  test("setStep does not overwrite the step values of work not yet run", async () => {
    const w = exactQ1(new Rng(4), 10, 128), gw = gpu.uploadQ1(w), cw = cpu.uploadQ1(w);
    const o1 = gpu.alloc(128), o2 = gpu.alloc(128), c1 = cpu.alloc(128), c2 = cpu.alloc(128);
    gpu.setStep(0, Int32Array.of(3)); gpu.embed(o1, gw);
    gpu.setStep(1, Int32Array.of(7)); gpu.embed(o2, gw); // o1's embed is still unfinished here
    cpu.setStep(0, Int32Array.of(3)); cpu.embed(c1, cw);
    cpu.setStep(1, Int32Array.of(7)); cpu.embed(c2, cw);
    expect(maxAbsDiff(await gpu.read(o1), await cpu.read(c1))).toBe(0);
    expect(maxAbsDiff(await gpu.read(o2), await cpu.read(c2))).toBe(0);
  });

  test("one command buffer per step: setStep submits the previous step's work", async () => {
    const w = exactQ1(new Rng(5), 64, 128), gw = gpu.uploadQ1(w), x = gpu.alloc(128), y = gpu.alloc(64);
    const before = fake.stats.perCommit.length;
    for (let s = 0; s < 3; s++) {
      gpu.setStep(s, Int32Array.of(s));
      gpu.embed(x, gw);
      gpu.matmul(y, x, gw, 1);
    }
    await gpu.read(y);
    expect(fake.stats.perCommit.slice(before)).toEqual(Array(3).fill(["embed_q1_f32", "qmv_q1_f32"]));
  });

  test("foreign, short or overlapping buffers throw before anything is encoded", () => {
    const w = gpu.uploadQ1(exactQ1(new Rng(1), 64, 128)), n = fake.stats.dispatches;
    const x = gpu.alloc(192);
    expect(() => gpu.matmul(gpu.alloc(64), cpu.alloc(128), w, 1)).toThrow(/another backend/);
    expect(() => gpu.matmul(gpu.alloc(63), gpu.alloc(128), w, 1)).toThrow(/needed/);
    expect(() => gpu.matmul(gpu.slice(x, 64, 64), gpu.slice(x, 0, 128), w, 1)).toThrow(/overlaps/);
    expect(() => gpu.slice(x, 100, 100)).toThrow(/needed/);
    expect(() => gpu.setStep(-1, Int32Array.of(0))).toThrow();
    gpu.setStep(0, Int32Array.of(64));
    expect(() => gpu.embed(gpu.alloc(128), w)).toThrow(/outside the vocabulary/);
    if (gpu.freeKV) {
      const kv = gpu.allocKV(1, 4, 2, 64);
      gpu.freeKV(kv);
      expect(() => gpu.attention(gpu.alloc(256), gpu.alloc(256), shape, kv, 0, 1)).toThrow(/freed/);
    }
    gpu.setStep(0, Int32Array.of(0));
    const wide: AttnShape = { nHeads: 18, nKvHeads: 2, headDim: 64 }, kv9 = gpu.allocKV(1, 4, 2, 64);
    expect(() => gpu.attention(gpu.alloc(18 * 64), gpu.alloc(18 * 64), wide, kv9, 0, 1)).toThrow(/at most 8/);
    const q = gpu.alloc(4 * 64 + 1);
    expect(() => gpu.attention(gpu.alloc(256), gpu.slice(q, 1, 256), shape, gpu.allocKV(1, 4, 2, 64), 0, 1)).toThrow(/16-byte aligned/);
    expect(() => gpu.allocKV(1, 4, 1, 192) && gpu.attention(gpu.alloc(192), gpu.alloc(192), { nHeads: 1, nKvHeads: 1, headDim: 192 }, gpu.allocKV(1, 4, 1, 192), 0, 1)).toThrow(/64, 128 or 256/);
    gpu.sync();
    expect(fake.stats.dispatches).toBe(n);
  });
});

describe("tiny model through the Metal backend (fake shim) vs CPU", () => {
  test("prompt logits, then greedy decode via forward and nextToken", async () => {
    const dir = await testModel("metal-fake-tiny", PRESETS.tiny!, 7);
    const fake = fakeMetalLib();
    const ck = loadCheckpoint(dir);
    const g = new Qwen3(ck.config, new MetalBackend(fake.lib), ck), c = new Qwen3(ck.config, new CpuBackend(), ck);
    const prompt = [785, 6722, 315, 9625, 374, 279];
    const sg = g.newSession(64), sc = c.newSession(64), sn = g.newSession(64);
    let lg = await g.forward(sg, prompt), lc = await c.forward(sc, prompt);
    let next = argmax(await g.forward(sn, prompt));
    for (let i = 0; i < 4; i++) {
      const range = Math.max(...Array.from(lc, Math.abs));
      expect(maxAbsDiff(lg, lc)).toBeLessThanOrEqual(1e-2 * range);
      const want = argmax(lc);
      expect([i, next]).toEqual([i, want]);
      lg = await g.forward(sg, [want]);
      lc = await c.forward(sc, [want]);
      next = await g.nextToken(sn, want, { temperature: 0, topK: 0, topP: 1 });
    }
    g.dispose();
    expect(fake.stats.live()).toBe(0); // every handle the backend made was released
  });
});
