#include "controlplane/store/sqlite_job_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <future>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/store/sqlite_handle.h"
#include "shared/core/error.h"

namespace flux::controlplane::store {
namespace {

namespace fs = std::filesystem;
using model::JobRecord;

// ThreadSanitizer runs the many-thread tests about ten times slower; fewer
// creates per thread still exercise every interleaving that matters.
#if defined(__SANITIZE_THREAD__)
constexpr int kLoadScale = 5;
#else
constexpr int kLoadScale = 1;
#endif
using model::JobStatus;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "flux-store-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

JobRecord make_job(const std::string& id, int64_t created_ms, JobStatus status = JobStatus::kQueued) {
  JobRecord job;
  job.job_id = id;
  job.spec.input_url = "https://example.com/" + id + ".mp4";
  job.spec.preset = "720p_h264";
  job.spec.output.storage = "s3";
  job.spec.output.path = "outputs/" + id + ".mp4";
  job.status = status;
  job.created_ms = created_ms;
  job.created_at = "2026-11-30T08:43:25.123Z";
  return job;
}

// Every field set to something other than its default.
JobRecord full_job() {
  JobRecord job = make_job("job_full", 1764492205123, JobStatus::kFailed);
  job.spec.output.type = "hls";
  job.spec.output.metadata = {{"title", "Sample \"quoted\" ünïcode"}, {"lang", "en"}};
  job.spec.callback_url = "https://hooks.example.com/flux?token=abc";
  job.spec.priority = -7;
  job.phase = "encoding";
  job.progress = 42.25;
  job.message = "encoding 2/3\nnext line";
  job.output_url = "s3://bucket/outputs/job_full/";
  job.error = "ffmpeg exited with status 1";
  job.error_code = "encode_failed";
  job.worker_id = "worker-a";
  job.worker_address = "127.0.0.1:50051";
  job.attempts = 2;
  job.started_at = "2026-11-30T08:43:26.000Z";
  job.finished_at = "2026-11-30T08:44:00.500Z";
  job.result = {{"duration_s", 12.5}, {"renditions", {{{"height", 720}}}}};
  job.phase_durations = {{"download", 1.5}, {"encode", 30.25}};
  job.webhook.state = "failed";
  job.webhook.attempts = 5;
  job.webhook.last_status = 502;
  job.webhook.last_error = "bad gateway";
  job.webhook.delivered_at = "2026-11-30T08:45:00.000Z";
  job.idempotency_key = "idem-1";
  job.api_key_id = "key-1";
  job.sequence = 77;
  return job;
}

void expect_same(const JobRecord& got, const JobRecord& want) {
  EXPECT_EQ(got.job_id, want.job_id);
  EXPECT_EQ(got.spec.input_url, want.spec.input_url);
  EXPECT_EQ(got.spec.preset, want.spec.preset);
  EXPECT_EQ(got.spec.output.storage, want.spec.output.storage);
  EXPECT_EQ(got.spec.output.path, want.spec.output.path);
  EXPECT_EQ(got.spec.output.type, want.spec.output.type);
  EXPECT_EQ(got.spec.output.metadata, want.spec.output.metadata);
  EXPECT_EQ(got.spec.callback_url, want.spec.callback_url);
  EXPECT_EQ(got.spec.priority, want.spec.priority);
  EXPECT_EQ(got.status, want.status);
  EXPECT_EQ(got.phase, want.phase);
  EXPECT_DOUBLE_EQ(got.progress, want.progress);
  EXPECT_EQ(got.message, want.message);
  EXPECT_EQ(got.output_url, want.output_url);
  EXPECT_EQ(got.error, want.error);
  EXPECT_EQ(got.error_code, want.error_code);
  EXPECT_EQ(got.worker_id, want.worker_id);
  EXPECT_EQ(got.worker_address, want.worker_address);
  EXPECT_EQ(got.attempts, want.attempts);
  EXPECT_EQ(got.created_at, want.created_at);
  EXPECT_EQ(got.started_at, want.started_at);
  EXPECT_EQ(got.finished_at, want.finished_at);
  EXPECT_EQ(got.created_ms, want.created_ms);
  EXPECT_EQ(got.result, want.result);
  EXPECT_EQ(got.phase_durations, want.phase_durations);
  EXPECT_EQ(got.webhook.state, want.webhook.state);
  EXPECT_EQ(got.webhook.attempts, want.webhook.attempts);
  EXPECT_EQ(got.webhook.last_status, want.webhook.last_status);
  EXPECT_EQ(got.webhook.last_error, want.webhook.last_error);
  EXPECT_EQ(got.webhook.delivered_at, want.webhook.delivered_at);
  EXPECT_EQ(got.idempotency_key, want.idempotency_key);
  EXPECT_EQ(got.api_key_id, want.api_key_id);
  EXPECT_EQ(got.sequence, want.sequence);
}

std::vector<std::string> ids(const std::vector<JobRecord>& jobs) {
  std::vector<std::string> out;
  for (const auto& job : jobs) out.push_back(job.job_id);
  return out;
}

// A plain connection beside the store, to look at what is really on disk.
sqlite::Database raw_open(const fs::path& path) {
  auto db = sqlite::Database::open(path, SQLITE_OPEN_READWRITE);
  if (!db.ok()) throw std::runtime_error(std::string(db.status().message()));
  sqlite3_busy_timeout(db->get(), 5000);
  return std::move(*db);
}

std::string raw_text(sqlite::Database& db, const std::string& sql) {
  auto statement = db.prepare(sql);
  if (!statement.ok()) throw std::runtime_error(std::string(statement.status().message()));
  if (statement->step() != SQLITE_ROW) return "<no row>";
  return statement->column_text(0);
}

class SqliteJobStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<JobStore> open(SqliteOptions options = {}) {
    auto store = open_sqlite_store(db_path_, options);
    if (!store.ok()) {
      ADD_FAILURE() << store.status();
      return nullptr;
    }
    return std::move(*store);
  }

