"""python -m experiments.born_dead: runs the binary."""

from experiments.born_dead import main

main.cli_main()
