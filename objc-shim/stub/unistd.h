// Syntax-check stub (test/metal-shim-syntax.test.ts): the libc subset the shim uses.
#pragma once
int getpagesize(void);