  TempDir tmp_;
  fs::path db_path_ = tmp_.path() / "nested" / "data" / "flux.db";
};

TEST_F(SqliteJobStoreTest, CreateThenGetReturnsEveryField) {
  auto store = open();
  ASSERT_TRUE(store);
  const JobRecord job = full_job();
  auto created = store->create(job);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(created->created);
  expect_same(created->job, job);

  auto got = store->get(job.job_id);
  ASSERT_TRUE(got.ok()) << got.status();
  expect_same(*got, job);
  EXPECT_EQ(model::to_document(*got), model::to_document(job));
}

TEST_F(SqliteJobStoreTest, UnknownJobIsNotFound) {
  auto store = open();
  ASSERT_TRUE(store);
  auto got = store->get("job_missing");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(error_code(got.status()), "job_not_found");
  auto updated = store->update(make_job("job_missing", 1));
  EXPECT_EQ(updated.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(error_code(updated), "job_not_found");
}

TEST_F(SqliteJobStoreTest, DuplicateJobIdIsRefusedAndFirstJobKept) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create(make_job("job_dup", 1)).ok());
  JobRecord second = make_job("job_dup", 2);
  second.spec.preset = "other";
  auto again = store->create(second);
  EXPECT_EQ(error_code(again.status()), "job_exists");
  EXPECT_EQ(store->get("job_dup")->spec.preset, "720p_h264");
}

TEST_F(SqliteJobStoreTest, UpdateReplacesTheRecordButNotItsIdentity) {
  auto store = open();
  ASSERT_TRUE(store);
  JobRecord job = make_job("job_u", 1000);
  job.idempotency_key = "k";
  job.api_key_id = "a";
  ASSERT_TRUE(store->create(job).ok());
  JobRecord changed = full_job();
  changed.job_id = "job_u";
  changed.created_ms = 999999;  // identity: must not move the job in the list order
  changed.idempotency_key = "other";
  ASSERT_TRUE(store->update(changed).ok());
  auto got = store->get("job_u");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->status, JobStatus::kFailed);
  EXPECT_EQ(got->error_code, "encode_failed");
  EXPECT_EQ(got->webhook.attempts, 5);
  EXPECT_EQ(got->spec.priority, -7);
  EXPECT_EQ(got->created_ms, 1000);
  EXPECT_EQ(got->idempotency_key, "k");
}

