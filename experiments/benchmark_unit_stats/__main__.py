"""python -m experiments.benchmark_unit_stats: runs the binary."""

from experiments.benchmark_unit_stats import main

main.cli_main()
