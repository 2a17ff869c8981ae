// The op names of the elementwise kernels, parsed once per call; shared by csrc/elementwise.cpp
// and cuda/elementwise.cu so both devices accept exactly the same names.
#pragma once

#include <stdexcept>
#include <string>

namespace pe {

enum class BinOp { Add, Sub, Mul, Div, Pow, Max, Min };

inline BinOp parse_binop(const std::string& op) {
  if (op == "add") return BinOp::Add;
  if (op == "sub") return BinOp::Sub;
  if (op == "mul") return BinOp::Mul;
  if (op == "div") return BinOp::Div;
  if (op == "pow") return BinOp::Pow;
  if (op == "maximum") return BinOp::Max;
  if (op == "minimum") return BinOp::Min;
  throw std::invalid_argument("unknown binary op '" + op + "'");
}

enum class UnOp { Relu, LeakyRelu, Sigmoid, Tanh, Exp, Log, Sqrt, Neg, Abs, PowScalar };

inline UnOp parse_unop(const std::string& op) {
  if (op == "relu") return UnOp::Relu;
  if (op == "leaky_relu") return UnOp::LeakyRelu;
  if (op == "sigmoid") return UnOp::Sigmoid;
  if (op == "tanh") return UnOp::Tanh;
  if (op == "exp") return UnOp::Exp;
  if (op == "log") return UnOp::Log;
  if (op == "sqrt") return UnOp::Sqrt;
  if (op == "neg") return UnOp::Neg;
  if (op == "abs") return UnOp::Abs;
  if (op == "pow") return UnOp::PowScalar;
  throw std::invalid_argument("unknown unary op '" + op + "'");
}

// Elementwise maps that only the CPU implements (csrc/elementwise.cpp: math_forward/math_backward,
// binary_math_forward; clamp has its own two-bound kernel). Kept out of UnOp/BinOp so that the CUDA switches stay exhaustive and a cuda
// tensor gets the device layer's NotImplementedError instead of an unknown-op error.
enum class MathOp { Sign, Round, Floor, Ceil, Trunc, Sin, Cos, Log1p, Expm1 };

inline MathOp parse_mathop(const std::string& op) {
  if (op == "sign") return MathOp::Sign;
  if (op == "round") return MathOp::Round;
  if (op == "floor") return MathOp::Floor;
  if (op == "ceil") return MathOp::Ceil;
  if (op == "trunc") return MathOp::Trunc;
  if (op == "sin") return MathOp::Sin;
  if (op == "cos") return MathOp::Cos;
  if (op == "log1p") return MathOp::Log1p;
  if (op == "expm1") return MathOp::Expm1;
  throw std::invalid_argument("unknown math op '" + op + "'");
}

enum class BinMathOp { FloorDiv, Remainder };

inline BinMathOp parse_binmathop(const std::string& op) {
  if (op == "floor_divide") return BinMathOp::FloorDiv;
  if (op == "remainder") return BinMathOp::Remainder;
  throw std::invalid_argument("unknown binary math op '" + op + "'");
}

}  // namespace pe
