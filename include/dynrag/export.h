/*
 * dynrag/export.h - the DYNRAG_API visibility macro.
 *
 * The library is compiled with -fvisibility=hidden: a function is part of
 * libdynrag.so's ABI only when its declaration in include/dynrag/ carries
 * DYNRAG_API. Everything else (the internal dr_* helpers, FAISS, the C++
 * runtime) stays inside the library. A test (abi_exports) checks that the
 * shared library exports exactly the functions marked here.
 */
#ifndef DYNRAG_EXPORT_H
#define DYNRAG_EXPORT_H

#ifndef DYNRAG_API
#if defined(__GNUC__) || defined(__clang__)
#define DYNRAG_API __attribute__((visibility("default")))
#else
#define DYNRAG_API
#endif
#endif

#endif
