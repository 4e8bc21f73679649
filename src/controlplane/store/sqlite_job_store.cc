#include "controlplane/store/sqlite_job_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "controlplane/store/record_codec.h"
#include "controlplane/store/sqlite_handle.h"
#include "shared/core/error.h"
#include "shared/core/named_thread.h"
#include "shared/core/time.h"
#include "shared/log/log.h"

namespace flux::controlplane::store {
namespace {

using sqlite::Database;
using sqlite::Statement;
using sqlite::StatementUse;
using Clock = std::chrono::steady_clock;

struct Migration {
  int version;
  const char* name;
  const char* sql;
};

// Append only: a released migration is never edited, a change is a new one.
constexpr Migration kMigrations[] = {
    {1, "create jobs",
     R"sql(
CREATE TABLE jobs (
  job_id          TEXT    NOT NULL PRIMARY KEY,
  status          TEXT    NOT NULL
                  CHECK (status IN ('queued','processing','uploading','completed','failed','cancelled')),
  priority        INTEGER NOT NULL DEFAULT 0,
  created_ms      INTEGER NOT NULL,
  api_key_id      TEXT    NOT NULL DEFAULT '',
  idempotency_key TEXT    NOT NULL DEFAULT '',
  sequence        INTEGER NOT NULL DEFAULT 0,
  doc             TEXT    NOT NULL
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (api_key_id, idempotency_key) WHERE idempotency_key <> '';
CREATE INDEX jobs_created ON jobs (created_ms DESC, job_id DESC);
CREATE INDEX jobs_status_created ON jobs (status, created_ms DESC, job_id DESC);
)sql"},
    {2, "index finished jobs whose webhook is not delivered",
     R"sql(
CREATE INDEX jobs_webhook_undelivered ON jobs (created_ms)
  WHERE status IN ('completed', 'failed', 'cancelled')
    AND json_extract(doc, '$.callback_url') <> ''
    AND json_extract(doc, '$.webhook.state') IN ('none', 'pending');
)sql"},
};
static_assert(static_cast<int>(std::size(kMigrations)) == kSqliteSchemaVersion,
              "kSqliteSchemaVersion names the last migration");

constexpr const char* kColumns = "job_id, status, priority, created_ms, api_key_id, idempotency_key, sequence, doc";

JobRow read_row(const Statement& statement) {
  JobRow row;
  row.job_id = statement.column_text(0);
  row.status = statement.column_text(1);
  row.priority = statement.column_int64(2);
  row.created_ms = statement.column_int64(3);
  row.api_key_id = statement.column_text(4);
  row.idempotency_key = statement.column_text(5);
  row.sequence = statement.column_int64(6);
  row.doc = statement.column_text(7);
  return row;
}

// Errors after which SQLite may have rolled back the whole transaction, or
// the database itself is in trouble: the batch cannot go on.
bool aborts_batch(int result_code) {
  switch (result_code & 0xff) {
    case SQLITE_CONSTRAINT:
    case SQLITE_TOOBIG:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
      return false;
    default:
      return true;
  }
}

struct Checkpoint {
  double progress = 0;
  std::string phase;
  std::string message;
  uint64_t sequence = 0;
};

struct PendingWrite {
  enum class Kind { kCreate, kUpdate, kFlush };
  Kind kind = Kind::kFlush;
  model::JobRecord job;
  JobRow row;
  // Called once by the writer with this write's result, after the commit.
  JobStore::CreateCallback done;
};

struct Outcome {
  absl::StatusOr<CreateResult> result;
  bool abort_batch = false;
};

// A read connection with its prepared statements; used by one thread at a time.
struct ReadConnection {
  Database db;
  Statement get;
  Statement list_first;
  Statement list_after;
  Statement list_status_first;
  Statement list_status_after;
  Statement count;
  Statement unfinished;
  Statement undelivered;
};

absl::Status apply_pragmas(Database& db, const SqliteOptions& options) {
  sqlite3_busy_timeout(db.get(), static_cast<int>(options.busy_timeout.count()));
  return db.exec("PRAGMA foreign_keys = OFF");
}

absl::Status enable_wal(Database& db, const SqliteOptions& options) {
  auto statement = db.prepare("PRAGMA journal_mode = WAL");
  if (!statement.ok()) return statement.status();
  const int rc = statement->step();
  if (rc != SQLITE_ROW) return db.last_error(rc, "PRAGMA journal_mode");
  const std::string mode = statement->column_text(0);
  if (mode != "wal") {
    return unavailable("store_wal_unavailable", "the database refused WAL mode (journal_mode is " + mode + ")");
  }
  statement->reset();
  return db.exec(options.synchronous_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
}

absl::Status migrate(Database& db) {
  if (auto s = db.exec("BEGIN IMMEDIATE"); !s.ok()) return annotate(s, "starting the schema migration");
  auto fail = [&db](const absl::Status& status) {
    (void)db.exec("ROLLBACK");
    return status;
  };
  auto s = db.exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations ("
      "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)");
  if (!s.ok()) return fail(with_code(s, "store_migration_failed"));
  auto current_statement = db.prepare("SELECT coalesce(max(version), 0) FROM schema_migrations");
  if (!current_statement.ok()) return fail(with_code(current_statement.status(), "store_migration_failed"));
  if (int rc = current_statement->step(); rc != SQLITE_ROW) {
    return fail(with_code(db.last_error(rc, "reading the schema version"), "store_migration_failed"));
  }
  const int64_t current = current_statement->column_int64(0);
  current_statement->reset();
  if (current > kSqliteSchemaVersion) {
    return fail(failed_precondition("store_schema_too_new",
                                    "the database has schema version " + std::to_string(current) +
                                        ", newer than this build understands (" + std::to_string(kSqliteSchemaVersion) +
                                        "); run a newer flux-controlplane"));
  }
  auto record = db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)");
  if (!record.ok()) return fail(with_code(record.status(), "store_migration_failed"));
  for (const Migration& migration : kMigrations) {
    if (migration.version <= current) continue;
    if (auto m = db.exec(migration.sql); !m.ok()) {
      return fail(with_code(annotate(m, "migration " + std::to_string(migration.version)), "store_migration_failed"));
    }
    StatementUse use(*record);
    use->bind(1, migration.version);
    use->bind(2, std::string_view(migration.name));
    use->bind(3, std::string_view(now_rfc3339()));
    if (int rc = use->step(); rc != SQLITE_DONE) {
      return fail(with_code(db.last_error(rc, "recording the migration"), "store_migration_failed"));
    }
    log::info("store schema migrated", {{"version", migration.version}, {"migration", migration.name}});
  }
  if (auto c = db.exec("COMMIT"); !c.ok()) return fail(with_code(c, "store_migration_failed"));
  return absl::OkStatus();
}

// SQLite creates files with mode 0644 (less the umask); the queue holds
// callback URLs and input URLs that may carry tokens, so the file is created
// owner-only first. SQLite gives the -wal and -shm files the same mode.
absl::Status create_private_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (path.has_parent_path()) {
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) {
      return unavailable("store_open_failed", "creating " + path.parent_path().string() + ": " + ec.message());
    }
  }
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return unavailable("store_open_failed", "creating " + path.string() + ": " + std::strerror(errno));
  ::close(fd);
  return absl::OkStatus();
}

class SqliteJobStore final : public JobStore {
 public:
  SqliteJobStore(SqliteOptions options, Database writer)
      : options_(std::move(options)), writer_db_(std::move(writer)) {}

