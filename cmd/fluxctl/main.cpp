// fluxctl: reads the command line and the environment, wires the HTTP client
// to the terminal, and runs the command (the logic is in src/cli).
#include <curl/curl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cli/api_client.h"
#include "cli/command_line.h"
#include "cli/commands.h"
#include "flux_version.h"

namespace {

std::atomic<bool> g_interrupted{false};

void on_interrupt(int) { g_interrupted.store(true); }

// Only read before anything else runs (no thread could be calling setenv).
std::optional<std::string> env_value(const char* name) {
  const char* value = std::getenv(name);  // NOLINT(concurrency-mt-unsafe)
  return value != nullptr ? std::optional<std::string>(value) : std::nullopt;
}

// The terminal's width now (it may be resized while a bar is drawn); COLUMNS,
// then 80, when the terminal does not say (a pty of `script` without a parent
// terminal reports 0).
int terminal_width(int fallback) {
  winsize size{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return fallback;
}

bool interruptible_sleep(std::chrono::milliseconds delay) {
  const auto until = std::chrono::steady_clock::now() + delay;
  while (std::chrono::steady_clock::now() < until) {
    if (g_interrupted.load()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return !g_interrupted.load();
}

struct CurlGlobal {
  CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  ~CurlGlobal() { curl_global_cleanup(); }
};

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  const flux::cli::Environment env{env_value("FLUX_URL"), env_value("FLUX_API_KEY")};
  auto parsed = flux::cli::parse_command_line(args, env);
  if (!parsed.invocation) {
    std::cout << parsed.out << std::flush;
    std::cerr << parsed.err << std::flush;
    return parsed.exit_code;
  }

  // The first Ctrl-C stops waiting cleanly (the bar's line is ended, the job
  // keeps running); SA_RESETHAND makes a second one kill as usual.
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  action.sa_flags = SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);

  CurlGlobal curl;
  flux::cli::ClientOptions options;
  options.base_url = parsed.invocation->url;
  options.api_key = parsed.invocation->api_key;
  options.user_agent = std::string("fluxctl/") + FLUX_VERSION;
  options.interrupted = &g_interrupted;
  flux::cli::HttpJobService service(options);

  // A "dumb" terminal cannot erase a line: it gets the plain lines.
  const auto term = env_value("TERM");
  const bool live_terminal = isatty(STDOUT_FILENO) == 1 && term.value_or("") != "dumb";
  int fallback_width = std::atoi(env_value("COLUMNS").value_or("").c_str());
  if (fallback_width <= 0) fallback_width = 80;
  const flux::cli::Console console{std::cout, std::cerr, live_terminal,
                                   [fallback_width] { return terminal_width(fallback_width); }};
  flux::cli::WatchOptions watch;
  watch.sleep = interruptible_sleep;
  return flux::cli::run_command(*parsed.invocation, service, console, watch);
}
