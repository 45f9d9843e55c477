"""Runs: run directories, the `TrainContext` every algorithm trains against, logging, checkpoints, plots.

Import the submodules you need (`saferl.training.context`, `.run`, `.restore`, …): the package itself
imports nothing, so a policy loader (`restore`, `rundir`, `checkpoints`) does not pull in logging or plots.
"""
