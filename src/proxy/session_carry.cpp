// A session across a binary upgrade: carry() writes down where it stands,
// the carried constructor and resume() take it up in the new image. The
// steady clock is CLOCK_MONOTONIC, the same across the exec, so its time
// points are carried as they are.
#include <algorithm>

#include "fulcrum/socket.hpp"
#include "fulcrum/worker.hpp"
#include "session.hpp"

namespace fulcrum {

namespace {

using Clock = std::chrono::steady_clock;

int64_t to_ns(Clock::time_point at) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
}

Clock::time_point from_ns(int64_t ns) {
  return Clock::time_point(
      std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
}

// What is left until `at`, rounded up, never negative.
std::chrono::milliseconds until(Clock::time_point at) {
  return std::max(std::chrono::ceil<std::chrono::milliseconds>(at - Clock::now()),
                  std::chrono::milliseconds(0));
}

}  // namespace

Session::Session(Worker& worker, std::shared_ptr<const Snapshot> snapshot,
                 const ServiceRuntime& service, CarriedSession carried)
    : Session(worker, std::move(snapshot), service, Fd(carried.client_fd), carried.client_address) {
  peer_address_ = carried.peer_address;
  source_counted_ = carried.source_counted;
  if (source_counted_) service_.state->sources.count_carried(client_address_);
  group_ = std::min<size_t>(carried.group, service_.groups.size() - 1);
  started_ = from_ns(carried.started_ns);
  last_activity_ = from_ns(carried.last_activity_ns);
  connect_started_ = from_ns(carried.connect_started_ns);
  lifetime_end_ = from_ns(carried.lifetime_end_ns);
  last_publish_ = from_ns(carried.last_publish_ns);
  header_deadline_at_ = from_ns(carried.deadline_ns);
  published_in_ = carried.published_in;
  published_out_ = carried.published_out;
  attempt_ = carried.attempt;
  last_failure_ = static_cast<SessionEnd>(carried.last_failure);
  if (carried.first_close) first_close_ = static_cast<SessionEnd>(*carried.first_close);
  for (const std::string& name : carried.failed_servers) {
    for (uint32_t i = 0; i < service_.servers.size(); ++i) {
      if (service_.servers[i].config->name == name) failed_servers_.push_back(i);
    }
  }
  if (carried.server_fd >= 0) server_.reset(carried.server_fd);
  if (!carried.server.empty()) {
    for (uint32_t i = 0; i < service_.servers.size(); ++i) {
      if (service_.servers[i].config->name != carried.server) continue;
      server_index_ = i;
      server_lease_.state = service_.servers[i].state.get();
      server_lease_.state->acquire_carried();
    }
  }
  // The pipes are the worker's from now on (their descriptors counted).
  for (auto [from, to] : {std::pair{&carried.c2s, &c2s_}, std::pair{&carried.s2c, &s2c_}}) {
    if (from->pipe_read < 0) continue;
    to->pipe = worker_.pipes().adopt(Fd(from->pipe_read), Fd(from->pipe_write), from->pipe_capacity,
                                     from->pipe_bytes);
    from->pipe_read = from->pipe_write = -1;
  }
  carried_ = std::move(carried);
}

void Session::resume() {
  const CarriedSession carried = std::move(*carried_);
  carried_.reset();
  switch (carried.phase) {
    case CarriedPhase::proxy_header:
      header_bytes_ = carried.pending;
      header_event_.reset(
          event_new(worker_.base(), client_.get(), EV_READ | EV_PERSIST, on_proxy_header_cb, this));
      event_add(header_event_.get(), nullptr);
      header_deadline_.reset(evtimer_new(worker_.base(), on_proxy_header_deadline_cb, this));
      add_with_timeout(header_deadline_.get(), until(header_deadline_at_));
      return;
    case CarriedPhase::hello:
      hello_.assign(carried.pending.begin(), carried.pending.end());
      reading_hello_ = true;
      header_event_.reset(
          event_new(worker_.base(), client_.get(), EV_READ | EV_PERSIST, on_hello_cb, this));
      event_add(header_event_.get(), nullptr);
      header_deadline_.reset(evtimer_new(worker_.base(), on_hello_deadline_cb, this));
      add_with_timeout(header_deadline_.get(), until(header_deadline_at_));
      return;
    case CarriedPhase::connecting:
      if (!server_index_ || !server_) {
        // Its server left the configuration: the next one, as after a
        // failed attempt (nothing counted against any server).
        server_.reset();
        connect_next();
        return;
      }
      hello_.assign(carried.pending.begin(), carried.pending.end());
      connecting_ = true;
      timer_.reset(evtimer_new(worker_.base(), on_timer_cb, this));
      add_with_timeout(timer_.get(), until(connect_started_ + service_.config->connect_timeout));
      if (int error = worker_.poller().watch(server_.get(), server_watch_, EPOLLOUT); error != 0)
        connect_failed(error);
      return;
    case CarriedPhase::relaying: resume_relay(carried); return;
  }
}

void Session::resume_relay(const CarriedSession& carried) {
  if (!server_index_ || !server_) {
    // Its server left the configuration between the binaries: the stream
    // cannot go on, and neither peer may take the cut for a clean end.
    set_linger_reset(client_.get());
    if (server_) set_linger_reset(server_.get());
    finish(SessionEnd::local_error);
    return;
  }
  wire_directions();
  for (auto [from, to] : {std::pair{&carried.c2s, &c2s_}, std::pair{&carried.s2c, &s2c_}}) {
    to->eof = from->eof;
    to->done = from->done;
    to->splicing = from->splicing;
    to->watching_sink = from->watching_sink;
    to->bytes = from->bytes;
  }
  timer_.reset(evtimer_new(worker_.base(), on_timer_cb, this));
  add_with_timeout(timer_.get(), until(last_activity_ + service_.config->idle_timeout));
  if (carried.lifetime_end_ns != 0) {
    lifetime_timer_.reset(evtimer_new(worker_.base(), on_lifetime_cb, this));
    arm_lifetime_timer();
  }
  update_watches();
}

CarriedSession Session::carry() const {
  CarriedSession carried;
  carried.service = service_.config->name;
  if (server_index_) carried.server = service_.servers[*server_index_].config->name;
  if (header_event_) {
    carried.phase = reading_hello_ ? CarriedPhase::hello : CarriedPhase::proxy_header;
    carried.pending = reading_hello_ ? std::string(hello_.begin(), hello_.end()) : header_bytes_;
  } else if (connecting_) {
    carried.phase = CarriedPhase::connecting;
    carried.pending = std::string(hello_.begin(), hello_.end());
  } else {
    carried.phase = CarriedPhase::relaying;
  }
  carried.client_fd = client_.get();
  carried.server_fd = server_.get();
  carried.client_address = client_address_;
  carried.peer_address = peer_address_;
  carried.source_counted = source_counted_;
  carried.group = static_cast<uint32_t>(group_);
  carried.started_ns = to_ns(started_);
  carried.last_activity_ns = to_ns(last_activity_);
  carried.connect_started_ns = to_ns(connect_started_);
  carried.lifetime_end_ns = lifetime_timer_ ? to_ns(lifetime_end_) : 0;
  carried.last_publish_ns = to_ns(last_publish_);
  carried.deadline_ns = to_ns(header_deadline_at_);
  carried.published_in = published_in_;
  carried.published_out = published_out_;
  for (uint32_t index : failed_servers_)
    carried.failed_servers.push_back(service_.servers[index].config->name);
  carried.attempt = attempt_;
  carried.last_failure = static_cast<uint8_t>(last_failure_);
  if (first_close_) carried.first_close = static_cast<uint8_t>(*first_close_);
  for (auto [from, to] : {std::pair{&c2s_, &carried.c2s}, std::pair{&s2c_, &carried.s2c}}) {
    // An empty pipe stays behind (closed by the exec): the new image
    // borrows one when bytes come.
    if (from->pipe && from->pipe.bytes > 0) {
      to->pipe_read = from->pipe.read_fd();
      to->pipe_write = from->pipe.write_fd();
      to->pipe_capacity = from->pipe.capacity();
      to->pipe_bytes = from->pipe.bytes;
    }
    to->eof = from->eof;
    to->done = from->done;
    to->splicing = from->splicing;
    to->watching_sink = from->watching_sink;
    to->bytes = from->bytes;
  }
  return carried;
}

}  // namespace fulcrum
