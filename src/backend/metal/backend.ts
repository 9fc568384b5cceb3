// The Metal backend: the CUDA backend's design on Apple GPUs, through objc-shim/ and bun:ffi.
//
// - Weights stay packed (1.25 bpw): words u32 [N, K/32], scales and biases f16 [N, K/128]. On
//   unified memory an mmapped checkpoint is mapped to the GPU without a copy when its tensors are
//   aligned (see uploadQ1); otherwise they are copied into shared buffers. So, unlike CUDA, a
//   weight may alias the host arrays it was uploaded from: do not modify them afterwards.
// - Activations are f32; every kernel sums in f32. The KV cache is f16: [layer][k|v][ctx][nKv][D].
// - Per-step values (position, T, token ids) live in a device "step" buffer written by setStep.
// - One command buffer per step: ops encode into the current one; setStep commits it (no wait) so
//   the next step's step buffer can be written; `read` and `sampleToken` commit and wait.
// - Every op validates ownership and sizes here, in TypeScript, before any FFI call, and the device
//   layer (device.ts) checks every buffer range again against the buffer it binds.
// Grids and threadgroup sizes are the CUDA backend's (src/backend/cuda/index.ts), kernel for kernel,
// except qmv_q1_f32's persistent grid (QMV_GRID_CAP, not #SMs) and its K limit (see metal/qmv_q1_f32.ts).

import { checkCopy2d, checkSwigluRows, needLen, type AttnShape, type Backend, type Buf, type KVCache, type Q1Weight, type RopeSpec } from "../backend.ts";
import { sampleHost, type SamplingParams } from "../gpu-sample.ts";
import { checkQ1Shape, type Q1Host } from "../../quant/q1.ts";
import { qmvSharedBytes, QMV_MAX_K, QMV_THREADS } from "../../../metal/qmv_q1_f32.ts";
import { ATT_CHUNK, ATT_LONG, ATT_LONG_QS, ATT_MAX_GROUP } from "../../../metal/attention_f32.ts";
import { ATT_PREFILL_DIMS, ATT_PREFILL_ROWS, ATT_PREFILL_THREADS } from "../../../metal/attention_prefill_f32.ts";
import { RMS_MAX_VEC_DIM, RMS_THREADS } from "../../../metal/rmsnorm_f32.ts";
import { QMM_BM, QMM_BN } from "../../../metal/qmm_q1_f32.ts";
import type { MetalLib } from "../../../ffi/metal.ts";
import { MAX_THREADGROUP_MEMORY, MetalDevice, type Arg, type DeviceBuffer } from "./device.ts";
import { loadKernels, SIGS } from "./kernels.ts";
import {
  ATTENTION_VARIANTS, attentionLaunchSpan, type AttentionVariant, attentionVariantFromEnv, longMerge, longMergePerDim, prefillTiled,
  MATMUL_VARIANTS, type MatmulVariant, matmulVariantFromEnv, ATT_PARTIALS_MAX, attentionRowsPerBatch,
  checkElementwise, checkInt, checkKvShape, checkMatmul, checkNorm, checkQkNormRope, checkSample, checkStepT,
} from "../checks.ts";

/**
 * Threadgroups of the persistent qmv_q1_f32 grid. CUDA uses #SMs; Metal reports no core count
 * (Apple GPUs have 8 to 80), so this is a guess to tune on a Mac.
 */
const QMV_GRID_CAP = 64;

/** macOS on Apple silicon maps memory in 16 KiB pages; no-copy buffers start on one. */
const PAGE = 16384;

/** A range of one device buffer. */
interface Region { buf: DeviceBuffer; offset: number; bytes: number }

class MetalBuf implements Buf {
  constructor(readonly owner: MetalBackend, readonly mem: DeviceBuffer, readonly offset: number, readonly length: number) {}
}

class MetalQ1 implements Q1Weight {
  constructor(readonly owner: MetalBackend, readonly rows: number, readonly cols: number,
    readonly words: Region, readonly scales: Region, readonly biases: Region) {}
}

