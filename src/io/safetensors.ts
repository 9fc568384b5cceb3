// A safetensors reader over a memory map: the file is never copied into the JS heap; tensors are
// typed-array views into the mapping. Every header entry is checked against the file's bounds.
//
// Layout: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
// then the data; offsets are relative to the data start.

import { openSync, fstatSync, closeSync } from "node:fs";

export type DType = "U32" | "F16" | "BF16" | "F32" | "I32" | "U8" | "I8" | "U16" | "I16" | "F64" | "I64" | "U64" | "BOOL";
const SIZES: Record<DType, number> = { U8: 1, I8: 1, BOOL: 1, U16: 2, I16: 2, F16: 2, BF16: 2, U32: 4, I32: 4, F32: 4, F64: 8, I64: 8, U64: 8 };
const MAX_HEADER = 100 * 1024 * 1024;

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number; // absolute byte offset in the file
  end: number;
  file: string;
}

export class SafetensorsError extends Error {}

export class SafetensorsFile {
  readonly tensors = new Map<string, TensorInfo>();
  readonly metadata: Record<string, string> = {};
  private constructor(readonly path: string, readonly bytes: Uint8Array) {}

  static open(path: string): SafetensorsFile {
    let size: number;
    try {
      const fd = openSync(path, "r");
      size = fstatSync(fd).size;
      closeSync(fd);
    } catch (e) {
      throw new SafetensorsError(`${path}: cannot open (${(e as Error).message})`);
    }
    if (size < 8) throw new SafetensorsError(`${path}: file is ${size} bytes, too small for a safetensors header`);
    const bytes = Bun.mmap(path, { shared: false });
    const f = new SafetensorsFile(path, bytes);
    f.parseHeader();
    return f;
  }

  private parseHeader(): void {
    const p = this.path, size = this.bytes.byteLength;
    const dv = new DataView(this.bytes.buffer, this.bytes.byteOffset, size);
    const n = dv.getBigUint64(0, true);
    if (n > BigInt(Math.min(MAX_HEADER, size - 8))) {
      throw new SafetensorsError(`${p}: header length ${n} is absurd for a ${size}-byte file (truncated or not safetensors)`);
    }
    const hlen = Number(n);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(new TextDecoder().decode(this.bytes.subarray(8, 8 + hlen)));
    } catch (e) {
      throw new SafetensorsError(`${p}: header is not valid JSON (${(e as Error).message})`);
    }
    if (typeof header !== "object" || header === null || Array.isArray(header)) throw new SafetensorsError(`${p}: header is not a JSON object`);
    const dataStart = 8 + hlen;
    const spans: [number, number, string][] = [];
    for (const [name, v] of Object.entries(header)) {
      if (name === "__metadata__") {
        Object.assign(this.metadata, v);
        continue;
      }
      const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof e !== "object" || e === null) throw new SafetensorsError(`${p}: tensor "${name}": entry is not an object`);
      if (typeof e.dtype !== "string" || !(e.dtype in SIZES)) throw new SafetensorsError(`${p}: tensor "${name}": unknown dtype ${JSON.stringify(e.dtype)}`);
      const dtype = e.dtype as DType;
      if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
        throw new SafetensorsError(`${p}: tensor "${name}": bad shape ${JSON.stringify(e.shape)}`);
      }
      const shape = e.shape as number[];
      const off = e.data_offsets;
      if (!Array.isArray(off) || off.length !== 2 || !off.every((x) => Number.isSafeInteger(x) && x >= 0) || off[0] > off[1]) {
        throw new SafetensorsError(`${p}: tensor "${name}": bad data_offsets ${JSON.stringify(off)}`);
      }
      const begin = dataStart + off[0], end = dataStart + off[1];
      const want = shape.reduce((a, b) => a * b, 1) * SIZES[dtype];
      if (end - begin !== want) {
        throw new SafetensorsError(`${p}: tensor "${name}": ${end - begin} bytes for ${dtype} ${JSON.stringify(shape)}, which needs ${want}`);
      }
      if (end > size) {
        throw new SafetensorsError(`${p}: tensor "${name}" ends at byte ${end} but the file has ${size} bytes (truncated file?)`);
      }
      spans.push([begin, end, name]);
      this.tensors.set(name, { name, dtype, shape, begin, end, file: p });
    }
    spans.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++) {
      if (spans[i]![0] < spans[i - 1]![1]) {
        throw new SafetensorsError(`${p}: tensors "${spans[i - 1]![2]}" and "${spans[i]![2]}" overlap`);
      }
    }
  }

  /** The raw bytes of a tensor (a view into the mapping). */
  raw(name: string): Uint8Array {
    const t = this.tensors.get(name);
    if (!t) throw new SafetensorsError(`${this.path}: no tensor "${name}"`);
    return this.bytes.subarray(t.begin, t.end);
  }
}

/** A typed view of a tensor's bytes; copies only when the data is not aligned for the type. */
export function viewAs<T extends Uint32Array | Uint16Array | Float32Array>(
  bytes: Uint8Array, Ctor: { new (b: ArrayBufferLike, o: number, n: number): T; BYTES_PER_ELEMENT: number },
): T {
  const n = bytes.byteLength / Ctor.BYTES_PER_ELEMENT;
  if (bytes.byteOffset % Ctor.BYTES_PER_ELEMENT === 0) return new Ctor(bytes.buffer, bytes.byteOffset, n);
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Ctor(copy.buffer, 0, n);
}

/** Writes a safetensors file from named typed arrays (used by make-model and tests). */
export async function writeSafetensors(
  path: string,
  tensors: { name: string; dtype: DType; shape: number[]; data: ArrayBufferView }[],
  metadata: Record<string, string> = { format: "mlx" },
): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.byteLength] };
    off += t.data.byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const pad = (8 - ((8 + json.length) % 8)) % 8; // keep the data 8-byte aligned
  const head = new Uint8Array(8);
  new DataView(head.buffer).setBigUint64(0, BigInt(json.length + pad), true);
  const parts: Uint8Array[] = [head, json, new TextEncoder().encode(" ".repeat(pad))];
  for (const t of tensors) parts.push(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  await Bun.write(path, new Blob(parts as Uint8Array<ArrayBuffer>[]));
}
