#pragma once
// The control plane's durable job store (SPEC §4). One interface, so that the
// embedded SQLite store can be joined by a PostgreSQL one for several control
// planes sharing one queue.
//
// Promises of every implementation:
// - create() and update() return only once the write is durable (committed);
//   concurrent callers may share one transaction, but each gets its own result.
// - Progress ticks (checkpoint_progress) are cheap: kept in memory, written in
//   batches; every read (get, list, load_unfinished) already shows the latest.
// - Every method is thread-safe and never throws.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/model/job.h"

namespace flux::controlplane::store {

struct CreateResult {
  model::JobRecord job;
  bool created = false;  // false: an earlier job with the same (api_key_id, idempotency_key)
};

struct ListQuery {
  std::optional<model::JobStatus> status;  // nullopt = every status
  int limit = 50;                          // 1..200; the caller validates, the store clamps
  std::string cursor;                      // opaque, from ListPage::next_cursor; "" = first page
};

struct ListPage {
  std::vector<model::JobRecord> jobs;
  std::string next_cursor;  // "" = no more pages
};

// Counters for metrics and tests.
struct StoreStats {
  uint64_t transactions = 0;         // write transactions committed
  uint64_t creates = 0;              // jobs inserted
  uint64_t updates = 0;              // whole-record updates applied
  uint64_t checkpoints_written = 0;  // progress checkpoints written to disk
  uint64_t largest_batch = 0;        // most creates + updates in one transaction
  uint64_t pending_checkpoints = 0;  // progress checkpoints held in memory, not yet written
  uint64_t wal_checkpoints = 0;      // SQLite: WAL copies into the database file (0 for other stores)
};

class JobStore {
 public:
  virtual ~JobStore() = default;

  // Stores a new job, durably, before returning. With a non-empty
  // (api_key_id, idempotency_key) already used by an earlier job, stores
  // nothing and returns that job with created=false.
  virtual absl::StatusOr<CreateResult> create(const model::JobRecord& job) = 0;

  // create() without waiting: `done` gets exactly what create() would have
  // returned, once, when the transaction holding the job has committed (or
  // failed). It runs on a thread of the store (SQLite: the writer, right
  // after the commit) or, when the store refuses at once (closing), on the
  // caller's thread before create_async returns. It must be quick, must not
  // throw, and must not call this store's create, update or flush (they would
  // wait for the thread running it). This default runs create() and then
  // `done` on the caller's thread.
  using CreateCallback = std::function<void(absl::StatusOr<CreateResult>)>;
  virtual void create_async(const model::JobRecord& job, CreateCallback done) { done(create(job)); }

  // NOT_FOUND with code "job_not_found" for an unknown id.
  virtual absl::StatusOr<model::JobRecord> get(const std::string& job_id) = 0;

  // Replaces the whole record (status, phase, worker, attempts, timestamps,
  // result, error, webhook...), durably, before returning. The identity
  // fields (job_id, created_ms, idempotency scope) never change.
  // NOT_FOUND "job_not_found" for an unknown id.
  virtual absl::Status update(const model::JobRecord& job) = 0;

  // Records a progress tick in memory; it reaches disk within about a second
  // (or at flush()/close). A tick older (by sequence) than what the store
  // already has is ignored; ticks for a finished job are never written.
  virtual void checkpoint_progress(const std::string& job_id, double progress, const std::string& phase,
                                   const std::string& message, uint64_t sequence) = 0;

  // Newest first (created_ms desc, job_id desc), keyset pagination.
  // INVALID_ARGUMENT "cursor_invalid" for a cursor this store did not make.
  virtual absl::StatusOr<ListPage> list(const ListQuery& query) = 0;

  // Every queued, processing or uploading job, oldest first.
  virtual absl::StatusOr<std::vector<model::JobRecord>> load_unfinished() = 0;

  // Finished jobs with a callback_url whose webhook was never delivered nor
  // given up (state none or pending): a restart delivers them.
  virtual absl::StatusOr<std::vector<model::JobRecord>> load_undelivered_webhooks() = 0;

  virtual absl::StatusOr<int64_t> count(model::JobStatus status) = 0;

  // Writes pending progress checkpoints now, durably.
  virtual absl::Status flush() = 0;

  virtual StoreStats stats() = 0;
};

// The list cursor: a position in (created_ms desc, job_id desc) order, sent to
// clients as opaque base64url text.
struct ListCursor {
  int64_t created_ms = 0;
  std::string job_id;
};
std::string encode_cursor(const ListCursor& cursor);
// INVALID_ARGUMENT "cursor_invalid" unless `text` came from encode_cursor.
absl::StatusOr<ListCursor> decode_cursor(const std::string& text);

}  // namespace flux::controlplane::store
