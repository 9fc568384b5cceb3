// bunsai_metal.m: the Metal side of the C ABI in bunsai_metal.h (built with -fobjc-arc).
//
// Handles are Objective-C objects passed out with one retain (__bridge_retained) and taken back by
// bm_release (CFBridgingRelease). Every entry point runs inside @autoreleasepool because bun:ffi
// calls us from a thread with no pool of its own; without one, autoreleased Metal objects
// (command buffers, errors) would pile up for the life of the process.

#import <Foundation/Foundation.h>
#import <Metal/Metal.h>
#include <string.h>
#include <unistd.h>
#include "bunsai_metal.h"

// ---- helpers ------------------------------------------------------------------------------------

static void put_msg(char *dst, uint64_t cap, NSString *msg) {
  if (dst == NULL || cap == 0) return;
  const char *s = msg != nil ? [msg UTF8String] : NULL;
  if (s == NULL) s = "";
  size_t n = strlen(s);
  if (n > cap - 1) n = (size_t)(cap - 1);
  memcpy(dst, s, n);
  dst[n] = '\0';
}

static void put_err(char *dst, uint64_t cap, NSString *what, NSError *error) {
  NSString *detail = error != nil ? [error localizedDescription] : @"no details";
  put_msg(dst, cap, [NSString stringWithFormat:@"%@: %@", what, detail]);
}

static void *hand_out(id obj) { return obj != nil ? (__bridge_retained void *)obj : NULL; }

// Borrowed views of handles, checked for kind so a mixed-up handle is an error code, not a crash
// in a random selector. Kind = "answers a selector only that protocol has" (respondsToSelector:
// is how messaging itself decides, so it holds for Apple's private concrete classes too).
static id checked(void *h, SEL sel) {
  id o = (__bridge id)h;
  return (o != nil && [o respondsToSelector:sel]) ? o : nil;
}
static id<MTLDevice> as_device(void *h) { return checked(h, @selector(newCommandQueue)); }
static id<MTLCommandQueue> as_queue(void *h) { return checked(h, @selector(commandBuffer)); }
static id<MTLLibrary> as_library(void *h) { return checked(h, @selector(newFunctionWithName:)); }
static id<MTLComputePipelineState> as_pipeline(void *h) { return checked(h, @selector(maxTotalThreadsPerThreadgroup)); }
static id<MTLBuffer> as_buffer(void *h) { return checked(h, @selector(contents)); }

// A command buffer plus its compute encoder, which is opened on first use and ended on commit.
@interface BMCmd : NSObject
@property(nonatomic, strong) id<MTLCommandBuffer> cb;
@property(nonatomic, strong) id<MTLComputeCommandEncoder> enc;
@property(nonatomic) BOOL committed;
@end

@implementation BMCmd
- (void)dealloc {
  // Metal asserts when an encoder is freed while still encoding (a cmd dropped uncommitted).
  if (_enc != nil) [_enc endEncoding];
}
@end

static BMCmd *as_cmd(void *h) {
  id o = (__bridge id)h;
  return (o != nil && [o isKindOfClass:[BMCmd class]]) ? (BMCmd *)o : nil;
}

// The encoder of an uncommitted cmd, opened if needed; nil when the cmd is unusable.
static id<MTLComputeCommandEncoder> encoder_of(BMCmd *c) {
  if (c == nil || c.committed) return nil;
  if (c.enc == nil) c.enc = [c.cb computeCommandEncoder]; // serial dispatch type
  return c.enc;
}

// ---- device -------------------------------------------------------------------------------------

void *bm_device_create(char *err, uint64_t err_cap) {
  @autoreleasepool {
    id<MTLDevice> dev = MTLCreateSystemDefaultDevice();
    if (dev == nil) {
      // Older macOS returned nil to processes without a window server connection; every GPU is
      // still listed here.
      NSArray<id<MTLDevice>> *all = MTLCopyAllDevices();
      if ([all count] > 0) dev = all[0];
    }
    if (dev == nil) {
      put_msg(err, err_cap, @"MTLCreateSystemDefaultDevice returned nil: no Metal GPU on this machine");
      return NULL;
    }
    return hand_out(dev);
  }
}

