// Syntax-check stub (test/metal-shim-syntax.test.ts): the libc subset the shim uses.
#pragma once
#include <stddef.h>
void *memcpy(void *, const void *, size_t);
size_t strlen(const char *);
