// CUDA driver API through bun:ffi (libcuda). Only what the backend needs.
//
// Handles (CUcontext, CUstream, CUfunction, ...) and device pointers (CUdeviceptr) travel as
// bigint. Every CUresult != 0 throws an Error naming the call and the error (cuGetErrorName).

import { FFIType as T, CString, ptr, type Pointer } from "bun:ffi";
import { openFirst, cstr } from "./open.ts";

const P = T.ptr, I = T.i32, U = T.u32, U64 = T.u64;

const symbols = {
  cuInit: { args: [U], returns: I },
  cuDriverGetVersion: { args: [P], returns: I },
  cuGetErrorName: { args: [I, P], returns: I },
  cuDeviceGetCount: { args: [P], returns: I },
  cuDeviceGet: { args: [P, I], returns: I },
  cuDeviceGetName: { args: [P, I, I], returns: I },
  cuDeviceGetAttribute: { args: [P, I, I], returns: I },
  cuDeviceTotalMem_v2: { args: [P, I], returns: I },
  cuDevicePrimaryCtxRetain: { args: [P, I], returns: I },
  cuDevicePrimaryCtxRelease_v2: { args: [I], returns: I },
  cuCtxSetCurrent: { args: [P], returns: I },
  cuCtxSynchronize: { args: [], returns: I },
  cuMemGetInfo_v2: { args: [P, P], returns: I },
  cuMemAlloc_v2: { args: [P, U64], returns: I },
  cuMemFree_v2: { args: [U64], returns: I },
  cuMemcpyHtoD_v2: { args: [U64, P, U64], returns: I },
  cuMemcpyHtoDAsync_v2: { args: [U64, P, U64, P], returns: I },
  cuMemcpyDtoHAsync_v2: { args: [P, U64, U64, P], returns: I },
  cuMemcpyDtoDAsync_v2: { args: [U64, U64, U64, P], returns: I },
  cuMemsetD8Async: { args: [U64, T.u8, U64, P], returns: I },
  cuMemsetD32Async: { args: [U64, U, U64, P], returns: I },
  cuModuleLoadData: { args: [P, P], returns: I },
  cuModuleUnload: { args: [P], returns: I },
  cuModuleGetFunction: { args: [P, P, P], returns: I },
  cuFuncSetAttribute: { args: [P, I, I], returns: I },
  cuLaunchKernel: { args: [P, U, U, U, U, U, U, U, P, P, P], returns: I },
  cuLaunchKernelEx: { args: [P, P, P, P], returns: I },
  cuStreamCreate: { args: [P, U], returns: I },
  cuStreamDestroy_v2: { args: [P], returns: I },
  cuStreamSynchronize: { args: [P], returns: I },
  cuEventCreate: { args: [P, U], returns: I },
  cuEventDestroy_v2: { args: [P], returns: I },
  cuEventRecord: { args: [P, P], returns: I },
  cuEventSynchronize: { args: [P], returns: I },
  cuEventElapsedTime: { args: [P, P, P], returns: I },
  cuStreamBeginCapture_v2: { args: [P, I], returns: I },
  cuStreamEndCapture: { args: [P, P], returns: I },
  cuGraphInstantiateWithFlags: { args: [P, P, U64], returns: I },
  cuGraphLaunch: { args: [P, P], returns: I },
  cuGraphDestroy: { args: [P], returns: I },
  cuGraphExecDestroy: { args: [P], returns: I },
} as const;

export const LIBCUDA_CANDIDATES = [
  "libcuda.so.1", "libcuda.so",
  "/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/local/cuda/lib64/stubs/libcuda.so",
  "/usr/local/nvidia/lib64/libcuda.so.1",
];

export type CudaLib = ReturnType<typeof openCuda>;
export function openCuda() { return openFirst("libcuda (the NVIDIA driver)", LIBCUDA_CANDIDATES, symbols); }