int32_t bm_device_info(void *device, char *name, uint64_t name_cap, uint64_t *out4) {
  @autoreleasepool {
    id<MTLDevice> dev = as_device(device);
    if (dev == nil || out4 == NULL) return BM_ERR_ARG;
    put_msg(name, name_cap, [dev name]);
    out4[0] = [dev hasUnifiedMemory] ? 1 : 0;
    out4[1] = (uint64_t)[dev recommendedMaxWorkingSetSize];
    out4[2] = (uint64_t)[dev maxThreadsPerThreadgroup].width;
    out4[3] = (uint64_t)[dev maxBufferLength];
    return BM_OK;
  }
}

void *bm_queue_create(void *device, char *err, uint64_t err_cap) {
  @autoreleasepool {
    id<MTLDevice> dev = as_device(device);
    if (dev == nil) { put_msg(err, err_cap, @"bm_queue_create: not a device handle"); return NULL; }
    id<MTLCommandQueue> q = [dev newCommandQueue];
    if (q == nil) put_msg(err, err_cap, @"newCommandQueue returned nil");
    return hand_out(q);
  }
}

// ---- code ---------------------------------------------------------------------------------------

void *bm_library_create(void *device, const char *src, uint64_t src_len, char *log, uint64_t log_cap) {
  @autoreleasepool {
    id<MTLDevice> dev = as_device(device);
    if (dev == nil || src == NULL) { put_msg(log, log_cap, @"bm_library_create: bad device or source"); return NULL; }
    NSString *text = [[NSString alloc] initWithBytes:src length:(NSUInteger)src_len encoding:NSUTF8StringEncoding];
    if (text == nil) { put_msg(log, log_cap, @"bm_library_create: source is not valid UTF-8"); return NULL; }
    MTLCompileOptions *opts = [MTLCompileOptions new];
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wdeprecated-declarations"
    opts.fastMathEnabled = NO; // same rounding intent as the CUDA build; mathMode needs macOS 15
#pragma clang diagnostic pop
    NSError *error = nil;
    id<MTLLibrary> lib = [dev newLibraryWithSource:text options:opts error:&error];
    if (lib == nil) put_err(log, log_cap, @"Metal compile failed", error);
    return hand_out(lib);
  }
}

void *bm_pipeline_create(void *device, void *library, const char *name, const uint32_t *consts,
                         uint64_t n_consts, char *err, uint64_t err_cap) {
  @autoreleasepool {
    id<MTLDevice> dev = as_device(device);
    id<MTLLibrary> lib = as_library(library);
    if (dev == nil || lib == nil || name == NULL || (n_consts > 0 && consts == NULL)) {
      put_msg(err, err_cap, @"bm_pipeline_create: bad device, library, name or constants");
      return NULL;
    }
    NSString *fname = [NSString stringWithUTF8String:name];
    if (fname == nil) { put_msg(err, err_cap, @"bm_pipeline_create: name is not valid UTF-8"); return NULL; }
    NSError *error = nil;
    id<MTLFunction> fn = nil;
    if (n_consts > 0) {
      MTLFunctionConstantValues *cv = [MTLFunctionConstantValues new];
      for (uint64_t i = 0; i < n_consts; i++) {
        uint32_t v = consts[i];
        [cv setConstantValue:&v type:MTLDataTypeUInt atIndex:(NSUInteger)i];
      }
      fn = [lib newFunctionWithName:fname constantValues:cv error:&error];
    } else {
      fn = [lib newFunctionWithName:fname];
    }
    if (fn == nil) {
      put_err(err, err_cap, [NSString stringWithFormat:@"no kernel named %@ in the library", fname], error);
      return NULL;
    }
    id<MTLComputePipelineState> pso = [dev newComputePipelineStateWithFunction:fn error:&error];
    if (pso == nil) put_err(err, err_cap, [NSString stringWithFormat:@"pipeline for %@ failed", fname], error);
    return hand_out(pso);
  }
}

