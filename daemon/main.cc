// recschedd: config -> topology -> models -> profiles -> listeners -> serve; SIGTERM
// drains and exits 0, SIGHUP reloads the config (a bad one is refused and the old kept).
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>

#include "daemon/config.h"
#include "daemon/http_server.h"
#include "daemon/service.h"

namespace {

constexpr const char* kUsage =
    R"(usage: recschedd [--config FILE] [--tcp HOST:PORT] [--socket PATH] [--state-dir DIR]

The recsched daemon: serves recommendation models over the KServe v2 HTTP protocol,
placing each query on this host's devices by its size and model.

  --config FILE      configuration (default /etc/recsched/recschedd.json)
  --tcp HOST:PORT    TCP listener, overriding the config ("" turns it off; port 0 picks a
                     free port, which is logged)
  --socket PATH      unix socket, overriding the config ("" turns it off)
  --state-dir DIR    where profiles are cached, overriding the config
  --foreground       accepted for systemd units (recschedd never forks)
  -h, --help         this text

Signals: SIGTERM/SIGINT stop accepting, answer every query in flight, exit 0;
SIGHUP re-reads the config (SLA targets, admission limits, token, policy parameters;
listeners, models and server limits need a restart, and the log says which changed).
)";

}  // namespace

int main(int argc, char** argv) {
  using namespace recsched::daemon;
  auto logger = spdlog::stderr_color_mt("recschedd");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%^%l%$ %v");  // journald adds timestamps

  std::string config_path = "/etc/recsched/recschedd.json";
  std::optional<std::string> tcp, socket, state_dir;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::optional<std::string>& out) {
      if (i + 1 >= argc) {
        std::cerr << "recschedd: " << a << " needs a value (see recschedd --help)\n";
        std::exit(2);
      }
      out = argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (a == "--config") {
      std::optional<std::string> v;
      value(v);
      config_path = *v;
    } else if (a == "--tcp") {
      value(tcp);
    } else if (a == "--socket") {
      value(socket);
    } else if (a == "--state-dir") {
      value(state_dir);
    } else if (a == "--foreground") {
    } else {
      std::cerr << "recschedd: unknown argument '" << a << "' (see recschedd --help)\n";
      return 2;
    }
  }

  // Signals are taken synchronously by this thread; every other thread blocks them.
  sigset_t signals;
  sigemptyset(&signals);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto config = load_config(config_path);
  if (config) {
    recsched::Status st = apply_overrides(*config, tcp, socket, state_dir);
    if (!st.is_ok()) config = st;
  }
  if (!config) {
    spdlog::critical("{}", config.status().message());
    return 1;
  }
  auto service =
      Service::create(*config, [](const std::string& step) { spdlog::info("{}", step); });
  if (!service) {
    spdlog::critical("{}", service.status().message());
    return 1;
  }
  ServerOptions so;
  so.max_body_bytes = config->limits.max_body_bytes;
  so.max_connections = config->limits.max_connections;
  so.read_timeout_ms = config->limits.read_timeout_ms;
  so.idle_timeout_ms = config->limits.idle_timeout_ms;
  Service* svc = service->get();
  auto server = HttpServer::create(so, [svc](HttpRequest req, Responder respond) {
    svc->handle(std::move(req), std::move(respond));
  });
  if (!config->listen.tcp.empty()) {
    auto hp = split_host_port(config->listen.tcp);
    recsched::Status st = hp ? server->listen_tcp(hp->first, hp->second) : hp.status();
    if (!st.is_ok()) {
      spdlog::critical("{}", st.message());
      return 1;
    }
    spdlog::info("listening on {}:{}", hp->first, server->tcp_port());
  }
  if (!config->listen.socket.empty()) {
    recsched::Status st = server->listen_unix(config->listen.socket);
    if (!st.is_ok()) {
      spdlog::critical("{}", st.message());
      return 1;
    }
    spdlog::info("listening on {}", config->listen.socket);
  }
  server->start();
  spdlog::info("ready: {} models", config->models.size());

  while (true) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      auto next = load_config(config_path);
      if (next) {
        recsched::Status st = apply_overrides(*next, tcp, socket, state_dir);
        if (!st.is_ok()) next = st;
      }
      if (!next) {
        spdlog::error("reload refused, keeping the running config: {}", next.status().message());
      } else {
        spdlog::info("{}", svc->reload(*next));
      }
      continue;
    }
    spdlog::info("{} received: stopping (answering {} queries in flight)", strsignal(sig),
                 svc->in_flight());
    server->stop(30000);
    service->reset();  // the runner finishes anything still queued
    spdlog::info("stopped");
    return 0;
  }
}
