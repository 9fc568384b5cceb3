// Syntax-check stub of the Foundation subset objc-shim/bunsai_metal.m uses, for
// test/metal-shim-syntax.test.ts. Declarations only, written from Apple's documented signatures:
// THIS IS NOT FOUNDATION. It lets clang parse and type-check the shim (ARC rules included) on Linux;
// whether the real SDK agrees is decided only by `bun run build:shim` on a Mac.
#pragma once
#include <stddef.h>
#include <stdint.h>
typedef signed char BOOL;
#define YES ((BOOL)1)
#define NO ((BOOL)0)
typedef unsigned long NSUInteger;
typedef long NSInteger;
typedef double CFTimeInterval;
typedef const void *CFTypeRef;
#define nil ((id)0)

@protocol NSObject
- (BOOL)respondsToSelector:(SEL)aSelector;
- (BOOL)isKindOfClass:(Class)aClass;
@end

__attribute__((objc_root_class))
@interface NSObject <NSObject>
+ (instancetype)new;
+ (instancetype)alloc;
+ (Class)class;
- (instancetype)init;
- (void)dealloc;
@end

@interface NSString : NSObject
+ (instancetype)stringWithUTF8String:(const char *)s;
+ (instancetype)stringWithFormat:(NSString *)format, ...;
- (instancetype)initWithBytes:(const void *)bytes length:(NSUInteger)len encoding:(NSUInteger)encoding;
- (const char *)UTF8String;
@end
@interface NSConstantString : NSString
@end
enum { NSUTF8StringEncoding = 4 };

@interface NSError : NSObject
- (NSString *)localizedDescription;
@end

@interface NSArray<ObjectType> : NSObject
- (NSUInteger)count;
- (ObjectType)objectAtIndexedSubscript:(NSUInteger)idx;
@end

static inline id CFBridgingRelease(CFTypeRef __attribute__((cf_consumed)) x) { return (__bridge_transfer id)x; }