TEST_F(SqliteJobStoreTest, EverythingSurvivesCloseAndReopen) {
  {
    auto store = open();
    ASSERT_TRUE(store);
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(store->create(make_job("job_" + std::to_string(i), 100 + i)).ok());
    ASSERT_TRUE(store->create(full_job()).ok());
    JobRecord running = make_job("job_3", 103, JobStatus::kProcessing);
    running.worker_id = "worker-b";
    running.attempts = 1;
    running.sequence = 4;
    ASSERT_TRUE(store->update(running).ok());
    // Only in memory until close: the destructor must write it.
    store->checkpoint_progress("job_3", 63.5, "encoding", "frame 1200", 9);
    EXPECT_EQ(store->stats().checkpoints_written, 0u);
  }
  auto store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->stats().pending_checkpoints, 0u);
  for (int i = 0; i < 20; ++i) EXPECT_TRUE(store->get("job_" + std::to_string(i)).ok()) << i;
  expect_same(*store->get("job_full"), full_job());
  auto running = store->get("job_3");
  ASSERT_TRUE(running.ok());
  EXPECT_EQ(running->status, JobStatus::kProcessing);
  EXPECT_EQ(running->worker_id, "worker-b");
  EXPECT_DOUBLE_EQ(running->progress, 63.5);
  EXPECT_EQ(running->phase, "encoding");
  EXPECT_EQ(running->message, "frame 1200");
  EXPECT_EQ(running->sequence, 9u);
  EXPECT_EQ(*store->count(JobStatus::kQueued), 19);
  EXPECT_EQ(*store->count(JobStatus::kProcessing), 1);
}

TEST_F(SqliteJobStoreTest, ProgressTicksAreSeenAtOnceAndWrittenInBatches) {
  SqliteOptions options;
  options.checkpoint_interval = std::chrono::hours(1);  // only flush() writes
  auto store = open(options);
  ASSERT_TRUE(store);
  JobRecord job = make_job("job_p", 1, JobStatus::kProcessing);
  ASSERT_TRUE(store->create(job).ok());
  for (int i = 1; i <= 100; ++i) {
    store->checkpoint_progress("job_p", i * 0.5, "encoding", "tick " + std::to_string(i), static_cast<uint64_t>(i));
  }
  store->checkpoint_progress("job_p", 1.0, "downloading", "stale", 3);  // older: ignored
  auto seen = store->get("job_p");
  ASSERT_TRUE(seen.ok());
  EXPECT_DOUBLE_EQ(seen->progress, 50.0);
  EXPECT_EQ(seen->message, "tick 100");
  EXPECT_EQ(store->list({})->jobs.at(0).message, "tick 100");

  sqlite::Database raw = raw_open(db_path_);
  EXPECT_EQ(raw_text(raw, "SELECT json_extract(doc, '$.message') FROM jobs WHERE job_id = 'job_p'"), "");
  const uint64_t transactions_before = store->stats().transactions;
  ASSERT_TRUE(store->flush().ok());
  EXPECT_EQ(store->stats().checkpoints_written, 1u);  // 101 ticks, one row write
  EXPECT_EQ(store->stats().transactions, transactions_before + 1);
  EXPECT_EQ(store->stats().pending_checkpoints, 0u);
  EXPECT_EQ(raw_text(raw, "SELECT json_extract(doc, '$.message') FROM jobs WHERE job_id = 'job_p'"), "tick 100");
  EXPECT_EQ(raw_text(raw, "SELECT sequence FROM jobs WHERE job_id = 'job_p'"), "100");

  // A tick older than a committed update, or for a finished job, changes nothing.
  JobRecord done = *store->get("job_p");
  done.status = JobStatus::kCompleted;
  done.progress = 100;
  done.phase = "done";
  done.message = "completed";
  done.sequence = 120;
  ASSERT_TRUE(store->update(done).ok());
  store->checkpoint_progress("job_p", 10, "encoding", "late tick", 200);
  EXPECT_EQ(store->get("job_p")->message, "completed");
  ASSERT_TRUE(store->flush().ok());
  EXPECT_EQ(store->get("job_p")->message, "completed");
  EXPECT_DOUBLE_EQ(store->get("job_p")->progress, 100);
}

