// The CUDA backend: bun:ffi to the driver API, kernels compiled by NVRTC from cuda/*.ts.
//
// - Weights stay packed on the GPU (1.25 bpw): words u32 [N, K/32], scales and biases f16 [N, K/128].
// - Activations are f32; every kernel sums in f32.
// - The KV cache is f16, preallocated per sequence: [layer][ctx][nKv][headDim] for k and for v.
// - Per-step values (position, T, token ids) live in a device "step" buffer written by setStep, so a
//   decode step is a fixed sequence of launches that `replayable` captures as a CUDA graph, again
//   only when the span of cache the attention grid covers doubles (attentionSpan).
// - Every op validates ownership and sizes here, in TypeScript, before any FFI call: a bad device
//   pointer would kill the process instead of throwing.
// - All work goes to one non-blocking stream; `read` and `sampleToken` are the only waits.

import { checkCopy2d, checkSwigluRows, needLen, type AttnShape, type Backend, type Buf, type KVCache, type Q1Weight, type RopeSpec } from "../backend.ts";
import type { SamplingParams } from "../gpu-sample.ts";
import { checkQ1Shape, type Q1Host } from "../../quant/q1.ts";
import { fmtBytes, type Cuda } from "../../../ffi/cuda.ts";
import type { KernelFile } from "../../../cuda/common.ts";
import { qmv_q1_f32, qmvMaxSharedBytes, qmvSharedBytes, QMV_MAX_K, QMV_THREADS } from "../../../cuda/qmv_q1_f32.ts";
import { qmv_q1_f32_legacy } from "../../../cuda/qmv_q1_f32_legacy.ts";
import { x16_fused } from "../../../cuda/x16_fused.ts";
import { bmmaSmemPlan, qmv_q1_bmma, qmvBmmaLayout, QMV_BMMA_MAX_K, QMV_BMMA_SMEM_CAP, QMV_BMMA_SOLO_SMEM, QMV_BMMA_THREADS, x16Bytes } from "../../../cuda/qmv_q1_bmma.ts";
import { qmm_q1_f32, QMM_BM, QMM_BN } from "../../../cuda/qmm_q1_f32.ts";
import { soloSmem } from "./solo.ts";
import { embed_q1_f32 } from "../../../cuda/embed_q1_f32.ts";
import { rmsnorm_f32, RMS_MAX_VEC_DIM, RMS_THREADS } from "../../../cuda/rmsnorm_f32.ts";
import { elementwise_f32 } from "../../../cuda/elementwise_f32.ts";
import { qk_norm_rope_append_f32 } from "../../../cuda/qk_norm_rope_append_f32.ts";
import { attention_f32, ATT_CHUNK, ATT_LONG, ATT_LONG_QS, ATT_MAX_GROUP } from "../../../cuda/attention_f32.ts";
import { attention_prefill_f32, ATT_PREFILL_DIMS, ATT_PREFILL_ROWS, ATT_PREFILL_THREADS, attPrefillSmem } from "../../../cuda/attention_prefill_f32.ts";
import { sample_f32 } from "../../../cuda/sample_f32.ts";
import { cubinFor, type CompileStats } from "./compile.ts";
import { CUDA_ONLY, KERNEL_SIGS } from "../kernel-sigs.ts";
import { Kernel, type Sig } from "./kernel.ts";
import { ccReason, cudaRuntime, cudaUnavailableReason, type DeviceInfo } from "./device.ts";
import {
  ATTENTION_VARIANTS, attentionLaunchSpan, attentionSpan, type AttentionVariant, attentionVariantFromEnv, longMerge, longMergePerDim, prefillTiled,
  MATMUL_VARIANTS, type MatmulVariant, matmulVariantFromEnv, ATT_PARTIALS_MAX, attentionRowsPerBatch,
  checkElementwise, checkInt, checkKvShape, checkMatmul, checkNorm, checkQkNormRope, checkSample, checkStepT,
} from "../checks.ts";

export { cudaUnavailableReason };

const SIGS: Record<string, Sig> = { ...KERNEL_SIGS, ...Object.fromEntries(Object.entries(CUDA_ONLY).map(([k, v]) => [k, v.sig])) };
const FILES: KernelFile[] = [qmv_q1_bmma, x16_fused, qmv_q1_f32, qmv_q1_f32_legacy, qmm_q1_f32, embed_q1_f32, rmsnorm_f32, elementwise_f32, qk_norm_rope_append_f32, attention_f32, attention_prefill_f32, sample_f32];

/** One cuMemAlloc. Views (slices) point into it; freeing marks it dead so stale views throw. */
class Alloc {
  freed = false;
  constructor(readonly ptr: bigint, readonly bytes: number) {}
}

class CudaBuf implements Buf {
  constructor(readonly owner: CudaBackend, readonly alloc: Alloc, readonly ptr: bigint, readonly length: number) {}
}

class CudaQ1 implements Q1Weight {
  constructor(readonly owner: CudaBackend, readonly rows: number, readonly cols: number,
    readonly words: Alloc, readonly scales: Alloc, readonly biases: Alloc) {}
}

class CudaKV implements KVCache {
  constructor(readonly owner: CudaBackend, readonly layers: number, readonly ctx: number, readonly nKvHeads: number,
    readonly headDim: number, readonly mem: Alloc) {}
  /** bytes of one layer's k (or v) cache */
  get layerBytes(): number { return this.ctx * this.nKvHeads * this.headDim * 2; }
  k(layer: number): bigint { return this.mem.ptr + BigInt(2 * layer * this.layerBytes); }
  v(layer: number): bigint { return this.mem.ptr + BigInt((2 * layer + 1) * this.layerBytes); }
}

