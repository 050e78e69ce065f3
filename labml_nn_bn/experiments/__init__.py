"""
Experiments that show the paper's claims, one annotated file each, runnable as
`python -m labml_nn_bn.experiments.NAME`.
"""
