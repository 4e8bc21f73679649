#include "cli/commands.h"

#include <set>

#include "cli/exit_codes.h"
#include "cli/output_format.h"
#include "cli/progress_view.h"
#include "cli/text.h"
#include "shared/core/error.h"

namespace flux::cli {
namespace {

using nlohmann::json;

void print_json(std::ostream& out, const json& value) {
  out << value.dump(2, ' ', false, json::error_handler_t::replace) << "\n" << std::flush;
}

int fail(const Invocation& inv, const Console& console, const absl::Status& status) {
  const std::string code = error_code(status);
  const std::string message(status.message());
  if (inv.json) print_json(console.out, {{"error", message}, {"code", code}});
  console.err << "error: " << printable(message) << " (" << printable(code) << ")\n" << std::flush;
  return to_int(exit_code_for_error(status));
}

// The storage to ask for when --storage was not given: s3 when some worker
// serves it (or nobody has said yet), else what the workers do serve.
absl::StatusOr<std::string> default_storage(JobService& service) {
  auto answer = service.workers();
  if (!answer.ok()) return answer.status();
  std::set<std::string> served;
  if (auto it = answer->find("workers"); it != answer->end() && it->is_array()) {
    for (const json& worker : *it) {
      auto types = worker.find("storage_types");
      if (types == worker.end() || !types->is_array()) continue;
      for (const json& t : *types) {
        if (t.is_string()) served.insert(t.get<std::string>());
      }
    }
  }
  if (served.empty() || served.count("s3") != 0) return std::string("s3");
  return *served.begin();
}

int watch(const Invocation& inv, JobService& service, const Console& console, const WatchOptions& options,
          const std::string& job_id) {
  std::unique_ptr<WatchObserver> observer;
  TerminalProgressPrinter* bar = nullptr;
  if (inv.json) {
    observer = std::make_unique<SilentObserver>();
  } else if (console.out_is_terminal) {
    auto printer = std::make_unique<TerminalProgressPrinter>(console.out, console.terminal_width);
    bar = printer.get();
    observer = std::move(printer);
  } else {
    observer = std::make_unique<PlainProgressPrinter>(console.out, console.err);
  }
  auto final_state = watch_job(service, job_id, *observer, options);
  if (bar != nullptr) bar->finish();
  if (!final_state.ok()) {
    if (error_code(final_state.status()) == "interrupted") {
      console.err << "interrupted; the job keeps running (fluxctl watch " << printable(job_id) << ")\n";
    }
    return fail(inv, console, final_state.status());
  }
  if (inv.json) {
    auto document = service.get_job(job_id);
    if (!document.ok()) return fail(inv, console, document.status());
    print_json(console.out, *document);
  } else {
    console.out << render_summary(*final_state) << "\n" << std::flush;
  }
  return to_int(exit_code_for_job_status(final_state->status));
}

int submit(const Invocation& inv, JobService& service, const Console& console, const WatchOptions& options) {
  const SubmitArgs& s = inv.submit;
  json output = {{"path", s.output_path}};
  std::string storage = s.storage;
  if (storage.empty()) {
    auto chosen = default_storage(service);
    if (!chosen.ok()) return fail(inv, console, chosen.status());
    storage = *chosen;
  }
  output["storage"] = storage;
  if (!s.type.empty()) output["type"] = s.type;
  if (!s.metadata.empty()) output["metadata"] = s.metadata;
  json request = {{"input_url", s.input_url}, {"preset", s.preset}, {"output", output}};
  if (!s.callback_url.empty()) request["callback_url"] = s.callback_url;
  if (s.priority) request["priority"] = *s.priority;

  auto accepted = service.submit(request, s.idempotency_key);
  if (!accepted.ok()) return fail(inv, console, accepted.status());
  const std::string job_id = (*accepted)["job_id"].get<std::string>();
  if (!s.wait) {
    if (inv.json) {
      print_json(console.out, *accepted);
    } else {
      console.out << printable(job_id) << " accepted; follow it with: fluxctl watch " << printable(job_id) << "\n";
    }
    return to_int(ExitCode::kSuccess);
  }
  if (!inv.json) console.out << printable(job_id) << " accepted\n" << std::flush;
  return watch(inv, service, console, options, job_id);
}

template <typename Render>
int show(const Invocation& inv, const Console& console, const absl::StatusOr<json>& answer, Render render) {
  if (!answer.ok()) return fail(inv, console, answer.status());
  if (inv.json) {
    print_json(console.out, *answer);
  } else {
    console.out << render(*answer) << std::flush;
  }
  return to_int(ExitCode::kSuccess);
}

}  // namespace

int run_command(const Invocation& inv, JobService& service, const Console& console, const WatchOptions& watch_options) {
  switch (inv.command) {
    case Command::kSubmit:
      return submit(inv, service, console, watch_options);
    case Command::kWatch:
      return watch(inv, service, console, watch_options, inv.job_id);
    case Command::kGet:
      return show(inv, console, service.get_job(inv.job_id), render_job_details);
    case Command::kList:
      return show(inv, console, service.list_jobs(inv.list), render_job_list);
    case Command::kCancel:
      return show(inv, console, service.cancel_job(inv.job_id), [](const json& doc) {
        const JobEvent state = job_event_from_json(doc);
        std::string line = printable(state.job_id) + " " + printable(state.status);
        if (!state.terminal()) line += " (cancel requested)";
        return line + "\n";
      });
    case Command::kWorkers:
      return show(inv, console, service.workers(), render_workers);
    case Command::kPresets:
      return show(inv, console, service.presets(), render_presets);
  }
  return to_int(ExitCode::kUsage);
}

}  // namespace flux::cli
