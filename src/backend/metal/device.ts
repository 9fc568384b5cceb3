// The Metal device as TypeScript sees it: every shim call goes through here, after its arguments
// have been checked (handles are ours, sizes fit, dims are positive integers), so a mistake in the
// backend is a thrown Error in JavaScript, never a bad pointer handed to Objective-C.

import { ptr, toArrayBuffer, type Pointer } from "bun:ffi";
import { BM_OK, BM_STATUS, type MetalLib } from "../../../ffi/metal.ts";

const MSG_CAP = 16384;
/** Threadgroup memory every Apple-silicon GPU offers (maxThreadgroupMemoryLength). */
export const MAX_THREADGROUP_MEMORY = 32768;
const enc = new TextEncoder();
const cstr = (s: string): Uint8Array => enc.encode(s + "\0");
const readMsg = (b: Uint8Array): string => new TextDecoder().decode(b.subarray(0, Math.max(0, b.indexOf(0))));

/** bun:ffi types a returned pointer as number | bigint | null; handles are numbers (< 2^53). */
function handle(v: Pointer | bigint | null): Pointer | null {
  if (typeof v !== "bigint") return v;
  if (v === 0n) return null;
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`metal: pointer ${v} does not fit a JS number`);
  return Number(v) as Pointer;
}

/** One MTLBuffer owned by a MetalDevice. */
export class DeviceBuffer {
  released = false;
  private view: ArrayBuffer | null = null;
  constructor(
    readonly dev: MetalDevice,
    readonly handle: Pointer,
    readonly bytes: number,
    readonly keepAlive: unknown = null, // host memory a no-copy buffer maps; must outlive it
  ) {}

  /** The CPU's view of the whole buffer (shared storage: no copy). */
  host(): ArrayBuffer {
    if (this.released) throw new Error("metal: buffer used after release");
    if (!this.view) {
      const p = handle(this.dev.lib.bm_buffer_contents(this.handle));
      if (p === null) throw new Error("metal: bm_buffer_contents returned NULL");
      this.view = toArrayBuffer(p, 0, this.bytes);
    }
    return this.view;
  }
}

export interface Pipeline {
  readonly name: string;
  readonly handle: Pointer;
  readonly maxThreads: number; // max total threads per threadgroup for this kernel
  readonly simdWidth: number;
}

export interface DeviceInfo {
  name: string;
  unifiedMemory: boolean;
  recommendedWorkingSet: number;
  maxThreadsPerThreadgroup: number;
  maxBufferLength: number;
}

/** A kernel argument: a buffer range, or a 32-bit scalar copied into the argument table. */
export type Arg =
  | { buf: DeviceBuffer; offset: number; bytes: number }
  | { i32: number }
  | { u32: number }
  | { f32: number };

function isDims(d: readonly number[]): boolean {
  return d.length === 3 && d.every((v) => Number.isInteger(v) && v >= 1 && v < 2 ** 32);
}

export class MetalDevice {
  readonly info: DeviceInfo;
  private readonly device: Pointer;
  private readonly queue: Pointer;
  private readonly err = new Uint8Array(MSG_CAP);
  private readonly libraries: Pointer[] = [];
  private readonly pipelines = new Map<string, Pipeline>();
  private readonly scalar = new DataView(new ArrayBuffer(4));
  private readonly scalarBytes = new Uint8Array(this.scalar.buffer);
  private readonly buffers = new Set<DeviceBuffer>();

  constructor(readonly lib: MetalLib) {
    const dev = handle(lib.bm_device_create(this.err, MSG_CAP));
    if (dev === null) throw new Error(`metal: ${readMsg(this.err)}`);
    this.device = dev;
    const name = new Uint8Array(256), out = new BigUint64Array(4);
    this.check("bm_device_info", lib.bm_device_info(dev, name, name.length, out));
    this.info = {
      name: readMsg(name),
      unifiedMemory: out[0] === 1n,
      recommendedWorkingSet: Number(out[1]),
      maxThreadsPerThreadgroup: Number(out[2]),
      maxBufferLength: Number(out[3]),
    };
    const q = handle(lib.bm_queue_create(dev, this.err, MSG_CAP));
    if (q === null) throw new Error(`metal: ${readMsg(this.err)}`);
    this.queue = q;
  }

