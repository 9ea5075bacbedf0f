// recschedd: config -> topology -> models -> profiles -> listeners -> READY=1 -> serve;
// SIGTERM drains and exits 0, SIGHUP reloads the config (a bad one is refused and the old
// kept). Under systemd (Type=notify) every step is reported with sd_notify (sd_notify.h).
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>

#include "core/failpoint.h"
#include "daemon/agent_check.h"
#include "daemon/config.h"
#include "daemon/http_server.h"
#include "daemon/sd_notify.h"
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

Signals: SIGTERM/SIGINT stop accepting, answer every query in flight, exit 0 (with
fleet.drain_ms set, first drain: report not ready and `drain` to the balancer's agent,
keep serving that long; a second signal ends the drain);
SIGHUP re-reads the config (SLA targets, admission limits, token, policy parameters;
listeners, models and server limits need a restart, and the log says which changed).

Under systemd (NOTIFY_SOCKET set) it reports STATUS= lines while starting and serving,
READY=1 once the listeners are bound and the profiles loaded, RELOADING=1 on SIGHUP,
STOPPING=1 on SIGTERM, and WATCHDOG=1 every WATCHDOG_USEC/2 when the unit sets WatchdogSec=.

Environment: RECSCHED_FAILPOINTS="forward.cpu0=throw;forward.gpu0=3*error" injects faults
(a worker that throws or fails) for tests and for reproducing a fault; never set it in
production. Actions: throw, error, off, N*throw, N*error.
)";

// How often the serving STATUS= line is refreshed.
constexpr std::chrono::seconds kStatusPeriod{5};

