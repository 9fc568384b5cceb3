// The process-wide CUDA driver + NVRTC handles and the device's facts (name, SMs, bandwidth).
// Loading is lazy and never throws out of `cudaUnavailableReason`: a machine with no libcuda
// (CI, laptops) gets a sentence instead of a crash.

import { ATTR, Cuda } from "../../../ffi/cuda.ts";
import { Nvrtc } from "../../../ffi/nvrtc.ts";

export interface DeviceInfo {
  ordinal: number;
  handle: number;
  name: string;
  ccMajor: number;
  ccMinor: number;
  arch: string; // "sm_90"
  sms: number;
  totalMem: number;
  /** Shared memory: the most one block may opt in to, and an SM's total (bytes). */
  smemPerBlockOptin: number;
  smemPerSm: number;
  /** Theoretical DRAM bandwidth in bytes/s: 2 (DDR) * memory clock * bus width. */
  bandwidth: number;
  driverVersion: number;
  nvrtcVersion: string;
}

interface Runtime { cu: Cuda; nvrtc: Nvrtc; dev: DeviceInfo }
let runtime: Runtime | null = null;
let failure: string | null = null;

// Used only when the driver reports no memory clock (some virtualized setups).
const KNOWN_BANDWIDTH: [RegExp, number][] = [[/H200/, 4.8e12], [/H100.*PCIe/, 2.0e12], [/H100/, 3.35e12], [/A100/, 2.0e12]];

function load(): Runtime {
  const cu = new Cuda();
  cu.init();
  const count = cu.deviceCount();
  if (count < 1) throw new Error("no CUDA device found (cuDeviceGetCount = 0)");
  const ordinal = Number(process.env.BUNSAI_CUDA_DEVICE ?? 0);
  if (!Number.isInteger(ordinal) || ordinal < 0 || ordinal >= count) throw new Error(`BUNSAI_CUDA_DEVICE=${process.env.BUNSAI_CUDA_DEVICE} but ${count} device(s) exist`);
  const handle = cu.device(ordinal);
  const name = cu.deviceName(handle);
  const ccMajor = cu.attribute(handle, ATTR.ccMajor), ccMinor = cu.attribute(handle, ATTR.ccMinor);
  const memKHz = cu.attribute(handle, ATTR.memoryClockRateKHz), busBits = cu.attribute(handle, ATTR.globalMemoryBusWidth);
  let bandwidth = 2 * memKHz * 1e3 * (busBits / 8);
  if (!(bandwidth > 0)) bandwidth = KNOWN_BANDWIDTH.find(([re]) => re.test(name))?.[1] ?? 1e12;
  const nvrtc = new Nvrtc();
  const dev: DeviceInfo = {
    ordinal, handle, name, ccMajor, ccMinor, arch: `sm_${ccMajor}${ccMinor}`,
    sms: cu.attribute(handle, ATTR.multiprocessorCount), totalMem: cu.totalMem(handle), bandwidth,
    smemPerBlockOptin: cu.attribute(handle, ATTR.maxSharedPerBlockOptin), smemPerSm: cu.attribute(handle, ATTR.maxSharedPerMultiprocessor),
    driverVersion: cu.driverVersion(), nvrtcVersion: nvrtc.version,
  };
  return { cu, nvrtc, dev };
}

/** The loaded runtime; throws with the reason when CUDA is unusable here. */
export function cudaRuntime(): Runtime {
  if (runtime) return runtime;
  if (failure !== null) throw new Error(failure);
  try {
    runtime = load();
    return runtime;
  } catch (e) {
    failure = (e as Error).message;
    throw new Error(failure);
  }
}

/** Why CUDA cannot be used here, or null when it can. Never throws. */
export function cudaUnavailableReason(): string | null {
  try {
    return ccReason(cudaRuntime().dev);
  } catch (e) {
    return (e as Error).message;
  }
}

/** Why this device cannot run the CUDA kernels (mma.sync m16n8k16 on f16, cp.async: sm_80+), or null. */
export function ccReason(dev: Pick<DeviceInfo, "name" | "arch" | "ccMajor">): string | null {
  return dev.ccMajor >= 8 ? null : `${dev.name} is ${dev.arch}; bunsai's CUDA kernels need compute capability 8.0 or newer (Ampere, Ada, Hopper, Blackwell)`;
}
