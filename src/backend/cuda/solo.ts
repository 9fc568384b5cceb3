// "Solo" launches: a block that asks for more than half of an SM's shared memory never shares its SM
// with another block of its grid. The block scheduler does not spread a grid of <= #SMs blocks one
// per SM when another kernel is still on the GPU (programmatic dependent launch): some SMs get two
// blocks, each then runs at half speed and sets the grid's end (bench/RESULTS.md, fourth and sixth
// sessions: the bmma matvec, and qmm_q1_f32 for the 1.7B's 128-block down and o projections).

/** Dynamic shared memory (bytes, a multiple of 1 KiB) at which two blocks cannot fit on one SM,
 *  counting the 1 KiB the driver reserves per block; 0 when one block may not take that much. */
export function soloSmem(smemPerBlockOptin: number, smemPerSm: number): number {
  const s = (Math.floor(smemPerSm / 2 / 1024)) * 1024; // 2 * (s + 1 KiB) > smemPerSm
  return s <= smemPerBlockOptin ? s : 0;
}