std::string serving_line(double qps, uint64_t in_flight) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "serving %.1f qps, %llu in flight", qps,
                static_cast<unsigned long long>(in_flight));
  return buf;
}

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

  // sd_notify, and the watchdog from the first moment: a long first profiling run must not
  // look like a hang. The pinger thread inherits the blocked signals.
  auto notifier_or = Notifier::create(NotifyEnvironment::from_process());
  if (!notifier_or) {
    spdlog::error("not notifying systemd: {}", notifier_or.status().message());
    notifier_or = Notifier::create(NotifyEnvironment{});
  }
  const Notifier notifier = std::move(notifier_or).value();
  std::optional<WatchdogPinger> watchdog;
  if (notifier.watchdog_period()) {
    watchdog.emplace(notifier, *notifier.watchdog_period());
    spdlog::info("watchdog: WATCHDOG=1 every {} ms", notifier.watchdog_period()->count() / 1000);
  }
  // A failed send is logged once: the manager's socket does not come back.
  bool notify_warned = false;
  auto notify = [&notify_warned](const recsched::Status& st) {
    if (st.is_ok() || notify_warned) return;
    notify_warned = true;
    spdlog::warn("{} (further sd_notify failures are not logged)", st.message());
  };
  auto fail = [&](const std::string& why) {
    spdlog::critical("{}", why);
    notify(notifier.status("failed: " + why));
    return 1;
  };

  notify(notifier.status("reading " + config_path));
  auto config = load_config(config_path);
  if (config) {
    recsched::Status st = apply_overrides(*config, tcp, socket, state_dir);
    if (!st.is_ok()) config = st;
  }
  if (!config) return fail(config.status().message());
  // Fault injection for tests and for reproducing a fault on a live host (core/failpoint.h).
  if (const char* spec = std::getenv("RECSCHED_FAILPOINTS"); spec != nullptr && *spec != '\0') {
    recsched::Status st = recsched::failpoint::set_from_spec(spec);
    if (!st.is_ok()) return fail("RECSCHED_FAILPOINTS: " + st.message());
    spdlog::warn("fail points set from RECSCHED_FAILPOINTS: {} (faults will be injected)", spec);
  }
  auto service = Service::create(*config, [&](const std::string& step) {
    spdlog::info("{}", step);
    notify(notifier.status(step));
  });
  if (!service) return fail(service.status().message());
  Service* svc = service->get();
  auto server = create_server(*svc, config->limits);
  if (!config->listen.tcp.empty()) {
    auto hp = split_host_port(config->listen.tcp);
    recsched::Status st = hp ? server->listen_tcp(hp->first, hp->second) : hp.status();
    if (!st.is_ok()) return fail(st.message());
    spdlog::info("listening on {}:{}", hp->first, server->tcp_port());
  }
  if (!config->listen.socket.empty()) {
    std::optional<uint32_t> gid;
    if (!config->listen.socket_group.empty()) {
      gid = group_id(config->listen.socket_group);
      if (!gid) return fail("listen.socket_group: no group '" + config->listen.socket_group + "'");
    }
    recsched::Status st = server->listen_unix(config->listen.socket, gid);
    if (!st.is_ok()) return fail(st.message());
    spdlog::info("listening on {}", config->listen.socket);
  }
  // HAProxy's agent check (fleet.agent_check): this host's weight, or drain. Bound before
  // the HTTP server takes traffic, so that a host that answers ready also answers the agent.
  std::unique_ptr<AgentCheckServer> agent;
  if (!config->fleet.agent_check.empty()) {
    auto hp = split_host_port(config->fleet.agent_check);
    auto started = hp ? AgentCheckServer::start(hp->first, hp->second,
                                                [svc] { return svc->agent_status(); })
                      : recsched::Result<std::unique_ptr<AgentCheckServer>>(hp.status());
    if (!started) return fail("fleet.agent_check: " + started.status().message());
    agent = std::move(started).value();
    spdlog::info("agent check on {}:{}", hp->first, agent->port());
  }
  server->start();
  if (!svc->ready()) return fail("the service did not become ready");
  spdlog::info("ready: {} models", config->models.size());
  // Listeners bound and accepting, profiles loaded: only now may systemd start dependants.
  notify(notifier.ready());
  notify(notifier.status("ready: " + std::to_string(config->models.size()) + " models"));

  using SteadyClock = std::chrono::steady_clock;
  auto last_tick = SteadyClock::now();
  uint64_t last_answered = svc->answered();
  while (true) {
    int sig = 0;
    if (notifier.enabled()) {
      // Wake every kStatusPeriod to refresh the STATUS= line systemctl status shows.
      const timespec wait{kStatusPeriod.count(), 0};
      sig = sigtimedwait(&signals, nullptr, &wait);
      if (sig < 0) {
        const auto now = SteadyClock::now();
        const uint64_t answered = svc->answered();
        const double secs = std::chrono::duration<double>(now - last_tick).count();
        if (secs > 0) {
          notify(notifier.status(
              serving_line(double(answered - last_answered) / secs, svc->in_flight())));
        }
        last_tick = now;
        last_answered = answered;
        continue;
      }
    } else if (sigwait(&signals, &sig) != 0) {
      continue;
    }
    if (sig == SIGHUP) {
      notify(notifier.reloading());
      notify(notifier.status("reloading " + config_path));
      auto next = load_config(config_path);
      if (next) {
        recsched::Status st = apply_overrides(*next, tcp, socket, state_dir);
        if (!st.is_ok()) next = st;
      }
      std::string outcome;
      if (!next) {
        outcome = "reload refused, keeping the running config: " + next.status().message();
        spdlog::error("{}", outcome);
      } else {
        outcome = svc->reload(*next);
        spdlog::info("{}", outcome);
      }
      notify(notifier.ready());
      notify(notifier.status(outcome));
      continue;
    }
    if (config->fleet.drain_ms > 0) {
      // Leave the fleet first: not ready, `drain` to the balancer, connections closed after
      // each answer, still serving; a second signal cuts it short.
      spdlog::info("{} received: draining for {} ms", strsignal(sig), config->fleet.drain_ms);
      notify(notifier.stopping());
      notify(notifier.status("draining for " + std::to_string(config->fleet.drain_ms) + " ms"));
      svc->set_draining(true);
      server->set_draining();
      const auto until = SteadyClock::now() + std::chrono::milliseconds(config->fleet.drain_ms);
      while (true) {
        const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(
            until - SteadyClock::now());
        if (left.count() <= 0) break;
        const timespec wait{static_cast<time_t>(left.count() / 1000000000),
                            static_cast<long>(left.count() % 1000000000)};
        const int again = sigtimedwait(&signals, nullptr, &wait);
        if (again == SIGTERM || again == SIGINT) {
          spdlog::info("{} received again: stopping now", strsignal(again));
          break;
        }
        if (again == SIGHUP) spdlog::info("SIGHUP ignored: draining before a stop");
      }
    }
    // Leaving in any case: the balancer's agent says drain, ready says 503, from now.
    svc->set_draining(true);
    server->set_draining();
    spdlog::info("{} received: stopping (answering {} queries in flight)", strsignal(sig),
                 svc->in_flight());
    notify(notifier.stopping());
    notify(notifier.status("stopping: answering " + std::to_string(svc->in_flight()) +
                           " queries in flight"));
    server->stop(30000);
    agent.reset();  // it asks the service, which goes next
    service->reset();  // the runner finishes anything still queued
    spdlog::info("stopped");
    return 0;
  }
}