  ~SqliteJobStore() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    writer_wake_.notify_all();
    if (writer_thread_.joinable()) writer_thread_.join();
    {
      std::lock_guard lock(checkpointer_mu_);
      checkpointer_stopping_ = true;
    }
    checkpointer_wake_.notify_all();
    if (checkpointer_thread_.joinable()) checkpointer_thread_.join();
    // The last connection to close copies the WAL into the database and removes it.
  }

  absl::Status init(const std::filesystem::path& path) {
    auto prepare = [this](Database& db, Statement& into, const std::string& sql) {
      auto statement = db.prepare(sql);
      if (!statement.ok()) return statement.status();
      into = std::move(*statement);
      return absl::OkStatus();
    };
    const std::string columns = kColumns;
    const std::pair<Statement*, std::string> writer_statements[] = {
        {&begin_, "BEGIN IMMEDIATE"},
        {&commit_, "COMMIT"},
        {&rollback_, "ROLLBACK"},
        {&insert_, "INSERT INTO jobs (" + columns + ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"},
        {&update_, "UPDATE jobs SET status = ?2, priority = ?3, sequence = ?4, doc = ?5 WHERE job_id = ?1"},
        {&find_by_key_,
         "SELECT " + columns + " FROM jobs WHERE api_key_id = ?1 AND idempotency_key = ?2 AND idempotency_key <> ''"},
        // A tick never rewinds a newer state nor touches a finished job.
        {&write_checkpoint_,
         "UPDATE jobs SET sequence = ?2, doc = json_set(doc, '$.progress', ?3, '$.phase', ?4, '$.message', ?5) "
         "WHERE job_id = ?1 AND sequence < ?2 AND status IN ('queued', 'processing', 'uploading')"},
    };
    for (const auto& [statement, sql] : writer_statements) {
      if (auto s = prepare(writer_db_, *statement, sql); !s.ok()) return s;
    }

    const int reader_count = std::max(1, options_.read_connections);
    const std::string order = " ORDER BY created_ms DESC, job_id DESC LIMIT ?3";
    for (int i = 0; i < reader_count; ++i) {
      auto db = Database::open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX);
      if (!db.ok()) return db.status();
      auto reader = std::make_unique<ReadConnection>();
      reader->db = std::move(*db);
      if (auto s = apply_pragmas(reader->db, options_); !s.ok()) return s;
      // Readers must never write, whatever a future bug asks of them.
      if (auto s = reader->db.exec("PRAGMA query_only = ON"); !s.ok()) return s;
      const std::pair<Statement*, std::string> reader_statements[] = {
          {&reader->get, "SELECT " + columns + " FROM jobs WHERE job_id = ?1"},
          {&reader->list_first, "SELECT " + columns + " FROM jobs" + order},
          {&reader->list_after, "SELECT " + columns + " FROM jobs WHERE (created_ms, job_id) < (?1, ?2)" + order},
          {&reader->list_status_first, "SELECT " + columns + " FROM jobs WHERE status = ?4" + order},
          {&reader->list_status_after,
           "SELECT " + columns + " FROM jobs WHERE status = ?4 AND (created_ms, job_id) < (?1, ?2)" + order},
          {&reader->count, "SELECT count(*) FROM jobs WHERE status = ?1"},
          {&reader->undelivered, "SELECT " + columns +
                                     " FROM jobs WHERE status IN ('completed', 'failed', 'cancelled') "
                                     "AND json_extract(doc, '$.callback_url') <> '' "
                                     "AND json_extract(doc, '$.webhook.state') IN ('none', 'pending') "
                                     "ORDER BY created_ms ASC"},
          {&reader->unfinished, "SELECT " + columns +
                                    " FROM jobs WHERE status IN ('queued', 'processing', 'uploading') "
                                    "ORDER BY created_ms ASC, job_id ASC"},
      };
      for (const auto& [statement, sql] : reader_statements) {
        if (auto s = prepare(reader->db, *statement, sql); !s.ok()) return s;
      }
      free_readers_.push_back(reader.get());
      readers_.push_back(std::move(reader));
    }
    // Copying the WAL back into the database costs fsyncs of its own; done by
    // the writer on commit (SQLite's default) it would stall every caller
    // waiting on that batch, so another connection does it in the background.
    auto checkpointer = Database::open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX);
    if (!checkpointer.ok()) return checkpointer.status();
    checkpointer_db_ = std::move(*checkpointer);
    if (auto s = apply_pragmas(checkpointer_db_, options_); !s.ok()) return s;
    if (auto s = writer_db_.exec("PRAGMA wal_autocheckpoint = 0"); !s.ok()) return s;
    // A WAL that once grew past its usual bound is cut back after the next restart.
    const int64_t wal_limit_bytes = int64_t{8} * std::max(1, options_.wal_checkpoint_pages) * 4096;
    if (auto s = writer_db_.exec("PRAGMA journal_size_limit = " + std::to_string(wal_limit_bytes)); !s.ok()) return s;
    sqlite3_wal_hook(writer_db_.get(), &SqliteJobStore::on_wal_commit, this);

