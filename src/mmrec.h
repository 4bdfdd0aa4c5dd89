// The mmrec library: include this to embed the runtime in a C++ program.
#pragma once
#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/reduce.h"
#include "ops/view.h"
#include "tensor/allocator.h"
#include "tensor/random.h"
#include "tensor/tensor.h"
#include "tensor/threads.h"
