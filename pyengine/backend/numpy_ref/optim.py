"""NumPy twins of csrc/optim.cpp."""

import numpy as np

__all__ = ["adam_step", "sgd_step"]


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
