#ifndef TLSTAP_CZSTD_SHIM_H
#define TLSTAP_CZSTD_SHIM_H
#include <zstd.h>
#include <zstd_errors.h>
#endif
