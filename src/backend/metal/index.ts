// Entry points select.ts loads lazily: whether Metal can run here, and the backend itself.

import type { Backend } from "../backend.ts";
import { loadMetalShim } from "../../../ffi/metal.ts";
import { MetalDevice } from "./device.ts";
import { MetalBackend } from "./backend.ts";

export { MetalBackend };

let reason: string | null | undefined;

/** Why Metal cannot be used here, or null when it can. Never throws; the answer is cached. */
export function metalUnavailableReason(): string | null {
  if (reason !== undefined) return reason;
  try {
    const shim = loadMetalShim();
    if ("error" in shim) return (reason = shim.error);
    const dev = new MetalDevice(shim.lib); // a device and a queue can be made
    const name = dev.info.name;
    dev.dispose();
    // CI VMs (GitHub's macOS runners) expose an "Apple Paravirtual device" that compiles kernels
    // but is not a trustworthy compute device; run there only when asked to.
    if (/paravirtual/i.test(name) && process.env.BUNSAI_METAL_ALLOW_PARAVIRTUAL !== "1") {
      return (reason = `the Metal device is "${name}" (a VM's paravirtual GPU); set BUNSAI_METAL_ALLOW_PARAVIRTUAL=1 to use it anyway`);
    }
    reason = null;
  } catch (e) {
    reason = (e as Error).message;
  }
  return reason;
}

export async function createMetalBackend(): Promise<Backend> {
  const why = metalUnavailableReason();
  if (why !== null) throw new Error(`metal backend is not available: ${why}`);
  const shim = loadMetalShim();
  if ("error" in shim) throw new Error(shim.error);
  return new MetalBackend(shim.lib);
}
