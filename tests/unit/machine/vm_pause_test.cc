// VmPause (hypervisor/machine/vm_pause.h), the home's side of pausing a guest on every node, without KVM: the
// home's vCPU table is empty, and the edges are answered by the test through the same OnAnswer the DSM receiver
// thread calls. What it checks: every edge is asked and answered before Pause returns, a node that does not
// answer or refuses is named and the pause is undone everywhere, answers to no request in flight are counted,
// and a stopping VM ends the wait. The real edges (remote runtimes holding their vCPUs) run in tests/e2e.
#include "hypervisor/machine/vm_pause.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

namespace coalesce {
namespace {

struct Sent {
  uint16_t node;
  node_msg::Pause pause;
};

struct Fixture {
  std::vector<std::unique_ptr<Vcpu>> vcpus;  // none at home: the flag and the edges are what is checked
  RunControl run_control;
  TimerService timers;
  std::vector<uint16_t> edges = {1, 2};
  std::vector<Sent> sent;
  // How each node answers a Pause: by default at once, holding one vCPU.
  std::function<void(VmPause&, uint16_t, const node_msg::Pause&)> answer = [](VmPause& p, uint16_t node,
                                                                              const node_msg::Pause& m) {
    p.OnAnswer(node, {.token = m.token, .paused = m.paused, .vcpus = 1, .error = ""});
  };
  std::unique_ptr<VmPause> pause;

