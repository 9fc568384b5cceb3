/*
 * bunsai_metal.h: the plain C ABI that bun:ffi calls to drive Metal (implemented in bunsai_metal.m).
 *
 * Rules this ABI keeps (test/metal-ffi.test.ts parses this file and checks them against ffi/metal.ts):
 * - Every object is an opaque `void *` handle that owns one retain; free it with bm_release.
 *   A handle-returning function returns NULL on failure and writes why into (err, err_cap).
 * - Integer arguments are 64-bit (uint64_t) and no function takes more than 8 arguments: Bun's FFI
 *   on arm64 misplaces narrower arguments once they spill past the 8th onto the stack.
 * - Status-returning functions return BM_OK (0) or a negative BM_ERR_* code; nothing ever throws
 *   across the ABI, and no function calls back into JavaScript (waiting happens in here, on the
 *   calling thread).
 * - Message buffers are filled with a NUL-terminated UTF-8 string, truncated to fit `cap` bytes.
 *
 * One prototype per line, `BM_API` first: the FFI test reads them with a regular expression.
 */
#ifndef BUNSAI_METAL_H
#define BUNSAI_METAL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BM_API __attribute__((visibility("default")))

#define BM_OK 0
#define BM_ERR_ARG (-1)   /* a NULL or wrong-kind handle, or an out-of-range argument */
#define BM_ERR_STATE (-2) /* e.g. encoding into a command buffer that was already committed */
#define BM_ERR_GPU (-3)   /* the command buffer finished with an error */

/* ---- device -------------------------------------------------------------------------------- */
/* The system default GPU. */
BM_API void *bm_device_create(char *err, uint64_t err_cap);
/* name: device name. out4: [has unified memory (0/1), recommended max working set (bytes),
   max threads per threadgroup (width), max buffer length (bytes)]. */
BM_API int32_t bm_device_info(void *device, char *name, uint64_t name_cap, uint64_t *out4);
BM_API void *bm_queue_create(void *device, char *err, uint64_t err_cap);

/* ---- code ---------------------------------------------------------------------------------- */
/* Compiles MSL source (src_len bytes of UTF-8, no NUL needed). On failure the compiler log goes
   into `log`. Fast math is off, so exp/rsqrt round like the CUDA build (no --use_fast_math). */
BM_API void *bm_library_create(void *device, const char *src, uint64_t src_len, char *log, uint64_t log_cap);
/* A compute pipeline for kernel `name` (NUL-terminated). consts[i], when n_consts > 0, is bound
   to the uint function constant at index i. */
BM_API void *bm_pipeline_create(void *device, void *library, const char *name, const uint32_t *consts, uint64_t n_consts, char *err, uint64_t err_cap);
/* out2: [max total threads per threadgroup, thread execution width (the simdgroup size)]. */
BM_API int32_t bm_pipeline_info(void *pipeline, uint64_t *out2);

/* ---- memory -------------------------------------------------------------------------------- */
/* A new shared-storage buffer of `bytes` (> 0) bytes, zero-filled. */
BM_API void *bm_buffer_create(void *device, uint64_t bytes, char *err, uint64_t err_cap);
/* A shared buffer over caller memory without a copy (an mmapped checkpoint). `host` must be
   page-aligned; `bytes` is rounded up to whole pages, which must all be mapped. The caller keeps
   the memory alive until the buffer is released. */
BM_API void *bm_buffer_wrap(void *device, void *host, uint64_t bytes, char *err, uint64_t err_cap);
/* CPU address of a shared buffer's first byte. */
BM_API void *bm_buffer_contents(void *buffer);
/* out1: [length in bytes]. */
BM_API int32_t bm_buffer_length(void *buffer, uint64_t *out1);

/* ---- commands ------------------------------------------------------------------------------ */
/* A command buffer with one serial compute encoder, opened on first use: dispatches run in the
   order they were encoded and each sees the writes of the ones before. */
BM_API void *bm_cmd_create(void *queue, char *err, uint64_t err_cap);
BM_API int32_t bm_cmd_set_pipeline(void *cmd, void *pipeline);
BM_API int32_t bm_cmd_set_buffer(void *cmd, void *buffer, uint64_t offset, uint64_t index);
/* Copies `len` (<= 4096) bytes into the argument table at `index` (a `constant T&` argument). */
BM_API int32_t bm_cmd_set_bytes(void *cmd, const void *bytes, uint64_t len, uint64_t index);
/* Dynamic threadgroup memory (`threadgroup T *p [[threadgroup(index)]]`), bytes a multiple of 16. */
BM_API int32_t bm_cmd_set_threadgroup_memory(void *cmd, uint64_t bytes, uint64_t index);
BM_API int32_t bm_cmd_dispatch(void *cmd, uint64_t groups_x, uint64_t groups_y, uint64_t groups_z, uint64_t threads_x, uint64_t threads_y, uint64_t threads_z);
/* Ends encoding and submits. A command buffer is committed once. */
BM_API int32_t bm_cmd_commit(void *cmd);
/* Blocks until a committed command buffer completes. times2: [GPU start, GPU end] in seconds
   (host clock); the error text when it failed. */
BM_API int32_t bm_cmd_wait(void *cmd, double *times2, char *err, uint64_t err_cap);

/* ---- lifetime ------------------------------------------------------------------------------ */
/* Drops the handle's retain (any handle from this file; NULL is ignored). */
BM_API void bm_release(void *handle);

#ifdef __cplusplus
}
#endif

#endif /* BUNSAI_METAL_H */
