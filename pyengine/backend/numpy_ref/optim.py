"""NumPy twins of csrc/optim.cpp."""

import numpy as np

__all__ = ["adam_step", "adamw_step", "rmsprop_step", "sgd_step"]


def adam_step(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step):
    g = grad + weight_decay * param if weight_decay else grad
    exp_avg[...] = beta1 * exp_avg + (1 - beta1) * g
    exp_avg_sq[...] = beta2 * exp_avg_sq + (1 - beta2) * g * g
    bc1 = 1 - beta1**step
    bc2 = 1 - beta2**step
    denom = np.sqrt(exp_avg_sq) / np.sqrt(bc2) + eps
    param[...] = param - (lr / bc1) * exp_avg / denom


def sgd_step(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    g = grad + weight_decay * param if weight_decay else grad
    if momentum:
        buf[...] = g if first else momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    param[...] = param - lr * g


def adamw_step(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step):
    param[...] = param * (1 - lr * weight_decay)
    adam_step(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, 0.0, step)


def rmsprop_step(
    param,
    grad,
    square_avg,
    grad_avg,
    momentum_buffer,
    lr,
    alpha,
    eps,
    weight_decay,
    momentum,
    centered,
):
    g = grad + weight_decay * param if weight_decay else grad
    square_avg[...] = alpha * square_avg + (1 - alpha) * g * g
    var = square_avg
    if centered:
        grad_avg[...] = grad_avg + (1 - alpha) * (g - grad_avg)
        var = square_avg - grad_avg * grad_avg
    avg = np.sqrt(var) + eps
    if momentum > 0:
        momentum_buffer[...] = momentum * momentum_buffer + g / avg
        param[...] = param - lr * momentum_buffer
    else:
        param[...] = param - lr * g / avg
