#ifndef REKEY_CSQLITE_SHIM_H
#define REKEY_CSQLITE_SHIM_H
#include <sqlite3.h>

/// SQLITE_TRANSIENT does not import: bind functions take this instead.
static inline sqlite3_destructor_type rekey_sqlite_transient(void) { return SQLITE_TRANSIENT; }
#endif