const ceil = (a: number, b: number) => Math.ceil(a / b);
type MatvecVariant = "bmma" | "fast" | "legacy";
/** Up to this many activation rows, matmul runs one matvec per row instead of the tiled kernel. */
// Measured on an H200, 8B q + gate + down shapes, matvec rows vs tensor-core qmm: M = 16: 290-306 vs
// 445-481 us; M = 20: 362 vs 448; M = 24: 435-479 vs 451 (even). qmm is ~flat below M = 32 (one row of tiles).
/** Weight bytes per block from which a bmma matvec that follows another kernel runs "solo" (qmvBmma). */
const QMV_SOLO_MIN_BYTES = 40_000;
const QMM_MIN_M = rowsMax(process.env.BUNSAI_QMV_ROWS_MAX, 20);
function rowsMax(v: string | undefined, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`BUNSAI_QMV_ROWS_MAX must be an integer >= 1, got "${v}"`);
  return n;
}

export class CudaBackend implements Backend {
  readonly name = "cuda" as const;
  readonly device: string;
  readonly info: DeviceInfo;
  readonly cu: Cuda;
  readonly stream: bigint;
  readonly compileStats: CompileStats = { compiled: 0, cached: 0, ms: 0 };
  /** Programmatic dependent launch: on sm_90+, unless BUNSAI_NO_PDL=1. */
  readonly pdl: boolean;
  /** Matvec variants, the default first: on sm_90+ "bmma" (binary tensor cores against x quantized
   *  to 16 bits per 128-group; the norms and SwiGLU before it quantize as they write), else "fast"
   *  (nibble table, exact f32 x); "legacy" (one row per warp). BUNSAI_QMV_KERNEL picks one. */
  readonly kernelVariants: { matvec: readonly MatvecVariant[]; attention: readonly AttentionVariant[]; matmul: readonly MatmulVariant[] };
  private matvecVariant: MatvecVariant;
  private attentionVariant = attentionVariantFromEnv(); // the partials' merge (checks.ts longMerge)
  private matmulVariant = matmulVariantFromEnv(); // how qmm_q1_f32 takes x (checks.ts MatmulVariant)
  private readonly ctx: bigint;
  private readonly modules: bigint[] = [];
  private readonly k: Record<string, Kernel> = {};
  private readonly allocs = new Set<Alloc>();
  private bytesLive = 0;
  private bytesPeak = 0;
  // step state: host copy (for validation) and the device buffer kernels read
  private pos = 0;
  private tokens = new Int32Array(0);
  private stepCap = 0;
  private stepDev!: Alloc;
  private stepHost = new Int32Array(0);
  private partials: Alloc | null = null; // attention partials, grown on demand
  private qmmX: Alloc | null = null; // x split for qmm_q1_f32 (xh, xl, xs), grown on demand
  /** Most bytes of attention partials per launch (checks.ts ATT_PARTIALS_MAX; public for tests). */
  attPartialsMax = ATT_PARTIALS_MAX;
  private readonly qmmSoloSmem: number; // shared memory that keeps a qmm block alone on its SM (solo.ts), or 0
  /** One block per SM for a bmma matvec that does not follow another (see qmvBmma); off with
   *  BUNSAI_QMV_SOLO=0. Public so the kernel bench can time back-to-back launches without it. */
  qmvSolo = process.env.BUNSAI_QMV_SOLO !== "0";
  private lastBmma = -1; // Kernel.launched after the last bmma matvec launch
  private readonly bmmaPlan: ReturnType<typeof bmmaSmemPlan>; // whether this GPU's shared memory allows bmma, solo
  private readonly fastSmem: number; // most dynamic shared memory qmv_q1_f32 may take here
  /** bmma matvec launches made solo so far (for tests). */
  soloLaunches = 0;
  /** qmv_x16_prep launches so far: matvecs whose x no fused kernel had quantized (for tests). */
  x16Preps = 0;
  private readonly xq: Alloc; // x quantized for qmv_q1_bmma (qmv_x16_prep's output), for any K it takes
  // The f32 vector (device address, length) whose quantized form the last op left in xq: set by the
  // fused norm / SwiGLU kernels (and by the bmma matvec's own prep), cleared by every other op that
  // writes device memory, so a matvec skips its prep only when nothing that could have changed the
  // vector ran in between. A new op that writes a Buf must clear it too (test/kernels.test.ts
  // "bmma after a fused ..." checks the ops that exist).
  private xqOf = 0n;
  private xqLen = 0;
  private readonly retired: Alloc[] = []; // outgrown buffers a captured graph may still name
  private readonly ropeTables = new WeakMap<RopeSpec, Alloc>();
  private readonly scratch: Alloc; // 16 bytes: argmax key (u64) and sampled token (u32)
  private readonly tokenHost = new Uint32Array(2);
  private readonly graphs = new Map<object, { graph: bigint; exec: bigint; span: number }>();
  /** Decode graphs captured so far (a re-capture when the attention span grows counts again). */
  graphCaptures = 0;
  private capturing = false;
  private disposed = false;

