// The oneDNN CPU engine shared by every oneDNN kernel, and one stream per thread.
#pragma once
#include <oneapi/dnnl/dnnl.hpp>

namespace mmrec::kernels {

dnnl::engine& dnnl_engine();
dnnl::stream& dnnl_stream();  // thread-local

}  // namespace mmrec::kernels
