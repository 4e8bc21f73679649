#pragma once
// The embedded JobStore: one SQLite file in WAL mode.
//
// Writes go through a single writer thread that takes every create/update
// waiting at that moment and commits them in ONE transaction (group commit),
// then answers each caller with its own result; durability therefore costs one
// fsync per batch, not per request. Reads use a small pool of separate
// connections, which WAL lets run beside the writer.
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <memory>

#include "absl/status/statusor.h"
#include "controlplane/store/job_store.h"

namespace flux::controlplane::store {

// The schema version this build creates and understands; a database stamped
// with a higher one is refused ("store_schema_too_new").
inline constexpr int kSqliteSchemaVersion = 2;

struct SqliteOptions {
  // true: synchronous=FULL, every commit fsyncs the WAL, so an acknowledged
  // job survives power loss. false: synchronous=NORMAL, which in WAL mode still
  // survives a crash of the process (the WAL is written before the commit
  // returns) but may lose the last commits on power loss or a kernel crash.
  bool synchronous_full = true;
  std::chrono::milliseconds busy_timeout{5000};
  // How long a progress tick may stay only in memory.
  std::chrono::milliseconds checkpoint_interval{1000};
  // Most creates + updates in one transaction, to bound each caller's wait.
  size_t max_batch = 2048;
  // Read connections; reads beyond this many wait for a free one.
  int read_connections = 4;
  // WAL size (in pages) that triggers a background checkpoint.
  int wal_checkpoint_pages = 1000;
};

// Opens (creating when missing, file mode 0600, parent directories too) and
// migrates the database at `path`. Errors: "store_open_failed",
// "store_wal_unavailable", "store_schema_too_new", "store_migration_failed".
absl::StatusOr<std::unique_ptr<JobStore>> open_sqlite_store(const std::filesystem::path& path,
                                                            SqliteOptions options = {});

}  // namespace flux::controlplane::store
