// A JavaScript stand-in for objc-shim/libbunsai_metal.dylib, so the Metal backend's TypeScript
// (validation, buffer offsets, KV and step layouts, the command-buffer lifecycle) runs on Linux.
//
// It has the same symbol table as ffi/metal.ts. Buffers are ArrayBuffers; a command buffer records
// its dispatches and RUNS them when committed (as a GPU would: later host writes to a buffer that
// uncommitted work reads are seen by that work, so a step-buffer hazard shows up as a wrong result).
// Each kernel runs as its reference semantics (what the kernel computes, not its thread mapping),
// after checking that the grid and threadgroup cover the data the way the kernel's mapping needs.
// It proves nothing about the MSL itself: that needs a Mac (see metal/README.md).

import { ptr, toArrayBuffer, type Pointer } from "bun:ffi";
import type { MetalLib } from "../../ffi/metal.ts";
import { sampleHost } from "../../src/backend/gpu-sample.ts";
import { attention } from "../../src/backend/cpu/ops.ts";
import { qmvSharedBytes, QMV_MAX_K, QMV_THREADS } from "../qmv_q1_f32.ts";
import { ATT_CHUNK, ATT_MAX_GROUP } from "../attention_f32.ts";
import { ATT_PREFILL_DIMS, ATT_PREFILL_ROWS, ATT_PREFILL_THREADS } from "../attention_prefill_f32.ts";
import { RMS_MAX_VEC_DIM, RMS_THREADS } from "../rmsnorm_f32.ts";
import { QMM_BM, QMM_BN } from "../qmm_q1_f32.ts";

type Binding = { ab: ArrayBuffer; offset: number } | { bytes: Uint8Array };
interface Dispatch { kernel: string; grid: number[]; block: number[]; args: Binding[]; tg: number }
type Obj =
  | { kind: "device" | "queue" }
  | { kind: "library"; source: string }
  | { kind: "pipeline"; name: string }
  | { kind: "buffer"; ab: ArrayBuffer }
  | { kind: "cmd"; bind: Binding[]; tg: number; pipeline: string | null; list: Dispatch[]; committed: boolean };

export interface FakeStats { commits: number; dispatches: number; perCommit: string[][]; live: () => number }

const dec = new TextDecoder();
const put = (dst: Uint8Array | null, s: string) => {
  if (!dst || dst.length === 0) return;
  const b = new TextEncoder().encode(s).subarray(0, dst.length - 1);
  dst.set(b);
  dst[b.length] = 0;
};

