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

}  // namespace pe
