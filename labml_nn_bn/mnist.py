"""
The MNIST CNN experiment under its first name: `python -m labml_nn_bn.mnist` runs
`labml_nn_bn.experiments.mnist`, and `from labml_nn_bn import mnist` gives the same names.
The experiment and its explanation live in `labml_nn_bn/experiments/mnist.py`.
"""
from labml_nn_bn.experiments.mnist import (  # noqa: F401
    PROG, Configs, Model, Result, Tensors, check, evaluate, load_data, main, make_figures,
    make_optimizer, parse_args, pick_device, run, train, train_epoch)

if __name__ == '__main__':
    main(prog='python -m labml_nn_bn.mnist')