/** The fake library, and counters a test can assert on. `maxThreads` is what every pipeline reports. */
export function fakeMetalLib(maxThreads = 1024): { lib: MetalLib; stats: FakeStats } {
  const objs = new Map<number, Obj>();
  let next = 0x10000;
  const add = (o: Obj): Pointer => { next += 16; objs.set(next, o); return next as Pointer; };
  const get = <K extends Obj["kind"]>(h: unknown, kind: K): Extract<Obj, { kind: K }> | null => {
    const o = objs.get(Number(h));
    return o && o.kind === kind ? (o as Extract<Obj, { kind: K }>) : null;
  };
  const stats: FakeStats = { commits: 0, dispatches: 0, perCommit: [], live: () => objs.size };

  const lib = {
    bm_device_create: (_err: unknown, _cap: unknown) => add({ kind: "device" }),
    bm_device_info: (d: unknown, name: Uint8Array, _cap: unknown, out: BigUint64Array) => {
      if (!get(d, "device")) return -1;
      put(name, "Fake Metal (JavaScript)");
      out.set([1n, 8n << 30n, 1024n, 4n << 30n]);
      return 0;
    },
    bm_queue_create: (d: unknown) => (get(d, "device") ? add({ kind: "queue" }) : null),
    bm_library_create: (d: unknown, src: Uint8Array, len: number, log: Uint8Array) => {
      if (!get(d, "device")) { put(log, "bad device"); return null; }
      return add({ kind: "library", source: dec.decode(src.subarray(0, Number(len))) });
    },
    bm_pipeline_create: (_d: unknown, l: unknown, name: Uint8Array, _c: unknown, _n: unknown, err: Uint8Array) => {
      const lb = get(l, "library"), n = dec.decode(name.subarray(0, name.indexOf(0)));
      if (!lb || !new RegExp(`\\bkernel\\s+void\\s+${n}\\s*\\(`).test(lb.source)) { put(err, `no kernel named ${n}`); return null; }
      return add({ kind: "pipeline", name: n });
    },
    bm_pipeline_info: (p: unknown, out: BigUint64Array) => {
      if (!get(p, "pipeline")) return -1;
      out.set([BigInt(maxThreads), 32n]);
      return 0;
    },
    bm_buffer_create: (d: unknown, bytes: number) => (get(d, "device") && Number(bytes) > 0 ? add({ kind: "buffer", ab: new ArrayBuffer(Number(bytes)) }) : null),
    bm_buffer_wrap: (d: unknown, host: number, bytes: number) => {
      if (!get(d, "device") || Number(host) % 16384 !== 0) return null;
      return add({ kind: "buffer", ab: toArrayBuffer(host as Pointer, 0, Number(bytes)) });
    },
    bm_buffer_contents: (b: unknown) => { const o = get(b, "buffer"); return o ? ptr(o.ab) : null; },
    bm_buffer_length: (b: unknown, out: BigUint64Array) => { const o = get(b, "buffer"); if (!o) return -1; out[0] = BigInt(o.ab.byteLength); return 0; },
    bm_cmd_create: (q: unknown) => (get(q, "queue") ? add({ kind: "cmd", bind: [], tg: 0, pipeline: null, list: [], committed: false }) : null),
    bm_cmd_set_pipeline: (c: unknown, p: unknown) => {
      const cmd = get(c, "cmd"), pl = get(p, "pipeline");
      if (!cmd || !pl) return -1;
      if (cmd.committed) return -2;
      cmd.pipeline = pl.name;
      return 0;
    },
    bm_cmd_set_buffer: (c: unknown, b: unknown, offset: number, index: number) => {
      const cmd = get(c, "cmd"), buf = get(b, "buffer");
      if (!cmd || !buf || Number(offset) >= buf.ab.byteLength || Number(index) >= 31) return -1;
      if (cmd.committed) return -2;
      cmd.bind[Number(index)] = { ab: buf.ab, offset: Number(offset) };
      return 0;
    },
    bm_cmd_set_bytes: (c: unknown, bytes: Uint8Array, len: number, index: number) => {
      const cmd = get(c, "cmd");
      if (!cmd || Number(len) === 0 || Number(len) > 4096 || Number(index) >= 31) return -1;
      if (cmd.committed) return -2;
      cmd.bind[Number(index)] = { bytes: bytes.slice(0, Number(len)) };
      return 0;
    },
    bm_cmd_set_threadgroup_memory: (c: unknown, bytes: number, index: number) => {
      const cmd = get(c, "cmd");
      if (!cmd || Number(bytes) === 0 || Number(bytes) % 16 !== 0 || Number(index) !== 0) return -1;
      cmd.tg = Number(bytes);
      return 0;
    },
    bm_cmd_dispatch: (c: unknown, gx: number, gy: number, gz: number, tx: number, ty: number, tz: number) => {
      const cmd = get(c, "cmd");
      if (!cmd || !cmd.pipeline) return -1;
      if (cmd.committed) return -2;
      cmd.list.push({ kernel: cmd.pipeline, grid: [gx, gy, gz].map(Number), block: [tx, ty, tz].map(Number), args: [...cmd.bind], tg: cmd.tg });
      cmd.tg = 0; // like Metal's encoder state, it persists; resetting makes a missing bind show
      return 0;
    },
    bm_cmd_commit: (c: unknown) => {
      const cmd = get(c, "cmd");
      if (!cmd) return -1;
      if (cmd.committed) return -2;
      cmd.committed = true;
      stats.commits++;
      stats.perCommit.push(cmd.list.map((d) => d.kernel));
      for (const d of cmd.list) { stats.dispatches++; run(d); }
      return 0;
    },
    bm_cmd_wait: (c: unknown, times: Float64Array, err: Uint8Array) => {
      const cmd = get(c, "cmd");
      if (!cmd) { put(err, "not a command handle"); return -1; }
      if (!cmd.committed) { put(err, "never committed"); return -2; }
      times?.set([0, 0]);
      return 0;
    },
    bm_release: (h: unknown) => { objs.delete(Number(h)); },
  };
  return { lib: lib as unknown as MetalLib, stats };
}