  private check(what: string, rc: number): void {
    if (rc !== BM_OK) throw new Error(`metal: ${what} failed (${rc}: ${BM_STATUS[rc] ?? "unknown status"})`);
  }

  // ---- code -------------------------------------------------------------------------------------

  /** Compiles one MSL translation unit and makes pipelines for the named kernels in it. */
  compile(source: string, kernels: readonly string[], label: string): void {
    const text = enc.encode(source);
    const l = handle(this.lib.bm_library_create(this.device, text, text.length, this.err, MSG_CAP));
    if (l === null) throw new Error(`metal: compiling ${label}:\n${readMsg(this.err)}`);
    this.libraries.push(l);
    for (const name of kernels) {
      if (this.pipelines.has(name)) throw new Error(`metal: kernel ${name} is defined twice (again in ${label})`);
      const p = handle(this.lib.bm_pipeline_create(this.device, l, cstr(name), null, 0, this.err, MSG_CAP));
      if (p === null) throw new Error(`metal: ${label}: ${readMsg(this.err)}`);
      const out = new BigUint64Array(2);
      this.check("bm_pipeline_info", this.lib.bm_pipeline_info(p, out));
      this.pipelines.set(name, { name, handle: p, maxThreads: Number(out[0]), simdWidth: Number(out[1]) });
    }
  }

  pipeline(name: string): Pipeline {
    const p = this.pipelines.get(name);
    if (!p) throw new Error(`metal: no pipeline named ${name} (kernels: ${[...this.pipelines.keys()].join(", ")})`);
    return p;
  }

  // ---- memory -----------------------------------------------------------------------------------

  alloc(bytes: number): DeviceBuffer {
    if (!Number.isInteger(bytes) || bytes < 0) throw new Error(`metal: bad buffer size ${bytes}`);
    const n = Math.max(16, Math.ceil(bytes / 16) * 16); // Metal refuses 0-byte buffers
    if (n > this.info.maxBufferLength) throw new Error(`metal: ${n} bytes exceeds the device's max buffer length ${this.info.maxBufferLength}`);
    const h = handle(this.lib.bm_buffer_create(this.device, n, this.err, MSG_CAP));
    if (h === null) throw new Error(`metal: ${readMsg(this.err)}`);
    return this.track(new DeviceBuffer(this, h, n));
  }

  /** A buffer over `host` (page-aligned start) without copying, or null when that cannot be done. */
  wrap(host: ArrayBuffer, pageSize: number): DeviceBuffer | null {
    if (host.byteLength < pageSize || host.byteLength > this.info.maxBufferLength) return null;
    const p = ptr(host);
    if (p % pageSize !== 0) return null;
    const h = handle(this.lib.bm_buffer_wrap(this.device, p, host.byteLength, this.err, MSG_CAP));
    if (h === null) return null; // e.g. memory the kernel will not map; the caller copies instead
    return this.track(new DeviceBuffer(this, h, host.byteLength, host));
  }

  private track(b: DeviceBuffer): DeviceBuffer {
    this.buffers.add(b);
    return b;
  }

  release(b: DeviceBuffer): void {
    if (b.dev !== this || b.released) throw new Error("metal: releasing a buffer this device does not own");
    b.released = true;
    this.buffers.delete(b);
    this.lib.bm_release(b.handle);
  }

  // ---- commands ---------------------------------------------------------------------------------

  newCommands(): Pointer {
    const c = handle(this.lib.bm_cmd_create(this.queue, this.err, MSG_CAP));
    if (c === null) throw new Error(`metal: ${readMsg(this.err)}`);
    return c;
  }