TEST_F(SqliteJobStoreTest, ProgressTicksReachDiskWithoutFlushAfterTheInterval) {
  SqliteOptions options;
  options.checkpoint_interval = std::chrono::milliseconds(50);
  auto store = open(options);
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create(make_job("job_t", 1, JobStatus::kProcessing)).ok());
  store->checkpoint_progress("job_t", 12.5, "encoding", "on its way", 1);
  sqlite::Database raw = raw_open(db_path_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  std::string on_disk;
  while (std::chrono::steady_clock::now() < deadline) {
    on_disk = raw_text(raw, "SELECT json_extract(doc, '$.progress') FROM jobs WHERE job_id = 'job_t'");
    if (on_disk == "12.5") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(on_disk, "12.5");
}

TEST_F(SqliteJobStoreTest, IdempotencyKeyReturnsTheFirstJobWithinItsApiKey) {
  auto store = open();
  ASSERT_TRUE(store);
  JobRecord first = make_job("job_first", 1);
  first.api_key_id = "key-a";
  first.idempotency_key = "order-42";
  auto a = store->create(first);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->created);

  JobRecord retry = make_job("job_retry", 2);
  retry.api_key_id = "key-a";
  retry.idempotency_key = "order-42";
  auto b = store->create(retry);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_FALSE(b->created);
  EXPECT_EQ(b->job.job_id, "job_first");
  EXPECT_EQ(store->get("job_retry").status().code(), absl::StatusCode::kNotFound);

  JobRecord other_key = make_job("job_other", 3);
  other_key.api_key_id = "key-b";
  other_key.idempotency_key = "order-42";
  auto c = store->create(other_key);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->created);

  // No key: never deduplicated.
  EXPECT_TRUE(store->create(make_job("job_nokey1", 4))->created);
  EXPECT_TRUE(store->create(make_job("job_nokey2", 5))->created);
  EXPECT_EQ(*store->count(JobStatus::kQueued), 4);
}

TEST_F(SqliteJobStoreTest, ConcurrentRetriesWithOneKeyCreateOneJob) {
  auto store = open();
  ASSERT_TRUE(store);
  constexpr int kThreads = 12;
  std::vector<absl::StatusOr<CreateResult>> results(kThreads, CreateResult{});
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      JobRecord job = make_job("job_race_" + std::to_string(t), 10);
      job.api_key_id = "key";
      job.idempotency_key = "same";
      results[t] = store->create(job);
    });
  }
  for (auto& thread : threads) thread.join();
  std::set<std::string> winners;
  int created = 0;
  for (const auto& result : results) {
    ASSERT_TRUE(result.ok()) << result.status();
    winners.insert(result->job.job_id);
    created += result->created ? 1 : 0;
  }
  EXPECT_EQ(created, 1);
  EXPECT_EQ(winners.size(), 1u);
  EXPECT_EQ(*store->count(JobStatus::kQueued), 1);
}

TEST_F(SqliteJobStoreTest, ListsNewestFirstAcrossPagesWithStatusFilter) {
  auto store = open();
  ASSERT_TRUE(store);
  std::vector<JobRecord> jobs;
  for (int i = 0; i < 25; ++i) {
    // Pairs share a created_ms, so the job_id tie-break matters at page edges.
    JobRecord job = make_job("job_" + std::string(1, static_cast<char>('a' + i)), 1000 + i / 2,
                             i % 3 == 0 ? JobStatus::kCompleted : JobStatus::kQueued);
    jobs.push_back(job);
    ASSERT_TRUE(store->create(job).ok());
  }
  std::vector<JobRecord> expected = jobs;
  std::sort(expected.begin(), expected.end(), [](const JobRecord& a, const JobRecord& b) {
    return std::tie(a.created_ms, a.job_id) > std::tie(b.created_ms, b.job_id);
  });

  std::vector<std::string> seen;
  std::vector<size_t> page_sizes;
  ListQuery query;
  query.limit = 10;
  for (;;) {
    auto page = store->list(query);
    ASSERT_TRUE(page.ok()) << page.status();
    page_sizes.push_back(page->jobs.size());
    for (const auto& id : ids(page->jobs)) seen.push_back(id);
    if (page->next_cursor.empty()) break;
    query.cursor = page->next_cursor;
    ASSERT_LT(page_sizes.size(), 5u);
  }
  EXPECT_EQ(page_sizes, (std::vector<size_t>{10, 10, 5}));
  EXPECT_EQ(seen, ids(expected));

  std::vector<std::string> completed_expected;
  for (const auto& job : expected) {
    if (job.status == JobStatus::kCompleted) completed_expected.push_back(job.job_id);
  }
  ListQuery completed;
  completed.status = JobStatus::kCompleted;
  completed.limit = 5;  // 9 completed jobs: pages of 5 and 4
  auto first = store->list(completed);
  ASSERT_TRUE(first.ok());
  ASSERT_FALSE(first->next_cursor.empty());
  completed.cursor = first->next_cursor;
  auto second = store->list(completed);
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(second->next_cursor.empty());
  std::vector<std::string> completed_seen = ids(first->jobs);
  for (const auto& id : ids(second->jobs)) completed_seen.push_back(id);
  EXPECT_EQ(completed_seen, completed_expected);

  // Exactly one page: no cursor for an empty next page.
  ListQuery exact;
  exact.limit = 25;
  EXPECT_TRUE(store->list(exact)->next_cursor.empty());
}

