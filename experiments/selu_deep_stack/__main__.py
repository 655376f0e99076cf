"""python -m experiments.selu_deep_stack: runs the binary."""

from experiments.selu_deep_stack import main

main.cli_main()
