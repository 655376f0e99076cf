"""python -m experiments.compare_variants: runs the binary."""

from experiments.compare_variants import main

main.cli_main()