TEST_F(SqliteJobStoreTest, MalformedCursorIsRefused) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string valid = encode_cursor({1000, "job_a"});
  for (const std::string& cursor : {std::string("not a cursor!"), std::string("Zm9v"), valid + "=", valid + "A",
                                    std::string(300, 'A'), encode_cursor({-5, "job_a"}), encode_cursor({1, ""})}) {
    ListQuery query;
    query.cursor = cursor;
    auto page = store->list(query);
    EXPECT_EQ(page.status().code(), absl::StatusCode::kInvalidArgument) << cursor;
    EXPECT_EQ(error_code(page.status()), "cursor_invalid") << cursor;
  }
  ListQuery ok_query;
  ok_query.cursor = valid;
  EXPECT_TRUE(store->list(ok_query).ok());
}

TEST_F(SqliteJobStoreTest, CursorRoundTrips) {
  auto decoded = decode_cursor(encode_cursor({1764492205123, "job_abc:def"}));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->created_ms, 1764492205123);
  EXPECT_EQ(decoded->job_id, "job_abc:def");
}

TEST_F(SqliteJobStoreTest, LoadUnfinishedReturnsActiveJobsOldestFirst) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::vector<std::pair<std::string, JobStatus>> jobs = {
      {"job_5", JobStatus::kQueued},    {"job_1", JobStatus::kProcessing}, {"job_4", JobStatus::kCompleted},
      {"job_2", JobStatus::kUploading}, {"job_3", JobStatus::kFailed},     {"job_6", JobStatus::kCancelled},
      {"job_0", JobStatus::kQueued},
  };
  for (const auto& [id, status] : jobs) {
    ASSERT_TRUE(store->create(make_job(id, 100 + (id.back() - '0'), status)).ok());
  }
  auto unfinished = store->load_unfinished();
  ASSERT_TRUE(unfinished.ok()) << unfinished.status();
  EXPECT_EQ(ids(*unfinished), (std::vector<std::string>{"job_0", "job_1", "job_2", "job_5"}));
  EXPECT_EQ(*store->count(JobStatus::kQueued), 2);
  EXPECT_EQ(*store->count(JobStatus::kCompleted), 1);
  EXPECT_EQ(*store->count(JobStatus::kCancelled), 1);
}

TEST_F(SqliteJobStoreTest, ConcurrentCreatesShareTransactions) {
  // Batching does not depend on the sync mode; NORMAL only keeps this test
  // fast on a disk where each fsync takes milliseconds.
  SqliteOptions options;
  options.synchronous_full = false;
  auto store = open(options);
  ASSERT_TRUE(store);
  constexpr int kThreads = 16;
  constexpr int kPerThread = 500 / kLoadScale;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        JobRecord job = make_job("job_" + std::to_string(t) + "_" + std::to_string(i), 1000 + i);
        // Some retries of an earlier submission: each caller gets its own answer.
        if (i % 50 == 49) {
          job.api_key_id = "key";
          job.idempotency_key = std::string("t").append(std::to_string(t));
        }
        auto result = store->create(job);
        if (!result.ok()) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  const int64_t unique_jobs = kThreads * (kPerThread - kPerThread / 50 + 1);
  EXPECT_EQ(*store->count(JobStatus::kQueued), unique_jobs);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_TRUE(store->get("job_" + std::to_string(t) + "_" + std::to_string(kPerThread - 2)).ok());
  }
  const StoreStats stats = store->stats();
  EXPECT_EQ(stats.creates, static_cast<uint64_t>(unique_jobs));
  EXPECT_LT(stats.transactions, stats.creates);
  EXPECT_GT(stats.largest_batch, 1u);
  // The background checkpointer keeps the WAL from growing with every job.
  const auto wal_bytes = fs::file_size(db_path_.string() + "-wal");
  if (kLoadScale == 1) {
    EXPECT_GT(stats.wal_checkpoints, 0u);
  }
  EXPECT_LT(wal_bytes, 24u << 20);
  std::printf("[ store ] %d creates from %d threads in %llu transactions (largest batch %llu), WAL %.1f MiB\n",
              kThreads * kPerThread, kThreads, static_cast<unsigned long long>(stats.transactions),
              static_cast<unsigned long long>(stats.largest_batch), wal_bytes / 1048576.0);
}

