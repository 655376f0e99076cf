"""python -m experiments.dying_relu: runs the binary."""

from experiments.dying_relu import main

main.cli_main()