  constructor() {
    const rt = cudaRuntime();
    const old = ccReason(rt.dev); // say so before NVRTC fails on the first sm_80 instruction
    if (old) throw new Error(`cuda backend: ${old}. Use --backend cpu.`);
    this.cu = rt.cu;
    this.info = rt.dev;
    this.bmmaPlan = bmmaSmemPlan(rt.dev.ccMajor, rt.dev.smemPerBlockOptin, rt.dev.smemPerSm);
    this.qmmSoloSmem = soloSmem(rt.dev.smemPerBlockOptin, rt.dev.smemPerSm);
    // the nibble-table matvec's shared memory, up to what a block may have here (K = 12288 wants
    // ~199 KiB: more than an A100's 163; such a K then takes the legacy kernel)
    this.fastSmem = Math.min(qmvMaxSharedBytes, rt.dev.smemPerBlockOptin);
    this.pdl = rt.dev.ccMajor >= 9 && process.env.BUNSAI_NO_PDL !== "1";
    this.device = `${rt.dev.name} (${rt.dev.arch}, ${rt.dev.sms} SMs, ${fmtBytes(rt.dev.totalMem)})`;
    this.ctx = this.cu.retainPrimaryContext(rt.dev.handle);
    this.cu.setCurrent(this.ctx);
    this.stream = this.cu.createStream();
    for (const kf of FILES) {
      const mod = this.cu.loadModule(cubinFor(rt.nvrtc, kf, rt.dev.arch, this.compileStats));
      this.modules.push(mod);
      for (const name of kf.kernels) {
        const sig = SIGS[name];
        if (!sig) throw new Error(`cuda backend: no argument signature for kernel ${name}`);
        this.k[name] = new Kernel(this.cu, this.cu.getFunction(mod, name), name, sig, this.pdl);
      }
      if (kf === qmv_q1_f32) this.cu.setMaxDynamicShared(this.k.qmv_q1_f32!.fn, this.fastSmem);
      if (kf === qmm_q1_f32) this.cu.setMaxDynamicShared(this.k.qmm_q1_f32!.fn, Math.max(qmm_q1_f32.smem, this.qmmSoloSmem));
      if (kf === attention_prefill_f32) this.cu.setMaxDynamicShared(this.k.attention_prefill_f32!.fn, Math.max(...ATT_PREFILL_DIMS.map(attPrefillSmem)));
      if (kf === qmv_q1_bmma && this.bmmaPlan.bmma) this.cu.setMaxDynamicShared(this.k.qmv_q1_bmma!.fn, this.bmmaPlan.maxDynamic);
    }
    this.kernelVariants = { matvec: this.bmmaPlan.bmma ? ["bmma", "fast", "legacy"] : ["fast", "legacy"], attention: ATTENTION_VARIANTS, matmul: MATMUL_VARIANTS };
    const env = process.env.BUNSAI_QMV_KERNEL;
    if (env !== undefined && !this.kernelVariants.matvec.includes(env as MatvecVariant)) {
      throw new Error(`BUNSAI_QMV_KERNEL must be one of ${this.kernelVariants.matvec.join(", ")} on ${rt.dev.arch}, got "${env}"`);
    }
    this.matvecVariant = (env as MatvecVariant | undefined) ?? this.kernelVariants.matvec[0]!;
    this.growStep(4096);
    this.scratch = this.rawAlloc(16);
    this.xq = this.rawAlloc(x16Bytes(QMV_BMMA_MAX_K));
  }

  // ---- memory -----------------------------------------------------------------------------------
  private rawAlloc(bytes: number): Alloc {
    this.live();
    const a = new Alloc(this.cu.alloc(Math.max(16, bytes)), Math.max(16, bytes));
    this.allocs.add(a);
    this.bytesLive += a.bytes;
    this.bytesPeak = Math.max(this.bytesPeak, this.bytesLive);
    return a;
  }
  private rawFree(a: Alloc): void {
    if (a.freed) return;
    a.freed = true;
    this.allocs.delete(a);
    this.bytesLive -= a.bytes;
    this.cu.free(a.ptr);
  }
  /** Bytes this backend holds now and at most, and the device's free memory. */
  memoryStats(): { live: number; peak: number; deviceFree: number; deviceTotal: number } {
    const { free, total } = this.cu.memInfo();
    return { live: this.bytesLive, peak: this.bytesPeak, deviceFree: free, deviceTotal: total };
  }