    writer_thread_ = start_named_thread("store-writer", [this] { writer_loop(); });
    checkpointer_thread_ = start_named_thread("store-wal-ckpt", [this] { checkpointer_loop(); });
    return absl::OkStatus();
  }

  absl::StatusOr<CreateResult> create(const model::JobRecord& job) override {
    if (job.job_id.empty()) return invalid_argument("job_id_missing", "a job needs a job_id");
    return submit_and_wait(create_write(job));
  }

  void create_async(const model::JobRecord& job, CreateCallback done) override {
    if (job.job_id.empty()) return done(invalid_argument("job_id_missing", "a job needs a job_id"));
    auto write = create_write(job);
    write->done = std::move(done);
    submit(std::move(write));
  }

  absl::Status update(const model::JobRecord& job) override {
    if (job.job_id.empty()) return invalid_argument("job_id_missing", "a job needs a job_id");
    auto write = std::make_unique<PendingWrite>();
    write->kind = PendingWrite::Kind::kUpdate;
    write->row = to_row(job);
    write->job = job;
    return submit_and_wait(std::move(write)).status();
  }

  absl::Status flush() override { return submit_and_wait(std::make_unique<PendingWrite>()).status(); }

  void checkpoint_progress(const std::string& job_id, double progress, const std::string& phase,
                           const std::string& message, uint64_t sequence) override {
    bool wake = false;
    {
      std::lock_guard lock(mu_);
      auto [it, inserted] = checkpoints_.try_emplace(job_id);
      if (!inserted && it->second.sequence >= sequence) return;
      it->second = Checkpoint{progress, phase, message, sequence};
      if (!checkpoint_due_) {
        checkpoint_due_ = Clock::now() + options_.checkpoint_interval;
        wake = true;  // the writer may be sleeping without a deadline
      }
    }
    if (wake) writer_wake_.notify_one();
  }

  absl::StatusOr<model::JobRecord> get(const std::string& job_id) override {
    ReaderLease reader(*this);
    StatementUse use(reader->get);
    use->bind(1, std::string_view(job_id));
    const int rc = use->step();
    if (rc == SQLITE_DONE) return not_found("job_not_found", "no job " + job_id);
    if (rc != SQLITE_ROW) return reader->db.last_error(rc, "reading job " + job_id);
    auto job = from_row(read_row(reader->get));
    if (!job.ok()) return job.status();
    std::lock_guard lock(mu_);
    overlay_progress(*job);
    return job;
  }

  absl::StatusOr<ListPage> list(const ListQuery& query) override {
    const int limit = std::clamp(query.limit, 1, 200);
    std::optional<ListCursor> after;
    if (!query.cursor.empty()) {
      auto cursor = decode_cursor(query.cursor);
      if (!cursor.ok()) return cursor.status();
      after = std::move(*cursor);
    }
    ReaderLease reader(*this);
    Statement& statement = query.status ? (after ? reader->list_status_after : reader->list_status_first)
                                        : (after ? reader->list_after : reader->list_first);
    StatementUse use(statement);
    if (after) {
      use->bind(1, after->created_ms);
      use->bind(2, std::string_view(after->job_id));
    }
    use->bind(3, limit + 1);  // one more tells whether another page follows
    if (query.status) use->bind(4, model::to_string(*query.status));
    auto rows = read_rows(*reader, statement, "listing jobs");
    if (!rows.ok()) return rows.status();
    ListPage page;
    if (static_cast<int>(rows->size()) > limit) {
      rows->resize(static_cast<size_t>(limit));
      page.next_cursor = encode_cursor({rows->back().created_ms, rows->back().job_id});
    }
    page.jobs = std::move(*rows);
    return page;
  }

  absl::StatusOr<std::vector<model::JobRecord>> load_unfinished() override {
    ReaderLease reader(*this);
    StatementUse use(reader->unfinished);
    return read_rows(*reader, reader->unfinished, "loading unfinished jobs");
  }

  absl::StatusOr<std::vector<model::JobRecord>> load_undelivered_webhooks() override {
    ReaderLease reader(*this);
    StatementUse use(reader->undelivered);
    return read_rows(*reader, reader->undelivered, "loading undelivered webhooks");
  }

  absl::StatusOr<int64_t> count(model::JobStatus status) override {
    ReaderLease reader(*this);
    StatementUse use(reader->count);
    use->bind(1, model::to_string(status));
    const int rc = use->step();
    if (rc != SQLITE_ROW) return reader->db.last_error(rc, "counting jobs");
    return use->column_int64(0);
  }

  StoreStats stats() override {
    StoreStats out;
    out.transactions = transactions_.load();
    out.creates = creates_.load();
    out.updates = updates_.load();
    out.checkpoints_written = checkpoints_written_.load();
    out.largest_batch = largest_batch_.load();
    out.wal_checkpoints = wal_checkpoints_.load();
    std::lock_guard lock(mu_);
    out.pending_checkpoints = checkpoints_.size();
    return out;
  }

 private:
  // Exclusive use of one read connection for the lifetime of the lease.
  class ReaderLease {
   public:
    explicit ReaderLease(SqliteJobStore& store) : store_(store) {
      std::unique_lock lock(store_.readers_mu_);
      store_.reader_free_.wait(lock, [this] { return !store_.free_readers_.empty(); });
      reader_ = store_.free_readers_.back();
      store_.free_readers_.pop_back();
    }
    ~ReaderLease() {
      {
        std::lock_guard lock(store_.readers_mu_);
        store_.free_readers_.push_back(reader_);
      }
      store_.reader_free_.notify_one();
    }
    ReaderLease(const ReaderLease&) = delete;
    ReaderLease& operator=(const ReaderLease&) = delete;
    ReadConnection* operator->() const { return reader_; }
    ReadConnection& operator*() const { return *reader_; }

   private:
    SqliteJobStore& store_;
    ReadConnection* reader_ = nullptr;
  };

  absl::StatusOr<std::vector<model::JobRecord>> read_rows(ReadConnection& reader, Statement& statement,
                                                          std::string_view context) {
    std::vector<model::JobRecord> jobs;
    for (;;) {
      const int rc = statement.step();
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return reader.db.last_error(rc, context);
      auto job = from_row(read_row(statement));
      if (!job.ok()) return job.status();
      jobs.push_back(std::move(*job));
    }
    std::lock_guard lock(mu_);
    for (auto& job : jobs) overlay_progress(job);
    return jobs;
  }

  // Shows a progress tick newer than the stored record. Requires mu_.
  void overlay_progress(model::JobRecord& job) const {
    auto it = checkpoints_.find(job.job_id);
    if (it == checkpoints_.end() || model::is_terminal(job.status) || it->second.sequence <= job.sequence) return;
    job.progress = it->second.progress;
    job.phase = it->second.phase;
    job.message = it->second.message;
    job.sequence = it->second.sequence;
  }

  static std::unique_ptr<PendingWrite> create_write(const model::JobRecord& job) {
    auto write = std::make_unique<PendingWrite>();
    write->kind = PendingWrite::Kind::kCreate;
    write->row = to_row(job);  // serialized here, on the caller's thread, not the writer's
    write->job = job;
    return write;
  }

  // Queues the write for the writer; a closing store answers at once.
  void submit(std::unique_ptr<PendingWrite> write) {
    {
      std::lock_guard lock(mu_);
      if (!stopping_) {
        queue_.push_back(std::move(write));
      }
    }
    if (write) {
      finish(*write, unavailable("store_closed", "the job store is closing"));
      return;
    }
    writer_wake_.notify_one();
  }

  absl::StatusOr<CreateResult> submit_and_wait(std::unique_ptr<PendingWrite> write) {
    // Shared with the callback: the writer may still be inside set_value()
    // when this thread, woken, returns and unwinds.
    auto promise = std::make_shared<std::promise<absl::StatusOr<CreateResult>>>();
    auto result = promise->get_future();
    write->done = [promise](absl::StatusOr<CreateResult> outcome) { promise->set_value(std::move(outcome)); };
    submit(std::move(write));
    return result.get();
  }

  // Hands a write its result. A throwing callback must not end the writer thread.
  static void finish(PendingWrite& write, absl::StatusOr<CreateResult> result) {
    if (!write.done) return;
    try {
      write.done(std::move(result));
    } catch (const std::exception& e) {
      log::error("job store completion callback threw", {{"error", e.what()}});
    } catch (...) {
      log::error("job store completion callback threw");
    }
  }

  void writer_loop() {
    std::vector<std::unique_ptr<PendingWrite>> batch;
    bool final_checkpoints_taken = false;  // at close, ticks get one last try, not an endless one
    for (;;) {
      std::map<std::string, Checkpoint> checkpoints;
      {
        std::unique_lock lock(mu_);
        for (;;) {
          if (!queue_.empty() || stopping_) break;
          if (checkpoint_due_) {
            if (Clock::now() >= *checkpoint_due_) break;
            writer_wake_.wait_until(lock, *checkpoint_due_);
          } else {
            writer_wake_.wait(lock);
          }
        }
        const size_t take = std::min(queue_.size(), std::max<size_t>(1, options_.max_batch));
        for (size_t i = 0; i < take; ++i) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        const bool flush_requested = std::any_of(batch.begin(), batch.end(),
                                                 [](const auto& w) { return w->kind == PendingWrite::Kind::kFlush; });
        const bool closing = stopping_ && queue_.empty() && !final_checkpoints_taken;
        if (!checkpoints_.empty() &&
            (flush_requested || closing || (checkpoint_due_ && Clock::now() >= *checkpoint_due_))) {
          // Copied, not moved: until the commit, reads still show them from memory.
          checkpoints = checkpoints_;
          checkpoint_due_.reset();
          final_checkpoints_taken = final_checkpoints_taken || closing;
        }
        if (batch.empty() && checkpoints.empty()) {
          if (stopping_) return;
          continue;
        }
      }
      commit_batch(batch, checkpoints);
      batch.clear();
    }
  }

  void commit_batch(std::vector<std::unique_ptr<PendingWrite>>& batch,
                    const std::map<std::string, Checkpoint>& checkpoints) {
    std::vector<absl::StatusOr<CreateResult>> results(batch.size(), CreateResult{});
    absl::Status batch_error;
    uint64_t writes = 0;
    bool committed = false;
    try {
      batch_error = run_transaction(batch, checkpoints, results, writes, committed);
    } catch (const std::exception& e) {
      (void)rollback();
      batch_error = internal_error("store_error", std::string("writing jobs: ") + e.what());
    }
    if (batch_error.ok()) {
      if (committed) transactions_.fetch_add(1);
      uint64_t largest = largest_batch_.load();
      while (writes > largest && !largest_batch_.compare_exchange_weak(largest, writes)) {
      }
      forget_written_checkpoints(batch, results, checkpoints);
    } else {
      log::error(
          "job store write failed",
          {{"error", std::string(batch_error.message())}, {"code", error_code(batch_error)}, {"batch", batch.size()}});
      std::lock_guard lock(mu_);
      // The ticks were not written: try again at the next deadline.
      if (!checkpoints_.empty() && !checkpoint_due_) checkpoint_due_ = Clock::now() + options_.checkpoint_interval;
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      finish(*batch[i], batch_error.ok() ? std::move(results[i]) : absl::StatusOr<CreateResult>(batch_error));
    }
  }

  // Runs one transaction. A per-write problem (a duplicate id, an unknown job)
  // lands in that write's result; an error that breaks the transaction is
  // returned and fails the whole batch.
  absl::Status run_transaction(std::vector<std::unique_ptr<PendingWrite>>& batch,
                               const std::map<std::string, Checkpoint>& checkpoints,
                               std::vector<absl::StatusOr<CreateResult>>& results, uint64_t& writes, bool& committed) {
    const bool has_writes =
        std::any_of(batch.begin(), batch.end(), [](const auto& w) { return w->kind != PendingWrite::Kind::kFlush; });
    if (!has_writes && checkpoints.empty()) return absl::OkStatus();
    if (int rc = step_once(begin_); rc != SQLITE_DONE) return writer_db_.last_error(rc, "BEGIN");
    uint64_t created = 0;
    uint64_t updated = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      PendingWrite& write = *batch[i];
      if (write.kind == PendingWrite::Kind::kFlush) continue;
      Outcome outcome = write.kind == PendingWrite::Kind::kCreate ? insert_job(write) : update_job(write);
      if (outcome.abort_batch) {
        (void)rollback();
        return outcome.result.status();
      }
      if (outcome.result.ok()) {
        ++writes;
        if (write.kind == PendingWrite::Kind::kCreate && outcome.result->created) ++created;
        if (write.kind == PendingWrite::Kind::kUpdate) ++updated;
      }
      results[i] = std::move(outcome.result);
    }
    uint64_t ticks = 0;
    for (const auto& [job_id, checkpoint] : checkpoints) {
      StatementUse use(write_checkpoint_);
      use->bind(1, std::string_view(job_id));
      use->bind(2, static_cast<int64_t>(checkpoint.sequence));
      use->bind(3, checkpoint.progress);
      use->bind(4, std::string_view(checkpoint.phase));
      use->bind(5, std::string_view(checkpoint.message));
      const int rc = use->step();
      if (rc != SQLITE_DONE) {
        if (!aborts_batch(rc)) continue;
        auto status = writer_db_.last_error(rc, "writing progress of " + job_id);
        (void)rollback();
        return status;
      }
      ticks += static_cast<uint64_t>(sqlite3_changes(writer_db_.get()));
    }
    if (int rc = step_once(commit_); rc != SQLITE_DONE) {
      auto status = writer_db_.last_error(rc, "COMMIT");
      (void)rollback();
      return status;
    }
    committed = true;
    creates_.fetch_add(created);
    updates_.fetch_add(updated);
    checkpoints_written_.fetch_add(ticks);
    return absl::OkStatus();
  }

  Outcome insert_job(PendingWrite& write) {
    const JobRow& row = write.row;
    if (!row.idempotency_key.empty()) {
      // Inside the transaction, so an earlier write of this same batch counts too.
      StatementUse use(find_by_key_);
      use->bind(1, std::string_view(row.api_key_id));
      use->bind(2, std::string_view(row.idempotency_key));
      const int rc = use->step();
      if (rc == SQLITE_ROW) {
        auto existing = from_row(read_row(find_by_key_));
        if (!existing.ok()) return {existing.status(), false};
        {
          std::lock_guard lock(mu_);
          overlay_progress(*existing);
        }
        return {CreateResult{std::move(*existing), false}, false};
      }
      if (rc != SQLITE_DONE) return {writer_db_.last_error(rc, "looking up the idempotency key"), aborts_batch(rc)};
    }
    StatementUse use(insert_);
    use->bind(1, std::string_view(row.job_id));
    use->bind(2, std::string_view(row.status));
    use->bind(3, row.priority);
    use->bind(4, row.created_ms);
    use->bind(5, std::string_view(row.api_key_id));
    use->bind(6, std::string_view(row.idempotency_key));
    use->bind(7, row.sequence);
    use->bind(8, std::string_view(row.doc));
    const int rc = use->step();
    if (rc == SQLITE_DONE) return {CreateResult{std::move(write.job), true}, false};
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
      return {make_error(absl::StatusCode::kAlreadyExists, "job_exists", "a job " + row.job_id + " already exists"),
              false};
    }
    return {writer_db_.last_error(rc, "inserting job " + row.job_id), aborts_batch(rc)};
  }

  Outcome update_job(PendingWrite& write) {
    const JobRow& row = write.row;
    StatementUse use(update_);
    use->bind(1, std::string_view(row.job_id));
    use->bind(2, std::string_view(row.status));
    use->bind(3, row.priority);
    use->bind(4, row.sequence);
    use->bind(5, std::string_view(row.doc));
    const int rc = use->step();
    if (rc != SQLITE_DONE) return {writer_db_.last_error(rc, "updating job " + row.job_id), aborts_batch(rc)};
    if (sqlite3_changes(writer_db_.get()) == 0) return {not_found("job_not_found", "no job " + row.job_id), false};
    return {CreateResult{}, false};
  }

  // Drops ticks that are now on disk or superseded by a committed update;
  // a newer tick that arrived meanwhile stays.
  void forget_written_checkpoints(const std::vector<std::unique_ptr<PendingWrite>>& batch,
                                  const std::vector<absl::StatusOr<CreateResult>>& results,
                                  const std::map<std::string, Checkpoint>& written) {
    std::lock_guard lock(mu_);
    if (checkpoints_.empty()) return;
    for (const auto& [job_id, checkpoint] : written) {
      auto it = checkpoints_.find(job_id);
      if (it != checkpoints_.end() && it->second.sequence <= checkpoint.sequence) checkpoints_.erase(it);
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      if (batch[i]->kind != PendingWrite::Kind::kUpdate || !results[i].ok()) continue;
      const model::JobRecord& job = batch[i]->job;
      auto it = checkpoints_.find(job.job_id);
      if (it != checkpoints_.end() && (it->second.sequence <= job.sequence || model::is_terminal(job.status))) {
        checkpoints_.erase(it);
      }
    }
    if (checkpoints_.empty()) {
      checkpoint_due_.reset();
    } else if (!checkpoint_due_) {
      checkpoint_due_ = Clock::now() + options_.checkpoint_interval;
    }
  }

  // Called by SQLite on the writer thread after each commit.
  static int on_wal_commit(void* self, sqlite3* db, const char*, int wal_pages) {
    auto* store = static_cast<SqliteJobStore*>(self);
    const int threshold = std::max(1, store->options_.wal_checkpoint_pages);
    if (wal_pages >= threshold) {
      {
        std::lock_guard lock(store->checkpointer_mu_);
        store->checkpoint_requested_ = true;
      }
      store->checkpointer_wake_.notify_one();
    }
    // The WAL starts over from its beginning only after a checkpoint that
    // copied every frame, which a background checkpoint racing the writer
    // never quite does. So now and then the writer finishes the job itself,
    // between two transactions; the background work leaves it little to copy.
    if (wal_pages >= 4 * threshold) {
      sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      store->wal_checkpoints_.fetch_add(1);
    }
    return SQLITE_OK;
  }

  void checkpointer_loop() {
    for (;;) {
      {
        std::unique_lock lock(checkpointer_mu_);
        checkpointer_wake_.wait(lock, [this] { return checkpoint_requested_ || checkpointer_stopping_; });
        if (checkpointer_stopping_) return;
        checkpoint_requested_ = false;
      }
      // PASSIVE: never blocks the writer or readers; what it cannot copy now
      // is copied at the next request.
      int wal_frames = 0;
      int copied_frames = 0;
      const int rc = sqlite3_wal_checkpoint_v2(checkpointer_db_.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal_frames,
                                               &copied_frames);
      if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY) {
        log::warn("store WAL checkpoint failed", {{"error", sqlite3_errmsg(checkpointer_db_.get())}});
      }
      wal_checkpoints_.fetch_add(1);
    }
  }

  static int step_once(Statement& statement) {
    StatementUse use(statement);
    return use->step();
  }

  absl::Status rollback() {
    // SQLite may already have rolled back on its own after an I/O error.
    if (sqlite3_get_autocommit(writer_db_.get()) != 0) return absl::OkStatus();
    if (int rc = step_once(rollback_); rc != SQLITE_DONE) return writer_db_.last_error(rc, "ROLLBACK");
    return absl::OkStatus();
  }

  const SqliteOptions options_;

  // Used only by the writer thread (and by init before it starts).
  Database writer_db_;
  Statement begin_, commit_, rollback_, insert_, update_, find_by_key_, write_checkpoint_;

  std::mutex readers_mu_;
  std::condition_variable reader_free_;
  std::vector<std::unique_ptr<ReadConnection>> readers_;
  std::vector<ReadConnection*> free_readers_;

  // Guards the write queue and the in-memory progress ticks.
  mutable std::mutex mu_;
  std::condition_variable writer_wake_;
  std::deque<std::unique_ptr<PendingWrite>> queue_;
  std::map<std::string, Checkpoint> checkpoints_;
  std::optional<Clock::time_point> checkpoint_due_;  // set while ticks wait for disk
  bool stopping_ = false;

  std::atomic<uint64_t> transactions_{0};
  std::atomic<uint64_t> creates_{0};
  std::atomic<uint64_t> updates_{0};
  std::atomic<uint64_t> checkpoints_written_{0};
  std::atomic<uint64_t> largest_batch_{0};

  std::thread writer_thread_;

  // Background WAL checkpoints, on their own connection.
  Database checkpointer_db_;
  std::mutex checkpointer_mu_;
  std::condition_variable checkpointer_wake_;
  bool checkpoint_requested_ = false;
  bool checkpointer_stopping_ = false;
  std::atomic<uint64_t> wal_checkpoints_{0};
  std::thread checkpointer_thread_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<JobStore>> open_sqlite_store(const std::filesystem::path& path, SqliteOptions options) {
  if (sqlite3_threadsafe() == 0) {
    return internal_error("store_open_failed", "this SQLite library was built without thread support");
  }
  if (auto s = create_private_file(path); !s.ok()) return s;
  auto writer = Database::open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX);
  if (!writer.ok()) return writer.status();
  if (auto s = apply_pragmas(*writer, options); !s.ok()) return annotate(s, "opening " + path.string());
  if (auto s = enable_wal(*writer, options); !s.ok()) return annotate(s, "opening " + path.string());
  if (auto s = migrate(*writer); !s.ok()) return annotate(s, "opening " + path.string());
  const char* synchronous = options.synchronous_full ? "full" : "normal";
  auto store = std::make_unique<SqliteJobStore>(std::move(options), std::move(*writer));
  if (auto s = store->init(path); !s.ok()) return annotate(s, "opening " + path.string());
  log::info("job store open",
            {{"path", path.string()}, {"schema_version", kSqliteSchemaVersion}, {"synchronous", synchronous}});
  return std::unique_ptr<JobStore>(std::move(store));
}

}  // namespace flux::controlplane::store
