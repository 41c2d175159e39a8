#ifndef DYNRAG_VERSION_H
#define DYNRAG_VERSION_H

#define DYNRAG_VERSION_MAJOR 0
#define DYNRAG_VERSION_MINOR 1
#define DYNRAG_VERSION_PATCH 0
#define DYNRAG_VERSION_STRING "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version string, e.g. "0.1.0". Static. */
const char *dynrag_version(void);

#ifdef __cplusplus
}
#endif
#endif