  alloc(length: number): Buf {
    if (!Number.isInteger(length) || length < 0) throw new Error(`alloc: bad length ${length}`);
    const a = this.rawAlloc(4 * length);
    return new CudaBuf(this, a, a.ptr, length);
  }
  upload(data: Float32Array): Buf {
    const b = this.alloc(data.length) as CudaBuf;
    this.cu.htod(b.ptr, data);
    return b;
  }
  slice(buf: Buf, offset: number, length: number): Buf {
    const b = this.buf("slice", buf);
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0) throw new Error(`slice: bad range ${offset}+${length}`);
    needLen("slice", "buffer", buf, offset + length);
    return new CudaBuf(this, b.alloc, b.ptr + BigInt(4 * offset), length);
  }
  uploadQ1(w: Q1Host): Q1Weight {
    checkQ1Shape(w.rows, w.cols);
    const nw = w.rows * (w.cols / 32), ng = w.rows * (w.cols / 128);
    if (w.words.length !== nw || w.scales.length !== ng || w.biases.length !== ng) {
      throw new Error(`uploadQ1: [${w.rows}, ${w.cols}] needs ${nw} words and ${ng} scales/biases, got ${w.words.length}/${w.scales.length}/${w.biases.length}`);
    }
    // 16 bytes of slack after scales and biases: qmv_q1_bmma rounds its last copy up to 16 bytes
    const words = this.rawAlloc(4 * nw), scales = this.rawAlloc(2 * ng + 16), biases = this.rawAlloc(2 * ng + 16);
    this.cu.htod(words.ptr, w.words);
    this.cu.htod(scales.ptr, w.scales);
    this.cu.htod(biases.ptr, w.biases);
    return new CudaQ1(this, w.rows, w.cols, words, scales, biases);
  }
  allocKV(layers: number, ctx: number, nKvHeads: number, headDim: number): KVCache {
    for (const [n, v] of Object.entries({ layers, ctx, nKvHeads, headDim })) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`allocKV: ${n} must be a positive integer, got ${v}`);
    }
    const mem = this.rawAlloc(2 * layers * ctx * nKvHeads * headDim * 2);
    this.cu.memsetD8Async(mem.ptr, 0, mem.bytes, this.stream);
    return new CudaKV(this, layers, ctx, nKvHeads, headDim, mem);
  }
  freeKV(cache: KVCache): void {
    this.live();
    if (!(cache instanceof CudaKV) || cache.owner !== this) throw new Error("freeKV: KV cache belongs to another backend");
    if (cache.mem.freed) return;
    this.cu.streamSync(this.stream); // queued work may still read it
    const g = this.graphs.get(cache); // the decode graph captured for this sequence names it
    if (g) { this.cu.graphExecDestroy(g.exec); this.cu.graphDestroy(g.graph); this.graphs.delete(cache); }
    this.rawFree(cache.mem);
  }
  async read(buf: Buf): Promise<Float32Array> {
    const b = this.buf("read", buf);
    const out = new Float32Array(b.length);
    this.cu.dtohAsync(out, b.ptr, this.stream);
    this.cu.streamSync(this.stream);
    return out;
  }

  // ---- ownership checks ---------------------------------------------------------------------------
  private live(): void { if (this.disposed) throw new Error("cuda backend: used after dispose()"); }
  private buf(op: string, b: Buf): CudaBuf {
    this.live();
    if (!(b instanceof CudaBuf) || b.owner !== this) throw new Error(`${op}: buffer belongs to another backend`);
    if (b.alloc.freed) throw new Error(`${op}: buffer was freed`);
    return b;
  }
  private q1(op: string, w: Q1Weight): CudaQ1 {
    this.live();
    if (!(w instanceof CudaQ1) || w.owner !== this) throw new Error(`${op}: weight belongs to another backend`);
    if (w.words.freed) throw new Error(`${op}: weight was freed`);
    return w;
  }
  private kv(op: string, c: KVCache, layer: number, shape: AttnShape): CudaKV {
    this.live();
    if (!(c instanceof CudaKV) || c.owner !== this) throw new Error(`${op}: KV cache belongs to another backend`);
    if (c.mem.freed) throw new Error(`${op}: KV cache was freed`);
    checkKvShape(op, c, layer, shape);
    return c;
  }
  private noOverlap(op: string, a: CudaBuf, an: number, b: CudaBuf, bn: number): void {
    const a0 = a.ptr, a1 = a.ptr + BigInt(4 * an), b0 = b.ptr, b1 = b.ptr + BigInt(4 * bn);
    if (a0 < b1 && b0 < a1) throw new Error(`${op}: output overlaps the input`);
  }
  private int(op: string, what: string, v: number, min = 1): void { checkInt(op, what, v, min); }

  // ---- per step ---------------------------------------------------------------------------------
  private growStep(T: number): void {
    if (this.capturing) throw new Error("setStep: cannot grow the step buffer while capturing");
    if (this.stepCap) { this.retired.push(this.stepDev); this.invalidateGraphs(); }
    this.stepCap = Math.max(T, 2 * this.stepCap);
    this.stepDev = this.rawAlloc(4 * (4 + this.stepCap));
    this.stepHost = new Int32Array(4 + this.stepCap);
  }
  setStep(pos: number, tokens: Int32Array): void {
    this.live();
    if (!Number.isInteger(pos) || pos < 0 || pos >= 2 ** 31) throw new Error(`setStep: bad position ${pos}`);
    if (tokens.length < 1) throw new Error("setStep: no tokens");
    if (tokens.length > this.stepCap) this.growStep(tokens.length);
    this.pos = pos;
    this.tokens = Int32Array.from(tokens);
    const h = this.stepHost;
    h[0] = pos; h[1] = tokens.length;
    h.set(tokens, 4);
    // pageable source: the driver stages it before returning, so the host array may change after
    this.cu.htodAsync(this.stepDev.ptr, h.subarray(0, 4 + tokens.length), this.stream);
  }
  private get T(): number { return this.tokens.length; }

  // ---- ops --------------------------------------------------------------------------------------
  embed(out: Buf, table: Q1Weight): void {
    this.xqOf = 0n;
    const o = this.buf("embed", out), t = this.q1("embed", table), T = this.T, K = t.cols;
    if (T === 0) throw new Error("embed: call setStep first");
    needLen("embed", "out", out, T * K);
    for (let i = 0; i < T; i++) {
      const id = this.tokens[i]!;
      if (id < 0 || id >= t.rows) throw new Error(`embed: token id ${id} outside the vocabulary (0..${t.rows - 1})`);
    }
    this.k.embed_q1_f32!.launch([T, 1, 1], [256, 1, 1], 0, this.stream, t.words.ptr, t.scales.ptr, t.biases.ptr, this.stepDev.ptr, o.ptr, K);
  }

  rmsnorm(out: Buf, x: Buf, weight: Buf, rows: number, dim: number, eps: number): void {
    const o = this.buf("rmsnorm", out), xb = this.buf("rmsnorm", x), w = this.buf("rmsnorm", weight);
    checkNorm("rmsnorm", out, x, weight, rows, dim);
    if (o.ptr !== xb.ptr) this.noOverlap("rmsnorm", o, rows * dim, xb, rows * dim);
    if (this.fuseX16(rows, dim)) {
      this.k.rmsnorm_x16_f32!.launch([1, 1, 1], [1024, 1, 1], 0, this.stream, xb.ptr, w.ptr, o.ptr, this.xq.ptr, dim, eps);
      return this.producedX16(o, dim);
    }
    this.k.rmsnorm_f32!.launch([rows, 1, 1], [RMS_THREADS, 1, 1], 0, this.stream, xb.ptr, w.ptr, o.ptr, dim, eps, this.vec4(dim, xb, w, o));
  }
  addRmsnorm(x: Buf, delta: Buf, weight: Buf, out: Buf, rows: number, dim: number, eps: number): void {
    const op = "addRmsnorm";
    const xb = this.buf(op, x), d = this.buf(op, delta), w = this.buf(op, weight), o = this.buf(op, out);
    checkNorm(op, out, x, weight, rows, dim, delta);
    this.noOverlap(op, xb, rows * dim, d, rows * dim);
    this.noOverlap(op, o, rows * dim, d, rows * dim);
    if (o.ptr !== xb.ptr) this.noOverlap(op, o, rows * dim, xb, rows * dim);
    if (this.fuseX16(rows, dim)) {
      this.k.add_rmsnorm_x16_f32!.launch([1, 1, 1], [1024, 1, 1], 0, this.stream, xb.ptr, d.ptr, w.ptr, o.ptr, this.xq.ptr, dim, eps);
      return this.producedX16(o, dim);
    }
    this.k.add_rmsnorm_f32!.launch([rows, 1, 1], [RMS_THREADS, 1, 1], 0, this.stream, xb.ptr, d.ptr, w.ptr, o.ptr, dim, eps, this.vec4(dim, xb, w, o, d));
  }
  /** Whether a one-row norm / SwiGLU of `n` floats should also leave x16(out) in xq: only while
   *  the bmma matvec is on (it is what reads xq) and n fits it. Clears the xq tag either way. */
  private fuseX16(rows: number, n: number): boolean {
    this.xqOf = 0n;
    return this.matvecVariant === "bmma" && rows === 1 && n % 128 === 0 && n <= QMV_BMMA_MAX_K;
  }
  private producedX16(out: CudaBuf, n: number): void { this.xqOf = out.ptr; this.xqLen = n; }
  /** 1 when rows of `dim` floats can be read as float4 and held in registers by the norm kernels. */
  private vec4(dim: number, ...bufs: CudaBuf[]): number {
    return dim % 4 === 0 && dim <= RMS_MAX_VEC_DIM && bufs.every((b) => b.ptr % 16n === 0n) ? 1 : 0;
  }

  matmul(out: Buf, x: Buf, w: Q1Weight, M: number): void {
    const o = this.buf("matmul", out), xb = this.buf("matmul", x), q = this.q1("matmul", w);
    checkMatmul(out, x, w, M);
    this.noOverlap("matmul", o, M * q.rows, xb, M * q.cols);
    const N = q.rows, K = q.cols;
    if (M === 1) return this.matvec(q, xb.ptr, o.ptr);
    // a short prompt: one matvec per row beats the f32 tiled kernel, whose tiles are mostly empty
    if (M <= QMM_MIN_M) {
      for (let m = 0; m < M; m++) this.matvec(q, xb.ptr + BigInt(4 * m * K), o.ptr + BigInt(4 * m * N));
      return;
    }
    if (ceil(M, QMM_BM) > 65535) throw new Error(`matmul: M = ${M} too large`);
    this.xqOf = 0n; // out may be the vector whose quantized form xq holds
    // x split once into f16 halves and group sums (qmm_x_split_f32), then the tiled matmul
    const Mp = ceil(M, QMM_BM) * QMM_BM, G = K / 128, half = Mp * K * 2, need = 2 * half + 4 * G * Mp;
    if (!this.qmmX || this.qmmX.bytes < need) {
      if (this.qmmX) this.retired.push(this.qmmX); // a captured graph may still name it
      this.qmmX = this.rawAlloc(need);
    }
    const xh = this.qmmX.ptr, xl = xh + BigInt(half), xs = xl + BigInt(half);
    const lo = this.matmulVariant === "hilo" ? 1 : 0;
    this.k.qmm_x_split_f32!.launch([ceil(Mp * G, 8), 1, 1], [256, 1, 1], 0, this.stream, xb.ptr, xh, xl, xs, M, K, Mp, lo);
    // a grid that fits one block per SM gets one block per SM (solo.ts): 1.7B down 5.1 -> 3.0 ms a prefill
    const grid: [number, number, number] = [ceil(N, QMM_BN), Mp / QMM_BM, 1], solo = grid[0] * grid[1] <= this.info.sms;
    this.k.qmm_q1_f32!.launch(grid, [256, 1, 1], solo ? Math.max(qmm_q1_f32.smem, this.qmmSoloSmem) : qmm_q1_f32.smem, this.stream, q.words.ptr, q.scales.ptr, q.biases.ptr, xh, xl, xs, o.ptr, M, N, K, Mp, lo);
  }

  /** y[N] = W x for one row (pointers already checked by the caller). */
  private matvec(q: CudaQ1, x: bigint, y: bigint): void {
    const N = q.rows, K = q.cols;
    if (this.matvecVariant === "bmma" && K <= QMV_BMMA_MAX_K) {
      if (this.xqOf !== x || this.xqLen !== K) { this.prepX16(x, K); this.xqOf = x; this.xqLen = K; }
      this.qmvBmma(q, y); // y never overlaps x (checked), so xq still holds x16(x) afterwards
      return;
    }
    this.xqOf = 0n; // y may be the vector whose quantized form xq holds
    // fast: nibble-table kernel, persistent (one block per SM, each builds the table once)
    const fast = this.matvecVariant !== "legacy" && x % 16n === 0n && K <= QMV_MAX_K && qmvSharedBytes(K) <= this.fastSmem;
    if (fast) {
      const grid = Math.min(this.info.sms, ceil(N, QMV_THREADS / 32));
      this.k.qmv_q1_f32!.launch([grid, 1, 1], [QMV_THREADS, 1, 1], qmvSharedBytes(K), this.stream, q.words.ptr, q.scales.ptr, q.biases.ptr, x, y, N, K);
    } else {
      this.k.qmv_q1_f32_legacy!.launch([ceil(N, 8), 1, 1], [256, 1, 1], 0, this.stream, q.words.ptr, q.scales.ptr, q.biases.ptr, x, y, N, K);
    }
  }

  /** One half of the bmma matvec, for bench/kernels.ts, which times them apart: "prep" quantizes x,
   *  "matvec" multiplies by the x last prepared. Checked like matmul. */
  matvecPart(part: "prep" | "matvec", out: Buf, x: Buf, w: Q1Weight): void {
    const o = this.buf("matvecPart", out), xb = this.buf("matvecPart", x), q = this.q1("matvecPart", w);
    checkMatmul(out, x, w, 1);
    if (!this.bmmaPlan.bmma || q.cols > QMV_BMMA_MAX_K) throw new Error(`matvecPart: the bmma matvec needs sm_90+ with ${QMV_BMMA_SMEM_CAP / 1024} KiB of shared memory per block, and K <= ${QMV_BMMA_MAX_K}`);
    this.xqOf = 0n;
    if (part === "prep") this.prepX16(xb.ptr, q.cols);
    else this.qmvBmma(q, o.ptr);
  }
  /** x [K] quantized into the xq buffer for qmv_q1_bmma. */
  private prepX16(x: bigint, K: number): void {
    if (K > QMV_BMMA_MAX_K) throw new Error(`prepX16: K = ${K} > ${QMV_BMMA_MAX_K}`);
    this.x16Preps++;
    this.k.qmv_x16_prep!.launch([ceil(K / 128, 4), 1, 1], [128, 1, 1], 0, this.stream, x, this.xq.ptr, K);
  }
  /** y = W x_hat for the x last given to prepX16 (binary tensor cores; cuda/qmv_q1_bmma.ts). */
  private qmvBmma(w: CudaQ1, y: bigint): void {
    const N = w.rows, K = w.cols;
    // two blocks per SM when each SM would stream >= 8 row tiles (the LM head: 50 -> 35 us; the 8B's
    // stacked gate+up, 11.6 tiles an SM, after its norm: 9.3 -> 8.1 us, 8B decode +3 %; the 1.7B's
    // gate+up, 5.8 tiles an SM, lost 2 % that way: H200, bench/RESULTS.md, eighth session); one
    // otherwise, which leaves room on the SM for the next kernel's block to start its weight copies early
    const tiles = ceil(N, 16), perSm = tiles >= 8 * this.info.sms ? 2 : 1;
    const grid = Math.min(perSm * this.info.sms, tiles), L = qmvBmmaLayout(N, K, grid);
    // Solo: when the launch just before was not a bmma matvec (in a decode step a norm, SwiGLU or
    // attention comes before each), most SMs hold no matvec block, and the block scheduler can put
    // two blocks of one launch on an SM (%smid stamps of matvecs after another kernel: 2-24 of 132
    // SMs, in every launch), which then does twice the work while others idle. Asking for more than
    // half an SM's shared memory keeps it to one block per SM: 8B decode 630 -> 649 tok/s (H200). Only where each block streams >= 40 KB (the 8B's
    // gate+up and down): for smaller launches the cost of starting later, once an SM has that much
    // shared memory free, won (1.7B 1260 -> 1233 tok/s with every launch solo; the 8B's q+k+v, 30 KB
    // a block, gained within noise). Not right after a bmma matvec: each SM still holds a block of
    // that launch, so the blocks land one per SM anyway, and two solo launches in a row could not
    // overlap at all (back-to-back down projections 2.8 -> 3.9 us).
    const solo = this.qmvSolo && this.bmmaPlan.solo && perSm === 1 && Kernel.launched !== this.lastBmma && (N * K) / 8 + N * (K / 32) >= QMV_SOLO_MIN_BYTES * grid;
    this.k.qmv_q1_bmma!.launch([grid, 1, 1], [QMV_BMMA_THREADS, 1, 1], solo ? Math.max(L.smem, QMV_BMMA_SOLO_SMEM) : L.smem, this.stream,
      w.words.ptr, w.scales.ptr, w.biases.ptr, this.xq.ptr, y, N, K, L.stages);
    this.lastBmma = Kernel.launched;
    if (solo) this.soloLaunches++;
  }

  qkNormRopeAppend(
    q: Buf, k: Buf, v: Buf, qNorm: Buf, kNorm: Buf, eps: number,
    rope: RopeSpec, shape: AttnShape, cache: KVCache, layer: number, T: number,
  ): void {
    const op = "qkNormRopeAppend";
    this.xqOf = 0n;
    const c = this.kv(op, cache, layer, shape), { nHeads, nKvHeads, headDim: D } = shape;
    const qb = this.buf(op, q), kb = this.buf(op, k), vb = this.buf(op, v), qn = this.buf(op, qNorm), kn = this.buf(op, kNorm);
    checkStepT(op, T, this.T, this.pos, c);
    checkQkNormRope(op, q, k, v, qNorm, kNorm, rope, shape, T);
    if (nHeads + nKvHeads > 65535) throw new Error(`${op}: too many heads`);
    let inv = this.ropeTables.get(rope);
    if (!inv) {
      inv = this.rawAlloc(4 * rope.invFreq.length);
      this.cu.htod(inv.ptr, rope.invFreq);
      this.ropeTables.set(rope, inv);
    }
    this.k.qk_norm_rope_append_f32!.launch([T, nHeads + nKvHeads, 1], [D / 2, 1, 1], 0, this.stream,
      qb.ptr, kb.ptr, vb.ptr, qn.ptr, kn.ptr, inv.ptr, c.k(layer), c.v(layer), this.stepDev.ptr, nHeads, nKvHeads, D, eps, rope.attentionFactor);
  }

  attention(out: Buf, q: Buf, shape: AttnShape, cache: KVCache, layer: number, T: number): void {
    const op = "attention";
    this.xqOf = 0n;
    const c = this.kv(op, cache, layer, shape), { nHeads, headDim: D } = shape;
    const o = this.buf(op, out), qb = this.buf(op, q);
    checkStepT(op, T, this.T, this.pos, c);
    if (T > 65535) throw new Error(`${op}: T = ${T} too large for one call`);
    needLen(op, "q", q, T * nHeads * D); needLen(op, "out", out, T * nHeads * D);
    this.noOverlap(op, o, T * nHeads * D, qb, T * nHeads * D);
    if (qb.ptr % 16n !== 0n) throw new Error(`${op}: q must be 16-byte aligned`);
    // a prefill pass: one tiled kernel (16-byte stores of out), no partials
    if (o.ptr % 16n === 0n && prefillTiled(this.attentionVariant, T, shape, ATT_PREFILL_ROWS, ATT_PREFILL_DIMS)) {
      const BQ = ATT_PREFILL_ROWS / (nHeads / shape.nKvHeads);
      this.k.attention_prefill_f32!.launch([shape.nKvHeads, ceil(T, BQ), 1], [ATT_PREFILL_THREADS, 1, 1], attPrefillSmem(D), this.stream,
        qb.ptr, c.k(layer), c.v(layer), o.ptr, this.stepDev.ptr, nHeads, shape.nKvHeads, D, T);
      return;
    }
    const S = ceil(attentionLaunchSpan(c.ctx, this.pos + T, T), ATT_CHUNK); // chunks of the cache this step can reach
    // the queries in sub-batches whose partials fit attPartialsMax (one batch in a decode step)
    const rows = attentionRowsPerBatch(T, nHeads, S, D, this.attPartialsMax), need = 4 * rows * nHeads * S * (D + 2);
    if (!this.partials || this.partials.bytes < need) {
      if (this.partials) this.retired.push(this.partials); // a captured graph may still name it
      this.partials = this.rawAlloc(need);
    }
    if (nHeads / shape.nKvHeads > ATT_MAX_GROUP) throw new Error(`${op}: ${nHeads / shape.nKvHeads} query heads per kv head; the kernel holds at most ${ATT_MAX_GROUP}`);
    const long = longMerge(this.attentionVariant, this.pos + T, ATT_LONG);
    const threads = long ? longMergePerDim(1024, D, ATT_LONG_QS) * D : D; // D is 64, 128 or 256: 8, 8, 4 per dim
    // a decode step's serial merge with head_dim 128 also quantizes out for the o projection's bmma
    // matvec (one launch fewer per layer: cuda/x16_fused.ts attention_combine_x16_f32)
    const fuse = T === 1 && !long && D === 128 && this.fuseX16(1, nHeads * D);
    for (let t0 = 0; t0 < T; t0 += rows) {
      const n = Math.min(rows, T - t0), off = BigInt(4 * t0 * nHeads * D);
      this.k.attention_partial_f32!.launch([S, shape.nKvHeads, n], [128, 1, 1], 0, this.stream, qb.ptr + off, c.k(layer), c.v(layer), this.partials.ptr, this.stepDev.ptr, nHeads, shape.nKvHeads, D, S, t0);
      if (fuse) this.k.attention_combine_x16_f32!.launch([nHeads, 1, 1], [128, 1, 1], 0, this.stream, this.partials.ptr, o.ptr, this.stepDev.ptr, nHeads, S, 0, this.xq.ptr);
      else (long ? this.k.attention_combine_long_f32! : this.k.attention_combine_f32!).launch([nHeads, n, 1], [threads, 1, 1], 0, this.stream,
        this.partials.ptr, o.ptr + off, this.stepDev.ptr, nHeads, D, S, t0);
    }
    if (fuse) this.producedX16(o, nHeads * D);
  }

  private elementwise(kernel: string, op: string, out: Buf, a: Buf, b: Buf, n: number): void {
    this.xqOf = 0n;
    const o = this.buf(op, out), ab = this.buf(op, a), bb = this.buf(op, b);
    checkElementwise(op, out, a, b, n);
    const grid = Math.min(ceil(n, 256), 8 * this.info.sms);
    this.k[kernel]!.launch([grid, 1, 1], [256, 1, 1], 0, this.stream, ab.ptr, bb.ptr, o.ptr, n);
  }
  swiglu(out: Buf, gate: Buf, up: Buf, n: number): void {
    if (this.fuseX16(1, n)) {
      const o = this.buf("swiglu", out), g = this.buf("swiglu", gate), u = this.buf("swiglu", up);
      checkElementwise("swiglu", out, gate, up, n);
      this.k.swiglu_x16_f32!.launch([ceil(n / 128, 8), 1, 1], [256, 1, 1], 0, this.stream, g.ptr, u.ptr, o.ptr, this.xq.ptr, n);
      return this.producedX16(o, n);
    }
    this.elementwise("swiglu_f32", "swiglu", out, gate, up, n);
  }
  swigluRows(out: Buf, gu: Buf, rows: number, n: number): void {
    this.xqOf = 0n;
    const o = this.buf("swigluRows", out), g = this.buf("swigluRows", gu);
    checkSwigluRows(out, gu, rows, n);
    this.noOverlap("swigluRows", o, rows * n, g, rows * 2 * n);
    this.k.swiglu_rows_f32!.launch([Math.min(ceil(rows * n, 256), 8 * this.info.sms), 1, 1], [256, 1, 1], 0, this.stream, g.ptr, o.ptr, rows, n);
  }
  add(out: Buf, a: Buf, b: Buf, n: number): void { this.elementwise("add_f32", "add", out, a, b, n); }
  copy2d(dst: Buf, dstStride: number, src: Buf, srcStride: number, rows: number, cols: number): void {
    this.xqOf = 0n;
    const d = this.buf("copy2d", dst), s = this.buf("copy2d", src);
    checkCopy2d(dst, dstStride, src, srcStride, rows, cols);
    if (rows * cols === 0) return;
    if (rows * cols >= 2 ** 31) throw new Error(`copy2d: ${rows} x ${cols} too large for one call`);
    this.noOverlap("copy2d", d, (rows - 1) * dstStride + cols, s, (rows - 1) * srcStride + cols);
    const grid = Math.min(ceil(rows * cols, 256), 8 * this.info.sms);
    this.k.copy2d_f32!.launch([grid, 1, 1], [256, 1, 1], 0, this.stream, s.ptr, d.ptr, srcStride, dstStride, rows, cols);
  }

  // ---- optional fast paths ----------------------------------------------------------------------
  async sampleToken(logits: Buf, n: number, params: SamplingParams, rand: number): Promise<number> {
    const l = this.buf("sampleToken", logits);
    checkSample(logits, n, params, rand);
    if (!(params.temperature > 0)) {
      this.cu.memsetD32Async(this.scratch.ptr, 0, 2, this.stream);
      this.k.argmax_f32!.launch([Math.min(ceil(n, 256), 2 * this.info.sms), 1, 1], [256, 1, 1], 0, this.stream, l.ptr, n, this.scratch.ptr);
      this.cu.dtohAsync(this.tokenHost, this.scratch.ptr, this.stream);
      this.cu.streamSync(this.stream);
      return 0xffffffff - this.tokenHost[0]!; // low word of the key holds 0xffffffff - index
    }
    const tok = this.scratch.ptr + 8n;
    this.k.sample_topk_topp_f32!.launch([1, 1, 1], [1024, 1, 1], 0, this.stream, l.ptr, n, Math.min(params.topK, 2 ** 31 - 1), params.topP, Math.fround(1 / params.temperature), rand, tok);
    this.cu.dtohAsync(this.tokenHost.subarray(0, 1), tok, this.stream);
    this.cu.streamSync(this.stream);
    return this.tokenHost[0]!;
  }

  replayable(key: object, record: () => void): void {
    this.live();
    if (process.env.BUNSAI_NO_GRAPH === "1" || this.capturing) return record();
    // The graph holds the attention grid of the span it was captured for (attentionSpan) and the
    // merge it chose (longMerge): once the step ends past either, capture again (at most once per
    // doubling of the sequence, and once at ATT_LONG).
    const end = this.pos + this.T, span = 2 * attentionSpan(Infinity, end) + (longMerge(this.attentionVariant, end, ATT_LONG) ? 1 : 0);
    const g = this.graphs.get(key);
    if (g && g.span === span) return this.cu.graphLaunch(g.exec, this.stream);
    if (g) {
      this.cu.streamSync(this.stream); // its last replay may still run
      this.cu.graphExecDestroy(g.exec); this.cu.graphDestroy(g.graph); this.graphs.delete(key);
    }
    this.capturing = true;
    this.cu.beginCapture(this.stream);
    let graph: bigint;
    try {
      record();
    } catch (e) {
      try { this.cu.graphDestroy(this.cu.endCapture(this.stream)); } catch { /* capture already broken */ }
      throw e;
    } finally {
      this.capturing = false;
    }
    graph = this.cu.endCapture(this.stream);
    const exec = this.cu.instantiate(graph);
    this.graphs.set(key, { graph, exec, span });
    this.graphCaptures++;
    this.cu.graphLaunch(exec, this.stream);
  }
  private invalidateGraphs(): void {
    for (const g of this.graphs.values()) { this.cu.graphExecDestroy(g.exec); this.cu.graphDestroy(g.graph); }
    this.graphs.clear();
  }

  setKernelVariant(op: string, variant: string): void {
    const known = Object.hasOwn(this.kernelVariants, op) ? (this.kernelVariants[op as keyof typeof this.kernelVariants] as readonly string[]) : undefined;
    if (!known || !known.includes(variant)) {
      throw new Error(`setKernelVariant: unknown variant ${op}=${variant}; known: matvec=${this.kernelVariants.matvec.join("|")}, attention=${ATTENTION_VARIANTS.join("|")}, matmul=${MATMUL_VARIANTS.join("|")}`);
    }
    if (op === "matmul") this.matmulVariant = variant as MatmulVariant; // prefill passes are never captured
    if (op === "matvec" && variant !== this.matvecVariant) { this.invalidateGraphs(); this.matvecVariant = variant as MatvecVariant; }
    if (op === "attention" && variant !== this.attentionVariant) { this.invalidateGraphs(); this.attentionVariant = variant as AttentionVariant; }
  }

  /** Waits for all enqueued work. */
  sync(): void { this.cu.streamSync(this.stream); }

  dispose(): void {
    if (this.disposed) return;
    try { this.cu.streamSync(this.stream); } catch { /* freeing anyway */ }
    this.invalidateGraphs();
    for (const a of [...this.allocs]) this.rawFree(a);
    for (const m of this.modules) this.cu.unloadModule(m);
    this.cu.destroyStream(this.stream);
    this.disposed = true;
  }
}

export async function createCudaBackend(): Promise<Backend> {
  return new CudaBackend();
}