  Fixture() {
    pause = std::make_unique<VmPause>(
        vcpus, run_control, &timers, [this] { return edges; },
        [this](uint16_t node, const node_msg::NodeMessage& message) {
          const auto& m = std::get<node_msg::Pause>(message);
          sent.push_back({node, m});
          answer(*pause, node, m);
          return absl::OkStatus();
        });
  }
};

TEST_CASE("pause asks every edge, waits for each answer, and resume undoes it") {
  Fixture f;
  absl::StatusOr<VmPause::Result> paused = f.pause->Pause(absl::Seconds(5));
  REQUIRE(paused.ok());
  CHECK(paused->edges == 2);
  CHECK(paused->vcpus_edges == 2);
  CHECK(paused->vcpus_home == 0);
  CHECK(f.pause->paused());
  CHECK(f.run_control.paused());
  REQUIRE(f.sent.size() == 2);
  CHECK(f.sent[0].node == 1);
  CHECK(f.sent[1].node == 2);
  CHECK(f.sent[0].pause.paused);
  // The home's device timers stand still while paused: one due now runs only after the resume.
  std::atomic<int> ticked{0};
  f.timers.Schedule(TimerService::Clock::now(), [&] { ticked++; });
  absl::SleepFor(absl::Milliseconds(50));
  CHECK(ticked.load() == 0);

  absl::StatusOr<VmPause::Result> again = f.pause->Pause(absl::Seconds(5));
  CHECK(again.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(again.status().message()), Catch::Contains("paused already"));

  absl::StatusOr<VmPause::Result> resumed = f.pause->Resume(absl::Seconds(5));
  REQUIRE(resumed.ok());
  CHECK(resumed->vcpus_edges == 2);
  CHECK_FALSE(f.pause->paused());
  CHECK_FALSE(f.run_control.paused());
  REQUIRE(f.sent.size() == 4);
  CHECK_FALSE(f.sent[3].pause.paused);
  CHECK(f.pause->unexpected() == 0);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (ticked.load() == 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  CHECK(ticked.load() == 1);

  CHECK_THAT(std::string(f.pause->Resume(absl::Seconds(5)).status().message()), Catch::Contains("not paused"));
}

TEST_CASE("a node that does not answer is named, and the pause is undone everywhere") {
  Fixture f;
  f.answer = [](VmPause& p, uint16_t node, const node_msg::Pause& m) {
    if (node == 2 && m.paused) return;  // node 2 never holds its vCPUs
    p.OnAnswer(node, {.token = m.token, .paused = m.paused, .vcpus = 1, .error = ""});
  };
  absl::StatusOr<VmPause::Result> paused = f.pause->Pause(absl::Milliseconds(200));
  CHECK(paused.status().code() == absl::StatusCode::kDeadlineExceeded);
  CHECK_THAT(std::string(paused.status().message()), Catch::Contains("node 2 did not answer"));
  CHECK_FALSE(f.pause->paused());
  CHECK_FALSE(f.run_control.paused());
  // Both nodes were told to run again.
  REQUIRE(f.sent.size() == 4);
  CHECK_FALSE(f.sent[2].pause.paused);
  CHECK_FALSE(f.sent[3].pause.paused);
}

TEST_CASE("a resume an edge did not confirm may be asked for again") {
  Fixture f;
  REQUIRE(f.pause->Pause(absl::Seconds(5)).ok());
  bool node2_answers_resume = false;
  f.answer = [&node2_answers_resume](VmPause& p, uint16_t node, const node_msg::Pause& m) {
    if (node == 2 && !m.paused && !node2_answers_resume) return;
    p.OnAnswer(node, {.token = m.token, .paused = m.paused, .vcpus = 1, .error = ""});
  };
  absl::StatusOr<VmPause::Result> resumed = f.pause->Resume(absl::Milliseconds(200));
  CHECK_THAT(std::string(resumed.status().message()), Catch::Contains("node 2 did not answer"));
  CHECK_THAT(std::string(resumed.status().message()), Catch::Contains("resume` again"));
  CHECK_FALSE(f.pause->paused());  // the home runs
  CHECK_FALSE(f.run_control.paused());
  node2_answers_resume = true;
  absl::StatusOr<VmPause::Result> again = f.pause->Resume(absl::Seconds(5));
  REQUIRE(again.ok());
  CHECK(again->edges == 2);
  // Confirmed now: one more resume is refused.
  CHECK_THAT(std::string(f.pause->Resume(absl::Seconds(5)).status().message()), Catch::Contains("not paused"));
}

TEST_CASE("a node's own refusal is reported with its reason") {
  Fixture f;
  f.answer = [](VmPause& p, uint16_t node, const node_msg::Pause& m) {
    p.OnAnswer(node, {.token = m.token, .paused = false, .vcpus = 0,
                      .error = node == 1 && m.paused ? "vCPU 3 did not stop within 5s" : ""});
  };
  absl::StatusOr<VmPause::Result> paused = f.pause->Pause(absl::Seconds(5));
  CHECK_THAT(std::string(paused.status().message()), Catch::Contains("node 1: vCPU 3 did not stop"));
  CHECK_FALSE(f.pause->paused());
}

TEST_CASE("answers to no request in flight are counted, not taken") {
  Fixture f;
  f.pause->OnAnswer(1, {.token = 99, .paused = true, .vcpus = 1, .error = ""});
  CHECK(f.pause->unexpected() == 1);
  f.answer = [](VmPause& p, uint16_t node, const node_msg::Pause& m) {
    p.OnAnswer(node, {.token = m.token + 7, .paused = m.paused, .vcpus = 1, .error = ""});  // a stale token
  };
  CHECK(f.pause->Pause(absl::Milliseconds(100)).status().code() == absl::StatusCode::kDeadlineExceeded);
  CHECK(f.pause->unexpected() >= 3);
}

TEST_CASE("a VM on one node pauses without messages; a stopping VM ends the wait") {
  Fixture one;
  one.edges.clear();
  REQUIRE(one.pause->Pause(absl::Seconds(5)).ok());
  CHECK(one.sent.empty());
  CHECK(one.run_control.paused());

  Fixture f;
  f.answer = [](VmPause&, uint16_t, const node_msg::Pause&) {};  // nobody answers
  f.pause->Cancel();
  const absl::Time start = absl::Now();
  absl::StatusOr<VmPause::Result> paused = f.pause->Pause(absl::Seconds(30));
  CHECK_THAT(std::string(paused.status().message()), Catch::Contains("stopping"));
  CHECK(absl::Now() - start < absl::Seconds(20));
}

}  // namespace
}  // namespace coalesce