class MetalKV implements KVCache {
  constructor(readonly owner: MetalBackend, readonly layers: number, readonly ctx: number, readonly nKvHeads: number,
    readonly headDim: number, readonly mem: DeviceBuffer) {}
  get layerBytes(): number { return this.ctx * this.nKvHeads * this.headDim * 2; }
  k(layer: number): Arg { return { buf: this.mem, offset: 2 * layer * this.layerBytes, bytes: this.layerBytes }; }
  v(layer: number): Arg { return { buf: this.mem, offset: (2 * layer + 1) * this.layerBytes, bytes: this.layerBytes }; }
}

const ceil = (a: number, b: number) => Math.ceil(a / b);
const i32 = (v: number): Arg => ({ i32: v });
const f32 = (v: number): Arg => ({ f32: v });

export class MetalBackend implements Backend {
  readonly name = "metal" as const;
  readonly device: string;
  readonly dev: MetalDevice;
  readonly kernelVariants = { matvec: ["fast", "legacy"], attention: ATTENTION_VARIANTS, matmul: MATMUL_VARIANTS } as const;
  /** GPU milliseconds of the command buffers waited on by the last read / sampleToken. */
  lastGpuMs = 0;
  private matvecVariant: "fast" | "legacy";
  private attentionVariant = attentionVariantFromEnv(); // the partials' merge (checks.ts longMerge)
  private matmulVariant = matmulVariantFromEnv(); // how qmm_q1_f32 takes x (checks.ts MatmulVariant)
  private cmd: ReturnType<MetalDevice["newCommands"]> | null = null;
  private readonly inflight: ReturnType<MetalDevice["newCommands"]>[] = [];
  // step state: host copy (for validation) and the device buffers kernels read
  private pos = 0;
  private tokens = new Int32Array(0);
  private step: DeviceBuffer | null = null; // this step's
  private readonly stepFree: DeviceBuffer[] = []; // not referenced by unfinished work
  private readonly stepBusy: DeviceBuffer[] = []; // referenced by committed or current work
  private partials: DeviceBuffer | null = null; // attention partials, grown on demand
  private qmmX: DeviceBuffer | null = null; // x split for qmm_q1_f32 (xh, xl, xs), grown on demand
  /** Most bytes of attention partials per launch (checks.ts ATT_PARTIALS_MAX; public for tests). */
  attPartialsMax = ATT_PARTIALS_MAX;
  private readonly retired: DeviceBuffer[] = []; // outgrown buffers unfinished work may still use
  private readonly ropeTables = new WeakMap<RopeSpec, DeviceBuffer>();
  private readonly wrapped = new WeakMap<ArrayBufferLike, DeviceBuffer | null>();
  private scratch: DeviceBuffer; // 16 bytes: argmax key (u64) and sampled token (u32)
  private disposed = false;

  constructor(lib: MetalLib) {
    this.dev = new MetalDevice(lib);
    const i = this.dev.info;
    this.device = `${i.name} (Metal, ${i.unifiedMemory ? "unified" : "discrete"} memory, ${(i.recommendedWorkingSet / 2 ** 30).toFixed(1)} GiB working set)`;
    loadKernels(this.dev);
    const env = process.env.BUNSAI_QMV_KERNEL;
    if (env !== undefined && env !== "legacy" && env !== "fast") throw new Error(`BUNSAI_QMV_KERNEL must be "fast" or "legacy", got "${env}"`);
    this.matvecVariant = env === "legacy" ? "legacy" : "fast";
    this.scratch = this.dev.alloc(16);
  }

