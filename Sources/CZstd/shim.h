#ifndef CZSTD_SHIM_H
#define CZSTD_SHIM_H
// libzstd's streaming API (ZSTD_compressStream2, ZSTD_decompressStream, ZSTD_d_windowLogMax).
#include <zstd.h>
#endif