int32_t bm_pipeline_info(void *pipeline, uint64_t *out2) {
  @autoreleasepool {
    id<MTLComputePipelineState> pso = as_pipeline(pipeline);
    if (pso == nil || out2 == NULL) return BM_ERR_ARG;
    out2[0] = (uint64_t)[pso maxTotalThreadsPerThreadgroup];
    out2[1] = (uint64_t)[pso threadExecutionWidth];
    return BM_OK;
  }
}

// ---- memory -------------------------------------------------------------------------------------

void *bm_buffer_create(void *device, uint64_t bytes, char *err, uint64_t err_cap) {
  @autoreleasepool {
    id<MTLDevice> dev = as_device(device);
    if (dev == nil || bytes == 0) { put_msg(err, err_cap, @"bm_buffer_create: bad device or zero size"); return NULL; }
    id<MTLBuffer> b = [dev newBufferWithLength:(NSUInteger)bytes options:MTLResourceStorageModeShared];
    if (b == nil) {
      put_msg(err, err_cap, [NSString stringWithFormat:@"newBufferWithLength(%llu) returned nil (out of memory, or over maxBufferLength)", (unsigned long long)bytes]);
      return NULL;
    }
    return hand_out(b);
  }
}

void *bm_buffer_wrap(void *device, void *host, uint64_t bytes, char *err, uint64_t err_cap) {
  @autoreleasepool {
    id<MTLDevice> dev = as_device(device);
    uint64_t page = (uint64_t)getpagesize();
    if (dev == nil || host == NULL || bytes == 0) { put_msg(err, err_cap, @"bm_buffer_wrap: bad device, pointer or size"); return NULL; }
    if (((uintptr_t)host) % page != 0) {
      put_msg(err, err_cap, [NSString stringWithFormat:@"bm_buffer_wrap: pointer %p is not aligned to the %llu-byte page", host, (unsigned long long)page]);
      return NULL;
    }
    uint64_t rounded = (bytes + page - 1) / page * page; // Metal maps whole pages
    id<MTLBuffer> b = [dev newBufferWithBytesNoCopy:host length:(NSUInteger)rounded
                                            options:MTLResourceStorageModeShared deallocator:nil];
    if (b == nil) put_msg(err, err_cap, @"newBufferWithBytesNoCopy returned nil (memory not from mmap/vm_allocate?)");
    return hand_out(b);
  }
}

void *bm_buffer_contents(void *buffer) {
  @autoreleasepool {
    id<MTLBuffer> b = as_buffer(buffer);
    return b != nil ? [b contents] : NULL;
  }
}

int32_t bm_buffer_length(void *buffer, uint64_t *out1) {
  @autoreleasepool {
    id<MTLBuffer> b = as_buffer(buffer);
    if (b == nil || out1 == NULL) return BM_ERR_ARG;
    out1[0] = (uint64_t)[b length];
    return BM_OK;
  }
}

// ---- commands -----------------------------------------------------------------------------------

void *bm_cmd_create(void *queue, char *err, uint64_t err_cap) {
  @autoreleasepool {
    id<MTLCommandQueue> q = as_queue(queue);
    if (q == nil) { put_msg(err, err_cap, @"bm_cmd_create: not a queue handle"); return NULL; }
    BMCmd *c = [BMCmd new];
    c.cb = [q commandBuffer]; // retains the buffers it uses until it completes
    if (c.cb == nil) { put_msg(err, err_cap, @"commandBuffer returned nil"); return NULL; }
    return hand_out(c);
  }
}

int32_t bm_cmd_set_pipeline(void *cmd, void *pipeline) {
  @autoreleasepool {
    BMCmd *c = as_cmd(cmd);
    id<MTLComputePipelineState> pso = as_pipeline(pipeline);
    if (c == nil || pso == nil) return BM_ERR_ARG;
    id<MTLComputeCommandEncoder> enc = encoder_of(c);
    if (enc == nil) return BM_ERR_STATE;
    [enc setComputePipelineState:pso];
    return BM_OK;
  }
}