/** CU_DEVICE_ATTRIBUTE_* values used here (from cuda.h). */
export const ATTR = {
  maxThreadsPerBlock: 1, clockRateKHz: 13, multiprocessorCount: 16, memoryClockRateKHz: 36,
  globalMemoryBusWidth: 37, l2CacheSize: 38, ccMajor: 75, ccMinor: 76, maxSharedPerMultiprocessor: 81,
  maxSharedPerBlockOptin: 97,
} as const;
export const CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
export const CU_STREAM_NON_BLOCKING = 1;
export const CU_STREAM_CAPTURE_MODE_RELAXED = 2;
export const CUDA_ERROR_OUT_OF_MEMORY = 2;
/** CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION */
const CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 6;

/**
 * A CUlaunchConfig (56 bytes) followed by one CUlaunchAttribute (72 bytes: id, pad, 64-byte value)
 * asking for programmatic stream serialization. Its memory must outlive every launch made with it.
 */
export interface LaunchConfig { dv: DataView; bytes: Uint8Array }
export function launchConfig(): LaunchConfig {
  const buf = new ArrayBuffer(56 + 72);
  const dv = new DataView(buf);
  dv.setBigUint64(40, BigInt(ptr(buf) + 56), true); // attrs
  dv.setUint32(48, 1, true); // numAttrs
  dv.setUint32(56, CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION, true);
  dv.setInt32(64, 1, true); // value.programmaticStreamSerializationAllowed
  return { dv, bytes: new Uint8Array(buf) };
}

/** The driver API with checked calls. One instance per process (the primary context). */
export class Cuda {
  readonly lib;
  readonly libPath: string;
  private readonly out = new BigUint64Array(2); // out-parameter slots, reused
  private readonly outI = new Int32Array(2);

  constructor() {
    const { lib, path } = openCuda();
    this.lib = lib.symbols;
    this.libPath = path;
  }

  errorName(code: number): string {
    const o = new BigUint64Array(1);
    if (this.lib.cuGetErrorName(code, o) !== 0 || o[0] === 0n) return `CUDA error ${code}`;
    return String(new CString(Number(o[0]) as Pointer));
  }

  /** Throws on any CUresult other than CUDA_SUCCESS. */
  check(call: string, code: number): void {
    if (code !== 0) {
      const e = new Error(`${call} failed: ${this.errorName(code)} (${code})`) as Error & { cuResult: number };
      e.cuResult = code;
      throw e;
    }
  }

  init(): void { this.check("cuInit", this.lib.cuInit(0)); }
  driverVersion(): number { this.check("cuDriverGetVersion", this.lib.cuDriverGetVersion(this.outI)); return this.outI[0]!; }
  deviceCount(): number { this.check("cuDeviceGetCount", this.lib.cuDeviceGetCount(this.outI)); return this.outI[0]!; }
  device(ordinal: number): number { this.check("cuDeviceGet", this.lib.cuDeviceGet(this.outI, ordinal)); return this.outI[0]!; }
  deviceName(dev: number): string {
    const b = new Uint8Array(256);
    this.check("cuDeviceGetName", this.lib.cuDeviceGetName(b, 256, dev));
    return new TextDecoder().decode(b.subarray(0, b.indexOf(0)));
  }
  attribute(dev: number, attr: number): number {
    this.check(`cuDeviceGetAttribute(${attr})`, this.lib.cuDeviceGetAttribute(this.outI, attr, dev));
    return this.outI[0]!;
  }
  totalMem(dev: number): number { this.check("cuDeviceTotalMem", this.lib.cuDeviceTotalMem_v2(this.out, dev)); return Number(this.out[0]); }
  retainPrimaryContext(dev: number): bigint {
    this.check("cuDevicePrimaryCtxRetain", this.lib.cuDevicePrimaryCtxRetain(this.out, dev));
    return this.out[0]!;
  }
  setCurrent(ctx: bigint): void { this.check("cuCtxSetCurrent", this.lib.cuCtxSetCurrent(ctx)); }
  synchronize(): void { this.check("cuCtxSynchronize", this.lib.cuCtxSynchronize()); }
  memInfo(): { free: number; total: number } {
    const o = new BigUint64Array(2);
    this.check("cuMemGetInfo", this.lib.cuMemGetInfo_v2(ptr(o, 0), ptr(o, 8)));
    return { free: Number(o[0]), total: Number(o[1]) };
  }

