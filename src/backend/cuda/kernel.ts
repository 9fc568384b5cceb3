// One loaded CUDA kernel and its argument memory.
//
// cuLaunchKernel takes `void** params`: one pointer per argument, pointing at the argument's value.
// Each Kernel owns one stable ArrayBuffer with an 8-byte slot per argument and the pointer array
// into it, both built once; a launch only rewrites the slot values. The driver copies the values
// during the call, so reusing the slots for the next launch is safe.

import { ptr } from "bun:ffi";
import { launchConfig, type Cuda, type LaunchConfig } from "../../../ffi/cuda.ts";

/** Argument types: p = device pointer (u64), i = int32, f = float32. */
export type Sig = string;
export type Dim3 = [number, number, number];

export class Kernel {
  private readonly slots: ArrayBuffer;
  private readonly dv: DataView;
  private readonly params: BigUint64Array;
  /** Launch config for programmatic dependent launch, or null for a plain launch (BUNSAI_NO_PDL=1). */
  private readonly pdl: LaunchConfig | null;

  /** `pdl`: launch with programmatic dependent launch (sm_90+; every kernel runs PDL_WAIT first). */
  constructor(private readonly cu: Cuda, readonly fn: bigint, readonly name: string, readonly sig: Sig, pdl = false) {
    this.pdl = pdl ? launchConfig() : null;
    this.slots = new ArrayBuffer(8 * Math.max(1, sig.length));
    this.dv = new DataView(this.slots);
    this.params = new BigUint64Array(Math.max(1, sig.length));
    const base = ptr(this.slots);
    for (let i = 0; i < sig.length; i++) this.params[i] = BigInt(base + 8 * i);
  }

  /** Launches made by every Kernel so far: lets a caller tell which launch came just before its own. */
  static launched = 0;

  launch(grid: Dim3, block: Dim3, shared: number, stream: bigint, ...args: (bigint | number)[]): void {
    const sig = this.sig;
    if (args.length !== sig.length) throw new Error(`${this.name}: ${args.length} arguments given, ${sig.length} expected`);
    for (let i = 0; i < sig.length; i++) {
      const a = args[i]!;
      const c = sig.charCodeAt(i);
      if (c === 112 /* p */) {
        if (typeof a !== "bigint" || a === 0n) throw new Error(`${this.name}: argument ${i} must be a device pointer`);
        this.dv.setBigUint64(8 * i, a, true);
      } else if (c === 105 /* i */) {
        if (typeof a !== "number" || !Number.isInteger(a) || a < -(2 ** 31) || a >= 2 ** 31) throw new Error(`${this.name}: argument ${i} must be an int32, got ${a}`);
        this.dv.setInt32(8 * i, a, true);
      } else {
        if (typeof a !== "number") throw new Error(`${this.name}: argument ${i} must be a number`);
        this.dv.setFloat32(8 * i, a, true);
      }
    }
    if (!(grid[0] >= 1 && grid[0] < 2 ** 31 && grid[1] >= 1 && grid[1] <= 65535 && grid[2] >= 1 && grid[2] <= 65535)) {
      throw new Error(`${this.name}: grid ${grid.join("x")} out of range`);
    }
    Kernel.launched++;
    if (this.pdl) this.cu.launchEx(this.fn, this.name, grid, block, shared, stream, this.params, this.pdl);
    else this.cu.launch(this.fn, this.name, grid, block, shared, stream, this.params);
  }
}
