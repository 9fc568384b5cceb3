// Backend selection: `auto` picks CUDA when a device is found, Metal on macOS, else the CPU.
// GPU backends are imported lazily so a machine without them never loads their FFI.

import type { Backend, BackendName } from "./backend.ts";
import { CpuBackend } from "./cpu/index.ts";

export type BackendChoice = BackendName | "auto";
export const BACKEND_CHOICES: BackendChoice[] = ["auto", "cpu", "cuda", "metal"];

export class BackendUnavailableError extends Error {}

/**
 * Why a GPU backend cannot run here (no driver, no device, wrong OS), or null when it can.
 * A backend whose own code fails to load throws instead: on a GPU machine that must be a failure,
 * never a quiet skip.
 */
export async function unavailableReason(name: "cuda" | "metal"): Promise<string | null> {
  if (name === "cuda") return (await import("./cuda/index.ts")).cudaUnavailableReason();
  return (await import("./metal/index.ts")).metalUnavailableReason();
}

export async function createBackend(choice: BackendChoice = "auto"): Promise<Backend> {
  if (!BACKEND_CHOICES.includes(choice)) {
    throw new BackendUnavailableError(`unknown backend "${choice}"; choose one of ${BACKEND_CHOICES.join(", ")}`);
  }
  if (choice === "cpu") return new CpuBackend();
  if (choice === "auto") {
    if ((await unavailableReason("cuda")) === null) return createBackend("cuda");
    if (process.platform === "darwin" && (await unavailableReason("metal")) === null) return createBackend("metal");
    return new CpuBackend();
  }
  const why = await unavailableReason(choice);
  if (why !== null) throw new BackendUnavailableError(`backend "${choice}" is not available: ${why}`);
  if (choice === "cuda") return (await import("./cuda/index.ts")).createCudaBackend();
  return (await import("./metal/index.ts")).createMetalBackend();
}
