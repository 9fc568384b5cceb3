// NVRTC (runtime CUDA C++ compiler) through bun:ffi: source string -> CUBIN for one GPU arch.
// A compile error throws with the kernel file's name and NVRTC's log.

import { FFIType as T, ptr } from "bun:ffi";
import { openFirst, cstr } from "./open.ts";

const P = T.ptr, I = T.i32;
const symbols = {
  nvrtcVersion: { args: [P, P], returns: I },
  nvrtcGetErrorString: { args: [I], returns: T.cstring },
  nvrtcCreateProgram: { args: [P, P, P, I, P, P], returns: I },
  nvrtcDestroyProgram: { args: [P], returns: I },
  nvrtcCompileProgram: { args: [P, I, P], returns: I },
  nvrtcGetProgramLogSize: { args: [P, P], returns: I },
  nvrtcGetProgramLog: { args: [P, P], returns: I },
  nvrtcGetCUBINSize: { args: [P, P], returns: I },
  nvrtcGetCUBIN: { args: [P, P], returns: I },
} as const;

export const LIBNVRTC_CANDIDATES = [
  "libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12",
  "/usr/local/cuda/lib64/libnvrtc.so", "/usr/local/cuda/lib64/libnvrtc.so.13", "/usr/local/cuda/lib64/libnvrtc.so.12",
  "/usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so",
];

export class Nvrtc {
  private readonly lib;
  readonly libPath: string;
  readonly version: string;

  constructor() {
    const { lib, path } = openFirst("libnvrtc (the CUDA runtime compiler)", LIBNVRTC_CANDIDATES, symbols);
    this.lib = lib.symbols;
    this.libPath = path;
    const v = new Int32Array(2);
    this.check("nvrtcVersion", this.lib.nvrtcVersion(v.subarray(0, 1), v.subarray(1, 2)));
    this.version = `${v[0]}.${v[1]}`;
  }

  private check(call: string, code: number, extra = ""): void {
    if (code !== 0) throw new Error(`${call} failed: ${this.lib.nvrtcGetErrorString(code) ?? `nvrtc error ${code}`}${extra}`);
  }

  /** Compiles CUDA C++ `source` (file name `file`, for messages) into a CUBIN. */
  compile(source: string, file: string, options: string[]): Uint8Array {
    const prog = new BigUint64Array(1);
    const src = cstr(source), name = cstr(file);
    this.check(`nvrtcCreateProgram(${file})`, this.lib.nvrtcCreateProgram(prog, src, name, 0, null, null));
    const opts = options.map(cstr); // kept alive until the call returns
    const optPtrs = new BigUint64Array(opts.length);
    opts.forEach((o, i) => (optPtrs[i] = BigInt(ptr(o))));
    try {
      const code = this.lib.nvrtcCompileProgram(prog[0]!, opts.length, opts.length ? optPtrs : null);
      if (code !== 0) this.check(`nvrtcCompileProgram(${file})`, code, `\n--- NVRTC log for ${file} ---\n${this.log(prog[0]!)}`);
      const size = new BigUint64Array(1);
      this.check("nvrtcGetCUBINSize", this.lib.nvrtcGetCUBINSize(prog[0]!, size));
      const cubin = new Uint8Array(Number(size[0]));
      this.check("nvrtcGetCUBIN", this.lib.nvrtcGetCUBIN(prog[0]!, cubin));
      return cubin;
    } finally {
      this.lib.nvrtcDestroyProgram(prog);
    }
  }

  private log(prog: bigint): string {
    const size = new BigUint64Array(1);
    if (this.lib.nvrtcGetProgramLogSize(prog, size) !== 0) return "(no log)";
    const buf = new Uint8Array(Number(size[0]) || 1);
    if (this.lib.nvrtcGetProgramLog(prog, buf) !== 0) return "(no log)";
    return new TextDecoder().decode(buf.subarray(0, Math.max(0, buf.indexOf(0))));
  }
}
