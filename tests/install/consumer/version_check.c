/*
 * version_check.c - the installed headers and library agree: the umbrella
 * header alone declares the whole API, the compile-time version matches the
 * run-time one, and a status round-trips through the library. Prints the
 * version; exit status 0 when everything agrees, 1 otherwise.
 */
#include <dynrag/dynrag.h>

#include <stdio.h>
#include <string.h>

#if !defined(DYNRAG_VERSION_NUMBER) || DYNRAG_VERSION_NUMBER < 1000
#error "DYNRAG_VERSION_NUMBER missing or below 0.1.0"
#endif

int main(void)
{
    int bad = 0;
    if (dynrag_version_number() != DYNRAG_VERSION_NUMBER) {
        fprintf(stderr, "version number: library %d, header %d\n", dynrag_version_number(),
                DYNRAG_VERSION_NUMBER);
        bad = 1;
    }
    if (strcmp(dynrag_version(), DYNRAG_VERSION_STRING) != 0) {
        fprintf(stderr, "version: library %s, header %s\n", dynrag_version(),
                DYNRAG_VERSION_STRING);
        bad = 1;
    }
    if (strcmp(dynrag_status_name(DYNRAG_ERR_NOMEM), "ERR_NOMEM") != 0) {
        fprintf(stderr, "status name of DYNRAG_ERR_NOMEM: %s\n",
                dynrag_status_name(DYNRAG_ERR_NOMEM));
        bad = 1;
    }
    printf("dynrag %s (%d)\n", dynrag_version(), dynrag_version_number());
    return bad;
}
