"""
The experiments: one file per claim of the paper, each runnable as
`python -m labml_nn_bn.experiments.<name>`, all built on the shared trainer
(`labml_nn_bn.experiments.trainer`) and started through one command line
(`labml_nn_bn.experiments.cli`).
"""