int32_t bm_cmd_set_buffer(void *cmd, void *buffer, uint64_t offset, uint64_t index) {
  @autoreleasepool {
    BMCmd *c = as_cmd(cmd);
    id<MTLBuffer> b = as_buffer(buffer);
    if (c == nil || b == nil || offset >= [b length] || index >= 31) return BM_ERR_ARG;
    id<MTLComputeCommandEncoder> enc = encoder_of(c);
    if (enc == nil) return BM_ERR_STATE;
    [enc setBuffer:b offset:(NSUInteger)offset atIndex:(NSUInteger)index];
    return BM_OK;
  }
}

int32_t bm_cmd_set_bytes(void *cmd, const void *bytes, uint64_t len, uint64_t index) {
  @autoreleasepool {
    BMCmd *c = as_cmd(cmd);
    if (c == nil || bytes == NULL || len == 0 || len > 4096 || index >= 31) return BM_ERR_ARG;
    id<MTLComputeCommandEncoder> enc = encoder_of(c);
    if (enc == nil) return BM_ERR_STATE;
    [enc setBytes:bytes length:(NSUInteger)len atIndex:(NSUInteger)index];
    return BM_OK;
  }
}

int32_t bm_cmd_set_threadgroup_memory(void *cmd, uint64_t bytes, uint64_t index) {
  @autoreleasepool {
    BMCmd *c = as_cmd(cmd);
    if (c == nil || bytes == 0 || bytes % 16 != 0 || index >= 31) return BM_ERR_ARG;
    id<MTLComputeCommandEncoder> enc = encoder_of(c);
    if (enc == nil) return BM_ERR_STATE;
    [enc setThreadgroupMemoryLength:(NSUInteger)bytes atIndex:(NSUInteger)index];
    return BM_OK;
  }
}

int32_t bm_cmd_dispatch(void *cmd, uint64_t groups_x, uint64_t groups_y, uint64_t groups_z,
                        uint64_t threads_x, uint64_t threads_y, uint64_t threads_z) {
  @autoreleasepool {
    BMCmd *c = as_cmd(cmd);
    if (c == nil || groups_x == 0 || groups_y == 0 || groups_z == 0 ||
        threads_x == 0 || threads_y == 0 || threads_z == 0) return BM_ERR_ARG;
    id<MTLComputeCommandEncoder> enc = encoder_of(c);
    if (enc == nil) return BM_ERR_STATE;
    [enc dispatchThreadgroups:MTLSizeMake((NSUInteger)groups_x, (NSUInteger)groups_y, (NSUInteger)groups_z)
        threadsPerThreadgroup:MTLSizeMake((NSUInteger)threads_x, (NSUInteger)threads_y, (NSUInteger)threads_z)];
    return BM_OK;
  }
}

int32_t bm_cmd_commit(void *cmd) {
  @autoreleasepool {
    BMCmd *c = as_cmd(cmd);
    if (c == nil) return BM_ERR_ARG;
    if (c.committed) return BM_ERR_STATE;
    if (c.enc != nil) { [c.enc endEncoding]; c.enc = nil; }
    [c.cb commit];
    c.committed = YES;
    return BM_OK;
  }
}

int32_t bm_cmd_wait(void *cmd, double *times2, char *err, uint64_t err_cap) {
  @autoreleasepool {
    BMCmd *c = as_cmd(cmd);
    if (c == nil) { put_msg(err, err_cap, @"bm_cmd_wait: not a command handle"); return BM_ERR_ARG; }
    if (!c.committed) { put_msg(err, err_cap, @"bm_cmd_wait: command buffer was never committed"); return BM_ERR_STATE; }
    [c.cb waitUntilCompleted];
    if (times2 != NULL) {
      times2[0] = [c.cb GPUStartTime];
      times2[1] = [c.cb GPUEndTime];
    }
    if ([c.cb status] == MTLCommandBufferStatusError) {
      put_err(err, err_cap, @"GPU command buffer failed", [c.cb error]);
      return BM_ERR_GPU;
    }
    return BM_OK;
  }
}

// ---- lifetime -----------------------------------------------------------------------------------

void bm_release(void *handle) {
  @autoreleasepool {
    if (handle != NULL) (void)CFBridgingRelease(handle); // ARC releases the returned object
  }
}