  // ---- commands ---------------------------------------------------------------------------------
  private launch(kernel: string, grid: [number, number, number], block: [number, number, number], args: Arg[], tgBytes = 0): void {
    const sig = SIGS[kernel]!;
    if (args.length !== sig.length) throw new Error(`${kernel}: ${args.length} arguments given, ${sig.length} expected`);
    args.forEach((a, i) => {
      const want = sig[i] === "p" ? "buf" : sig[i] === "i" ? "i32" : "f32";
      if (!(want in a)) throw new Error(`${kernel}: argument ${i} must be ${want}`);
    });
    this.cmd ??= this.dev.newCommands();
    this.dev.dispatch(this.cmd, this.dev.pipeline(kernel), grid, block, args, tgBytes);
  }
  /** Submits the current command buffer without waiting. */
  private flush(): void {
    if (!this.cmd) return;
    const c = this.cmd;
    this.cmd = null;
    this.inflight.push(c);
    this.dev.commit(c);
  }
  /** Submits and waits for everything; then buffers held for unfinished work are free again. */
  sync(): void {
    this.live();
    this.flush();
    let ms = 0, err: unknown = null;
    for (const c of this.inflight.splice(0)) {
      try { ms += this.dev.wait(c); } catch (e) { err ??= e; }
    }
    this.lastGpuMs = ms;
    for (const b of this.retired.splice(0)) this.dev.release(b);
    const keep = this.step;
    for (const b of this.stepBusy.splice(0)) if (b !== keep) this.stepFree.push(b);
    if (keep) this.stepBusy.push(keep);
    if (err) throw err;
  }

  // ---- memory -----------------------------------------------------------------------------------
  private region(buf: MetalBuf, length = buf.length): Arg {
    return { buf: buf.mem, offset: buf.offset, bytes: Math.max(4, 4 * length) };
  }