  /** Device allocation; an out-of-memory error names the size asked for and the free memory. */
  alloc(bytes: number): bigint {
    if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new Error(`cuMemAlloc: bad size ${bytes}`);
    const code = this.lib.cuMemAlloc_v2(this.out, BigInt(bytes));
    if (code === CUDA_ERROR_OUT_OF_MEMORY) {
      const { free, total } = this.memInfo();
      throw new Error(`cuMemAlloc: out of GPU memory asking for ${fmtBytes(bytes)} (free ${fmtBytes(free)} of ${fmtBytes(total)})`);
    }
    this.check(`cuMemAlloc(${bytes} bytes)`, code);
    return this.out[0]!;
  }
  free(dptr: bigint): void { this.check("cuMemFree", this.lib.cuMemFree_v2(dptr)); }

  /** Synchronous host -> device copy (used for uploads, before any kernel reads the buffer). */
  htod(dst: bigint, src: ArrayBufferView): void {
    if (src.byteLength === 0) return;
    this.check("cuMemcpyHtoD", this.lib.cuMemcpyHtoD_v2(dst, src as unknown as Uint8Array, BigInt(src.byteLength)));
  }
  htodAsync(dst: bigint, src: ArrayBufferView, stream: bigint): void {
    if (src.byteLength === 0) return;
    this.check("cuMemcpyHtoDAsync", this.lib.cuMemcpyHtoDAsync_v2(dst, src as unknown as Uint8Array, BigInt(src.byteLength), stream));
  }
  dtohAsync(dst: ArrayBufferView, src: bigint, stream: bigint): void {
    if (dst.byteLength === 0) return;
    this.check("cuMemcpyDtoHAsync", this.lib.cuMemcpyDtoHAsync_v2(dst as unknown as Uint8Array, src, BigInt(dst.byteLength), stream));
  }
  dtodAsync(dst: bigint, src: bigint, bytes: number, stream: bigint): void {
    this.check("cuMemcpyDtoDAsync", this.lib.cuMemcpyDtoDAsync_v2(dst, src, BigInt(bytes), stream));
  }
  memsetD8Async(dst: bigint, value: number, count: number, stream: bigint): void {
    this.check("cuMemsetD8Async", this.lib.cuMemsetD8Async(dst, value, BigInt(count), stream));
  }
  memsetD32Async(dst: bigint, value: number, count: number, stream: bigint): void {
    this.check("cuMemsetD32Async", this.lib.cuMemsetD32Async(dst, value >>> 0, BigInt(count), stream));
  }