// 64 submitters at once on the durable (synchronous=FULL) store: every create
// succeeds and commits are shared. The creates-per-second figure is
// bench/submissions.py's, not this test's.
TEST_F(SqliteJobStoreTest, SixtyFourConcurrentDurableCreatorsShareCommits) {
  auto store = open();
  ASSERT_TRUE(store);
  constexpr int kThreads = 64;
  constexpr int kPerThread = 10;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        JobRecord job = full_job();
        job.job_id = model::new_job_id();
        job.idempotency_key = std::to_string(t).append("_").append(std::to_string(i));
        if (!store->create(job).ok()) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  const StoreStats stats = store->stats();
  EXPECT_EQ(stats.creates, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_LT(stats.transactions, stats.creates);
}

// The completion callback is what lets a submission be answered without a
// thread parked on the commit; it must never run before the commit.
TEST_F(SqliteJobStoreTest, AsyncCreateAnswersOnlyOnceTheJobIsCommitted) {
  auto store = open();
  ASSERT_TRUE(store);
  constexpr int kJobs = 200 / kLoadScale;
  std::mutex mu;
  std::condition_variable all_done;
  int answered = 0;
  int visible_from_another_connection = 0;
  std::set<std::string> answered_ids;
  std::vector<std::string> errors;
  const std::string path = db_path_.string();
  for (int i = 0; i < kJobs; ++i) {
    JobRecord job = make_job("job_async_" + std::to_string(i), 100 + i);
    if (i % 20 == 19) {  // a retry of the job before it: one job, two answers
      job.api_key_id = "key";
      job.idempotency_key = "retry-" + std::to_string(i - 1);
    } else if (i % 20 == 18) {
      job.api_key_id = "key";
      job.idempotency_key = "retry-" + std::to_string(i);
    }
    store->create_async(job, [&, path, id = job.job_id](absl::StatusOr<CreateResult> result) {
      // A separate connection sees only committed data: the row is there.
      sqlite::Database raw = raw_open(path);
      const std::string winner = result.ok() ? result->job.job_id : id;
      const bool visible = raw_text(raw, "SELECT count(*) FROM jobs WHERE job_id = '" + winner + "'") == "1";
      std::lock_guard lock(mu);
      if (!result.ok()) errors.push_back(std::string(result.status().message()));
      if (result.ok()) answered_ids.insert(result->job.job_id);
      visible_from_another_connection += visible ? 1 : 0;
      if (++answered == kJobs) all_done.notify_all();
    });
  }
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(all_done.wait_for(lock, std::chrono::seconds(60), [&] { return answered == kJobs; }));
  }
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(visible_from_another_connection, kJobs);
  const int64_t unique_jobs = kJobs - kJobs / 20;
  EXPECT_EQ(static_cast<int64_t>(answered_ids.size()), unique_jobs) << "a retry gets the first job's answer";
  EXPECT_EQ(*store->count(JobStatus::kQueued), unique_jobs);
  const StoreStats stats = store->stats();
  EXPECT_LT(stats.transactions, stats.creates) << "asynchronous creates share transactions";
}