  /**
   * Encodes one dispatch: `grid` threadgroups of `block` threads, args bound at indices 0, 1, ...,
   * and `tgBytes` of dynamic threadgroup memory at [[threadgroup(0)]] when non-zero.
   */
  dispatch(cmd: Pointer, p: Pipeline, grid: readonly number[], block: readonly number[], args: readonly Arg[], tgBytes = 0): void {
    if (!isDims(grid) || !isDims(block)) throw new Error(`metal: ${p.name}: bad grid ${grid} or threadgroup ${block}`);
    const threads = block[0]! * block[1]! * block[2]!;
    if (threads > p.maxThreads) throw new Error(`metal: ${p.name}: ${threads} threads per threadgroup > pipeline max ${p.maxThreads}`);
    if (args.length > 31) throw new Error(`metal: ${p.name}: ${args.length} arguments > 31 buffer slots`);
    if (!Number.isInteger(tgBytes) || tgBytes < 0 || tgBytes % 16 !== 0 || tgBytes > MAX_THREADGROUP_MEMORY) {
      throw new Error(`metal: ${p.name}: ${tgBytes} bytes of threadgroup memory (a multiple of 16, at most ${MAX_THREADGROUP_MEMORY})`);
    }
    args.forEach((a, i) => {
      if ("buf" in a) {
        const b = a.buf;
        if (b.dev !== this || b.released) throw new Error(`metal: ${p.name}: argument ${i} is not a live buffer of this device`);
        if (!Number.isInteger(a.offset) || a.offset < 0 || a.offset % 4 !== 0 || a.bytes <= 0 || a.offset + a.bytes > b.bytes) {
          throw new Error(`metal: ${p.name}: argument ${i} range [${a.offset}, +${a.bytes}) outside its ${b.bytes}-byte buffer`);
        }
      } else if ("i32" in a) {
        if (!Number.isInteger(a.i32) || a.i32 < -(2 ** 31) || a.i32 >= 2 ** 31) throw new Error(`metal: ${p.name}: argument ${i} is not an int32: ${a.i32}`);
      } else if ("u32" in a) {
        if (!Number.isInteger(a.u32) || a.u32 < 0 || a.u32 >= 2 ** 32) throw new Error(`metal: ${p.name}: argument ${i} is not a uint32: ${a.u32}`);
      } else if (!Number.isFinite(a.f32)) {
        throw new Error(`metal: ${p.name}: argument ${i} is not a finite float: ${a.f32}`);
      }
    });
    const L = this.lib;
    this.check(`${p.name}: set pipeline`, L.bm_cmd_set_pipeline(cmd, p.handle));
    args.forEach((a, i) => {
      if ("buf" in a) return this.check(`${p.name}: set buffer ${i}`, L.bm_cmd_set_buffer(cmd, a.buf.handle, a.offset, i));
      if ("i32" in a) this.scalar.setInt32(0, a.i32, true);
      else if ("u32" in a) this.scalar.setUint32(0, a.u32, true);
      else this.scalar.setFloat32(0, a.f32, true);
      this.check(`${p.name}: set bytes ${i}`, L.bm_cmd_set_bytes(cmd, this.scalarBytes, 4, i));
    });
    if (tgBytes > 0) this.check(`${p.name}: threadgroup memory`, L.bm_cmd_set_threadgroup_memory(cmd, tgBytes, 0));
    this.check(`${p.name}: dispatch`, L.bm_cmd_dispatch(cmd, grid[0]!, grid[1]!, grid[2]!, block[0]!, block[1]!, block[2]!));
  }

  commit(cmd: Pointer): void {
    this.check("commit", this.lib.bm_cmd_commit(cmd));
  }

  /** Waits for a committed command buffer and frees it; returns its GPU time in ms. */
  wait(cmd: Pointer): number {
    const times = new Float64Array(2);
    this.err[0] = 0;
    const rc = this.lib.bm_cmd_wait(cmd, times, this.err, MSG_CAP);
    const msg = readMsg(this.err);
    this.lib.bm_release(cmd);
    if (rc !== BM_OK) throw new Error(`metal: ${msg || BM_STATUS[rc]}`);
    return (times[1]! - times[0]!) * 1000;
  }

  dispose(): void {
    for (const b of [...this.buffers]) this.release(b);
    for (const p of this.pipelines.values()) this.lib.bm_release(p.handle);
    this.pipelines.clear();
    for (const l of this.libraries.splice(0)) this.lib.bm_release(l);
    this.lib.bm_release(this.queue);
    this.lib.bm_release(this.device);
  }
}
