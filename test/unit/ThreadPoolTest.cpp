//===- ThreadPoolTest.cpp - dynamic scheduling covers every item once -----===//

#include "ThreadPool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

using attnrt::ThreadPool;

namespace {

void expectEachOnce(ThreadPool &pool, int64_t n, unsigned threads) {
  std::vector<std::atomic<int>> hits(n);
  pool.parallelFor(n, threads, [&](int64_t b, int64_t e) {
    ASSERT_LE(0, b);
    ASSERT_LT(b, e);
    ASSERT_LE(e, n);
    for (int64_t i = b; i < e; ++i)
      hits[i].fetch_add(1);
  });
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(hits[i].load(), 1) << "item " << i << " of " << n;
}

TEST(ThreadPool, EveryItemExactlyOnce) {
  ThreadPool pool(4);
  for (int64_t n : {0, 1, 2, 3, 31, 1000, 100000})
    for (unsigned t : {0u, 1u, 2u, 4u, 16u})
      expectEachOnce(pool, n, t);
}

TEST(ThreadPool, ManyConsecutiveJobs) {
  ThreadPool pool(3);
  for (int i = 0; i < 2000; ++i)
    expectEachOnce(pool, i % 17, 3);
}

TEST(ThreadPool, UsesSeveralThreadsAndTheCaller) {
  ThreadPool pool(4);
  std::mutex m;
  std::set<std::thread::id> ids;
  pool.parallelFor(64, 4, [&](int64_t, int64_t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::lock_guard<std::mutex> lock(m);
    ids.insert(std::this_thread::get_id());
  });
  EXPECT_GT(ids.size(), 1u);
  EXPECT_LE(ids.size(), 4u);
  EXPECT_TRUE(ids.count(std::this_thread::get_id()));
}

TEST(ThreadPool, OneThreadRunsInline) {
  ThreadPool pool(4);
  std::set<std::thread::id> ids;
  pool.parallelFor(100, 1, [&](int64_t, int64_t) {
    ids.insert(std::this_thread::get_id());
  });
  EXPECT_EQ(ids, std::set<std::thread::id>{std::this_thread::get_id()});
}

TEST(ThreadPool, ConcurrentCallersAreSerialized) {
  ThreadPool pool(3);
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c)
    callers.emplace_back([&] {
      for (int i = 0; i < 200; ++i)
        expectEachOnce(pool, 50, 3);
    });
  for (std::thread &t : callers)
    t.join();
}

} // namespace