TEST_F(SqliteJobStoreTest, AsyncCreateReportsPerJobErrorsAndSurvivesAThrowingCallback) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create(make_job("job_taken", 1)).ok());
  std::promise<absl::StatusOr<CreateResult>> duplicate;
  store->create_async(make_job("job_taken", 2),
                      [&](absl::StatusOr<CreateResult> result) { duplicate.set_value(std::move(result)); });
  auto refused = duplicate.get_future().get();
  EXPECT_EQ(error_code(refused.status()), "job_exists");

  std::promise<absl::StatusOr<CreateResult>> no_id;
  store->create_async(make_job("", 3),
                      [&](absl::StatusOr<CreateResult> result) { no_id.set_value(std::move(result)); });
  EXPECT_EQ(error_code(no_id.get_future().get().status()), "job_id_missing");

  store->create_async(make_job("job_thrower", 4),
                      [](absl::StatusOr<CreateResult>) { throw std::runtime_error("a careless caller"); });
  // The writer lives on: later writes still commit and answer.
  auto after = store->create(make_job("job_after", 5));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE(store->get("job_thrower").ok());
  EXPECT_TRUE(store->get("job_after").ok());
}

TEST_F(SqliteJobStoreTest, OpensInWalModeWithAPrivateFile) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->create(make_job("job_w", 1)).ok());
  sqlite::Database raw = raw_open(db_path_);
  EXPECT_EQ(raw_text(raw, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(raw_text(raw, "SELECT max(version) FROM schema_migrations"), std::to_string(kSqliteSchemaVersion));
  for (const fs::path& file : {db_path_, fs::path(db_path_.string() + "-wal")}) {
    struct stat st {};
    ASSERT_EQ(::stat(file.c_str(), &st), 0) << file;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << file;
  }
}

TEST_F(SqliteJobStoreTest, DatabaseFromANewerVersionIsRefused) {
  {
    auto store = open();
    ASSERT_TRUE(store);
  }
  {
    sqlite::Database raw = raw_open(db_path_);
    ASSERT_TRUE(raw.exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 'x')").ok());
  }
  auto store = open_sqlite_store(db_path_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(error_code(store.status()), "store_schema_too_new");
  EXPECT_NE(store.status().message().find("99"), absl::string_view::npos);
}

TEST_F(SqliteJobStoreTest, ReopeningAppliesNoMigrationTwice) {
  { ASSERT_TRUE(open()); }
  { ASSERT_TRUE(open()); }
  sqlite::Database raw = raw_open(db_path_);
  EXPECT_EQ(raw_text(raw, "SELECT count(*) FROM schema_migrations"), std::to_string(kSqliteSchemaVersion));
}

TEST_F(SqliteJobStoreTest, AFileThatIsNotADatabaseIsAClearError) {
  fs::create_directories(db_path_.parent_path());
  {
    FILE* f = std::fopen(db_path_.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("this is not an SQLite database, just some text that is long enough to have a header", f);
    std::fclose(f);
  }
  auto store = open_sqlite_store(db_path_);
  EXPECT_FALSE(store.ok());
}

}  // namespace
}  // namespace flux::controlplane::store

namespace flux::controlplane::store {
namespace {

TEST_F(SqliteJobStoreTest, UndeliveredWebhooksOfFinishedJobsAreFound) {
  auto store = open();
  auto with_hook = [](JobRecord job, const std::string& state) {
    job.spec.callback_url = "https://hooks.example.com/flux";
    job.webhook.state = state;
    return job;
  };
  ASSERT_TRUE(store->create(with_hook(make_job("job_never", 1, JobStatus::kCompleted), "none")).ok());
  ASSERT_TRUE(store->create(with_hook(make_job("job_pending", 2, JobStatus::kFailed), "pending")).ok());
  ASSERT_TRUE(store->create(with_hook(make_job("job_done", 3, JobStatus::kCompleted), "delivered")).ok());
  ASSERT_TRUE(store->create(with_hook(make_job("job_gave_up", 4, JobStatus::kCancelled), "failed")).ok());
  ASSERT_TRUE(store->create(with_hook(make_job("job_running", 5, JobStatus::kProcessing), "none")).ok());
  ASSERT_TRUE(store->create(make_job("job_no_hook", 6, JobStatus::kCompleted)).ok());
  auto undelivered = store->load_undelivered_webhooks();
  ASSERT_TRUE(undelivered.ok()) << undelivered.status();
  std::vector<std::string> ids;
  for (const auto& job : *undelivered) ids.push_back(job.job_id);
  EXPECT_EQ(ids, (std::vector<std::string>{"job_never", "job_pending"}));
}

}  // namespace
}  // namespace flux::controlplane::store