// ---- the kernels, as reference semantics ---------------------------------------------------------

class Args {
  constructor(readonly d: Dispatch) {}
  private b(i: number): { ab: ArrayBuffer; offset: number } {
    const a = this.d.args[i];
    if (!a || !("ab" in a)) throw new Error(`fake metal: ${this.d.kernel}: argument ${i} is not a buffer`);
    return a;
  }
  f32(i: number) { const b = this.b(i); return new Float32Array(b.ab, b.offset); }
  u32(i: number) { const b = this.b(i); return new Uint32Array(b.ab, b.offset); }
  i32(i: number) { const b = this.b(i); return new Int32Array(b.ab, b.offset); }
  f16(i: number) { const b = this.b(i); return new Float16Array(b.ab, b.offset); }
  private s(i: number): DataView {
    const a = this.d.args[i];
    if (!a || !("bytes" in a)) throw new Error(`fake metal: ${this.d.kernel}: argument ${i} is not a scalar`);
    return new DataView(a.bytes.buffer, a.bytes.byteOffset, 4);
  }
  int(i: number) { return this.s(i).getInt32(0, true); }
  float(i: number) { return this.s(i).getFloat32(0, true); }
}

function need(d: Dispatch, ok: boolean, what: string): void {
  if (!ok) throw new Error(`fake metal: ${d.kernel}: grid ${d.grid} x threadgroup ${d.block} does not fit: ${what}`);
}

const f = Math.fround;

/** sum over one row of a packed 1-bit matrix times x, per the format (f64 sums). */
function q1dot(w: Uint32Array, sc: Float16Array, bi: Float16Array, x: Float32Array, xo: number, r: number, K: number): number {
  let acc = 0;
  for (let g = 0; g < K / 128; g++) {
    let ones = 0, sum = 0;
    for (let k = g * 128; k < g * 128 + 128; k++) {
      const v = x[xo + k]!;
      sum += v;
      if ((w[r * (K / 32) + (k >> 5)]! >>> (k & 31)) & 1) ones += v;
    }
    acc += sc[r * (K / 128) + g]! * ones + bi[r * (K / 128) + g]! * sum;
  }
  return acc;
}

