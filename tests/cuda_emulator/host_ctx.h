// Host execution context of the emulator in tests/test_cuda_compile.py: one std::thread per CUDA
// thread, std::barrier for __syncthreads and the warp shuffles, NaN-filled shared memory fenced
// by a canary; float64 files in and out.
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

struct HostBlock {
  int nthreads;
  int64_t bid, nblocks;
  std::barrier<> block_bar;
  std::vector<std::unique_ptr<std::barrier<>>> warp_bars;
  std::vector<double> scratch;
  HostBlock(int n, int64_t b, int64_t nb) : nthreads(n), bid(b), nblocks(nb), block_bar(n), scratch(n) {
    for (int w = 0; w < n / 32; ++w) warp_bars.emplace_back(std::make_unique<std::barrier<>>(32));
  }
};

struct HostCtx {
  HostBlock* b;
  int tid;
  int thread() const { return tid; }
  int64_t block() const { return b->bid; }
  int64_t blocks() const { return b->nblocks; }
  int lane() const { return tid % 32; }
  int warp() const { return tid / 32; }
  int warps() const { return b->nthreads / 32; }
  void sync() const { b->block_bar.arrive_and_wait(); }
  template <typename I, class F>
  void for_each(I n, F&& f) const {
    for (I i = tid; i < n; i += b->nthreads) f(i);
  }
  template <typename R>
  R* exchange(R v, R* vals) const {  // all 32 lane values of this warp, in lane order
    R* sc = reinterpret_cast<R*>(b->scratch.data()) + warp() * 32;
    sc[lane()] = v;
    b->warp_bars[warp()]->arrive_and_wait();
    std::memcpy(vals, sc, 32 * sizeof(R));
    b->warp_bars[warp()]->arrive_and_wait();
    return vals;
  }
  template <typename R>
  R warp_sum(R v) const {  // the xor butterfly of __shfl_xor_sync, in the same order
    R vals[32], next[32];
    exchange(v, vals);
    for (int off = 16; off > 0; off /= 2) {
      for (int l = 0; l < 32; ++l) next[l] = vals[l] + vals[l ^ off];
      std::memcpy(vals, next, sizeof(vals));
    }
    return vals[lane()];
  }
  template <typename R>
  R warp_max(R v) const {
    R vals[32];
    exchange(v, vals);
    R m = vals[0];
    for (int l = 1; l < 32; ++l) m = std::fmax(m, vals[l]);
    return m;
  }
};

// body(ctx, smem) for every block; shared memory starts as NaN and is followed by a canary.
template <class Body>
void run_grid(int64_t grid, int threads, size_t smem_bytes, Body body) {
  constexpr size_t kCanary = 512;
  const size_t words = (smem_bytes + 7) / 8;
  std::vector<double> smem(words + kCanary);
  for (int64_t bid = 0; bid < grid; ++bid) {
    std::memset(smem.data(), 0xff, words * sizeof(double));
    std::memset(smem.data() + words, 0x5a, kCanary * sizeof(double));
    HostBlock blk(threads, bid, grid);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] { body(HostCtx{&blk, t}, reinterpret_cast<unsigned char*>(smem.data())); });
    for (auto& th : pool) th.join();
    const unsigned char* c = reinterpret_cast<const unsigned char*>(smem.data() + words);
    for (size_t i = 0; i < kCanary * sizeof(double); ++i) {
      if (c[i] != 0x5a) {
        std::fprintf(stderr, "shared memory overflow in block %lld\n", static_cast<long long>(bid));
        std::exit(3);
      }
    }
  }
}

static std::vector<double> read_doubles(const char* path) {
  std::vector<double> v;
  FILE* f = std::fopen(path, "rb");
  double x;
  while (f != nullptr && std::fread(&x, sizeof x, 1, f) == 1) v.push_back(x);
  if (f != nullptr) std::fclose(f);
  return v;
}

static void write_doubles(const char* path, const std::vector<double>& v) {
  FILE* f = std::fopen(path, "wb");
  std::fwrite(v.data(), sizeof(double), v.size(), f);
  std::fclose(f);
}
