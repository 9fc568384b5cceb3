// Reads kernel signatures out of MSL and CUDA source strings (for the Linux-side checks in
// test/metal-*.test.ts). A text scan, not a compiler: it understands the shapes our kernels use.

export interface KernelParam {
  text: string; // the parameter as written, whitespace collapsed
  name: string; // its identifier
  attrs: string[]; // [[...]] attribute names, e.g. ["buffer"]
  bufferIndex: number | null; // N of [[buffer(N)]]
}

export interface KernelSig {
  name: string;
  params: KernelParam[];
}

/** Source with comments blanked out (so commented-out code is not read as a kernel). */
export function stripComments(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\//g, " ").replace(/\/\/[^\n]*/g, " ");
}

/** Index just past the parenthesis that closes the one at `open`. */
function closeParen(s: string, open: number): number {
  let depth = 0;
  for (let i = open; i < s.length; i++) {
    if (s[i] === "(") depth++;
    else if (s[i] === ")" && --depth === 0) return i + 1;
  }
  throw new Error(`unbalanced parentheses after: ${s.slice(open, open + 60)}`);
}

/** Splits on commas outside (), [], <>. */
function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0, start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if ("([<".includes(c)) depth++;
    else if (")]>".includes(c)) depth--;
    else if (c === "," && depth === 0) { out.push(s.slice(start, i)); start = i + 1; }
  }
  if (s.slice(start).trim() !== "") out.push(s.slice(start));
  return out;
}

function param(raw: string): KernelParam {
  const text = raw.replace(/\s+/g, " ").trim();
  const attrs = [...text.matchAll(/\[\[\s*(\w+)/g)].map((m) => m[1]!);
  const buf = /\[\[\s*buffer\s*\(\s*(\d+)\s*\)\s*\]\]/.exec(text);
  const bare = text.replace(/\[\[.*?\]\]/g, "").replace(/=.*$/, "").trim();
  const name = /(\w+)\s*(\[[^\]]*\])?$/.exec(bare)?.[1] ?? "";
  return { text, name, attrs, bufferIndex: buf ? Number(buf[1]) : null };
}

function scan(src: string, head: RegExp): KernelSig[] {
  const s = stripComments(src), out: KernelSig[] = [];
  for (const m of s.matchAll(head)) {
    const open = m.index! + m[0].length - 1; // m[0] ends with "("
    const end = closeParen(s, open);
    out.push({ name: m[1]!, params: splitTop(s.slice(open + 1, end - 1)).map(param) });
  }
  return out;
}

/** `kernel void name(...)` entry points of an MSL source. */
export const mslKernels = (src: string): KernelSig[] => scan(src, /\bkernel\s+void\s+(\w+)\s*\(/g);

/** `__global__ void [__launch_bounds__(...)] name(...)` entry points of a CUDA source. */
export const cudaKernels = (src: string): KernelSig[] =>
  scan(src, /__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(/g);

/** A kernel module's KernelFile exports ({ file, kernels, source }), by export name. */
export function kernelFilesOf(mod: Record<string, unknown>): Map<string, { file: string; kernels: readonly string[]; source: string }> {
  const out = new Map<string, { file: string; kernels: readonly string[]; source: string }>();
  for (const [k, v] of Object.entries(mod)) {
    const o = v as { file?: unknown; kernels?: unknown; source?: unknown } | null;
    if (o && typeof o === "object" && typeof o.file === "string" && Array.isArray(o.kernels) && typeof o.source === "string") {
      out.set(k, o as { file: string; kernels: readonly string[]; source: string });
    }
  }
  return out;
}

/** Attributes MSL kernels may use (the stub header ignores them, so they are checked by name). */
export const KNOWN_MSL_ATTRS = new Set([
  "buffer", "threadgroup", "function_constant",
  "thread_position_in_grid", "thread_position_in_threadgroup", "threadgroup_position_in_grid",
  "threads_per_threadgroup", "threadgroups_per_grid", "thread_index_in_threadgroup",
  "thread_index_in_simdgroup", "simdgroup_index_in_threadgroup", "threads_per_simdgroup",
  "simdgroups_per_threadgroup", "max_total_threads_per_threadgroup",
]);
