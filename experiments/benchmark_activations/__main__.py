"""python -m experiments.benchmark_activations: runs the binary."""

from experiments.benchmark_activations import main

main.cli_main()
