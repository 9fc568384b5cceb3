// Matvec timings for every Bonsai-8B shape: `reps` back-to-back launches are captured once into a
// CUDA graph and the graph is replayed, timed with CUDA events, so the numbers are GPU time (a
// launch from JS through bun:ffi costs ~5 µs, more than the small kernels take). Bytes = packed
// weights + f16 scales/biases + x + y. Weight sets rotate (> 240 MB in rotation) so consecutive
// launches of one shape do not find their weights in the 60 MB L2. (Before 2026-11-22 05:00 the
// rotation was capped at 8 sets: the q/o, k/v and q+k+v shapes then fit in L2 and read too fast.)
// --variants bmma,fast,legacy picks variants (default: all this GPU has); --shapes 0,2 picks rows of SHAPES.
// With programmatic dependent launch (sm_90, unless BUNSAI_NO_PDL=1) consecutive launches overlap,
// as they do in a decode step: run once more with BUNSAI_NO_PDL=1 for each launch on its own.
// The bmma variant gets four rows: x quantization alone; back-to-back matvecs (the kernel's own
// speed: each launch streams its weights in beside the one before); the fused norm (or SwiGLU, for
// K = 12288) that produces x in a decode step, alone; and it + the matvec, the pair a decode step
// runs, where the matvec follows another kernel (a "solo" launch, one block per SM: see
// CudaBackend.qmvBmma). Back-to-back and after another kernel differ: which blocks share an SM
// changes the time per launch by up to 1.5 us (bench/RESULTS.md, fourth session).

import { CudaBackend } from "../src/backend/cuda/index.ts";
import type { Buf, Q1Weight } from "../src/backend/backend.ts";
import { Rng } from "../src/util/rng.ts";
import { exactWeight } from "./weights.ts";
import { cubinFor } from "../src/backend/cuda/compile.ts";
import { cudaRuntime } from "../src/backend/cuda/device.ts";
import { Kernel } from "../src/backend/cuda/kernel.ts";
import { COMMON } from "../cuda/common.ts";

// The ceiling: a kernel that only streams the same number of bytes (16-byte loads, 8 in flight per
// thread, 2 blocks of 256 per SM, lets its dependent launch at entry), timed the same way.
const READ = {
  file: "bench_read", kernels: ["bench_read"], source: COMMON + /* cuda */ `
extern "C" __global__ void __launch_bounds__(256) bench_read(const uint4* __restrict__ p, int n16, unsigned* out) {
  PDL_LAUNCH();
  unsigned acc = 0;
  for (int i = blockIdx.x * 256 * 8 + threadIdx.x; i < n16; i += gridDim.x * 256 * 8) {
    uint4 v[8];
    #pragma unroll
    for (int u = 0; u < 8; u++) { const int k = i + u * 256; v[u] = k < n16 ? p[k] : make_uint4(0u, 0u, 0u, 0u); }
    #pragma unroll
    for (int u = 0; u < 8; u++) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  PDL_WAIT();
  if (acc == 0x9u) out[0] = acc; // never true for the test data: keeps the loads alive
}
`};

const SHAPES: [string, number, number][] = [
  ["q/o proj 4096->4096", 4096, 4096],
  ["k/v proj 4096->1024", 1024, 4096],
  ["gate/up 4096->12288", 12288, 4096],
  ["down 12288->4096", 4096, 12288],
  ["LM head 4096->151669", 151669, 4096],
  ["q+k+v stacked 4096->6144", 6144, 4096],
  ["gate+up stacked 4096->24576", 24576, 4096],
];

