// Operator schemas of the `ddtime` library and the Python module stub.
//
// Kernels live beside this file: csrc/cpu/*_cpu.cpp (TORCH_LIBRARY_IMPL CPU), in CUDA builds
// csrc/cuda/*_cuda.cpp (TORCH_LIBRARY_IMPL CUDA), and the autograd of the differentiable ops in
// csrc/autograd.cpp (TORCH_LIBRARY_IMPL Autograd); the fake (meta) kernels are registered from Python
// in ddtime/_ops.py. What each op computes is defined in the docstrings of the public functions that
// call it, in ddtime/functional.py; shapes below use H = size(dim), F = H // 2 + 1.
#include <Python.h>
#include <torch/library.h>

#include <string>
#include <string_view>

#ifndef DDTIME_CUDA_VERSION
#define DDTIME_CUDA_VERSION -1
#endif

namespace ddtime {

int64_t cuda_version() { return DDTIME_CUDA_VERSION; }

}  // namespace ddtime

namespace {

// Schemas of the kernel ops, the one list of them: the CUDA error kernels below and ddtime/info.py
// (through the dispatcher) take the op names from here.
constexpr const char* kOpSchemas[] = {
    // rows: input.shape without dim (opmath dtype); grad: d rows / d input, or empty when !compute_grad.
    "value_loss_fused(Tensor input, Tensor target, float alpha, int dim, bool compute_grad) -> (Tensor, Tensor)",
    "value_loss_backward(Tensor grad_rows, Tensor grad, int dim) -> Tensor",
    // modulus: |rfft(input - target)| with dim of size F; phase: unit (cos, sin), shape modulus.shape + (2,).
    "frequency_alignment_bins(Tensor input, Tensor target, int dim) -> (Tensor, Tensor)",
    "frequency_alignment_bins_backward(Tensor grad_modulus, Tensor phase, int dim, int length) -> Tensor",
    // x: [S, N, L]; returns D: [S, S].
    "pairwise_symmetric_kl(Tensor x, float tau) -> Tensor",
    "pairwise_symmetric_kl_backward(Tensor grad_D, Tensor x, float tau) -> Tensor",
    // returns (loss, D): loss = mean_{i<j} exp(-D_ij).
    "isib_loss(Tensor x, float tau) -> (Tensor, Tensor)",
    "isib_loss_backward(Tensor grad_loss, Tensor D, Tensor x, float tau) -> Tensor",
};

}  // namespace

TORCH_LIBRARY(ddtime, m) {
  for (const char* schema : kOpSchemas) m.def(schema);
  m.def("cuda_version() -> int", &ddtime::cuda_version);
}

#if DDTIME_CUDA_VERSION < 0
// CPU-only build: a CUDA tensor gets an error that says how to rebuild instead of the dispatcher's
// generic "could not run ... with arguments from the 'CUDA' backend".
namespace {
void cuda_not_built(const c10::OperatorHandle& op, torch::jit::Stack*) {
  TORCH_CHECK(false, "ddtime::", op.schema().name().substr(8),
              " got CUDA tensors, but ddtime was built without CUDA kernels. Rebuild with CUDA torch "
              "and nvcc on PATH: DDTIME_WITH_CUDA=1 pip install --no-build-isolation --force-reinstall .  "
              "(python -m ddtime.info shows what was built)");
}
}  // namespace

TORCH_LIBRARY_IMPL(ddtime, CUDA, m) {
  for (const std::string_view schema : kOpSchemas) {
    const std::string name(schema.substr(0, schema.find('(')));
    m.impl(name.c_str(), torch::CppFunction::makeFromBoxedFunction<&cuda_not_built>());
  }
}
#endif

// `import ddtime._C` loads this shared object, which runs the registrations above.
static struct PyModuleDef ddtime_module = {PyModuleDef_HEAD_INIT, "_C", "ddtime custom operators", -1, nullptr};
PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&ddtime_module); }
