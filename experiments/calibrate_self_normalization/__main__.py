"""python -m experiments.calibrate_self_normalization: runs the binary."""

from experiments.calibrate_self_normalization import main

main.cli_main()