function run(d: Dispatch): void {
  const a = new Args(d), [gx, gy, gz] = d.grid as [number, number, number], bx = d.block[0]!;
  need(d, d.block.every((v) => v >= 1) && bx * d.block[1]! * d.block[2]! <= 1024, "at most 1024 threads");
  switch (d.kernel) {
    case "embed_q1_f32": {
      const w = a.u32(0), sc = a.f16(1), bi = a.f16(2), step = a.i32(3), out = a.f32(4), K = a.int(5);
      need(d, gx === step[1], "one threadgroup per token");
      for (let t = 0; t < gx; t++) {
        const id = step[4 + t]!;
        for (let k = 0; k < K; k++) {
          const s = sc[id * (K / 128) + (k >> 7)]!, b = bi[id * (K / 128) + (k >> 7)]!;
          out[t * K + k] = (w[id * (K / 32) + (k >> 5)]! >>> (k & 31)) & 1 ? s + b : b;
        }
      }
      return;
    }
    case "rmsnorm_f32":
    case "add_rmsnorm_f32": {
      const fused = d.kernel === "add_rmsnorm_f32", o = fused ? 1 : 0;
      const x = a.f32(0), delta = fused ? a.f32(1) : null, wt = a.f32(1 + o), out = a.f32(2 + o);
      const dim = a.int(3 + o), eps = a.float(4 + o), vec = a.int(5 + o);
      need(d, bx === RMS_THREADS, `${RMS_THREADS} threads (NT is compiled in)`);
      if (vec) {
        const aligned = [x, wt, out, ...(delta ? [delta] : [])].every((v) => v.byteOffset % 16 === 0);
        need(d, dim % 4 === 0 && dim <= RMS_MAX_VEC_DIM && aligned, `vec only for dim % 4 == 0, dim <= ${RMS_MAX_VEC_DIM}, 16-byte aligned rows`);
      }
      for (let r = 0; r < gx; r++) {
        if (delta) for (let i = 0; i < dim; i++) x[r * dim + i] = x[r * dim + i]! + delta[r * dim + i]!;
        let ss = 0;
        for (let i = 0; i < dim; i++) ss += x[r * dim + i]! ** 2;
        const inv = f(1 / Math.sqrt(f(ss / dim) + eps));
        for (let i = 0; i < dim; i++) out[r * dim + i] = x[r * dim + i]! * inv * wt[i]!;
      }
      return;
    }
    case "qmv_q1_f32":
    case "qmv_q1_f32_legacy": {
      const w = a.u32(0), sc = a.f16(1), bi = a.f16(2), x = a.f32(3), y = a.f32(4), N = a.int(5), K = a.int(6);
      if (d.kernel === "qmv_q1_f32") {
        // persistent: any grid covers N through the row stride, but no threadgroup may be rowless
        need(d, bx === QMV_THREADS && gx >= 1 && gx <= Math.ceil(N / (QMV_THREADS / 32)), `${QMV_THREADS} threads, 1 .. ceil(N/16) threadgroups`);
        need(d, K <= QMV_MAX_K, `K <= ${QMV_MAX_K} (the table fills 32 KiB)`);
        need(d, x.byteOffset % 16 === 0 && w.byteOffset % 16 === 0, "x and w 16-byte aligned");
        need(d, d.tg >= qmvSharedBytes(K) && d.tg <= 32768, `the table in ${qmvSharedBytes(K)} bytes of threadgroup memory (got ${d.tg})`);
      } else {
        need(d, bx % 32 === 0 && gx * (bx / 32) >= N, `${bx / 32} rows per threadgroup cover N = ${N}`);
      }
      for (let r = 0; r < N; r++) y[r] = q1dot(w, sc, bi, x, 0, r, K);
      return;
    }
    case "qmm_x_split_f32": {
      const x = a.f32(0), xh = a.f16(1), xl = a.f16(2), xs = a.f32(3), M = a.int(4), K = a.int(5), Mp = a.int(6), lo = a.int(7), G = K / 128;
      need(d, bx === 256 && gx === Math.ceil((Mp * G) / 8) && Mp % QMM_BM === 0 && Mp >= M && K % 128 === 0, "one simdgroup per (row, group) of Mp = M rounded up to BM rows");
      for (let m = 0; m < Mp; m++) {
        for (let g = 0; g < G; g++) {
          let sum = 0;
          for (let k = g * 128; k < g * 128 + 128; k++) {
            const v = m < M ? x[m * K + k]! : 0;
            xh[m * K + k] = v; // Float16Array rounds to nearest even, as cvt.rn.f16.f32
            if (lo) xl[m * K + k] = f(v - xh[m * K + k]!);
            sum += v;
          }
          xs[g * Mp + m] = f(sum);
        }
      }
      return;
    }
    case "qmm_q1_f32": {
      const w = a.u32(0), sc = a.f16(1), bi = a.f16(2), xh = a.f16(3), xl = a.f16(4), xs = a.f32(5), out = a.f32(6);
      const M = a.int(7), N = a.int(8), K = a.int(9), Mp = a.int(10), lo = a.int(11), G = K / 128;
      need(d, bx === 256 && gx === Math.ceil(N / QMM_BN) && gy === Mp / QMM_BM && Mp === Math.ceil(M / QMM_BM) * QMM_BM, `${QMM_BM}x${QMM_BN} tiles (m x n) of 256 threads over Mp rows`);
      need(d, K % 128 === 0, "K a multiple of 128 (one group per step)");
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let acc = 0;
          for (let g = 0; g < G; g++) {
            let ones = 0;
            for (let k = g * 128; k < g * 128 + 128; k++) if ((w[n * (K / 32) + (k >> 5)]! >>> (k & 31)) & 1) ones += xh[m * K + k]! + (lo ? xl[m * K + k]! : 0);
            acc += sc[n * G + g]! * ones + bi[n * G + g]! * xs[g * Mp + m]!;
          }
          out[m * N + n] = acc;
        }
      }
      return;
    }
    case "copy2d_f32": {
      const src = a.f32(0), dst = a.f32(1), ss = a.int(2), ds = a.int(3), rows = a.int(4), cols = a.int(5);
      need(d, gx >= 1 && bx >= 1, "a grid-stride loop");
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) dst[r * ds + c] = src[r * ss + c]!;
      return;
    }
    case "swiglu_rows_f32": {
      const gu = a.f32(0), out = a.f32(1), rows = a.int(2), n = a.int(3);
      need(d, gx >= 1 && bx >= 1, "a grid-stride loop");
      for (let r = 0; r < rows; r++) {
        for (let i = 0; i < n; i++) {
          const g = gu[2 * r * n + i]!;
          out[r * n + i] = (g / (1 + Math.exp(-g))) * gu[2 * r * n + n + i]!;
        }
      }
      return;
    }
    case "swiglu_f32":
    case "add_f32": {
      const p = a.f32(0), q = a.f32(1), out = a.f32(2), n = a.int(3);
      for (let i = 0; i < n; i++) {
        const g = p[i]!;
        out[i] = d.kernel === "add_f32" ? g + q[i]! : (g / (1 + Math.exp(-g))) * q[i]!;
      }
      return;
    }
    case "qk_norm_rope_append_f32": {
      const q = a.f32(0), k = a.f32(1), v = a.f32(2), qn = a.f32(3), kn = a.f32(4), inv = a.f32(5);
      const kc = a.f16(6), vc = a.f16(7), step = a.i32(8), nH = a.int(9), nKv = a.int(10), D = a.int(11), eps = a.float(12), af = a.float(13);
      const hd = D / 2;
      need(d, gx === step[1] && gy === nH + nKv && bx === hd && bx % 32 === 0, "grid (T, nH + nKv), D/2 threads");
      for (let t = 0; t < gx; t++) {
        const pos = step[0]! + t;
        for (let h = 0; h < gy; h++) {
          const isQ = h < nH, kh = h - nH;
          const src = isQ ? q : k, o = isQ ? (t * nH + h) * D : (t * nKv + kh) * D, wn = isQ ? qn : kn;
          let ss = 0;
          for (let i = 0; i < D; i++) ss += src[o + i]! ** 2;
          const r = f(1 / Math.sqrt(f(ss / D) + eps));
          const out = new Float32Array(D);
          for (let i = 0; i < hd; i++) {
            const y1 = f(src[o + i]! * r * wn[i]!), y2 = f(src[o + i + hd]! * r * wn[i + hd]!);
            const ang = f(pos * inv[i]!), c = f(f(Math.cos(ang)) * af), s = f(f(Math.sin(ang)) * af);
            out[i] = y1 * c - y2 * s;
            out[i + hd] = y2 * c + y1 * s;
          }
          if (isQ) q.set(out, o);
          else {
            const at = (pos * nKv + kh) * D;
            kc.set(out, at);
            vc.set(v.subarray(o, o + D), at);
          }
        }
      }
      return;
    }
    case "attention_partial_f32": {
      const q = a.f32(0), kc = a.f16(1), vc = a.f16(2), part = a.f32(3), step = a.i32(4);
      const nH = a.int(5), nKv = a.int(6), D = a.int(7), S = a.int(8), t0 = a.int(9);
      need(d, gx === S && gy === nKv && gz >= 1 && t0 >= 0 && t0 + gz <= step[1]! && bx === 128, "grid (S, nKv, queries t0.. of T), 128 threads");
      need(d, [64, 128, 256].includes(D) && nH % nKv === 0 && nH / nKv <= ATT_MAX_GROUP, `D in 64/128/256, at most ${ATT_MAX_GROUP} heads per kv head`);
      need(d, q.byteOffset % 16 === 0, "q 16-byte aligned");
      const scale = 1 / Math.sqrt(D), stride = nKv * D;
      for (let t = 0; t < gz; t++) {
        const len = step[0]! + t0 + t + 1; // q and part are bound at query t0
        for (let h = 0; h < nH; h++) {
          const kvh = Math.floor(h / (nH / nKv)) * D, qo = (t * nH + h) * D;
          for (let s = 0; s < S; s++) {
            const p0 = s * ATT_CHUNK, p1 = Math.min(len, p0 + ATT_CHUNK);
            if (p0 >= len) continue;
            const sc: number[] = [];
            for (let p = p0; p < p1; p++) {
              let dot = 0;
              for (let i = 0; i < D; i++) dot += q[qo + i]! * kc[p * stride + kvh + i]!;
              sc.push(dot * scale);
            }
            const m = Math.max(...sc), e = sc.map((x) => Math.exp(x - m));
            const dst = ((t * nH + h) * S + s) * (D + 2);
            part[dst] = m;
            part[dst + 1] = e.reduce((x, y) => x + y, 0);
            for (let i = 0; i < D; i++) {
              let acc = 0;
              for (let p = p0; p < p1; p++) acc += e[p - p0]! * vc[p * stride + kvh + i]!;
              part[dst + 2 + i] = acc;
            }
          }
        }
      }
      return;
    }
    case "attention_prefill_f32": { // causal attention of all T queries at once
      const q = a.f32(0), kc = a.f16(1), vc = a.f16(2), out = a.f32(3), step = a.i32(4);
      const nH = a.int(5), nKv = a.int(6), D = a.int(7), T = a.int(8), G = nH / nKv;
      need(d, ATT_PREFILL_DIMS.includes(D) && Number.isInteger(G) && ATT_PREFILL_ROWS % G === 0, `D in ${ATT_PREFILL_DIMS.join("/")}, G dividing ${ATT_PREFILL_ROWS}`);
      need(d, T === step[1]! && gy === Math.ceil(T / (ATT_PREFILL_ROWS / G)) && gx === nKv && gz === 1 && bx === ATT_PREFILL_THREADS, "grid (nKv, query tiles), ATT_PREFILL_THREADS threads");
      need(d, q.byteOffset % 16 === 0 && out.byteOffset % 16 === 0, "q and out 16-byte aligned");
      const kv = (c: Float16Array) => Float32Array.from(c.subarray(0, (step[0]! + T) * nKv * D)); // the f16 values, exactly
      attention(out, q, kv(kc), kv(vc), T, step[0]!, nH, nKv, D); // the CPU backend's definition
      return;
    }
    case "attention_combine_f32":
    case "attention_combine_long_f32": { // the same merge (the long one in another order of f32 sums)
      const part = a.f32(0), out = a.f32(1), step = a.i32(2), nH = a.int(3), D = a.int(4), S = a.int(5), t0 = a.int(6);
      const threads = d.kernel === "attention_combine_f32" ? bx === D : bx % D === 0 && [2, 4, 8].includes(bx / D);
      need(d, gx === nH && gy >= 1 && t0 >= 0 && t0 + gy <= step[1]! && threads, "grid (nHeads, queries t0.. of T), D (or 2, 4, 8 x D) threads");
      for (let t = 0; t < gy; t++) {
        const ns = Math.ceil((step[0]! + t0 + t + 1) / ATT_CHUNK);
        for (let h = 0; h < nH; h++) {
          const base = (t * nH + h) * S * (D + 2);
          let M = -Infinity;
          for (let s = 0; s < ns; s++) M = Math.max(M, part[base + s * (D + 2)]!);
          for (let i = 0; i < D; i++) {
            let L = 0, acc = 0;
            for (let s = 0; s < ns; s++) {
              const e = Math.exp(part[base + s * (D + 2)]! - M);
              L += part[base + s * (D + 2) + 1]! * e;
              acc += part[base + s * (D + 2) + 2 + i]! * e;
            }
            out[(t * nH + h) * D + i] = acc / L;
          }
        }
      }
      return;
    }
    case "argmax_f32": {
      const x = a.f32(0), n = a.int(1), best = a.u32(2);
      need(d, gx === 1 && bx % 32 === 0, "one threadgroup (no 64-bit atomics in Metal)");
      let b = 0;
      for (let i = 1; i < n; i++) if (x[i]! > x[b]!) b = i;
      best[0] = 0xffffffff - b; // low word; the high word (the order key) is not read by the host
      return;
    }
    case "sample_topk_topp_f32": {
      const x = a.f32(0), n = a.int(1), topK = a.int(2), topP = a.float(3), invTemp = a.float(4), rand = a.float(5), token = a.u32(6);
      need(d, gx === 1 && bx === 1024, "one threadgroup of exactly 1024 threads");
      token[0] = sampleHost(x.subarray(0, n), { temperature: 1 / invTemp, topK, topP }, rand, n);
      return;
    }
    default:
      throw new Error(`fake metal: no reference for kernel ${d.kernel}`);
  }
}
