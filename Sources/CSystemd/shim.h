// sd_journal_send is variadic, which Swift cannot call; sd_journal_sendv takes iovecs and can.
#ifndef TLSTAP_CSYSTEMD_SHIM_H
#define TLSTAP_CSYSTEMD_SHIM_H
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#include <sys/uio.h>
#endif