  alloc(length: number): Buf {
    this.live();
    if (!Number.isInteger(length) || length < 0) throw new Error(`alloc: bad length ${length}`);
    return new MetalBuf(this, this.dev.alloc(4 * length), 0, length);
  }
  upload(data: Float32Array): Buf {
    const b = this.alloc(data.length) as MetalBuf;
    new Float32Array(b.mem.host(), 0, data.length).set(data); // a new buffer: no GPU work uses it yet
    return b;
  }
  slice(buf: Buf, offset: number, length: number): Buf {
    const b = this.buf("slice", buf);
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0) throw new Error(`slice: bad range ${offset}+${length}`);
    needLen("slice", "buffer", buf, offset + length);
    return new MetalBuf(this, b.mem, b.offset + 4 * offset, length);
  }

  /**
   * Device memory for one weight tensor. No copy when the view lies in a page-aligned host buffer
   * (an mmapped checkpoint) at an offset aligned for the kernels' loads; else a copy.
   */
  private tensor(view: Uint32Array | Uint16Array, align: number): Region {
    const bytes = view.byteLength, host = view.buffer;
    if (view.byteOffset % align === 0 && host.byteLength >= PAGE && !(host instanceof SharedArrayBuffer)) {
      let b = this.wrapped.get(host);
      if (b === undefined) {
        b = this.dev.wrap(host as ArrayBuffer, PAGE);
        this.wrapped.set(host, b);
      }
      if (b) return { buf: b, offset: view.byteOffset, bytes };
    }
    const b = this.dev.alloc(bytes);
    new Uint8Array(b.host(), 0, bytes).set(new Uint8Array(host, view.byteOffset, bytes));
    return { buf: b, offset: 0, bytes };
  }
  uploadQ1(w: Q1Host): Q1Weight {
    this.live();
    checkQ1Shape(w.rows, w.cols);
    const nw = w.rows * (w.cols / 32), ng = w.rows * (w.cols / 128);
    if (w.words.length !== nw || w.scales.length !== ng || w.biases.length !== ng) {
      throw new Error(`uploadQ1: [${w.rows}, ${w.cols}] needs ${nw} words and ${ng} scales/biases, got ${w.words.length}/${w.scales.length}/${w.biases.length}`);
    }
    // 16: qmv_q1_f32 reads each row's group as one uint4; 4: Metal wants buffer offsets 4-aligned
    return new MetalQ1(this, w.rows, w.cols, this.tensor(w.words, 16), this.tensor(w.scales, 4), this.tensor(w.biases, 4));
  }
  allocKV(layers: number, ctx: number, nKvHeads: number, headDim: number): KVCache {
    this.live();
    for (const [n, v] of Object.entries({ layers, ctx, nKvHeads, headDim })) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`allocKV: ${n} must be a positive integer, got ${v}`);
    }
    const mem = this.dev.alloc(2 * layers * ctx * nKvHeads * headDim * 2);
    new Uint8Array(mem.host()).fill(0); // a new buffer: safe to write from the CPU
    return new MetalKV(this, layers, ctx, nKvHeads, headDim, mem);
  }
  freeKV(cache: KVCache): void {
    this.live();
    if (!(cache instanceof MetalKV) || cache.owner !== this) throw new Error("freeKV: KV cache belongs to another backend");
    if (cache.mem.released) return;
    this.sync(); // queued command buffers may still read it
    this.dev.release(cache.mem);
  }
  async read(buf: Buf): Promise<Float32Array> {
    const b = this.buf("read", buf);
    this.sync();
    return new Float32Array(b.mem.host(), b.offset, b.length).slice();
  }

  // ---- ownership checks ---------------------------------------------------------------------------
  private live(): void { if (this.disposed) throw new Error("metal backend: used after dispose()"); }
  private buf(op: string, b: Buf): MetalBuf {
    this.live();
    if (!(b instanceof MetalBuf) || b.owner !== this) throw new Error(`${op}: buffer belongs to another backend`);
    if (b.mem.released) throw new Error(`${op}: buffer was freed`);
    return b;
  }
  private q1(op: string, w: Q1Weight): MetalQ1 {
    this.live();
    if (!(w instanceof MetalQ1) || w.owner !== this) throw new Error(`${op}: weight belongs to another backend`);
    if (w.words.buf.released) throw new Error(`${op}: weight was freed`);
    return w;
  }
  private kv(op: string, c: KVCache, layer: number, shape: AttnShape): MetalKV {
    this.live();
    if (!(c instanceof MetalKV) || c.owner !== this) throw new Error(`${op}: KV cache belongs to another backend`);
    if (c.mem.released) throw new Error(`${op}: KV cache was freed`);
    checkKvShape(op, c, layer, shape);
    return c;
  }
  private noOverlap(op: string, a: MetalBuf, an: number, b: MetalBuf, bn: number): void {
    if (a.mem !== b.mem) return;
    const a0 = a.offset, a1 = a.offset + 4 * an, b0 = b.offset, b1 = b.offset + 4 * bn;
    if (a0 < b1 && b0 < a1) throw new Error(`${op}: output overlaps the input`);
  }
  private int(op: string, what: string, v: number, min = 1): void { checkInt(op, what, v, min); }

  // ---- per step ---------------------------------------------------------------------------------
  setStep(pos: number, tokens: Int32Array): void {
    this.live();
    if (!Number.isInteger(pos) || pos < 0 || pos >= 2 ** 31) throw new Error(`setStep: bad position ${pos}`);
    if (tokens.length < 1) throw new Error("setStep: no tokens");
    this.flush(); // the previous step's work goes out; its step buffer stays busy until a wait
    const need = 4 * (4 + tokens.length);
    let b = this.stepFree.pop();
    if (b && b.bytes < need) { this.dev.release(b); b = undefined; }
    b ??= this.dev.alloc(Math.max(need, 4 * (4 + 4096)));
    this.stepBusy.push(b);
    this.step = b;
    this.pos = pos;
    this.tokens = Int32Array.from(tokens);
    const h = new Int32Array(b.host(), 0, 4 + tokens.length); // no unfinished work reads this buffer
    h[0] = pos; h[1] = tokens.length;
    h.set(tokens, 4);
  }
  private get T(): number { return this.tokens.length; }
  private stepArg(op: string): Arg {
    if (!this.step || this.T === 0) throw new Error(`${op}: call setStep first`);
    return { buf: this.step, offset: 0, bytes: 4 * (4 + this.T) };
  }

  // ---- ops --------------------------------------------------------------------------------------
  embed(out: Buf, table: Q1Weight): void {
    const o = this.buf("embed", out), t = this.q1("embed", table), T = this.T, K = t.cols;
    const step = this.stepArg("embed");
    needLen("embed", "out", out, T * K);
    for (let i = 0; i < T; i++) {
      const id = this.tokens[i]!;
      if (id < 0 || id >= t.rows) throw new Error(`embed: token id ${id} outside the vocabulary (0..${t.rows - 1})`);
    }
    this.launch("embed_q1_f32", [T, 1, 1], [256, 1, 1], [t.words, t.scales, t.biases, step, this.region(o, T * K), i32(K)]);
  }

  addRmsnorm(x: Buf, delta: Buf, weight: Buf, out: Buf, rows: number, dim: number, eps: number): void {
    const op = "addRmsnorm";
    const xb = this.buf(op, x), d = this.buf(op, delta), w = this.buf(op, weight), o = this.buf(op, out);
    checkNorm(op, out, x, weight, rows, dim, delta);
    this.noOverlap(op, xb, rows * dim, d, rows * dim);
    this.noOverlap(op, o, rows * dim, d, rows * dim);
    if (!(o.mem === xb.mem && o.offset === xb.offset)) this.noOverlap(op, o, rows * dim, xb, rows * dim);
    this.launch("add_rmsnorm_f32", [rows, 1, 1], [RMS_THREADS, 1, 1], [this.region(xb, rows * dim), this.region(d, rows * dim), this.region(w, dim),
      this.region(o, rows * dim), i32(dim), f32(eps), i32(this.vec4(dim, xb, w, o, d))]);
  }
  /** 1 when rows of `dim` floats can be read as float4 and held in registers by the norm kernels. */
  private vec4(dim: number, ...bufs: MetalBuf[]): number {
    return dim % 4 === 0 && dim <= RMS_MAX_VEC_DIM && bufs.every((b) => b.offset % 16 === 0) ? 1 : 0;
  }
  rmsnorm(out: Buf, x: Buf, weight: Buf, rows: number, dim: number, eps: number): void {
    const o = this.buf("rmsnorm", out), xb = this.buf("rmsnorm", x), w = this.buf("rmsnorm", weight);
    checkNorm("rmsnorm", out, x, weight, rows, dim);
    if (!(o.mem === xb.mem && o.offset === xb.offset)) this.noOverlap("rmsnorm", o, rows * dim, xb, rows * dim);
    this.launch("rmsnorm_f32", [rows, 1, 1], [RMS_THREADS, 1, 1], [this.region(xb, rows * dim), this.region(w, dim), this.region(o, rows * dim), i32(dim), f32(eps), i32(this.vec4(dim, xb, w, o))]);
  }

  matmul(out: Buf, x: Buf, w: Q1Weight, M: number): void {
    const o = this.buf("matmul", out), xb = this.buf("matmul", x), q = this.q1("matmul", w);
    checkMatmul(out, x, w, M);
    this.noOverlap("matmul", o, M * q.rows, xb, M * q.cols);
    const N = q.rows, K = q.cols;
    const args = [q.words, q.scales, q.biases, this.region(xb, M * K), this.region(o, M * N)];
    if (M === 1) {
      // fast: nibble-table kernel, persistent (each threadgroup builds the table once). It loads x
      // and w 16 bytes at a time, its table fills Apple's 32 KiB of threadgroup memory at
      // K = QMV_MAX_K = 2048 (CUDA: 12288), and it needs its full threadgroup
      const fast = this.matvecVariant === "fast" && xb.offset % 16 === 0 && q.words.offset % 16 === 0 && K <= QMV_MAX_K &&
        qmvSharedBytes(K) <= MAX_THREADGROUP_MEMORY && this.dev.pipeline("qmv_q1_f32").maxThreads >= QMV_THREADS;
      if (fast) {
        const grid = Math.min(QMV_GRID_CAP, ceil(N, QMV_THREADS / 32));
        this.launch("qmv_q1_f32", [grid, 1, 1], [QMV_THREADS, 1, 1], [...args, i32(N), i32(K)], qmvSharedBytes(K));
      }
      else this.launch("qmv_q1_f32_legacy", [ceil(N, 8), 1, 1], [256, 1, 1], [...args, i32(N), i32(K)]);
      return;
    }
    // x split once into f16 halves and group sums (qmm_x_split_f32), then the tiled matmul
    const Mp = ceil(M, QMM_BM) * QMM_BM, G = K / 128, half = Mp * K * 2, need = 2 * half + 4 * G * Mp;
    if (!this.qmmX || this.qmmX.bytes < need) {
      if (this.qmmX) this.retired.push(this.qmmX); // encoded work may still name it
      this.qmmX = this.dev.alloc(need);
    }
    const xh: Arg = { buf: this.qmmX, offset: 0, bytes: half }, xl: Arg = { buf: this.qmmX, offset: half, bytes: half };
    const xs: Arg = { buf: this.qmmX, offset: 2 * half, bytes: 4 * G * Mp };
    const lo = i32(this.matmulVariant === "hilo" ? 1 : 0);
    this.launch("qmm_x_split_f32", [ceil(Mp * G, 8), 1, 1], [256, 1, 1], [this.region(xb, M * K), xh, xl, xs, i32(M), i32(K), i32(Mp), lo]);
    this.launch("qmm_q1_f32", [ceil(N, QMM_BN), Mp / QMM_BM, 1], [256, 1, 1], [q.words, q.scales, q.biases, xh, xl, xs, this.region(o, M * N), i32(M), i32(N), i32(K), i32(Mp), lo]);
  }

  qkNormRopeAppend(
    q: Buf, k: Buf, v: Buf, qNorm: Buf, kNorm: Buf, eps: number,
    rope: RopeSpec, shape: AttnShape, cache: KVCache, layer: number, T: number,
  ): void {
    const op = "qkNormRopeAppend";
    const c = this.kv(op, cache, layer, shape), { nHeads, nKvHeads, headDim: D } = shape;
    const qb = this.buf(op, q), kb = this.buf(op, k), vb = this.buf(op, v), qn = this.buf(op, qNorm), kn = this.buf(op, kNorm);
    checkStepT(op, T, this.T, this.pos, c);
    checkQkNormRope(op, q, k, v, qNorm, kNorm, rope, shape, T);
    let inv = this.ropeTables.get(rope);
    if (!inv) {
      inv = this.dev.alloc(4 * rope.invFreq.length);
      new Float32Array(inv.host(), 0, rope.invFreq.length).set(rope.invFreq);
      this.ropeTables.set(rope, inv);
    }
    this.launch("qk_norm_rope_append_f32", [T, nHeads + nKvHeads, 1], [D / 2, 1, 1], [
      this.region(qb, T * nHeads * D), this.region(kb, T * nKvHeads * D), this.region(vb, T * nKvHeads * D),
      this.region(qn, D), this.region(kn, D), { buf: inv, offset: 0, bytes: 2 * D }, c.k(layer), c.v(layer),
      this.stepArg(op), i32(nHeads), i32(nKvHeads), i32(D), f32(eps), f32(rope.attentionFactor),
    ]);
  }

  attention(out: Buf, q: Buf, shape: AttnShape, cache: KVCache, layer: number, T: number): void {
    const op = "attention";
    const c = this.kv(op, cache, layer, shape), { nHeads, headDim: D } = shape;
    const o = this.buf(op, out), qb = this.buf(op, q);
    checkStepT(op, T, this.T, this.pos, c);
    needLen(op, "q", q, T * nHeads * D); needLen(op, "out", out, T * nHeads * D);
    this.noOverlap(op, o, T * nHeads * D, qb, T * nHeads * D);
    if (qb.offset % 16 !== 0) throw new Error(`${op}: q must be 16-byte aligned`);
    // a prefill pass: one tiled kernel (16-byte stores of out), no partials
    if (o.offset % 16 === 0 && prefillTiled(this.attentionVariant, T, shape, ATT_PREFILL_ROWS, ATT_PREFILL_DIMS) &&
        this.dev.pipeline("attention_prefill_f32").maxThreads >= ATT_PREFILL_THREADS) {
      const BQ = ATT_PREFILL_ROWS / (nHeads / shape.nKvHeads);
      this.launch("attention_prefill_f32", [shape.nKvHeads, ceil(T, BQ), 1], [ATT_PREFILL_THREADS, 1, 1], [this.region(qb, T * nHeads * D), c.k(layer), c.v(layer),
        this.region(o, T * nHeads * D), this.stepArg(op), i32(nHeads), i32(shape.nKvHeads), i32(D), i32(T)]);
      return;
    }
    const S = ceil(attentionLaunchSpan(c.ctx, this.pos + T, T), ATT_CHUNK); // chunks of the cache this step can reach
    // the queries in sub-batches whose partials fit attPartialsMax (one batch in a decode step)
    const rows = attentionRowsPerBatch(T, nHeads, S, D, this.attPartialsMax), need = 4 * rows * nHeads * S * (D + 2);
    if (!this.partials || this.partials.bytes < need) {
      if (this.partials) this.retired.push(this.partials); // encoded work may still name it
      this.partials = this.dev.alloc(need);
    }
    if (nHeads / shape.nKvHeads > ATT_MAX_GROUP) throw new Error(`${op}: ${nHeads / shape.nKvHeads} query heads per kv head; the kernel holds at most ${ATT_MAX_GROUP}`);
    const part: Arg = { buf: this.partials, offset: 0, bytes: need }, step = this.stepArg(op);
    // the long merge: up to ATT_LONG_QS threads per dim (a power of two), as many as the pipeline
    // allows; the serial merge where not even 2 fit
    const perDim = longMergePerDim(this.dev.pipeline("attention_combine_long_f32").maxThreads, D, ATT_LONG_QS);
    const long = longMerge(this.attentionVariant, this.pos + T, ATT_LONG) && perDim > 0;
    for (let t0 = 0; t0 < T; t0 += rows) {
      const n = Math.min(rows, T - t0), qs = this.slice(qb, t0 * nHeads * D, n * nHeads * D) as MetalBuf;
      const os = this.slice(o, t0 * nHeads * D, n * nHeads * D) as MetalBuf;
      this.launch("attention_partial_f32", [S, shape.nKvHeads, n], [128, 1, 1], [this.region(qs), c.k(layer), c.v(layer), part, step, i32(nHeads), i32(shape.nKvHeads), i32(D), i32(S), i32(t0)]);
      this.launch(long ? "attention_combine_long_f32" : "attention_combine_f32", [nHeads, n, 1], [long ? perDim * D : D, 1, 1],
        [part, this.region(os), step, i32(nHeads), i32(D), i32(S), i32(t0)]);
    }
  }

  private elementwise(kernel: string, op: string, out: Buf, a: Buf, b: Buf, n: number): void {
    const o = this.buf(op, out), ab = this.buf(op, a), bb = this.buf(op, b);
    checkElementwise(op, out, a, b, n);
    // Metal does not report a core count; 1024 threadgroups cover any M-series GPU several times
    // over, and the grid-stride loop covers any n.
    const grid = Math.min(ceil(n, 256), 1024);
    this.launch(kernel, [grid, 1, 1], [256, 1, 1], [this.region(ab, n), this.region(bb, n), this.region(o, n), i32(n)]);
  }
  swiglu(out: Buf, gate: Buf, up: Buf, n: number): void { this.elementwise("swiglu_f32", "swiglu", out, gate, up, n); }
  swigluRows(out: Buf, gu: Buf, rows: number, n: number): void {
    const o = this.buf("swigluRows", out), g = this.buf("swigluRows", gu);
    checkSwigluRows(out, gu, rows, n);
    this.noOverlap("swigluRows", o, rows * n, g, rows * 2 * n);
    this.launch("swiglu_rows_f32", [Math.min(ceil(rows * n, 256), 1024), 1, 1], [256, 1, 1], [this.region(g, rows * 2 * n), this.region(o, rows * n), i32(rows), i32(n)]);
  }
  add(out: Buf, a: Buf, b: Buf, n: number): void { this.elementwise("add_f32", "add", out, a, b, n); }
  copy2d(dst: Buf, dstStride: number, src: Buf, srcStride: number, rows: number, cols: number): void {
    const d = this.buf("copy2d", dst), s = this.buf("copy2d", src);
    checkCopy2d(dst, dstStride, src, srcStride, rows, cols);
    if (rows * cols === 0) return;
    if (rows * cols >= 2 ** 31) throw new Error(`copy2d: ${rows} x ${cols} too large for one call`);
    const dn = (rows - 1) * dstStride + cols, sn = (rows - 1) * srcStride + cols;
    this.noOverlap("copy2d", d, dn, s, sn);
    const grid = Math.min(ceil(rows * cols, 256), 1024); // as elementwise: no core count on Metal
    this.launch("copy2d_f32", [grid, 1, 1], [256, 1, 1], [this.region(s, sn), this.region(d, dn), i32(srcStride), i32(dstStride), i32(rows), i32(cols)]);
  }

  // ---- optional fast paths ----------------------------------------------------------------------
  async sampleToken(logits: Buf, n: number, params: SamplingParams, rand: number): Promise<number> {
    const l = this.buf("sampleToken", logits);
    checkSample(logits, n, params, rand);
    const scratch: Arg = { buf: this.scratch, offset: 0, bytes: 8 }, x = this.region(l, n);
    if (!(params.temperature > 0)) {
      // one threadgroup: see metal/sample_f32.ts (no portable 64-bit atomic max in Metal)
      const block = Math.min(1024, Math.floor(this.dev.pipeline("argmax_f32").maxThreads / 32) * 32);
      this.launch("argmax_f32", [1, 1, 1], [block, 1, 1], [x, i32(n), scratch]);
      this.sync();
      return 0xffffffff - new Uint32Array(this.scratch.host(), 0, 2)[0]!; // low word: 0xffffffff - index
    }
    if (this.dev.pipeline("sample_topk_topp_f32").maxThreads < 1024) {
      // the bitonic sort needs exactly 1024 threads; this GPU's pipeline allows fewer: same definition, on the host
      return sampleHost(await this.read(this.slice(logits, 0, n)), params, rand, n);
    }
    const tok: Arg = { buf: this.scratch, offset: 8, bytes: 4 };
    this.launch("sample_topk_topp_f32", [1, 1, 1], [1024, 1, 1], [x, i32(n), i32(Math.min(params.topK, 2 ** 31 - 1)), f32(params.topP), f32(Math.fround(1 / params.temperature)), f32(rand), tok]);
    this.sync();
    return new Uint32Array(this.scratch.host(), 8, 1)[0]!;
  }

  /** No graph capture on Metal yet: the launches are encoded again each time. */
  replayable(_key: object, record: () => void): void {
    this.live();
    record();
  }

  setKernelVariant(op: string, variant: string): void {
    if (op === "matvec" && (variant === "fast" || variant === "legacy")) this.matvecVariant = variant;
    else if (op === "attention" && (ATTENTION_VARIANTS as readonly string[]).includes(variant)) this.attentionVariant = variant as AttentionVariant;
    else if (op === "matmul" && (MATMUL_VARIANTS as readonly string[]).includes(variant)) this.matmulVariant = variant as MatmulVariant;
    else throw new Error(`setKernelVariant: unknown variant ${op}=${variant}; known: matvec=fast|legacy, attention=${ATTENTION_VARIANTS.join("|")}, matmul=${MATMUL_VARIANTS.join("|")}`);
  }

  dispose(): void {
    if (this.disposed) return;
    try { this.sync(); } catch { /* freeing anyway */ }
    if (this.cmd) { this.dev.lib.bm_release(this.cmd); this.cmd = null; }
    this.dev.dispose();
    this.disposed = true;
  }
}
