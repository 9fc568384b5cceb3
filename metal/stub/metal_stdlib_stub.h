// metal_stdlib_stub.h: the subset of the Metal Shading Language standard library that metal/*.ts
// uses, written as plain C++14 declarations so that `clang++ -fsyntax-only` (or g++) can parse and
// type-check our kernels on a machine without Metal (test/metal-syntax.test.ts).
//
// THIS IS A SYNTAX AND TYPE CHECK, NOT A METAL COMPILE. Address spaces become nothing, [[attributes]]
// are ignored, the simd/barrier functions are bare declarations, and `half` is a stand-in struct.
// It catches typos, undeclared names, wrong argument counts and CUDA-isms; it cannot catch Metal's
// own rules (address-space mismatches, illegal casts, resource limits) or any runtime behaviour.
// Only the real compiler (bm_library_create on a Mac) decides whether a kernel is valid MSL.
// The test renames [[threadgroup(i)]] to [[threadgroup_index(i)]] before compiling, since the
// `threadgroup` macro below would otherwise expand inside the attribute.
#pragma once

// ---- qualifiers: erased --------------------------------------------------------------------------
#define kernel
#define device
#define constant
#define threadgroup
#define thread

// ---- scalar types ---------------------------------------------------------------------------------
typedef unsigned int uint;
typedef unsigned short ushort;
typedef unsigned char uchar;
typedef unsigned long ulong;
typedef unsigned long size_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef unsigned short uint16_t;
typedef unsigned char uint8_t;

struct half {
  half() = default;
  half(float);
  operator float() const;
};

// ---- vector types (members and operators we use) --------------------------------------------------
struct uint2 {
  uint x, y;
  uint2() = default;
  explicit uint2(uint);
  uint2(uint, uint);
};
struct uint3 { uint x, y, z; };
struct uint4 {
  uint x, y, z, w;
  uint4() = default;
  explicit uint4(uint);
  uint4(uint, uint, uint, uint);
};
struct ushort2 { ushort x, y; };
struct float2 {
  float x, y;
  float2() = default;
  explicit float2(float);
  float2(float, float);
};
struct float4 {
  float x, y, z, w;
  float4() = default;
  explicit float4(float);
  float4(float, float, float, float);
};
struct half4 { half x, y, z, w; };
struct uchar4 { uchar x, y, z, w; };
float4 operator+(float4, float4);
float4 operator*(float4, float4);
float4 operator*(float4, float);
float2 operator+(float2, float2);
float2 operator*(float2, float2);
float2 operator*(float2, float);

#define INFINITY __builtin_inff()
#define FLT_MAX 3.40282347e+38f
#define HALF_MAX 65504.0f

// ---- the metal namespace ---------------------------------------------------------------------------
namespace metal {
enum class mem_flags { mem_none = 0, mem_device = 1, mem_threadgroup = 2, mem_texture = 4 };
mem_flags operator|(mem_flags, mem_flags);
void threadgroup_barrier(mem_flags);
void simdgroup_barrier(mem_flags);

template <typename T> T simd_sum(T);
template <typename T> T simd_max(T);
template <typename T> T simd_min(T);
template <typename T> T simd_shuffle_xor(T, ushort);
template <typename T> T simd_shuffle_down(T, ushort);
template <typename T> T simd_broadcast(T, ushort);
template <typename T> T simd_broadcast_first(T);

template <typename T> T min(T, T);
template <typename T> T max(T, T);
template <typename T> T clamp(T, T, T);
template <typename T> T select(T, T, bool);
template <typename To, typename From> To as_type(From);

float abs(float);
float fabs(float);
float exp(float);
float log(float);
float sqrt(float);
float rsqrt(float);
float sin(float);
float cos(float);
float fma(float, float, float);
float fmax(float, float);
float fmin(float, float);
float dot(float4, float4);
bool isinf(float);
bool isnan(float);

enum memory_order { memory_order_relaxed };
struct atomic_int { int v_; };
struct atomic_uint { uint v_; };
int atomic_fetch_add_explicit(atomic_int*, int, memory_order);
int atomic_load_explicit(atomic_int*, memory_order);
void atomic_store_explicit(atomic_int*, int, memory_order);
uint atomic_fetch_max_explicit(atomic_uint*, uint, memory_order);

// simdgroup matrices (qmm_q1_f32): 8x8 tiles spread over a simdgroup; thread_elements() is the
// thread's 2 elements (a vec<T, 2> in MSL, here a stand-in with operator[])
template <typename T> struct simd_elems2 { T x, y; T& operator[](int); };
template <typename T, int Rows, int Cols> struct simdgroup_matrix {
  simdgroup_matrix() = default;
  simd_elems2<T>& thread_elements();
};
typedef simdgroup_matrix<half, 8, 8> simdgroup_half8x8;
typedef simdgroup_matrix<float, 8, 8> simdgroup_float8x8;
template <typename T, int R, int C> simdgroup_matrix<T, R, C> make_filled_simdgroup_matrix(T);
template <typename T, int R, int C> void simdgroup_load(simdgroup_matrix<T, R, C>&, const T*, ulong = C, uint2 = uint2{0, 0}, bool = false);
template <typename T, int R, int C> void simdgroup_store(const simdgroup_matrix<T, R, C>&, T*, ulong = C, uint2 = uint2{0, 0}, bool = false);
template <typename TD, typename TA, typename TB, typename TC, int R, int C, int KK>
void simdgroup_multiply_accumulate(simdgroup_matrix<TD, R, C>&, const simdgroup_matrix<TA, R, KK>&, const simdgroup_matrix<TB, KK, C>&,
                                   const simdgroup_matrix<TC, R, C>&);

namespace precise {
float exp(float);
float sin(float);
float cos(float);
float rsqrt(float);
float sqrt(float);
float divide(float, float);
}  // namespace precise
namespace fast {
float exp(float);
float rsqrt(float);
}  // namespace fast
}  // namespace metal