export async function benchKernels(argv: string[]): Promise<void> {
  const arg = (k: string) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : undefined);
  const reps = Number(arg("--reps") ?? 200) || 200, replays = 5;
  const b = new CudaBackend();
  const variants = arg("--variants")?.split(",") ?? [...b.kernelVariants.matvec];
  const pick = arg("--shapes")?.split(",").map(Number);
  const bw = b.info.bandwidth;
  console.log(`GPU: ${b.info.name} (${b.info.arch}, ${b.info.sms} SMs), theoretical bandwidth ${(bw / 1e9).toFixed(0)} GB/s; graph of ${reps} launches, ${replays} replays after 1 warm-up`);
  const rng = new Rng(1);
  const cu = b.cu, e0 = cu.createEvent(), e1 = cu.createEvent();
  const rt = cudaRuntime();
  const readFn = cu.getFunction(cu.loadModule(cubinFor(rt.nvrtc, READ, rt.dev.arch, { compiled: 0, cached: 0, ms: 0 })), "bench_read");
  const read = new Kernel(cu, readFn, "bench_read", "pip", b.pdl);
  for (const [si, [label, N, K]] of SHAPES.entries()) {
    if (pick && !pick.includes(si)) continue;
    const bytes = N * K / 8 + 4 * N * (K / 128) + 4 * K + 4 * N;
    // > 240 MB in rotation (4x the H200's 60 MB L2), so no launch finds its weights in L2: one host
    // weight uploaded to as many buffers as that takes (the contents do not change the timing)
    const sets = Math.max(2, Math.ceil(240e6 / bytes));
    const host = exactWeight(rng, N, K), ws: Q1Weight[] = [];
    for (let i = 0; i < sets; i++) ws.push(b.uploadQ1(host));
    const x: Buf = b.upload(Float32Array.from({ length: K }, () => rng.next() - 0.5)), y = b.alloc(N);
    { // the read ceiling for these bytes: one buffer per weight set, the same rotation
      const n16 = Math.floor(bytes / 16), bufs = ws.map(() => b.alloc(4 * n16)), out = b.alloc(1), rk = {};
      const dev = (v: Buf) => (v as unknown as { ptr: bigint }).ptr;
      const g = () => b.replayable(rk, () => { for (let i = 0; i < reps; i++) read.launch([2 * b.info.sms, 1, 1], [256, 1, 1], 0, b.stream, dev(bufs[i % sets]!), n16, dev(out)); });
      g();
      cu.record(e0, b.stream);
      for (let r = 0; r < replays; r++) g();
      cu.record(e1, b.stream);
      cu.eventSync(e1);
      const us = (cu.elapsed(e0, e1) * 1e3) / (reps * replays), gbs = bytes / (us * 1e-6) / 1e9;
      console.log(`${label.padEnd(28)} ${"read".padEnd(6)} ${us.toFixed(2).padStart(8)} µs ${gbs.toFixed(0).padStart(6)} GB/s ${((100 * gbs * 1e9) / bw).toFixed(1).padStart(5)} %  (only reading as many bytes: the ceiling)`);
    }
    for (const v of variants) {
      b.setKernelVariant("matvec", v);
      if (v === "bmma") { benchBmma(b, label, N, K, ws, x, y, bytes, bw, reps, replays); continue; }
      const key = {};
      const graph = () => b.replayable(key, () => { for (let i = 0; i < reps; i++) b.matmul(y, x, ws[i % sets]!, 1); });
      graph(); // capture + warm-up
      cu.record(e0, b.stream);
      for (let r = 0; r < replays; r++) graph();
      cu.record(e1, b.stream);
      cu.eventSync(e1);
      const us = (cu.elapsed(e0, e1) * 1e3) / (reps * replays), gbs = bytes / (us * 1e-6) / 1e9;
      console.log(`${label.padEnd(28)} ${v.padEnd(6)} ${us.toFixed(2).padStart(8)} µs ${gbs.toFixed(0).padStart(6)} GB/s ${((100 * gbs * 1e9) / bw).toFixed(1).padStart(5)} %`);
    }
  }
  console.log(`(GPU time per launch inside a CUDA graph, launch gaps included; GPU ${b.info.name})`);
  console.log("bmma rows: prep = x quantization alone; matvec = back-to-back matvecs on x quantized once (no solo launches);");
  console.log("norm / swiglu = the fused RMSNorm (one block) / SwiGLU that quantizes x, alone; norm+mv / swiglu+mv = it, then the");
  console.log("matvec, as in a decode step (% of the matvec's bytes over the pair's time)");
  b.dispose();
}

/** The bmma matvec's four rows (see the legend printed at the end). */
function benchBmma(b: CudaBackend, label: string, N: number, K: number, ws: Q1Weight[], x: Buf, y: Buf, bytes: number, bw: number, reps: number, replays: number): void {
  const cu = b.cu, e0 = cu.createEvent(), e1 = cu.createEvent(), sets = ws.length;
  const nw = b.upload(new Float32Array(K).fill(1)), h = b.alloc(K), up = b.upload(new Float32Array(K).fill(0.5));
  // x's producer in a decode step: the fused RMSNorm for the hidden size, the fused SwiGLU for the
  // MLP's (the down projection's K = 12288)
  const swi = K > 4096, producer = swi ? "swiglu" : "norm";
  const produce = () => (swi ? b.swiglu(h, x, up, K) : b.rmsnorm(h, x, nw, 1, K, 1e-6));
  const time = (step: (i: number) => void): number => {
    const key = {};
    const g = () => b.replayable(key, () => { for (let i = 0; i < reps; i++) step(i); });
    g(); // capture + warm-up
    cu.record(e0, b.stream);
    for (let r = 0; r < replays; r++) g();
    cu.record(e1, b.stream);
    cu.eventSync(e1);
    return (cu.elapsed(e0, e1) * 1e3) / (reps * replays);
  };
  const row = (part: string, us: number, b2: number) => {
    const gbs = b2 / (us * 1e-6) / 1e9;
    console.log(`${label.padEnd(28)} ${part.padEnd(9)} ${us.toFixed(2).padStart(7)} µs ${gbs.toFixed(0).padStart(6)} GB/s ${((100 * gbs * 1e9) / bw).toFixed(1).padStart(5)} %`);
  };
  row("prep", time((i) => b.matvecPart("prep", y, x, ws[i % sets]!)), 0);
  b.matvecPart("prep", y, x, ws[0]!);
  b.qmvSolo = false;
  row("matvec", time((i) => b.matvecPart("matvec", y, x, ws[i % sets]!)), bytes);
  b.qmvSolo = true;
  row(producer, time(() => produce()), 0);
  row(`${producer}+mv`, time((i) => { produce(); b.matmul(y, h, ws[i % sets]!, 1); }), bytes);
}
