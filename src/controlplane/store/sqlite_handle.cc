#include "controlplane/store/sqlite_handle.h"

#include "shared/core/error.h"

namespace flux::controlplane::store::sqlite {

absl::StatusOr<Database> Database::open(const std::filesystem::path& path, int flags) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  Database db;
  db.db_.reset(raw);  // sqlite3_open_v2 may hand back a handle even on failure; it must be closed.
  if (rc != SQLITE_OK) {
    std::string message = raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    return unavailable("store_open_failed", "opening " + path.string() + ": " + message);
  }
  sqlite3_extended_result_codes(raw, 1);
  return db;
}

absl::Status Database::exec(const std::string& sql) {
  const int rc = sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return last_error(rc, sql);
  return absl::OkStatus();
}

absl::StatusOr<Statement> Database::prepare(const std::string& sql) {
  sqlite3_stmt* raw = nullptr;
  const int rc = sqlite3_prepare_v3(db_.get(), sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                    &raw, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(raw);
    return last_error(rc, "preparing " + sql);
  }
  return Statement(raw);
}

absl::Status Database::last_error(int result_code, std::string_view context) const {
  const std::string message = std::string(context) + ": " + sqlite3_errmsg(db_.get());
  switch (result_code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return unavailable("store_busy", message);
    case SQLITE_FULL:
      return unavailable("store_full", message);
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
      return unavailable("store_io_error", message);
    case SQLITE_CONSTRAINT:
      return make_error(absl::StatusCode::kAlreadyExists, "store_constraint", message);
    default:
      return internal_error("store_error", message);
  }
}

void Statement::bind(int index, int64_t value) { sqlite3_bind_int64(stmt_.get(), index, value); }

void Statement::bind(int index, double value) { sqlite3_bind_double(stmt_.get(), index, value); }

void Statement::bind(int index, std::string_view value) {
  sqlite3_bind_text64(stmt_.get(), index, value.data(), value.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
}

int Statement::step() { return sqlite3_step(stmt_.get()); }

int64_t Statement::column_int64(int index) const { return sqlite3_column_int64(stmt_.get(), index); }

double Statement::column_double(int index) const { return sqlite3_column_double(stmt_.get(), index); }

std::string Statement::column_text(int index) const {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_.get(), index));
  if (text == nullptr) return {};
  return std::string(text, static_cast<size_t>(sqlite3_column_bytes(stmt_.get(), index)));
}

void Statement::reset() {
  if (!stmt_) return;
  sqlite3_reset(stmt_.get());
  sqlite3_clear_bindings(stmt_.get());
}

}  // namespace flux::controlplane::store::sqlite
