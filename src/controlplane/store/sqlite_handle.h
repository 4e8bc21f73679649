#pragma once
// Thin RAII wrappers over the SQLite C API, for the store's own use: a
// connection that closes itself and prepared statements that finalize
// themselves and are reset after every use so they can be reused.
#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flux::controlplane::store::sqlite {

class Statement;

class Database {
 public:
  // `flags` as for sqlite3_open_v2.
  static absl::StatusOr<Database> open(const std::filesystem::path& path, int flags);

  sqlite3* get() const { return db_.get(); }

  // Runs SQL without results (DDL, PRAGMA, BEGIN/COMMIT).
  absl::Status exec(const std::string& sql);
  // A statement to keep and reuse; lives no longer than this connection.
  absl::StatusOr<Statement> prepare(const std::string& sql);
  // A status for the connection's last error, with a machine code derived
  // from SQLite's result code ("store_busy", "store_full", "store_error").
  absl::Status last_error(int result_code, std::string_view context) const;

 private:
  struct Closer {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
  };
  std::unique_ptr<sqlite3, Closer> db_;
};

class Statement {
 public:
  Statement() = default;

  // Parameters are 1-based; values are copied into the statement.
  void bind(int index, int64_t value);
  void bind(int index, int value) { bind(index, static_cast<int64_t>(value)); }
  void bind(int index, double value);
  void bind(int index, std::string_view value);

  // SQLITE_ROW, SQLITE_DONE or an error code.
  int step();

  int64_t column_int64(int index) const;
  double column_double(int index) const;
  std::string column_text(int index) const;

  // Resets the statement and clears its bindings, ready for the next use.
  void reset();

  sqlite3_stmt* get() const { return stmt_.get(); }

 private:
  friend class Database;
  struct Finalizer {
    void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
  };
  explicit Statement(sqlite3_stmt* stmt) : stmt_(stmt) {}
  std::unique_ptr<sqlite3_stmt, Finalizer> stmt_;
};

// Resets a reused statement when the scope ends, however it ends.
class StatementUse {
 public:
  explicit StatementUse(Statement& statement) : statement_(statement) {}
  ~StatementUse() { statement_.reset(); }
  StatementUse(const StatementUse&) = delete;
  StatementUse& operator=(const StatementUse&) = delete;
  Statement* operator->() { return &statement_; }

 private:
  Statement& statement_;
};

}  // namespace flux::controlplane::store::sqlite