  loadModule(image: Uint8Array): bigint {
    this.check("cuModuleLoadData", this.lib.cuModuleLoadData(this.out, image));
    return this.out[0]!;
  }
  unloadModule(mod: bigint): void { this.check("cuModuleUnload", this.lib.cuModuleUnload(mod)); }
  getFunction(mod: bigint, name: string): bigint {
    this.check(`cuModuleGetFunction(${name})`, this.lib.cuModuleGetFunction(this.out, mod, cstr(name)));
    return this.out[0]!;
  }
  setMaxDynamicShared(fn: bigint, bytes: number): void {
    this.check("cuFuncSetAttribute", this.lib.cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes));
  }
  /**
   * A launch that may begin while the kernel before it in the stream is still running (Hopper's
   * programmatic dependent launch): the kernel must run `griddepcontrol.wait` before it touches
   * anything an earlier kernel writes or reads (cuda/common.ts PDL_WAIT). `cfg` is a stable
   * CUlaunchConfig + one CUlaunchAttribute buffer from `launchConfig()`.
   */
  launchEx(fn: bigint, name: string, grid: [number, number, number], block: [number, number, number], shared: number, stream: bigint, params: BigUint64Array, lc: LaunchConfig): void {
    const cfg = lc.dv;
    // CUlaunchConfig: grid xyz, block xyz, sharedMemBytes (u32 x 7), hStream @32, attrs @40, numAttrs @48
    cfg.setUint32(0, grid[0], true); cfg.setUint32(4, grid[1], true); cfg.setUint32(8, grid[2], true);
    cfg.setUint32(12, block[0], true); cfg.setUint32(16, block[1], true); cfg.setUint32(20, block[2], true);
    cfg.setUint32(24, shared, true);
    cfg.setBigUint64(32, stream, true);
    const code = this.lib.cuLaunchKernelEx(lc.bytes, fn, params, null);
    if (code !== 0) this.check(`cuLaunchKernelEx(${name}, grid ${grid.join("x")}, block ${block.join("x")})`, code);
  }
  /** `params` is a void** array (one pointer per kernel argument), built once per kernel. */
  launch(fn: bigint, name: string, grid: [number, number, number], block: [number, number, number], shared: number, stream: bigint, params: BigUint64Array): void {
    const code = this.lib.cuLaunchKernel(fn, grid[0], grid[1], grid[2], block[0], block[1], block[2], shared, stream, params, null);
    if (code !== 0) this.check(`cuLaunchKernel(${name}, grid ${grid.join("x")}, block ${block.join("x")})`, code);
  }

  createStream(flags = CU_STREAM_NON_BLOCKING): bigint {
    this.check("cuStreamCreate", this.lib.cuStreamCreate(this.out, flags));
    return this.out[0]!;
  }
  destroyStream(s: bigint): void { this.check("cuStreamDestroy", this.lib.cuStreamDestroy_v2(s)); }
  streamSync(s: bigint): void { this.check("cuStreamSynchronize", this.lib.cuStreamSynchronize(s)); }

  createEvent(): bigint { this.check("cuEventCreate", this.lib.cuEventCreate(this.out, 0)); return this.out[0]!; }
  destroyEvent(e: bigint): void { this.check("cuEventDestroy", this.lib.cuEventDestroy_v2(e)); }
  record(e: bigint, s: bigint): void { this.check("cuEventRecord", this.lib.cuEventRecord(e, s)); }
  eventSync(e: bigint): void { this.check("cuEventSynchronize", this.lib.cuEventSynchronize(e)); }
  /** Milliseconds between two recorded events. */
  elapsed(start: bigint, end: bigint): number {
    const f = new Float32Array(1);
    this.check("cuEventElapsedTime", this.lib.cuEventElapsedTime(f, start, end));
    return f[0]!;
  }

  beginCapture(s: bigint): void { this.check("cuStreamBeginCapture", this.lib.cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_RELAXED)); }
  endCapture(s: bigint): bigint { this.check("cuStreamEndCapture", this.lib.cuStreamEndCapture(s, this.out)); return this.out[0]!; }
  instantiate(graph: bigint): bigint {
    this.check("cuGraphInstantiateWithFlags", this.lib.cuGraphInstantiateWithFlags(this.out, graph, 0n));
    return this.out[0]!;
  }
  graphLaunch(exec: bigint, s: bigint): void { this.check("cuGraphLaunch", this.lib.cuGraphLaunch(exec, s)); }
  graphDestroy(g: bigint): void { this.check("cuGraphDestroy", this.lib.cuGraphDestroy(g)); }
  graphExecDestroy(g: bigint): void { this.check("cuGraphExecDestroy", this.lib.cuGraphExecDestroy(g)); }
}

export function fmtBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${n} B`;
}
